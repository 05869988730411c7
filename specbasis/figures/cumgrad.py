"""Cumulative-gradient figures: pure functions from cumgrad (and alignment) tables to figures.

Definitions of r_i = σ_i(ΔW)/σ_i(W_pt) and a_u,i, a_v,i in specbasis.analysis.cumgrad. The pretrained–
finetuned alignment at rank i is the mean of the u and v sides of the alignment table,
(|cos_u(i)| + |cos_v(i)|) / 2. Matrices unchanged by finetuning (r_1 = 0) have no place on the log
axes and nothing to show against rank: they are left out (the cumgrad script logs them).
Every alignment axis carries a dashed reference: the |cos| expected of random unit vectors of the
vectors' length (random_cos(dim), averaged over the matrices and sides shown).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from specbasis.analysis.alignment import random_cos
from specbasis.io.namemaps import make_id
from specbasis.io.tables import base_kind

RANKS_FIG19 = (1, 5, 10, 100)
MATRIX = ["pair", "layer", "kind"]


def matrix_id(layer, kind) -> str:
    """The canonical id back from a table's layer and kind (the inverse of tables.id_columns)."""
    stack, _, number = str(layer).rpartition(".")
    kind, _, index = str(kind).partition(".")
    return make_id(int(number), kind, stack, int(index) if index else None)


def rank_points(cumgrad: pd.DataFrame, alignment: pd.DataFrame, rank: int) -> pd.DataFrame:
    """One row per changed matrix at `rank`: pair, layer, kind, ratio r_i, cos (mean of u and v) and
    random, the mean of random_cos over its two sides."""
    at = alignment[alignment["rank"] == rank]
    at = at.assign(random=random_cos(at["dim"].to_numpy()))
    cos = at.groupby(MATRIX, sort=False, as_index=False)[["cos", "random"]].mean()
    rows = cumgrad[(cumgrad["rank"] == rank) & (cumgrad["ratio"] > 0)]
    return rows[MATRIX + ["ratio"]].merge(cos, on=MATRIX)


def _scatter(ax: plt.Axes, points: pd.DataFrame, pairs: list[str], rank: int, title: str, legend: bool = True) -> None:
    sns.scatterplot(data=points, x="cos", y="ratio", hue="pair", hue_order=pairs, s=18, legend=legend, ax=ax)
    ax.axvline(points["random"].mean(), color="0.4", linestyle="--", linewidth=1, label="random |cos|")
    ax.set(title=title, xlabel=f"|cos(pretrained, finetuned)| at rank {rank} (mean of u, v)",
           ylabel=f"r_{rank} = σ_{rank}(ΔW) / σ_{rank}(W_pt)", xlim=(0, 1.02), yscale="log")


def _against_rank(ax: plt.Axes, rows: pd.DataFrame, dims: dict[str, int], title: str) -> None:
    names = {"ratio": "r_i", "align_u": "a_u,i", "align_v": "a_v,i"}
    long = rows.rename(columns=names).melt(id_vars="rank", value_vars=list(names.values()), var_name="quantity")
    sns.lineplot(data=long, x="rank", y="value", hue="quantity", ax=ax)
    colours = dict(zip(names.values(), sns.color_palette()))
    for side, name in (("u", "a_u,i"), ("v", "a_v,i")):  # random unit vectors of length m (u), n (v)
        ax.axhline(random_cos(dims[side]), color=colours[name], linestyle="--", linewidth=1)
    ax.set(title=title, xlabel="rank i", ylabel="r_i and a_i = |cos(ΔW, W_pt)|", xscale="log", yscale="log")


def fig3(cumgrad: pd.DataFrame, alignment: pd.DataFrame) -> tuple[plt.Figure, dict]:
    """A: r_1 against the pretrained–finetuned alignment at rank 1, one point per matrix;
    B, C: r_i, a_u,i and a_v,i against rank for the matrices with the smallest and largest r_1.

    Returns the figure and the chosen matrices, {'smallest_r1'|'largest_r1': {pair, id, r1}}, which
    panel titles B and C also name.
    """
    points = rank_points(cumgrad, alignment, 1)
    if points.empty:
        raise ValueError("fig3: no matrix changed by finetuning with an alignment at rank 1 in the tables")
    pairs = list(dict.fromkeys(points["pair"]))
    chosen = {name: points.loc[i] for name, i in (("smallest_r1", points["ratio"].idxmin()),
                                                   ("largest_r1", points["ratio"].idxmax()))}
    details = {name: {"pair": str(row["pair"]), "id": matrix_id(row["layer"], row["kind"]),
                      "r1": float(row["ratio"])} for name, row in chosen.items()}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), layout="constrained")
    _scatter(axes[0], points, pairs, 1, "A  r_1 against alignment, per matrix")
    for ax, (name, row), label in zip(axes[1:], chosen.items(), ("B  smallest r_1", "C  largest r_1")):
        rows = cumgrad[(cumgrad[MATRIX] == row[MATRIX]).all(axis=1)]
        sides = alignment[(alignment[MATRIX] == row[MATRIX]).all(axis=1)]
        dims = sides.groupby("side")["dim"].first().astype(int).to_dict()
        _against_rank(ax, rows, dims, f"{label}: {details[name]['pair']} {details[name]['id']}")
    return fig, details


def fig19(cumgrad: pd.DataFrame, alignment: pd.DataFrame, ranks=RANKS_FIG19) -> plt.Figure:
    """fig3 A at each rank i of `ranks`: r_i against the alignment at rank i. A matrix shows in the
    panels of the ranks it has (i <= R); a rank no matrix has gets no panel."""
    panels = {k: p for k in ranks if not (p := rank_points(cumgrad, alignment, k)).empty}
    if not panels:
        raise ValueError(f"fig19: no matrix changed by finetuning has an alignment at ranks {list(ranks)}")
    pairs = list(dict.fromkeys(pd.concat(panels.values())["pair"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2), layout="constrained",
                             squeeze=False)
    for ax, (k, points) in zip(axes[0], panels.items()):
        _scatter(ax, points, pairs, k, f"rank {k}", legend=ax is axes[0, 0])
    return fig


def fig20(cumgrad: pd.DataFrame) -> plt.Figure:
    """σ_i(ΔW) against σ_i(W_pt) at every rank i, one point per matrix and rank, one panel per pair,
    coloured by kind; the dashed line is y = x (r_i = 1)."""
    rows = cumgrad[cumgrad["s_delta"] > 0]
    rows = rows.assign(kind=base_kind(rows["kind"]))
    if rows.empty:
        raise ValueError("fig20: no matrix changed by finetuning in the cumgrad tables")
    pairs = list(dict.fromkeys(rows["pair"]))
    palette = dict(zip(dict.fromkeys(rows["kind"]), sns.color_palette()))  # one colour per kind in every panel
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.5 * len(pairs), 4.2), layout="constrained",
                             squeeze=False)
    for ax, pair in zip(axes[0], pairs):
        points = rows[rows["pair"] == pair]
        sns.scatterplot(data=points, x="s_pt", y="s_delta", hue="kind", hue_order=list(dict.fromkeys(points["kind"])),
                        palette=palette, s=6, linewidth=0, alpha=0.5, rasterized=True, ax=ax)
        ax.set(title=pair, xlabel="σ_i(W_pt)", ylabel="σ_i(ΔW)", xscale="log", yscale="log")
        ax.axline((1, 1), (10, 10), color="0.3", linestyle="--", linewidth=1)  # y = x on log-log axes
    return fig
