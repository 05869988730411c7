"""Explained variance (cumulative energy) of every matrix of one model -> results/energy/{model}.csv.

Snakemake: input[0] (the model's SVD store), wildcards.model, output[0], log[0].
"""
import logging

from specbasis.logs import setup_logging
from specbasis.analysis.spectra import energy_table, read_spectra
from specbasis.io.tables import write_csv


def main(model: str, store: str, out: str) -> None:
    table = energy_table(model, {key: spectrum.S for key, spectrum in read_spectra(store).items()})
    logging.getLogger("specbasis").info("%s: energy of %d matrices", model, table.groupby(["layer", "kind"]).ngroups)
    write_csv(table, out)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.wildcards.model, snakemake.input[0], snakemake.output[0])  # noqa: F821
