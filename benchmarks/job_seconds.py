"""Where a workflow run's time went: job-seconds per rule and per stage, read from its Snakemake log.

    python benchmarks/job_seconds.py .snakemake/log/<run>.snakemake.log [--wildcards finetuned]

A job's seconds run from the timestamp before its `rule`/`localrule` line to the one before its `Finished jobid`
line (Snakemake stamps to the second). Jobs that ran side by side each count their own seconds, so the sum exceeds
the wall time on more than one core; the wall time is the span from the first job's start to the last one's end.
Stages are the workflow's rule files (workflow/rules/<stage>.smk); `--wildcards NAME` splits a rule's jobs further
by the value of one wildcard's prefix up to its first '-' (e.g. finetuned: peft, fig5, lrsel, minilm, effnet).
"""
from __future__ import annotations

import argparse
import collections
import re
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")
FILES = re.compile(r"^\s+(input|output|log): (.*)$")


def parse(log: Path) -> list[dict]:
    """[{jobid, rule, start, end, wildcards, input, output, log}] of every job that finished (the last three: lists
    of paths)."""
    stamp, pending, jobs = None, None, {}
    for line in log.read_text(errors="replace").splitlines():
        if m := STAMP.match(line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := START.match(line):
            pending = {"rule": m.group(1), "start": stamp, "wildcards": {}, "input": [], "output": [], "log": []}
        elif (m := FILES.match(line)) and pending is not None:
            pending[m.group(1)] = m.group(2).split(", ")
        elif (m := JOBID.match(line)) and pending is not None:
            jobs[int(m.group(1))] = pending
        elif (m := WILDCARDS.match(line)) and pending is not None:
            pending["wildcards"] = dict(kv.split("=", 1) for kv in m.group(1).split(", ") if "=" in kv)
        elif m := FINISHED.match(line):
            job = jobs.get(int(m.group(1)))
            if job is not None:
                job["end"] = stamp
    return [{"jobid": k, **v} for k, v in jobs.items() if v.get("end") is not None]


def stages() -> dict[str, str]:
    """rule -> the stage (rule file) that defines it."""
    found = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for m in re.finditer(r"^\s*rule (\w+):|^\s*name:\s*\n\s*(\w+)", smk.read_text(), re.M):
            found[m.group(1) or m.group(2)] = smk.stem
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--wildcards", default="finetuned", help="split this wildcard's rules by its name's prefix")
    args = ap.parse_args()
    jobs = parse(args.log)
    if not jobs:
        raise SystemExit(f"{args.log}: no finished jobs found")
    of_stage = stages()
    by_rule, by_stage, count = collections.Counter(), collections.Counter(), collections.Counter()
    for job in jobs:
        seconds = (job["end"] - job["start"]).total_seconds()
        rule = job["rule"]
        if args.wildcards in job["wildcards"]:
            rule = f"{rule}[{job['wildcards'][args.wildcards].split('-')[0]}]"
        by_rule[rule] += seconds
        count[rule] += 1
        by_stage[of_stage.get(job["rule"], "figures (swap)" if job["rule"].startswith("fig") else "?")] += seconds
    wall = (max(j["end"] for j in jobs) - min(j["start"] for j in jobs)).total_seconds()
    print(f"{len(jobs)} jobs, wall {wall / 60:.1f} min, {sum(by_rule.values()) / 60:.1f} job-minutes")
    print("\nby stage (job-minutes):")
    for stage, seconds in by_stage.most_common():
        print(f"  {stage:16s} {seconds / 60:7.1f}")
    print("\nby rule (jobs, job-minutes, seconds a job):")
    for rule, seconds in by_rule.most_common():
        print(f"  {rule:28s} {count[rule]:4d} {seconds / 60:7.1f} {seconds / count[rule]:7.1f}")


if __name__ == "__main__":
    main()
