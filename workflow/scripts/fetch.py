"""Fetch one model or dataset into its resources/ folder (atomically, verified, recorded).

params.fetch: source, sha256, member; for a hub source at a moving revision also `lock`: {file, section, name}, the
suite's lock file (read now, not when the workflow was parsed: a lock written after the first fetch changes no
params, so it re-fetches nothing) and the entry that may pin its commit (specbasis.io.lock).
"""
from pathlib import Path

from specbasis.io.fetch import fetch
from specbasis.io.lock import locked_commit, read_lock
from specbasis.logs import setup_logging


def main(params: dict, dest: str) -> None:
    lock = params.get("lock")
    commit = locked_commit(read_lock(lock["file"]), lock["section"], lock["name"], params["source"]) if lock else None
    fetch(params["source"], Path(dest), sha256=params.get("sha256"), member=params.get("member"), commit=commit)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.params.fetch, snakemake.output[0])  # noqa: F821
