"""Figure 21: |cos| to the pretrained basis during classification and reconstruction post-training, every scale.

input.posttrain: results/dynamics/posttrain/<scale>-{classify,reconstruct}.csv; input.style; params.top.
"""
import logging

import matplotlib.pyplot as plt
import pandas as pd

from specbasis.figures import save
from specbasis.figures.dynamics import fig21, top_mean
from specbasis.logs import setup_logging
from specbasis.tables import read_csvs


def main(posttrain: list[str], style: str, top: int, pdf: str, png: str) -> None:
    plt.style.use(style)
    post = read_csvs(posttrain) if posttrain else pd.DataFrame(columns=["scale", "mode", "step", "epoch", "rank", "cos"])
    final = top_mean(post[post["step"] == post.groupby(["scale", "mode"])["step"].transform("max")],
                     ["mode", "scale"], top)
    for row in final.itertuples():
        logging.getLogger("specbasis").info("%s, scale %d: final mean |cos| (top %d) %.4f", row.mode, row.scale, top,
                                            row.cos)
    save(fig21(post, top), pdf, png)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.posttrain, snakemake.input.style, snakemake.params.top,  # noqa: F821
         snakemake.output.pdf, snakemake.output.png)  # noqa: F821
