"""What a figure or table records of what made it: the suite's config (its path and sha256, from
specbasis.plan.outputs.Suite.provenance) and the commit of the specbasis checkout that runs now.

    record = provenance(PROVENANCE)  # {"suite", "config", "config_sha256", "specbasis_commit"}

Generic (no capability): specbasis.figures.save and specbasis.io.tables.write_table embed the record.
"""
from __future__ import annotations

import subprocess
from pathlib import Path


def specbasis_commit(where: str | Path | None = None) -> str:
    """The git commit of the specbasis checkout at `where` (default: this package's), '+dirty' when its tracked
    files have changes; 'unknown (not a git checkout)' for an installed copy."""
    where = Path(where) if where is not None else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if dirty else "")


def provenance(suite_provenance: dict, where: str | Path | None = None) -> dict:
    """A figure's or table's record: the suite's provenance (config path and sha256) and the specbasis commit that
    runs now."""
    return {**dict(suite_provenance), "specbasis_commit": specbasis_commit(where)}
