"""Alignment figures: pure functions from alignment tables to matplotlib figures."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from . import ffn_rows, rank_bucket

def fig2(table: pd.DataFrame) -> plt.Figure:
    """A/B: mean |cos| of FFN singular vectors against rank, left and right; C: rank bucket x layer."""
    ffn = ffn_rows(table)
    if ffn.empty:
        raise ValueError("fig2: no FFN matrices (kinds ffn_in/ffn_out) in the alignment tables")
    pairs = list(dict.fromkeys(ffn["pair"]))
    fig = plt.figure(figsize=(11, 7.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1])
    axes = top.subplots(1, 2, sharey=True)
    for ax, side, label in zip(axes, ("u", "v"), ("A  left singular vectors", "B  right singular vectors")):
        sns.lineplot(data=ffn[ffn["side"] == side], x="rank", y="cos", hue="pair", hue_order=pairs,
                     errorbar=None, ax=ax)
        ax.set(title=label, xlabel="rank i", ylabel="mean |cos(pretrained, finetuned)|", ylim=(0, 1.02))
        ax.set_xscale("log")
    heat = ffn.assign(bucket=rank_bucket(ffn["rank"]))
    cells = bottom.subplots(1, len(pairs), squeeze=False)[0]
    bottom.suptitle("C  mean |cos| (FFN, u and v) by layer and rank bucket", x=0.02, ha="left",
                    fontweight="bold", fontsize=10)
    for ax, pair in zip(cells, pairs):
        grid = (heat[heat["pair"] == pair]
                .groupby(["bucket", "layer"], observed=True)["cos"].mean().unstack("layer"))
        sns.heatmap(grid, vmin=0, vmax=1, cmap="viridis", ax=ax, cbar=ax is cells[-1],
                    cbar_kws={"label": "mean |cos|"})
        ax.set(title=pair, xlabel="layer", ylabel="rank" if ax is cells[0] else "")
        ax.grid(False)
    return fig
