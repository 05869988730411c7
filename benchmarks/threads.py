"""Two small finetunes on 2 cores: one after the other at 2 torch threads each, or side by side at 1 thread each?

    python benchmarks/threads.py [--config config.yaml] [--runs A B] [--steps 100] [--rounds 2]

Each run is the workflow's own finetune (workflow/scripts/finetune.py's main, the plan's settings for that model,
`steps` shortened) in a fresh Python process, as Snakemake starts it, written to a temporary folder (the results/
tree is not touched). Needs what the runs read: `snakemake results/models/minilm results/svd/minilm.h5
resources/datasets/rotten_tomatoes` (or the inputs of the runs you name). The two arrangements alternate
(sequential, side by side, side by side, sequential, ...) so that drift in the machine's speed falls on both; the
ratio printed is the sum of the sequential walls over the sum of the side-by-side walls, measured in this run.
This is the measurement behind the default suite's `threads: {finetune: 1}` (config.yaml).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("finetune_script", sys.argv[1])
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
job = json.loads(sys.argv[2])
script.main(job["base"], job["data"], job["out"], job["settings"], job["threads"], None, job["svd"])
"""


def job(plan, model: str, steps: int, out: Path, threads: int) -> dict:
    entry = plan.models[model]
    settings = {**plan.finetune_settings(model), "steps": steps}
    settings.pop("epochs", None)
    base = entry["finetune"]["from"]
    return {"base": str(ROOT / "results/models" / base), "data": str(ROOT / "resources/datasets" /
                                                                      entry["finetune"]["dataset"]),
            "out": str(out), "settings": settings, "threads": threads,
            "svd": str(ROOT / "results/svd" / f"{base}.h5") if plan.reads_svd_store(entry) else None}


def launch(spec: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT / "workflow/scripts/finetune.py"), json.dumps(spec)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"a finetune failed (rc {p.returncode}):\n{err[-3000:]}")


def main() -> None:
    from specbasis.config import load_config
    from specbasis.plan import Plan

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "config.yaml"))
    ap.add_argument("--runs", nargs=2, default=["peft-rotten_tomatoes-lora_kaiming-s0",
                                                "peft-rotten_tomatoes-lora_kaiming-s1"])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2, help="pairs of (sequential, side by side) measurements")
    args = ap.parse_args()
    plan = Plan(load_config(args.config))
    walls = {"sequential, 2 threads": [], "side by side, 1 thread": []}
    with tempfile.TemporaryDirectory() as tmp:
        order = []
        for r in range(args.rounds):
            order += ["sequential, 2 threads", "side by side, 1 thread"][:: 1 if r % 2 == 0 else -1]
        for i, how in enumerate(order):
            specs = [job(plan, m, args.steps, Path(tmp) / f"{i}-{m}", 2 if how.startswith("seq") else 1)
                     for m in args.runs]
            t = time.perf_counter()
            if how.startswith("seq"):
                for spec in specs:
                    wait([launch(spec)])
            else:
                wait([launch(spec) for spec in specs])
            walls[how].append(time.perf_counter() - t)
            print(f"{how:24s} {walls[how][-1]:7.1f} s  ({', '.join(args.runs)}, {args.steps} steps)", flush=True)
    seq, par = (sum(w) for w in walls.values())
    print(f"sequential / side by side: {seq / par:.3f}  (> 1: side by side is faster; {args.rounds} rounds, ABBA)")


if __name__ == "__main__":
    main()
