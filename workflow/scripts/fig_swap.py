"""Figures 12-15: the task's metric after swapping the top-k singular pairs of one matrix group, per model.

fig12: pretrained / random / random-orthogonal / zero, FFN; fig13: cross-task, FFN; fig14, fig15: the
same for attention. input.tables: results/swap/{model}.csv of every edited model (none: a page says
so); input.style: the shared style file. params.group: ffn or attn; params.sources: the sources drawn.
params.provenance: the suite's record, embedded with the specbasis commit in the PDF and PNG.
output.pdf, output.png.
"""
import logging

import matplotlib.pyplot as plt
import pandas as pd

from specbasis.figures import save
from specbasis.figures.interventions import swap_figure
from specbasis.logs import setup_logging
from specbasis.interventions.sweep import SWAP_COLUMNS
from specbasis.io.tables import read_csvs


def main(tables: list[str], style: str, group: str, sources: list[str], pdf: str, png: str,
         provenance: dict | None = None) -> None:
    plt.style.use(style)
    table = read_csvs(tables) if tables else pd.DataFrame(columns=SWAP_COLUMNS)
    rows = table[(table["group"] == group) & table["source"].isin(sources)]
    for (model, source), sub in rows.groupby(["model", "source"], sort=False):
        top = sub.loc[sub["k"].idxmax()]
        logging.getLogger("specbasis").info("%s %s %s: k up to %d; at k=%d %s %.4f [%.4f, %.4f] (unedited %.4f)",
                                            model, group, source, top["k"], top["k"], top["metric"], top["score"],
                                            top["score_ci_low"], top["score_ci_high"], top["base_score"])
    save(swap_figure(table, group, tuple(sources)), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.tables, snakemake.input.style, snakemake.params.group,  # noqa: F821
         list(snakemake.params.sources), snakemake.output.pdf, snakemake.output.png,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
