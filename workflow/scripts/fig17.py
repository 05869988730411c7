"""Figure 17: the task's metric after masking a fraction of every matrix's singular components, top-down vs
bottom-up, FFN and attention, one panel per model.

input.tables: results/mask/{model}.csv of every edited model (none: a page says so); input.style: the
shared style file. output.pdf, output.png.
params.provenance: the suite's record, embedded with the specbasis commit in the PDF and PNG.
"""
import logging

import matplotlib.pyplot as plt
import pandas as pd

from specbasis.figures import save
from specbasis.figures.interventions import fig17
from specbasis.logs import setup_logging
from specbasis.interventions.sweep import MASK_COLUMNS
from specbasis.io.tables import read_csvs


def main(tables: list[str], style: str, pdf: str, png: str, provenance: dict | None = None) -> None:
    plt.style.use(style)
    table = read_csvs(tables) if tables else pd.DataFrame(columns=MASK_COLUMNS)
    for (model, group, order), sub in table.groupby(["model", "group", "order"], sort=False):
        kept = sub[sub["p_score"] >= 0.05]["fraction"]
        logging.getLogger("specbasis").info("%s %s %s: largest fraction without a significant change %s",
                                            model, group, order, kept.max() if len(kept) else "none")
    save(fig17(table), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.tables, snakemake.input.style, snakemake.output.pdf, snakemake.output.png,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
