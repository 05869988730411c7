"""Put a fetched pretrained checkpoint into its library's own naming under results/models/."""
from pathlib import Path

from specbasis.logs import setup_logging
from specbasis.models import prepare_pretrained


def main(src: str, dest: str, family: str, fmt: str) -> None:
    prepare_pretrained(Path(src), Path(dest), family, fmt)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input[0], snakemake.output[0], snakemake.params.family, snakemake.params.format)  # noqa: F821
