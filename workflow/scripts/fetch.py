"""Fetch one model or dataset into its resources/ folder (atomically, verified, recorded)."""
from pathlib import Path

from specbasis.io.fetch import fetch
from specbasis.logs import setup_logging


def main(params: dict, dest: str) -> None:
    fetch(params["source"], Path(dest), sha256=params.get("sha256"), member=params.get("member"))


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.params.fetch, snakemake.output[0])  # noqa: F821
