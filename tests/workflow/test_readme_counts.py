"""The counts the README states are the plans' own: each suite's jobs (a dry run of `all` with --forceall, so that
results already built do not hide jobs), and the paper suite's models and pairs."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from specbasis.config import load_config
from workflow_helpers import ENV, ROOT, job_stats

pytestmark = pytest.mark.workflow


def planned_jobs(*args: str) -> int:
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", *args, "all"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=ENV)
    assert out.returncode == 0, out.stderr[-4000:]
    return job_stats(out.stdout)["total"]


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_readmes_counts_are_the_plans():
    readme = (ROOT / "README.md").read_text()
    readme = re.sub(r"\s+", " ", readme)  # the README's lines wrap anywhere
    default = re.search(r"The default suite's `all` is ([\d,]+) jobs", readme)
    paper = re.search(r"The paper suite \(`config/paper.yaml`: ([\d,]+) models and ([\d,]+) pairs from the Hugging "
                      r"Face hub, ([\d,]+) jobs", readme)
    assert default and paper, "the README no longer states the suites' counts in the words this test reads"
    assert number(default.group(1)) == planned_jobs()
    config = load_config(ROOT / "config/paper.yaml")
    assert (number(paper.group(1)), number(paper.group(2))) == (len(config["models"]), len(config["pairs"]))
    assert number(paper.group(3)) == planned_jobs("--configfile=config/paper.yaml")
