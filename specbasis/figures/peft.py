"""Figure 5: where the spectral adapter's budget goes, from fig5's tidy table (specbasis.analysis.peft.sweep_table).

A. rank budget: k = 0, m swept; B. layer location: the same block [k, m) on other blocks; C. block location:
m − k fixed, k swept. Every point is one run per seed: the seeds are drawn, their mean joined by a line with
± one standard deviation; a dashed line marks full finetuning's score on the task where table1 has it.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from specbasis.figures import grid, page_note

PANELS = {"rank": ("A. rank budget (k = 0)", "m (components adapted: 0..m)"),
          "layers": ("B. layer location", "adapted blocks"),
          "block": ("C. block location (m − k fixed)", "k (first component adapted)")}


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (sweep, x): mean, standard deviation, min and max of the score over seeds, and the seed count."""
    return (table.groupby(["sweep", "x"], sort=False)["score"]
            .agg(mean="mean", sd="std", lo="min", hi="max", seeds="count").reset_index())


def _order(sub: pd.DataFrame, sweep: str) -> list:
    xs = list(dict.fromkeys(sub["x"]))
    if sweep == "layers":
        return sorted(xs, key=lambda s: [int(i) for i in str(s).split("_")])
    return sorted(xs, key=float)


def fig5(table: pd.DataFrame, full: float | None = None, task: str = "", detail: str = "") -> plt.Figure:
    """Three panels (those the table has), score against the swept setting."""
    sweeps = [s for s in PANELS if s in set(table["sweep"])] if len(table) else []
    if not sweeps:
        return page_note("No fig5 runs: the config's peft section has no sweeps.")
    fig, axes = grid(len(sweeps), width=4.4)
    for ax, sweep in zip(axes, sweeps):
        sub = table[table["sweep"] == sweep].copy()
        order = _order(sub, sweep)
        label = (lambda x: str(x).replace("_", "–")) if sweep == "layers" else str  # blocks 0_1 -> 0–1
        sub["x"] = pd.Categorical(sub["x"].map(label), categories=[label(x) for x in order], ordered=True)
        sns.pointplot(data=sub, x="x", y="score", errorbar="sd", color="C0", capsize=0.15, ax=ax, label="mean ± sd")
        sns.stripplot(data=sub, x="x", y="score", color="C1", size=4, alpha=0.7, jitter=0.08, ax=ax, label="a seed")
        if full is not None:
            ax.axhline(full, ls="--", color="0.4", lw=1, label="full finetuning")
        title, xlabel = PANELS[sweep]
        ax.set(title=title, xlabel=xlabel, ylabel=f"test score (%){', ' + task if task else ''}")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize="small")
    if detail:
        fig.suptitle(detail, fontsize="small")
    return fig


def fig22(table: pd.DataFrame, epsilon_mark: float = 0.5, top: int = 10) -> plt.Figure:
    """How each finetuning method moves the pretrained basis (specbasis.analysis.peft.basis_by_method): A, the top
    vectors' alignment of the matrices it changed against its table1 score; B, intruder dimensions per changed
    matrix against ε (the paper's ε marked). Methods that change no matrix are named in A's corner."""
    moved = table[table["note"].fillna("") == ""] if len(table) else table
    if moved.empty:
        return page_note("No table1 run changed a weight matrix (or the config has no peft section).")
    fig, axes = grid(2, width=4.8)
    ax = axes[0]
    colours = dict(zip(moved["method"], sns.color_palette("colorblind", len(moved))))
    for row in moved.itertuples():
        ax.scatter(row.alignment, row.score, color=colours[row.method])
        ax.annotate(row.method, (row.alignment, row.score), fontsize=7, xytext=(3, 3), textcoords="offset points")
    still = table[table["note"].fillna("") != ""]["method"].tolist()
    if still:
        ax.text(0.02, 0.02, "no weight matrix changed: " + ", ".join(still), transform=ax.transAxes, fontsize=7)
    ax.set(title=f"A. alignment of the changed matrices (top {top})", xlabel="mean |cos| to the pretrained vectors",
           ylabel="table1 score (mean over tasks and seeds)")
    ax = axes[1]
    eps = [c for c in table.columns if c.startswith("intruders ε=")]
    long = moved.melt(id_vars=["method"], value_vars=eps, var_name="epsilon", value_name="intruders")
    long["epsilon"] = long["epsilon"].str.removeprefix("intruders ε=").astype(float)
    sns.lineplot(data=long, x="epsilon", y="intruders", hue="method", palette=colours, marker="o", ax=ax)
    ax.axvline(epsilon_mark, color="0.5", linestyle=":", linewidth=1)
    ax.set(title=f"B. intruder dimensions among the top {top}", xlabel="ε (max |cos| to any pretrained vector below)",
           ylabel="intruders per changed matrix")
    return fig
