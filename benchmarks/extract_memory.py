"""Peak memory of weight extraction against the size of the checkpoint it reads.

Usage:  python benchmarks/extract_memory.py [--layers 24] [--format safetensors|bin]
                                            [--dtype float32|float16|bfloat16] [--keep DIR]

Writes a synthetic checkpoint with BERT-large shapes (hidden 1024, FFN 4096, 24 layers, vocabulary
30522: ~1.3 GB in float32 with the default --layers 24; half that in 16 bits, which extract widens to
float32 matrix by matrix) in the names of BertModel, then runs
specbasis.io.extract.extract_weights on it in a fresh subprocess, so that the memory used to write
the checkpoint does not count. The subprocess reports, from /proc/self/status:
  - baseline: VmRSS after its imports (python, torch, h5py, safetensors, specbasis);
  - peak:     VmHWM (the high-water mark of the resident set) after the extraction.
Prints file size, baseline, peak and (peak - baseline) / file size. Goal: at most 0.25.
Resident pages of a memory-mapped checkpoint count in VmHWM (RssFile), which is why extract
closes its maps as it goes; the page cache outside the process does not count.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

CHILD = r"""
import json, sys
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024  # kB -> bytes
import h5py, numpy, safetensors, torch
from specbasis.io.extract import extract_weights
baseline = status("VmRSS")
summary = extract_weights(sys.argv[1], "bert", sys.argv[2])
print(json.dumps({"baseline": baseline, "peak": status("VmHWM"), "n_matrices": summary["n_matrices"],
                  "seconds": summary["seconds"]}))
"""


def bert_large_state(layers: int, hidden: int = 1024, ffn: int = 4096, vocab: int = 30522) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    state = {"embeddings.word_embeddings.weight": rand(vocab, hidden),
             "embeddings.position_embeddings.weight": rand(512, hidden),
             "embeddings.token_type_embeddings.weight": rand(2, hidden),
             "embeddings.LayerNorm.weight": torch.ones(hidden), "embeddings.LayerNorm.bias": torch.zeros(hidden)}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name, shape in (("attention.self.query", (hidden, hidden)), ("attention.self.key", (hidden, hidden)),
                            ("attention.self.value", (hidden, hidden)), ("attention.output.dense", (hidden, hidden)),
                            ("intermediate.dense", (ffn, hidden)), ("output.dense", (hidden, ffn))):
            state[p + name + ".weight"] = rand(*shape)  # (out, in)
            state[p + name + ".bias"] = torch.zeros(shape[0])
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            state[p + norm + ".weight"], state[p + norm + ".bias"] = torch.ones(hidden), torch.zeros(hidden)
    state["pooler.dense.weight"], state["pooler.dense.bias"] = rand(hidden, hidden), torch.zeros(hidden)
    return state


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--format", choices=["safetensors", "bin"], default="safetensors")
    ap.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    ap.add_argument("--keep", type=Path, help="write the checkpoint and output here and keep them")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        model_dir = work / "model"
        model_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.to(getattr(torch, args.dtype)) for k, v in bert_large_state(args.layers).items()}
        if args.format == "safetensors":
            from safetensors.torch import save_file
            ckpt = model_dir / "model.safetensors"
            save_file(state, str(ckpt))
        else:
            ckpt = model_dir / "pytorch_model.bin"
            torch.save(state, ckpt)
        del state
        size = ckpt.stat().st_size
        out = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), str(work / "weights.h5")],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])

    mib = 1 << 20
    ratio = (r["peak"] - r["baseline"]) / size
    print(f"checkpoint ({args.format}, {args.dtype}, {args.layers} layers): {size / mib:.0f} MiB")
    print(f"baseline RSS after imports: {r['baseline'] / mib:.0f} MiB")
    print(f"peak RSS during extraction: {r['peak'] / mib:.0f} MiB  ({r['n_matrices']} matrices, {r['seconds']:.1f} s)")
    print(f"(peak - baseline) / file size: {ratio:.3f}  (goal <= 0.25: {'met' if ratio <= 0.25 else 'NOT met'})")


if __name__ == "__main__":
    main()
