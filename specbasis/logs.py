"""Logging set-up shared by the workflow scripts: to the rule's log file and to stderr.

Every job's log ends with one line of what the job used, written when its Python process exits (a failed job too;
a job killed by a signal writes none):

    ... INFO specbasis.job: job resources: {"wall_s": 12.3, "cpu_s": 20.1, "peak_rss_mb": 812.4, "written_mb": 301.2}

wall_s from the process's start, cpu_s user + system of the process and the children it waited for, peak_rss_mb the
larger of their resident-set high-water marks, written_mb what the process sent to storage (Linux; null elsewhere).
benchmarks/job_resources.py gathers them per rule from a run's logs.
"""
from __future__ import annotations

import atexit
import json
import logging
import resource
import sys
import time
from pathlib import Path

import psutil  # Snakemake's own dependency; imported here so that the exit handler imports nothing

RESOURCES = "job resources: "  # the prefix of the line; a JSON object follows


def _log_uncaught(kind, error, tb) -> None:
    logging.getLogger("specbasis").critical("failed: %s: %s", kind.__name__, error, exc_info=(kind, error, tb))


def setup_logging(logfile: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logfile, mode="w"))
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # matplotlib's PDF font subsetting chatters at INFO
    sys.excepthook = _log_uncaught  # the job's error goes to its log file too, not only to stderr
    atexit.unregister(_log_resources)  # once per process, however often set up
    atexit.register(_log_resources)
    return logging.getLogger("specbasis")


def job_resources() -> dict:
    """What this process (and the children it waited for) used so far: module docstring."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kB on Linux
    process = psutil.Process()
    try:
        written = process.io_counters().write_bytes / 2**20
    except (AttributeError, psutil.Error):  # no io_counters on macOS
        written = None
    return {"wall_s": round(time.time() - process.create_time(), 2),
            "cpu_s": round(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, 2),
            "peak_rss_mb": round(max(me.ru_maxrss, kids.ru_maxrss) * unit / 2**20, 1),
            "written_mb": None if written is None else round(written, 1)}


def parse_resources(line: str) -> dict | None:
    """The record of a `job resources` log line, or None for any other line."""
    at = line.find(RESOURCES)
    return None if at < 0 else json.loads(line[at + len(RESOURCES):])


def _log_resources() -> None:
    logging.getLogger("specbasis.job").info("%s%s", RESOURCES, json.dumps(job_resources()))
