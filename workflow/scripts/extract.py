"""Extract every weight matrix of a model into results/weights/{model}.h5."""
import logging
from pathlib import Path

from specbasis.io.extract import extract_weights
from specbasis.logs import setup_logging


def main(model_dir: str, out: str, family: str) -> None:
    summary = extract_weights(Path(model_dir), family, Path(out))
    logging.getLogger("specbasis").info("extracted %s", summary)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input[0], snakemake.output[0], snakemake.params.family)  # noqa: F821
