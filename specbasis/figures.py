"""Figures: pure functions from tidy tables to matplotlib figures (one seaborn call per panel)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

FFN_KINDS = ("ffn_in", "ffn_out")
RANK_EDGES = (10, 50, 100, 200, 500, 1000)  # upper edges of the rank buckets of panel C


def rank_bucket(rank: pd.Series) -> pd.Series:
    """Label each rank with its bucket: 1-10, 11-50, 51-100, ... up to the largest rank present."""
    top = int(rank.max())
    edges = [0] + [e for e in RANK_EDGES if e < top] + [top]
    labels = [f"{lo + 1}-{hi}" for lo, hi in zip(edges[:-1], edges[1:])]
    return pd.cut(rank, bins=edges, labels=labels)


def ffn_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of FFN matrices (any index of a repeated FFN)."""
    return table[table["kind"].str.split(".").str[0].isin(FFN_KINDS)]


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


def save(fig: plt.Figure, *paths) -> None:
    """Save a figure to each path atomically (format from the suffix)."""
    from .store import atomic_path

    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
