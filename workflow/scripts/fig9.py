"""Figure 9: |cos| to the pretrained basis during classification post-training from the same checkpoint,
true vs shuffled labels, one panel per scale.

input.posttrain: results/dynamics/posttrain/<scale>-{classify,classify_shuffled}.csv; input.style; params.top.
"""
import logging

import matplotlib.pyplot as plt
import pandas as pd

from specbasis.figures import save
from specbasis.figures.dynamics import fig9, top_mean
from specbasis.logs import setup_logging
from specbasis.tables import read_csvs


def main(posttrain: list[str], style: str, top: int, pdf: str, png: str) -> None:
    plt.style.use(style)
    post = read_csvs(posttrain) if posttrain else pd.DataFrame(columns=["scale", "mode", "step", "epoch", "rank", "cos"])
    final = top_mean(post[post["step"] == post.groupby(["scale", "mode"])["step"].transform("max")],
                     ["scale", "mode"], top)
    for row in final.itertuples():
        logging.getLogger("specbasis").info("scale %d, %s: final mean |cos| (top %d) %.4f", row.scale, row.mode, top,
                                            row.cos)
    save(fig9(post, top), pdf, png)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.posttrain, snakemake.input.style, snakemake.params.top,  # noqa: F821
         snakemake.output.pdf, snakemake.output.png)  # noqa: F821
