"""Figure 2: alignment of pretrained and finetuned singular vectors (FFN matrices, panels A-C) and
what swapping them does to accuracy (D, E).

input.tables: results/alignment/{pair}.csv of every pair; input.swap: results/swap/{model}.csv of every
edited model (none: panels D and E say so); input.style: the shared style file.
params.provenance: the suite's record, embedded with the specbasis commit in the PDF and PNG.
output.pdf, output.png: results/fig2.pdf and .png.
"""
import logging

import matplotlib.pyplot as plt
import pandas as pd

from specbasis.figures import save
from specbasis.figures.alignment import fig2, top_k_summary
from specbasis.logs import setup_logging
from specbasis.interventions.sweep import SWAP_COLUMNS
from specbasis.io.tables import read_csvs


def main(tables: list[str], swap: list[str], style: str, pdf: str, png: str, provenance: dict | None = None) -> None:
    plt.style.use(style)
    table = read_csvs(tables)
    swaps = read_csvs(swap) if swap else pd.DataFrame(columns=SWAP_COLUMNS)
    for row in top_k_summary(table).itertuples():
        logging.getLogger("specbasis").info("%s %s: mean top-10 matched |cos| %.3f, top-10 subspace %.3f",
                                            row.pair, row.side, row.cos, row.subspace)
    save(fig2(table, swaps), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.tables, snakemake.input.swap, snakemake.input.style,  # noqa: F821
         snakemake.output.pdf, snakemake.output.png, provenance=dict(snakemake.params.provenance))  # noqa: F821
