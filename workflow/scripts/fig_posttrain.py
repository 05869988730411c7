"""Figures 9 and 21: |cos| to the pretrained basis during post-training, one script for both rules.

fig9: classification from the same checkpoint, true vs shuffled labels, one panel per scale, at matched steps
and fitted (input.posttrain: results/dynamics/posttrain/<scale>-{classify,classify_shuffled,fit,fit_shuffled}.csv).
fig21: classification and reconstruction, every scale (<scale>-{classify,reconstruct}.csv).
params.figure: "fig9" | "fig21"; params.top; input.style; output.pdf, output.png.
params.provenance: the suite's record, embedded with the specbasis commit in the PDF and PNG.
"""
import logging

import matplotlib.pyplot as plt
import pandas as pd

from specbasis.figures import save
from specbasis.figures.dynamics import POSTTRAIN_PLOTTED, fig9, fig21, final_top_mean
from specbasis.logs import setup_logging
from specbasis.io.tables import read_csvs

FIGURES = {"fig9": fig9, "fig21": fig21}


def main(figure: str, posttrain: list[str], style: str, top: int, pdf: str, png: str,
         provenance: dict | None = None) -> None:
    plt.style.use(style)
    post = read_csvs(posttrain) if posttrain else pd.DataFrame(columns=POSTTRAIN_PLOTTED)
    for row in final_top_mean(post, top).itertuples():
        logging.getLogger("specbasis").info("scale %d, %s: final mean |cos| (top %d) %.4f", row.scale, row.mode, top,
                                            row.cos)
    save(FIGURES[figure](post, top), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.params.figure, snakemake.input.posttrain, snakemake.input.style,  # noqa: F821
         snakemake.params.top, snakemake.output.pdf, snakemake.output.png,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
