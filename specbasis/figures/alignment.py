"""Alignment figures: pure functions from alignment tables to matplotlib figures.

Every curve panel shows, per pair (colour), three measures (line style), each averaged over the
matrices in the panel at every rank:
  - matched |cos|   |ũ_iᵀu_i| (solid), the paper's measure;
  - subspace        ‖U_kᵀŨ_k‖²_F / k (dotted), blind to swaps and rotations among near-equal σ;
  - random |cos|    E|cos| of independent random unit vectors of the same length (dashed);
  - random subspace k/d, the subspace similarity of random k-dimensional subspaces (dash-dot):
                    near k = d any two subspaces overlap, so the dotted line means little there.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import pandas as pd
import seaborn as sns

from specbasis.analysis.alignment import random_cos, random_subspace
from specbasis.families import MODALITIES
from specbasis.io.tables import base_kind
from specbasis.figures import ffn_rows, note, rank_bucket
from specbasis.figures.interventions import swap_delta_panel

MEASURES = {"cos": "matched |cos|", "subspace": "subspace", "random": "random |cos|",
            "random_subspace": "random subspace"}
DASHES = {"matched |cos|": "", "subspace": (1, 1.5), "random |cos|": (4, 2), "random subspace": (4, 1.5, 1, 1.5)}
ATTN_KINDS = ("attn_q", "attn_k", "attn_v", "attn_o")
SIDES = {"u": "left (u)", "v": "right (v)"}


def measures_long(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (matrix, side, rank, measure): the table's cos and subspace, plus the random
    references random_cos(dim) and rank/dim."""
    wide = table.assign(random=random_cos(table["dim"].to_numpy()),
                        random_subspace=random_subspace(table["rank"].to_numpy(), 1) / table["dim"].to_numpy())
    keep = [c for c in wide.columns if c not in MEASURES]
    long = wide.melt(id_vars=keep, value_vars=list(MEASURES), var_name="measure", value_name="value")
    return long.assign(measure=long["measure"].map(MEASURES))


def _curves(ax: plt.Axes, long: pd.DataFrame, pairs: list[str], title: str, log_x: bool, legend: bool) -> None:
    sns.lineplot(data=long, x="rank", y="value", hue="pair", hue_order=pairs, style="measure",
                 style_order=list(DASHES), dashes=DASHES, errorbar=None, ax=ax, legend=legend)
    ax.set(title=title, xlabel="rank i (k for subspace)", ylabel="mean over matrices", ylim=(0, 1.02))
    if log_x:
        ax.set_xscale("log")


def fig2(table: pd.DataFrame, swap: pd.DataFrame | None = None) -> plt.Figure:
    """A/B: mean |cos| of FFN singular vectors against rank, left and right; C: rank bucket x layer.
    With the swap tables (specbasis.interventions.sweep): D: Δ accuracy after pretrained / random / zero vectors
    replace the top-k of every FFN matrix, E: after another task's vectors do, against k."""
    ffn = ffn_rows(table)
    if ffn.empty:
        raise ValueError("fig2: no FFN matrices (kinds ffn_in/ffn_out) in the alignment tables")
    pairs = list(dict.fromkeys(ffn["pair"]))
    long = measures_long(ffn)
    fig = plt.figure(figsize=(11, 7.5 if swap is None else 11), layout="constrained")
    top, bottom, *swaps = fig.subfigures(2 if swap is None else 3, 1)
    axes = top.subplots(1, 2, sharey=True)
    for ax, side, label in zip(axes, ("u", "v"), ("A  left singular vectors", "B  right singular vectors")):
        _curves(ax, long[long["side"] == side], pairs, label, log_x=True, legend=side == "u")
    heat = ffn.assign(bucket=rank_bucket(ffn["rank"]))
    cells = bottom.subplots(1, len(pairs), squeeze=False)[0]
    bottom.suptitle("C  mean matched |cos| (FFN, u and v) by layer and rank bucket", x=0.02, ha="left",
                    fontweight="bold", fontsize=10)
    for ax, pair in zip(cells, pairs):
        grid = (heat[heat["pair"] == pair]
                .groupby(["bucket", "layer"], observed=True)["cos"].mean().unstack("layer"))
        sns.heatmap(grid, vmin=0, vmax=1, cmap="viridis", ax=ax, cbar=ax is cells[-1], xticklabels=True,
                    cbar_kws={"label": "mean |cos|"})
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
        ax.set(title=pair, xlabel="layer", ylabel="rank" if ax is cells[0] else "")
        ax.grid(False)
    if swaps:
        d, e = swaps[0].subplots(1, 2, sharey=True)
        swap_delta_panel(d, swap, ("pretrained", "random", "zero"), "D  pretrained / random / zero vectors swapped in")
        swap_delta_panel(e, swap, ("cross",), "E  another task's finetuned vectors swapped in")
    return fig


def fig8(table: pd.DataFrame, modality: dict[str, str], max_rank: int = 200) -> plt.Figure:
    """Ranks 1..max_rank (linear), FFN matrices (ffn_in and ffn_out together), one line per pair;
    columns: modality, rows: side."""
    ffn = ffn_rows(table)
    ffn = ffn[ffn["rank"] <= max_rank].assign(modality=lambda t: t["pair"].map(modality))
    groups = [m for m in MODALITIES if m in set(ffn["modality"])]
    if not groups:
        raise ValueError("fig8: no FFN matrices in the alignment tables")
    long = measures_long(ffn)
    fig, axes = plt.subplots(2, len(groups), figsize=(5.5 * len(groups), 7), squeeze=False,
                             sharey=True, layout="constrained")
    for j, group in enumerate(groups):
        sub = long[long["modality"] == group]
        pairs = list(dict.fromkeys(sub["pair"]))
        for i, side in enumerate(SIDES):
            _curves(axes[i, j], sub[sub["side"] == side], pairs, f"{group}: {SIDES[side]} vectors",
                    log_x=False, legend=i == 0)
    return fig


BRAIN_MODALITIES = {"eeg": "EEG", "fmri": "fMRI"}


def fig7(table: pd.DataFrame, modality: dict[str, str]) -> plt.Figure:
    """Appendix C: alignment of the EEG and fMRI pairs (LaBraM; BrainLM, Brain-JEPA), one column per
    modality. Rows: A left and B right singular vectors against rank (FFN matrices, as fig2), C mean
    matched |cos| of the top-10 vectors by layer (u and v). Without such pairs the page says so."""
    present = [m for m in BRAIN_MODALITIES if m in modality.values()]
    ffn = ffn_rows(table[table["pair"].map(modality).isin(present)])
    if ffn.empty:
        fig, ax = plt.subplots(figsize=(7, 2.5), layout="constrained")
        note(ax, "No EEG or fMRI pairs in this suite (models with modality eeg or fmri: LaBraM, BrainLM, "
                  "Brain-JEPA; see config/paper.yaml for how to add them), so there is nothing to plot." if not present
                  else f"No FFN matrices in the {', '.join(BRAIN_MODALITIES[m] for m in present)} pairs.")
        return fig
    ffn = ffn.assign(modality=ffn["pair"].map(modality))
    groups = [m for m in BRAIN_MODALITIES if m in set(ffn["modality"])]
    long = measures_long(ffn)
    fig, axes = plt.subplots(3, len(groups), figsize=(5.5 * len(groups), 10), squeeze=False, layout="constrained")
    for j, group in enumerate(groups):
        sub = long[long["modality"] == group]
        pairs = list(dict.fromkeys(sub["pair"]))
        for i, side in enumerate(SIDES):
            _curves(axes[i, j], sub[sub["side"] == side], pairs, f"{'AB'[i]}  {BRAIN_MODALITIES[group]}: "
                    f"{SIDES[side]} vectors", log_x=True, legend=i == 0)
        top = ffn[(ffn["modality"] == group) & (ffn["rank"] <= 10)]
        by_layer = top.groupby(["pair", "side", "layer"], as_index=False, sort=False)["cos"].mean()
        sns.lineplot(data=by_layer, x="layer", y="cos", hue="pair", hue_order=pairs, style="side",
                     style_order=list(SIDES), markers=True, errorbar=None, ax=axes[2, j])
        axes[2, j].set(title=f"C  {BRAIN_MODALITIES[group]}: top-10 matched |cos| by layer", xlabel="layer",
                       ylabel="mean |cos|, ranks 1-10", ylim=(0, 1.02))
        axes[2, j].xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def fig_attention(table: pd.DataFrame, modality: dict[str, str], which: str) -> plt.Figure:
    """Alignment of attn_q, attn_k, attn_v and attn_o (columns) for the `which` pairs ('vision' or
    'language'), left and right vectors (rows). Pairs without attention matrices are named in a note."""
    pairs = [p for p, m in modality.items() if m == which]
    rows = table[table["pair"].isin(pairs)]
    attn = rows[base_kind(rows["kind"]).isin(ATTN_KINDS)]
    without = [p for p in pairs if p not in set(attn["pair"])]
    if attn.empty:
        fig, ax = plt.subplots(figsize=(7, 2.5), layout="constrained")
        what = ", ".join(pairs) if pairs else "none in this suite"
        note(ax, f"No attention matrices in the {which} pairs ({what}): these architectures "
                  "(e.g. EfficientNet) have none, so there is nothing to plot." if pairs else
                  f"No {which} pairs in this suite.")
        return fig
    long = measures_long(attn.assign(kind=base_kind(attn["kind"])))
    present = list(dict.fromkeys(attn["pair"]))
    fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharey=True, layout="constrained")
    for j, kind in enumerate(ATTN_KINDS):
        for i, side in enumerate(SIDES):
            sub = long[(long["kind"] == kind) & (long["side"] == side)]
            if sub.empty:
                note(axes[i, j], f"no {kind} matrices")
                continue
            _curves(axes[i, j], sub, present, f"{kind}: {SIDES[side]}", log_x=True, legend=(i, j) == (0, 0))
    if without:
        fig.suptitle(f"no attention matrices in: {', '.join(without)}", fontsize=9)
    return fig


def top_k_summary(table: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Mean matched |cos| and subspace similarity over ranks 1..k of FFN matrices, per pair and side."""
    ffn = ffn_rows(table)
    top = ffn[ffn["rank"] <= k]
    out = top.groupby(["pair", "side"], sort=False).agg(cos=("cos", "mean"))
    out["subspace"] = ffn[ffn["rank"] == k].groupby(["pair", "side"], sort=False)["subspace"].mean()
    return out.reset_index().astype({"cos": np.float64})
