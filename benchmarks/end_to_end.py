"""Wall time of the workflow's fixed costs against their goals, measured in one run.

Usage:  python benchmarks/end_to_end.py [--directory DIR] [--repeats 3] [--from-scratch NEW_DIR]

  (a) no-op rerun: `snakemake --cores 8 all` in DIR (default: the current directory), which holds a
      complete run, so Snakemake finds nothing to do. A real run, not -n: it takes the lock, reads
      the metadata of every output and writes its log, as a user's rerun does. A dry run first
      makes sure there is nothing to do; if there is, (a) is skipped and the jobs it would run are
      named, so that this benchmark never changes DIR's results. Goal: <= 10 s.
  (b) plan of the paper suite: `snakemake -n --configfile=config/paper.yaml all` in this repository,
      offline (HF_HUB_OFFLINE=1). Goal: <= 5 s.
  (c) with --from-scratch NEW_DIR: `snakemake --cores 8 all` of the default suite (this repository's
      Snakefile and config.yaml) in NEW_DIR, which must not hold results yet. Downloads the pinned
      wheels and Debian package, so it needs the package indexes. About ten minutes on 2 cores.

Snakemake runs under the Python that runs this script (so run it with the venv DIR was made with).
(a) and (b) are each run once untimed (page cache, .pyc files), then --repeats times; the median
is compared with the goal, the fastest and slowest shown beside it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
GOALS = {"no-op rerun": 10.0, "paper dry-run": 5.0}


def snakemake(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    """Run `python -m snakemake ARGS` in cwd; return (wall seconds, the finished process)."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} in {cwd} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return seconds, proc


def timed(name: str, args: list[str], cwd: Path, repeats: int, check=None) -> None:
    """Run once untimed, then `repeats` times; print the median against the goal of `name`."""
    _, proc = snakemake(args, cwd)
    if check:
        check(proc.stdout + proc.stderr)
    times = [snakemake(args, cwd)[0] for _ in range(repeats)]
    median, goal = statistics.median(times), GOALS[name]
    verdict = "meets" if median <= goal else "MISSES"
    print(f"{name + ':':16s} median {median:6.2f} s of {repeats} (min {min(times):.2f}, max {max(times):.2f})   "
          f"goal <= {goal:.0f} s: {verdict}   [snakemake {' '.join(args)}  in {cwd}]")


def nothing_to_do(text: str) -> None:
    if "Nothing to be done" not in text:
        sys.exit("the no-op run found work to do; it is not a no-op (see above)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--directory", type=Path, default=Path.cwd(), help="a folder holding a complete run (a)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--from-scratch", type=Path, metavar="NEW_DIR", help="also time the default suite from scratch (c)")
    ap.add_argument("--skip-noop", action="store_true", help="skip (a)")
    args = ap.parse_args(argv)
    print(f"python {sys.executable}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    if not args.skip_noop:
        directory = args.directory.resolve()
        _, plan = snakemake(["-n", "--cores", "8", "all"], directory)
        if "Nothing to be done" in plan.stdout + plan.stderr:
            timed("no-op rerun", ["--cores", "8", "all"], directory, args.repeats, check=nothing_to_do)
        else:
            print(f"no-op rerun:     skipped: {directory} has work to do, so a real run would change it:\n"
                  + (plan.stdout + plan.stderr)[-3000:])

    timed("paper dry-run", ["-n", "--configfile=config/paper.yaml", "all"], ROOT, args.repeats)

    if args.from_scratch:
        new = args.from_scratch.resolve()
        if (new / "results").exists() or (new / "resources").exists():
            sys.exit(f"{new} already holds results or resources; give a new folder for a run from scratch")
        new.mkdir(parents=True, exist_ok=True)
        seconds, proc = snakemake(["-s", str(ROOT / "Snakefile"), "--directory", str(new), "--cores", "8",
                                   f"--configfile={ROOT / 'config.yaml'}", "all"], ROOT)
        jobs = (proc.stdout + proc.stderr).count("Finished job")
        print(f"from scratch:    {seconds:7.1f} s for {jobs} jobs   (no goal set)   [default suite in {new}]")


if __name__ == "__main__":
    main()
