"""The job log's last line: what the job used (specbasis.logs)."""
import subprocess
import sys

import pytest

from specbasis.logs import RESOURCES, parse_resources

CHILD = r"""
import sys, time
import numpy as np
from specbasis.logs import setup_logging
setup_logging(sys.argv[1])
setup_logging(sys.argv[1])                 # set up twice: still one line
block = np.ones(int(sys.argv[2]) * 2**20 // 8)  # touched: resident
open(sys.argv[3], "wb").write(b"x" * (int(sys.argv[4]) * 2**20))
if sys.argv[5] == "fail":
    raise RuntimeError("the job failed")
"""


@pytest.mark.parametrize("outcome", ["ok", "fail"])
def test_every_job_log_ends_with_what_it_used(tmp_path, outcome):
    log, out = tmp_path / "job.log", tmp_path / "written.bin"
    run = subprocess.run([sys.executable, "-c", CHILD, str(log), "300", str(out), "64", outcome],
                         capture_output=True, text=True)
    assert (run.returncode == 0) == (outcome == "ok"), run.stderr
    lines = [line for line in log.read_text().splitlines() if RESOURCES in line]
    assert len(lines) == 1, log.read_text()
    used = parse_resources(lines[0])
    assert used["peak_rss_mb"] >= 300          # the 300 MB block was resident
    assert used["peak_rss_mb"] < 300 + 1000    # and not wildly more (python + numpy)
    assert 0 < used["wall_s"] < 120 and used["cpu_s"] > 0
    if sys.platform.startswith("linux"):
        if _filesystem(tmp_path) in ("tmpfs", "ramfs"):  # no storage layer below: nothing is "sent to storage"
            assert used["written_mb"] is not None
        else:                                             # the 64 MB file is among what went to storage
            assert 64 <= used["written_mb"] < 64 + 50
    if outcome == "fail":
        assert "the job failed" in log.read_text()


def _filesystem(path) -> str:
    import psutil

    mounts = [p for p in psutil.disk_partitions(all=True) if str(path.resolve()).startswith(p.mountpoint)]
    return max(mounts, key=lambda p: len(p.mountpoint)).fstype


def test_other_lines_are_not_records():
    assert parse_resources("2026-12-07 INFO specbasis: svd of 12 matrices") is None
    assert parse_resources(f"x INFO specbasis.job: {RESOURCES}" + '{"wall_s": 1.5}') == {"wall_s": 1.5}
