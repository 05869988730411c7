"""How long the paper suite takes to plan, against Snakemake planning an empty Snakefile, side by side.

    python benchmarks/plan_speed.py [--rounds 5] [--config config/paper.yaml]

Each round runs, in alternating order, `python -m snakemake -n --forceall all --configfile=<config>` in the
repository (offline: HF_HUB_OFFLINE=1) and `python -m snakemake -n` on a Snakefile holding one empty rule in a
temporary folder: Snakemake's own start-up, the floor no workflow can go under. It prints each wall time and the
ratio of the medians (goal: at most 2.5, issue 19 §5). Only the same-run ratio means anything on a machine whose
speed drifts.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL = 2.5


def timed(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--config", default="config/paper.yaml")
    args = ap.parse_args()
    suite = [sys.executable, "-m", "snakemake", "-n", "--forceall", "all", f"--configfile={args.config}"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "Snakefile").write_text("rule all:\n    input: []\n")
        empty = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(Path(tmp) / "Snakefile")]
        walls = {"suite": [], "empty": []}
        for r in range(args.rounds):
            for which in (("suite", "empty") if r % 2 == 0 else ("empty", "suite")):
                walls[which].append(timed(suite, ROOT) if which == "suite" else timed(empty, Path(tmp)))
                print(f"{which:5s} {walls[which][-1]:6.2f} s", flush=True)
    suite_s, empty_s = statistics.median(walls["suite"]), statistics.median(walls["empty"])
    ratio = suite_s / empty_s
    print(f"{args.config}: median {suite_s:.2f} s; an empty Snakefile: median {empty_s:.2f} s; ratio {ratio:.2f} "
          f"(goal <= {GOAL}: {'met' if ratio <= GOAL else 'not met'}; {args.rounds} rounds, alternating)")


if __name__ == "__main__":
    main()
