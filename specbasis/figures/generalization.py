"""Generalization figure: pure functions from the correlation tests and similarities to a figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Rectangle

from specbasis.analysis.generalization import DEPTH_BINS, power_statement


def fig18(tests: pd.DataFrame, similarity: pd.DataFrame, accuracy: dict[str, float], alpha: float) -> plt.Figure:
    """A: Spearman rho of mean |cos| against accuracy per rank range x depth bin, outlined where
    q < alpha; B: the pairs of one cell fixed in advance (the top rank range of the late layers, not
    the cell with the smallest p); below, what the tests can and did show (`power_statement`)."""
    assert (tests["significant"] == (tests["q"] < alpha)).all(), f"tests were not made at alpha = {alpha}"
    ranks = sorted(tests["ranks"].unique(), key=lambda r: int(str(r).split("-")[0]))
    depths = [d for d in DEPTH_BINS if d in set(tests["depth"])]
    grid = tests.pivot(index="ranks", columns="depth", values=["rho", "p", "q"]).reindex(ranks)
    fig, axes = plt.subplot_mosaic([["A", "B"], ["note", "note"]], figsize=(10, 5.2), layout="constrained",
                                   height_ratios=[4, 1], width_ratios=[1, 1.1])
    ax = axes["A"]
    sns.heatmap(grid["rho"][depths], vmin=-1, vmax=1, cmap="RdBu_r", ax=ax, cbar_kws={"label": "Spearman rho"})
    for i, r in enumerate(ranks):
        for j, d in enumerate(depths):
            rho, p, q = grid.loc[r, ("rho", d)], grid.loc[r, ("p", d)], grid.loc[r, ("q", d)]
            text = "not tested" if np.isnan(rho) else f"{rho:+.2f}\np = {p:.3g}"
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=8,
                    color="white" if abs(rho) > 0.6 else "black")
            if q < alpha:
                ax.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor="black", linewidth=2.5))
    ax.set(title="A  rho(mean |cos| of FFN, accuracy) across pairs", xlabel="relative depth (thirds)",
           ylabel="rank range")
    ax.tick_params(axis="y", rotation=0)
    ax.grid(False)

    ax, depth, rank = axes["B"], depths[-1], ranks[0]
    cell = similarity[(similarity["depth"] == depth) & (similarity["ranks"] == rank)]
    cell = cell.assign(accuracy=cell["pair"].map(accuracy))
    sns.scatterplot(data=cell, x="mean_cos", y="accuracy", ax=ax)
    for row in cell.itertuples():
        ax.annotate(row.pair, (row.mean_cos, row.accuracy), xytext=(4, 4), textcoords="offset points", fontsize=8)
    rho, p = grid.loc[rank, ("rho", depth)], grid.loc[rank, ("p", depth)]
    result = "not tested" if np.isnan(rho) else f"rho = {rho:+.2f}, p = {p:.3g}"
    ax.set(title=f"B  {depth} layers, ranks {rank} (cell fixed in advance)\n{result}", xlabel="mean |cos| (FFN, u and v)",
           ylabel="held-out accuracy of the finetuned model")

    axes["note"].axis("off")
    outlined = "\noutlined in A: q < alpha" if tests["significant"].any() else ""
    caveat = ("\npairs finetuned from one pretrained model are not independent, "
              "and accuracies of tasks of different difficulty are compared as they are")
    axes["note"].text(0.5, 0.5, power_statement(tests, alpha) + outlined + caveat,
                      ha="center", va="center", transform=axes["note"].transAxes,
                      bbox={"boxstyle": "round", "facecolor": "lightyellow", "edgecolor": "grey"})
    return fig
