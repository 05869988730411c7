"""The paper suite at its true shapes, offline: random-initialised checkpoints of config/paper.yaml's architectures,
served by the local hub stand-in, run through the real workflow.

    python benchmarks/rehearsal.py build --hub DIR [--pairs NAME ...] [--config config/rehearsal.yaml]
    python benchmarks/rehearsal.py run --hub DIR [--cores 2] [--out benchmarks/results/rehearsal.csv]
                                       [-- SNAKEMAKE_ARGS ...]

build   writes, for every pair of the rehearsal config (or the named ones), the pretrained and the finetuned model as
        the hub would serve them, into DIR/<org>/<name>/: config.json and the weights file in the format and dtype
        the real repo has (benchmarks/rehearsal/architectures.csv: each architecture's configuration, file and dtype,
        with the source of each fact). The pretrained model is the library's own random initialisation of the real
        configuration (transformers' from_config, timm's create_model) with its pretraining head; the finetuned one
        has its task's head (3 MNLI classes; timm's tag says how many) on the same backbone plus, on every backbone
        matrix W, a seeded perturbation of the size a finetune makes: a rank-8 part of norm LOW_RANK x |W| and
        Gaussian noise of norm NOISE x |W| (Frobenius norms; module constants, sized from the default suite's own
        finetunes). timm repos are written by timm's own save_for_hf.
run     serves DIR with tests/hubstub.py (the stand-in the tests use, over loopback), points HF_ENDPOINT at it,
        runs `snakemake --cores N --configfile=config/rehearsal.yaml all` (the real fetch, prepare, extract, SVD,
        delta-SVD, every weight analysis and figure) and gathers every job's wall time, CPU time, peak memory and
        disk written (benchmarks/job_resources.py) into one CSV.

config/rehearsal.yaml holds config/paper.yaml's entries of the rehearsed pairs verbatim (sources, families,
accuracies), so the rehearsal plans and fetches exactly what the paper suite would; `build --write-config` rewrites
it from config/paper.yaml for the pairs named.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
ARCHITECTURES = HERE / "rehearsal" / "architectures.csv"
CONFIG = ROOT / "config" / "rehearsal.yaml"
PAPER = ROOT / "config" / "paper.yaml"

# The finetuned perturbation: a rank-8 part and noise, each a fraction of |W|_F. The default suite's MiniLM finetunes
# (minilm -> minilm-rt, minilm-party; 2026-12-08) changed their 36 matrices by |dW|/|W| = 0.017 (median; 0.013-0.023)
# with 42-55% of |dW|^2 in its top 8 singular values: equal parts give 0.017 and about half.
LOW_RANK, RANK, NOISE = 0.012, 8, 0.012
MNLI_CLASSES = 3
# the pretraining head of a transformers architecture, where it is not a masked-LM head
PRETRAINED_CLASS = {"electra": "ElectraForPreTraining", "xlnet": "XLNetLMHeadModel",
                    "bart": "BartForConditionalGeneration"}
# the pairs config/rehearsal.yaml holds: the largest model of every family of config/paper.yaml
DEFAULT_PAIRS = ("deberta-v2-xxlarge", "deberta-xlarge", "convnext-xxlarge-clip", "vit-large", "swin-large",
                 "bert-large-uncased", "roberta-large", "xlnet-large", "bart-large", "bigbird-base", "mobilebert",
                 "electra-base", "albert-base", "distilbert-base")


# ------------------------------------------------------------------------------------------------ the facts

def architectures(path: Path = ARCHITECTURES) -> dict[str, dict]:
    """model id (hub repo, or timm name) -> its row of architectures.csv."""
    with open(path, newline="") as f:
        return {row["model_id"]: row for row in csv.DictReader(f)}


def _value(text: str):
    """A CSV cell as JSON where it parses (numbers, true/false, lists), else the string."""
    text = text.strip()
    for candidate in (text, text.lower()):
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    return text


def config_fields(row: dict) -> dict:
    """The transformers configuration of a row: its sizes and its `extra` (key=value;key=value; a value with '|' is
    a list, e.g. pos_att_type=p2c|c2p)."""
    fields = {k: int(row[k]) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                       "vocab_size") if row.get(k, "").strip()}
    for item in filter(None, (x.strip() for x in row.get("extra", "").split(";"))):
        key, _, value = item.partition("=")
        fields[key.strip()] = [_value(v) for v in value.split("|")] if "|" in value else _value(value)
    return fields


def source_id(source: str) -> tuple[str, str]:
    """('hf' | 'timm', id) of a config source: hf:<repo>@<rev> or timm:<name>[@<rev>]."""
    scheme, _, rest = source.partition(":")
    if scheme not in ("hf", "timm"):
        raise ValueError(f"{source}: a rehearsal builds hub models only (hf: or timm:)")
    return scheme, rest.split("@")[0]


# ------------------------------------------------------------------------------------------------ building

def perturb_(model, skip: set[str], seed: int) -> int:
    """Add the finetuned perturbation (module docstring) to every weight matrix (and conv kernel, as its (out, rest)
    matrix) of `model` whose name is not in `skip`; returns how many were perturbed."""
    import torch

    count = 0
    for name, p in model.named_parameters():
        if p.ndim < 2 or name in skip:
            continue
        g = torch.Generator().manual_seed(int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:8], 16))
        with torch.no_grad():
            W = p.data.reshape(p.shape[0], -1)
            norm = W.float().norm()
            if not norm > 0:
                continue
            a = torch.randn(W.shape[0], RANK, generator=g)
            b = torch.randn(W.shape[1], RANK, generator=g)
            low = a @ b.T
            low *= LOW_RANK * norm / low.norm()
            noise = torch.randn(W.shape, generator=g)
            noise *= NOISE * norm / noise.norm()
            W += (low + noise).to(W.dtype)
            del a, b, low, noise
        count += 1
    return count


def transformers_model(row: dict, finetuned: bool):
    import transformers

    config = transformers.AutoConfig.for_model(row["model_type"], **config_fields(row))
    if finetuned:
        config.num_labels = MNLI_CLASSES
        cls = transformers.AutoModelForSequenceClassification
    else:
        name = PRETRAINED_CLASS.get(row["model_type"])
        if name:
            cls = getattr(transformers, name)
        elif type(config) in transformers.AutoModelForPreTraining._model_mapping:  # BERT's: MLM + NSP (+ pooler)
            cls = transformers.AutoModelForPreTraining
        else:
            cls = transformers.AutoModelForMaskedLM
    model = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
    for key in ("hidden_size", "num_hidden_layers"):  # the configuration took the row's sizes (aliases included)
        if row.get(key, "").strip() and getattr(model.config, key) != int(row[key]):
            raise ValueError(f"{row['model_id']}: {key} is {getattr(model.config, key)}, the table says {row[key]}")
    model.config.architectures = [type(model).__name__]
    return model.eval()


def unique_state(model, dtype: str) -> dict:
    """The model's state_dict in `dtype` (float tensors), tied weights once (as the hub's checkpoints have them)."""
    import torch

    seen, state = set(), {}
    for key, t in model.state_dict().items():
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if ptr in seen:
            continue
        seen.add(ptr)
        state[key] = (t.to(getattr(torch, dtype)) if t.is_floating_point() else t).contiguous()
    return state


def write_transformers(model, folder: Path, weights_file: str, dtype: str) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(folder / "config.json")
    state = unique_state(model, dtype)
    path = folder / weights_file
    if weights_file.endswith(".safetensors"):
        save_file(state, str(path), metadata={"format": "pt"})
    else:
        torch.save(state, path)
    return path


def build_transformers_pair(pre_row: dict, ft_row: dict, pre_dir: Path, ft_dir: Path, seed: int) -> dict:
    pre = transformers_model(pre_row, finetuned=False)
    write_transformers(pre, pre_dir, pre_row["checkpoint_file"], pre_row["checkpoint_dtype"])
    backbone = pre.base_model.state_dict()
    del pre
    ft = transformers_model(ft_row, finetuned=True)
    loaded = ft.base_model.load_state_dict(backbone, strict=False)
    if len(loaded.missing_keys) > 4:  # a pooler the pretraining head lacks is fine; a backbone that does not fit is not
        raise ValueError(f"{ft_row['model_id']}: the pretrained backbone lacks {loaded.missing_keys[:5]}")
    del backbone
    prefix = ft.base_model_prefix + "."
    head = {n for n, _ in ft.named_parameters() if not n.startswith(prefix)}
    count = perturb_(ft, head, seed)
    write_transformers(ft, ft_dir, ft_row["checkpoint_file"], ft_row["checkpoint_dtype"])
    return {"perturbed_matrices": count, "fresh_in_finetuned": loaded.missing_keys}


def build_timm_pair(pre_name: str, ft_name: str, hub: Path, seed: int) -> dict:
    import timm
    from timm.models import save_for_hf

    out = {}
    pre = timm.create_model(pre_name, pretrained=False).eval()
    save_for_hf(pre, str(hub / _repo(pre_name, "timm")), safe_serialization=True)
    ft = timm.create_model(ft_name, pretrained=False).eval()
    ft_state = ft.state_dict()
    same = {k: v for k, v in pre.state_dict().items() if k in ft_state and ft_state[k].shape == v.shape}
    del pre
    ft.load_state_dict(same, strict=False)
    head = {n for n, _ in ft.named_parameters() if n not in same}  # the new classifier: not perturbed
    out["perturbed_matrices"] = perturb_(ft, head, seed)
    save_for_hf(ft, str(hub / _repo(ft_name, "timm")), safe_serialization=True)
    return out


def build(hub: Path, pairs: list[str], config: dict, table: dict[str, dict], seed: int = 0) -> list[dict]:
    """Write every named pair's two repos into hub/; returns what was built (ids, sizes, seconds)."""
    done = []
    for pair in pairs:
        names = config["pairs"][pair]
        (s1, pre_id), (s2, ft_id) = (source_id(config["models"][names[r]]["source"]) for r in ("pretrained",
                                                                                               "finetuned"))
        t = time.perf_counter()
        if s1 == "timm":
            record = build_timm_pair(pre_id, ft_id, hub, seed)
        else:
            if pre_id not in table:
                raise KeyError(f"{pre_id}: not in {ARCHITECTURES.name}; add its configuration (with its source)")
            ft_row = {**table[pre_id], **{k: v for k, v in table.get(ft_id, {}).items() if v.strip()},
                      "model_id": ft_id}
            record = build_transformers_pair(table[pre_id], ft_row, hub / pre_id, hub / ft_id, seed)
        sizes = {name: sum(p.stat().st_size for p in (hub / repo).rglob("*") if p.is_file())
                 for name, repo in (("pretrained", _repo(pre_id, s1)), ("finetuned", _repo(ft_id, s2)))}
        done.append({"pair": pair, "pretrained": pre_id, "finetuned": ft_id, **record,
                     "bytes": sizes, "seconds": round(time.perf_counter() - t, 1)})
        print(json.dumps(done[-1]), flush=True)
    return done


def _repo(model_id: str, scheme: str) -> str:
    if scheme == "hf":
        return model_id
    import timm

    return timm.models.get_pretrained_cfg(model_id).hf_hub_id


def repos(hub: Path) -> dict[str, Path]:
    """repo id -> folder of every repo build wrote (a folder two levels down holding config.json)."""
    return {f"{p.parent.parent.name}/{p.parent.name}": p.parent for p in sorted(hub.glob("*/*/config.json"))}


# ------------------------------------------------------------------------------------------------ the config

def write_config(pairs: list[str], out: Path = CONFIG, paper: Path = PAPER) -> None:
    """config/rehearsal.yaml: config/paper.yaml's entries of these pairs, verbatim, and its svd/alignment settings."""
    import yaml

    source = yaml.safe_load(paper.read_text())
    models = {}
    for pair in pairs:
        for role in ("pretrained", "finetuned"):
            name = source["pairs"][pair][role]
            models[name] = source["models"][name]
    config = {"name": "rehearsal", "seed": source.get("seed", 0), "device": source.get("device", "auto"),
              **{k: source[k] for k in ("svd", "alignment") if k in source},
              "models": models, "pairs": {p: source["pairs"][p] for p in pairs}}
    header = ("# The paper suite's largest model of every family, at its true shapes with random weights: written by\n"
              "# `python benchmarks/rehearsal.py build --write-config`, from config/paper.yaml's entries (verbatim), and\n"
              "# run against the local hub stand-in by `python benchmarks/rehearsal.py run` (HF_ENDPOINT). Not for the\n"
              "# real hub: the accuracies are the paper's, the weights are not the models'.\n")
    out.write_text(header + yaml.safe_dump(config, sort_keys=False, width=120))


# ------------------------------------------------------------------------------------------------ running

@contextlib.contextmanager
def serving(hub: Path):
    sys.path.insert(0, str(ROOT / "tests"))
    from hubstub import HubStub

    found = repos(hub)
    if not found:
        raise SystemExit(f"{hub}: no repos (run `build` first)")
    with HubStub(found) as stub:
        yield stub


def run(hub: Path, cores: int, out: Path, snakemake_args: list[str], config: Path = CONFIG) -> Path:
    sys.path.insert(0, str(HERE))
    from job_resources import COLUMNS, gather

    with serving(hub) as stub, tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HF_ENDPOINT": stub.url, "HF_HOME": home, "HF_HUB_DISABLE_XET": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1"}
        logs = ROOT / ".snakemake" / "log"
        before = set(logs.glob("*.snakemake.log")) if logs.is_dir() else set()
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), f"--configfile={config}", *snakemake_args]
        if not any(not a.startswith("-") for a in snakemake_args):
            cmd.append("all")
        print("$", " ".join(cmd), flush=True)
        code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    new = sorted(set(logs.glob("*.snakemake.log")) - before)
    if not new:
        raise SystemExit(f"snakemake exited {code} and wrote no log")
    rows = gather(new[-1], ROOT, machine=_machine())
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"snakemake exited {code}; {len(rows)} jobs -> {out}")
    return out


def _machine() -> str:
    import psutil

    return f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--hub", type=Path, required=True)
    b.add_argument("--pairs", nargs="*", help="pairs of the config (default: all of them)")
    b.add_argument("--config", type=Path, default=CONFIG)
    b.add_argument("--write-config", action="store_true", help=f"first rewrite {CONFIG.name} from paper.yaml "
                                                                f"(with --pairs, or the default pairs)")
    b.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("run")
    r.add_argument("--hub", type=Path, required=True)
    r.add_argument("--cores", type=int, default=os.cpu_count())
    r.add_argument("--config", type=Path, default=CONFIG)
    r.add_argument("--out", type=Path, default=HERE / "results" / "rehearsal.csv")
    r.add_argument("snakemake_args", nargs="*")
    args = ap.parse_args()
    if args.command == "build":
        import yaml

        if args.write_config:
            write_config(list(args.pairs or DEFAULT_PAIRS), args.config)
        config = yaml.safe_load(args.config.read_text())
        build(args.hub, list(args.pairs or config["pairs"]), config, architectures(), args.seed)
    else:
        run(args.hub, args.cores, args.out, args.snakemake_args, args.config)


if __name__ == "__main__":
    main()
