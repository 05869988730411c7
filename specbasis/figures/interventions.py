"""Intervention figures: pure functions from the swap and mask tables (specbasis.interventions.sweep) to figures.

Every panel is one finetuned model (its task): the task's metric (`score`: accuracy, CoLA's Matthews or
STS-B's Pearson correlation; specbasis.interventions.sweep) against k (swaps) or against the fraction
masked, one line per source (or order), each point with its 95% interval as an error bar (Wilson's for
accuracy, a bootstrap otherwise); the unedited model's score is the grey line and its 95% interval the
grey band. A point is drawn filled where it differs from the unedited model (`p_score` < ALPHA: exact
McNemar for accuracy, a paired bootstrap otherwise). A model without
matrices of a group (EfficientNet has no attention) or without a cross donor gets a panel saying so.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from specbasis.figures import grid, note, page_note

GROUP_NAMES = {"ffn": "FFN", "attn": "attention", "xattn": "cross-attention"}
SOURCE_ORDER = ("pretrained", "cross", "random", "random_orthogonal", "zero")
SOURCE_COLORS = dict(zip(SOURCE_ORDER, sns.color_palette("colorblind", len(SOURCE_ORDER))))
ORDER_COLORS = dict(zip(("top_down", "bottom_up"), sns.color_palette("colorblind", 5)[3:5]))
GROUP_DASHES = {"ffn": "", "attn": (4, 2), "xattn": (1, 1.5)}
SWAP_SOURCES = ("pretrained", "random", "random_orthogonal", "zero")  # fig12, fig14 (cross: fig13, fig15)
ALPHA = 0.05  # the level of p_score at which a point is drawn filled
METRIC_LABELS = {"accuracy": "test accuracy", "matthews": "test Matthews correlation",
                 "pearson": "test Pearson correlation"}
TESTS = "exact McNemar for accuracy, a paired bootstrap for a correlation"


def metric_label(rows: pd.DataFrame) -> str:
    """The y label of a panel: its task's metric (glue_metrics' name where it has no label here)."""
    metrics = sorted(set(rows["metric"].dropna())) if len(rows) else []
    return " / ".join(METRIC_LABELS.get(m, f"test {m}") for m in metrics) or "test accuracy"


def _limits(rows: pd.DataFrame) -> tuple[float, float]:
    """Accuracy lives in [0, 1], a correlation in [-1, 1]."""
    return (-0.02, 1.02) if set(rows["metric"].dropna()) <= {"accuracy"} else (-1.02, 1.02)


def _unedited(ax: plt.Axes, rows: pd.DataFrame) -> None:
    """The unedited score (line) and its 95% interval (band)."""
    first = rows.iloc[0]
    ax.axhspan(first["base_score_ci_low"], first["base_score_ci_high"], color="0.85", zorder=0,
               label="unedited, 95% CI")
    ax.axhline(first["base_score"], color="0.4", lw=1, zorder=1)


def _error_bars(ax: plt.Axes, rows: pd.DataFrame, x: str, hue: str, colors: dict) -> None:
    """95% intervals of every point; points with p_score < ALPHA drawn filled, others hollow."""
    for key, sub in rows.groupby(hue, sort=False):
        sub = sub.sort_values(x)
        yerr = np.vstack([sub["score"] - sub["score_ci_low"], sub["score_ci_high"] - sub["score"]]).astype(float)
        yerr = np.clip(np.nan_to_num(yerr), 0, None)  # Wilson's clamped bound at 1 can sit an ulp below it
        ax.errorbar(sub[x], sub["score"], yerr=yerr, fmt="none", ecolor=colors[key], elinewidth=0.8, capsize=2)
        significant = sub["p_score"] < ALPHA
        ax.scatter(sub[x], sub["score"], s=18, zorder=3, edgecolors=colors[key],
                   facecolors=[colors[key] if s else "white" for s in significant])


def _k_axis(ax: plt.Axes, ks) -> None:
    ks = sorted(set(int(k) for k in ks))
    ax.set_xscale("symlog", linthresh=1, linscale=0.5)
    ax.set_xticks(ks, [str(k) for k in ks], fontsize=7)
    ax.minorticks_off()


def swap_figure(table: pd.DataFrame, group: str, sources=SWAP_SOURCES) -> plt.Figure:
    """The task's metric against k of the swaps `sources` in matrix group `group`, one panel per model."""
    models = list(dict.fromkeys(table["model"])) if len(table) else []
    if not models:
        return page_note("No swap interventions in this suite (config `interventions.models` is empty, or no "
                          "model is finetuned by the workflow), so there is nothing to plot.")
    what = GROUP_NAMES.get(group, group)
    fig, axes = grid(len(models))
    for ax, model in zip(axes, models):
        mine = table[table["model"] == model]
        rows = mine[(mine["group"] == group) & mine["source"].isin(sources)]
        if rows.empty:
            if (mine["group"] != group).all():
                why = f"no {what} matrices"
            elif "cross" in sources:
                why = "no cross donor (config interventions.cross)"
            else:
                why = f"no {', '.join(sources)} swaps"
            note(ax, f"{model}: {why}; nothing to plot")
            continue
        present = [s for s in SOURCE_ORDER if s in set(rows["source"])]
        _unedited(ax, rows)
        sns.lineplot(data=rows, x="k", y="score", hue="source", hue_order=present, palette=SOURCE_COLORS,
                     errorbar=None, ax=ax, legend=ax is axes[0])
        _error_bars(ax, rows, "k", "source", SOURCE_COLORS)
        _k_axis(ax, rows["k"])
        donors = sorted(set(rows.loc[rows["source"] == "cross", "donor"].dropna()))
        title = f"{model}" + (f" ← {', '.join(donors)}" if donors and list(sources) == ["cross"] else "")
        ax.set(title=title, xlabel=f"k (top singular pairs swapped, {what})", ylabel=metric_label(rows),
               ylim=_limits(rows))
    if axes and axes[0].get_legend() is not None:
        axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{what} matrices: filled points differ from the unedited model (p < {ALPHA}; {TESTS})", fontsize=9)
    return fig


def fig12(table: pd.DataFrame) -> plt.Figure:
    """Pretrained (and random, random-orthogonal, zero) vectors swapped into the finetuned FFN matrices."""
    return swap_figure(table, "ffn", SWAP_SOURCES)


def fig13(table: pd.DataFrame) -> plt.Figure:
    """Another task's finetuned vectors swapped into the FFN matrices."""
    return swap_figure(table, "ffn", ("cross",))


def fig14(table: pd.DataFrame) -> plt.Figure:
    """fig12 for the attention matrices."""
    return swap_figure(table, "attn", SWAP_SOURCES)


def fig15(table: pd.DataFrame) -> plt.Figure:
    """fig13 for the attention matrices."""
    return swap_figure(table, "attn", ("cross",))


def fig17(table: pd.DataFrame) -> plt.Figure:
    """The task's metric against the fraction of components masked, top-down vs bottom-up (colour), per group
    (line style), one panel per model."""
    models = list(dict.fromkeys(table["model"])) if len(table) else []
    if not models:
        return page_note("No masking interventions in this suite (config `interventions.models` is empty, or no "
                          "model is finetuned by the workflow), so there is nothing to plot.")
    fig, axes = grid(len(models))
    for ax, model in zip(axes, models):
        rows = table[table["model"] == model].assign(
            curve=lambda t: t["order"].str.replace("_", "-") + ", " + t["group"].map(GROUP_NAMES))
        groups = [g for g in GROUP_NAMES if g in set(rows["group"])]
        _unedited(ax, rows)
        sns.lineplot(data=rows, x="fraction", y="score", hue="order", hue_order=list(ORDER_COLORS),
                     palette=ORDER_COLORS, style="group", style_order=groups, dashes=GROUP_DASHES, errorbar=None,
                     ax=ax, legend=ax is axes[0])
        for group in groups:
            _error_bars(ax, rows[rows["group"] == group], "fraction", "order", ORDER_COLORS)
        missing = [GROUP_NAMES[g] for g in ("ffn", "attn") if g not in groups]
        ax.set(title=model + (f" (no {' or '.join(missing)} matrices)" if missing else ""),
               xlabel="fraction of each matrix's components masked", ylabel=metric_label(rows), ylim=_limits(rows))
    if axes[0].get_legend() is not None:
        axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"masking: filled points differ from the unedited model (p < {ALPHA}; {TESTS})", fontsize=9)
    return fig


def swap_delta_panel(ax: plt.Axes, table: pd.DataFrame, sources, title: str, group: str = "ffn") -> None:
    """Δ of the task's metric (edited - unedited) against k for `sources` in `group`, every model in one panel
    (colour: model, line style: source): fig2's panels D and E."""
    rows = table[(table["group"] == group) & table["source"].isin(sources)] if len(table) else table
    if rows.empty:
        note(ax, f"{title.split('  ')[0]}  no {' / '.join(sources)} swaps of {GROUP_NAMES[group]} matrices in this "
                  "suite (see config `interventions`)")
        return
    present = [s for s in SOURCE_ORDER if s in set(rows["source"])]
    sns.lineplot(data=rows, x="k", y="delta_score", hue="model", style="source", style_order=present, markers=True,
                 errorbar=None, ax=ax)
    ax.axhline(0, color="0.4", lw=1, zorder=1)
    _k_axis(ax, rows["k"])
    ax.set(title=title, xlabel=f"k (top singular pairs swapped, {GROUP_NAMES[group]})",
           ylabel=f"Δ {metric_label(rows).removeprefix('test ')} vs unedited")
    ax.legend(fontsize=7, loc="lower left")
