"""What one intervention point costs against a plain forward pass over the same evaluation set.

    python benchmarks/interventions.py results/models/minilm-rt results/svd/minilm-rt.h5 \\
        results/svd/minilm.h5 resources/datasets/rotten_tomatoes --format rotten_tomatoes

A point of a sweep (specbasis.interventions.sweep) is: build the corrections of a group (a swap of the top-k pairs,
or a mask), write W̃ + Δ into the loaded model in place, evaluate, restore. Its cost is set beside
`evaluate` of the unedited model on the same examples, measured alternately in the same run (so
that load from other processes hits both alike); the goal is a point ≤ 1.2 x a plain pass. Printed:
the medians, their ratio, the break-down of the overhead (build / apply / restore) and points per
minute. The test split is the finetune's (its metrics.json gives the seed and the test size).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from specbasis.interventions.edits import edit_group, mask_group
from specbasis.svd import read_svd
from specbasis.interventions.sweep import load_subject, model_groups


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a finetuned model folder (results/models/<model>)")
    parser.add_argument("svd", help="its SVD store")
    parser.add_argument("pretrained_svd", help="the SVD store of the model it was finetuned from")
    parser.add_argument("data", help="the dataset folder it was finetuned on (resources/datasets/<name>)")
    parser.add_argument("--format", required=True, help="the dataset's reader (config datasets.*.format)")
    parser.add_argument("--max-eval", type=int, default=500, help="examples per evaluation (interventions.max_eval)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--group", default="ffn")
    parser.add_argument("--k", type=int, nargs="+", default=[30, 200], help="swap sizes timed")
    parser.add_argument("--fraction", type=float, default=0.5, help="bottom-up masking fraction timed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    metrics = json.loads((Path(args.model) / "metrics.json").read_text())
    split = {"format": args.format, "seed": metrics["seed"], "max_eval": metrics["sizes"]["test"]}
    t_load, subject = timed(lambda: load_subject(Path(args.model).name, args.model, args.data, metrics["family"], split,
                                                 "cpu"))
    svds, pretrained = read_svd(args.svd), read_svd(args.pretrained_svd)
    ids = model_groups(subject.live.ids, [args.group], subject.name)[args.group]
    evaluate_now = subject.evaluator(args.batch_size, args.max_eval)
    evaluate_now()  # warm-up (allocator, tokenizer caches)
    print(f"{subject.name}: {len(ids)} {args.group} matrices, {min(args.max_eval, len(subject.test))} test examples, "
          f"{torch.get_num_threads()} threads; loaded once in {t_load:.1f} s")

    name = subject.name
    points = {f"swap pretrained k={k}": (lambda k=k: edit_group(svds, ids, "pretrained", k, pretrained, model=name))
              for k in args.k}
    points[f"mask bottom_up f={args.fraction}"] = lambda: mask_group(svds, ids, "bottom_up", args.fraction, name)
    plain, parts = [], {name: {"build": [], "apply": [], "evaluate": [], "restore": [], "point": []} for name in points}
    for _ in range(args.repeats):
        plain.append(timed(evaluate_now)[0])
        for name, build in points.items():
            t0 = time.perf_counter()
            t_build, deltas = timed(build)
            t_apply, _ = timed(lambda: subject.live.apply(deltas))
            t_eval, _ = timed(evaluate_now)
            t_restore, _ = timed(subject.live.restore)
            for key, value in (("build", t_build), ("apply", t_apply), ("evaluate", t_eval), ("restore", t_restore),
                               ("point", time.perf_counter() - t0)):
                parts[name][key].append(value)
    base = statistics.median(plain)
    print(f"plain forward pass (evaluate, unedited): median {base:.3f} s of {args.repeats}")
    for name, p in parts.items():
        med = {key: statistics.median(values) for key, values in p.items()}
        print(f"{name}: point {med['point']:.3f} s = {med['point'] / base:.3f} x plain (goal <= 1.2); build "
              f"{med['build'] * 1e3:.0f} ms, apply {med['apply'] * 1e3:.0f} ms, evaluate {med['evaluate']:.3f} s, "
              f"restore {med['restore'] * 1e3:.0f} ms; {60 / med['point']:.1f} points per minute")


if __name__ == "__main__":
    main()
