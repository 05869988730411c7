"""Figure 4: A. |cos| of the top singular vectors between successive pretraining epochs (and to the final one);
B. to the pretrained basis during classification post-training; C. during reconstruction on new data
(B, C: smallest and largest scale).

input.similarity: results/dynamics/pretrain/<scale>.csv of every scale; input.posttrain: results/dynamics/
posttrain/<scale>-{classify,reconstruct}.csv of the smallest and largest scale; input.style; params.top.
params.provenance: the suite's record, embedded with the specbasis commit in the PDF and PNG.
"""
import logging

import matplotlib.pyplot as plt
import pandas as pd

from specbasis.figures import save
from specbasis.figures.dynamics import fig4, schedule_control, top_mean
from specbasis.logs import setup_logging
from specbasis.io.tables import read_csvs


def main(similarity: list[str], posttrain: list[str], style: str, top: int, pdf: str, png: str,
         provenance: dict | None = None) -> None:
    plt.style.use(style)
    sim = read_csvs(similarity) if similarity else pd.DataFrame(columns=["scale", "epoch", "reference", "rank", "cos"])
    post = read_csvs(posttrain) if posttrain else pd.DataFrame(columns=["scale", "mode", "epoch", "rank", "cos"])
    prev = top_mean(sim[sim["reference"] == "previous"], ["scale", "epoch"], top)
    for n, rows in prev.groupby("scale"):
        logging.getLogger("specbasis").info("scale %d: successive-epoch |cos| (top %d) %s", n, top,
                                            " ".join(f"{c:.3f}" for c in rows["cos"]))
    if "displacement" in sim:
        for n, rows in schedule_control(sim, top).groupby("scale"):
            logging.getLogger("specbasis").info("scale %d: relative displacement between epochs %s", n,
                                                " ".join(f"{d:.4f}" for d in rows["displacement"]))
    save(fig4(sim, post, top), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.similarity, snakemake.input.posttrain, snakemake.input.style,  # noqa: F821
         snakemake.params.top, snakemake.output.pdf, snakemake.output.png,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
