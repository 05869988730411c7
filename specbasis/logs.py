"""Logging set-up shared by the workflow scripts: to the rule's log file and to stderr."""
from __future__ import annotations

import logging
import sys
from pathlib import Path


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
    return logging.getLogger("specbasis")
