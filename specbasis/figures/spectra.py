"""Spectra figures and table: pure functions from the spectra and energy tables (specbasis.analysis.spectra)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from specbasis.io.namemaps import KINDS
from specbasis.io.tables import base_kind, last_layer
from specbasis.figures import ffn_rows

QUANTILE_BINS = 20  # fig6 averages the ranks of matrices of any r within 1/20 of the spectrum
PANEL_COLUMNS = 4
ABSOLUTE_RANKS = 200  # fig16 B: the leading ranks, where the energy is
TABLE4_COLUMNS = {"pair": "pair", "layer": "layer", "kind": "matrix", "rsd": "RSD", "mrc": "MRC",
                  "maxrc": "MaxRC", "t1rc": "T1RC", "tailrc": "TailRC", "erank_pt": "ER_pt",
                  "erank_ft": "ER_ft", "d_erank": "ΔER"}


def _panels(n: int, width: float = 3.3, height: float = 2.8) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure of n panels, PANEL_COLUMNS to a row."""
    cols = min(n, PANEL_COLUMNS)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def fig6(per_rank: pd.DataFrame) -> plt.Figure:
    """Relative change of the singular values against the rank quantile, one panel per pair: per matrix
    kind, the median over matrices and ranks in each 1/QUANTILE_BINS of the spectrum, and its IQR."""
    if per_rank.empty:
        raise ValueError("fig6: the per-rank spectra tables are empty")
    table = per_rank.assign(kind=base_kind(per_rank["kind"]),
                            quantile=(np.floor(per_rank["quantile"] * QUANTILE_BINS) + 0.5) / QUANTILE_BINS)
    pairs = list(dict.fromkeys(table["pair"]))
    kinds = [k for k in KINDS if k in set(table["kind"])]  # one colour per kind in every panel
    fig, axes = _panels(len(pairs))
    legend = {}
    for ax, pair in zip(axes, pairs):
        sns.lineplot(data=table[table["pair"] == pair], x="quantile", y="rel_change", hue="kind",
                     hue_order=kinds, estimator="median", errorbar=("pi", 50), ax=ax)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(title=pair, xlabel="rank quantile (largest → smallest σ)",
               ylabel=r"$(\sigma_{ft} - \sigma_{pt}) / \sigma_{pt}$", xlim=(0, 1))
        legend.update(zip(*ax.get_legend_handles_labels()[::-1]))
        ax.get_legend().remove()
    fig.legend(legend.values(), legend.keys(), title="matrix", loc="outside right upper")
    return fig


def table4(per_matrix: pd.DataFrame) -> pd.DataFrame:
    """Spectral change of the last block's FFN matrices: one row per pair and FFN matrix kind."""
    last = ffn_rows(last_layer(per_matrix, by="pair"))
    if last.empty:
        raise ValueError("table4: no FFN matrices (kinds ffn_in/ffn_out) in the last block of any pair")
    return last[list(TABLE4_COLUMNS)].rename(columns=TABLE4_COLUMNS).reset_index(drop=True)


def fig16(energy: pd.DataFrame) -> plt.Figure:
    """Cumulative energy of the last block's FFN matrices of each pretrained model against (A) the relative
    rank and (B) the rank, up to ABSOLUTE_RANKS; one line per model and matrix kind."""
    last = ffn_rows(last_layer(energy, by="model"))
    if last.empty:
        raise ValueError("fig16: no FFN matrices (kinds ffn_in/ffn_out) in the last block of any model")
    models = list(dict.fromkeys(last["model"]))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True, layout="constrained")
    panels = ((a, last, "rel_rank", "A  all ranks", "relative rank k / r"),
              (b, last[last["rank"] <= ABSOLUTE_RANKS], "rank", f"B  leading {ABSOLUTE_RANKS} ranks", "rank k"))
    for ax, data, x, title, xlabel in panels:
        sns.lineplot(data=data, x=x, y="energy", hue="model", hue_order=models, style="kind",
                     errorbar=None, ax=ax)
        ax.set(title=title, xlabel=xlabel, ylim=(0, 1.02),
               ylabel=r"explained variance $\Sigma_{j \leq k}\,\sigma_j^2 \,/\, \Sigma_j\,\sigma_j^2$")
    b.get_legend().remove()
    return fig
