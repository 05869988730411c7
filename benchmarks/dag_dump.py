"""Dump every job of a workflow's DAG to JSON: rule, wildcards, inputs, outputs, log, params, threads, script.

Used to check that a refactoring of the rules does not change what is computed: dump before, dump after, diff.

    PYTHONPATH=. python benchmarks/dag_dump.py --configfile config/paper.yaml --target all > /tmp/paper.json
    diff <(python ...before...) <(python ...after...)

The DAG is built with Snakemake's Python API (forceall, in an empty scratch folder, so every job of the
target is listed whatever exists in the working tree); nothing runs. Jobs are sorted by (rule, first output);
params are written with sorted keys, values Snakemake cannot say in JSON as their repr. Prints the parse time and
the job count per rule to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _plain(value):
    """A JSON-able copy: Namedlists and tuples as lists, dicts as dicts, anything else by repr."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _named(namedlist) -> dict:
    """{'all': [every item], 'named': {name: item or items}} of a Snakemake Namedlist."""
    return {"all": [_plain(v) for v in namedlist], "named": {k: _plain(v) for k, v in namedlist.items()}}


def dump(snakefile: Path, configfiles: list[Path], targets: list[str]) -> tuple[list[dict], float]:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    with tempfile.TemporaryDirectory() as scratch, SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        start = time.perf_counter()
        workflow_api = api.workflow(ResourceSettings(cores=1), ConfigSettings(configfiles=configfiles),
                                    snakefile=snakefile, workdir=Path(scratch))
        dag_api = workflow_api.dag(DAGSettings(targets=set(targets), forceall=True))
        workflow = dag_api.workflow_api._workflow
        parsed = time.perf_counter() - start
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        workflow._build_dag()
        jobs = []
        for job in workflow.dag.jobs:
            jobs.append({"rule": job.rule.name, "wildcards": _plain(dict(job.wildcards_dict)),
                         "output": _named(job.output), "input": _named(job.input), "log": _named(job.log),
                         "params": _named(job.params), "threads": job.threads,
                         "script": job.rule.script})
    jobs.sort(key=lambda j: (j["rule"], j["output"]["all"][:1], json.dumps(j["wildcards"], sort_keys=True)))
    return jobs, parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snakefile", type=Path, default=ROOT / "Snakefile")
    parser.add_argument("--configfile", type=Path, action="append", default=[],
                        help="a suite (default: the Snakefile's config.yaml)")
    parser.add_argument("--target", action="append", default=[], help="default: all")
    args = parser.parse_args()
    configfiles = [p.resolve() for p in args.configfile] or [args.snakefile.resolve().parent / "config.yaml"]
    jobs, parsed = dump(args.snakefile.resolve(), configfiles, args.target or ["all"])
    json.dump(jobs, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    counts = Counter(j["rule"] for j in jobs)
    print(f"parsed in {parsed:.2f} s; {len(jobs)} jobs: " + ", ".join(f"{r} {n}" for r, n in sorted(counts.items())),
          file=sys.stderr)


if __name__ == "__main__":
    main()
