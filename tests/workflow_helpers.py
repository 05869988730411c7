"""Running Snakemake on a test's own folder and reading what it says: shared by the workflow tests.

`snakemake` runs it to the end; `start_snakemake` starts it in its own process group (so that a test
can SIGKILL Snakemake and every job it started at once); `job_stats` reads the plan it prints and
`started_jobs` the jobs it actually started.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def snakemake_command(workdir: Path, *args: str, cores: int = 2) -> list[str]:
    """The command line that runs this repository's Snakefile in `workdir`."""
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--cores", str(cores), *args]


def snakemake(workdir: Path, *args: str, check: bool = True, cores: int = 2) -> subprocess.CompletedProcess:
    """Run Snakemake to the end; with check, a non-zero exit fails the test showing its output."""
    cmd = snakemake_command(workdir, *args, cores=cores)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def start_snakemake(workdir: Path, *args: str, cores: int = 2, log: Path) -> subprocess.Popen:
    """Start Snakemake in a new session (its jobs inherit the process group), output to `log`.

    os.killpg(proc.pid, signal.SIGKILL) then kills Snakemake and the jobs it runs, as a crash or an
    out-of-memory kill of the whole run would."""
    with open(log, "w") as out:
        return subprocess.Popen(snakemake_command(workdir, *args, cores=cores), stdout=out,
                                stderr=subprocess.STDOUT, env=ENV, start_new_session=True)


def job_stats(text: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry-run (what it planned), as {rule: count}."""
    lines = text[text.index("Job stats:"):].splitlines()[3:]
    stats = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        stats[parts[0]] = int(parts[1])
    return stats


_JOB = re.compile(r"^(?:local)?rule (\w+):\n((?:[ \t]+\S.*\n?)*)", re.MULTILINE)


def started_jobs(text: str) -> list[tuple[str, dict[str, str]]]:
    """The jobs a (real) Snakemake run started, in order, as (rule, wildcards)."""
    jobs = []
    for match in _JOB.finditer(text):
        wildcards = {}
        for line in match.group(2).splitlines():
            key, _, value = line.strip().partition(": ")
            if key == "wildcards":
                wildcards = dict(item.split("=", 1) for item in value.split(", "))
        jobs.append((match.group(1), wildcards))
    return jobs


def stray_temporaries(folder: Path) -> list[str]:
    """Leftovers of atomic writes (store.atomic_path / atomic_dir) anywhere under `folder`."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")
                  if p.name.endswith((".tmp", ".old", ".work")))
