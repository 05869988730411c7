"""Figure 3: size of the cumulative gradient against alignment; the extreme matrices rank by rank.

Snakemake: input.cumgrad (list of results/cumgrad/{pair}.csv), input.alignment (list of
results/alignment/{pair}.csv), input.style; output.pdf, output.png, output.json (the matrices
panels B and C show, {"smallest_r1"|"largest_r1": {"pair", "id", "r1"}}: the caption cannot read
them, the panel titles name them too); params.provenance (the suite's record, embedded with the specbasis
commit in the PDF and PNG); log[0].
"""
import json
import logging

import matplotlib.pyplot as plt

from specbasis.figures import save
from specbasis.figures.cumgrad import fig3
from specbasis.logs import setup_logging
from specbasis.io.store import atomic_path
from specbasis.io.tables import read_csvs


def main(cumgrad: list[str], alignment: list[str], style: str, pdf: str, png: str, details: str,
         provenance: dict | None = None) -> None:
    plt.style.use(style)
    fig, chosen = fig3(read_csvs(cumgrad), read_csvs(alignment))
    logging.getLogger("specbasis").info("fig3 panels B and C: %s", chosen)
    save(fig, pdf, png, provenance=provenance)
    with atomic_path(details) as tmp:
        tmp.write_text(json.dumps(chosen, indent=2) + "\n")


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.cumgrad, snakemake.input.alignment, snakemake.input.style,  # noqa: F821
         snakemake.output.pdf, snakemake.output.png, snakemake.output.json,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
