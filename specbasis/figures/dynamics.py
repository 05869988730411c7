"""Figures of the pretraining-dynamics stage (fig4, fig9, fig21) from its tidy tables.

similarity: results/dynamics/pretrain/<scale>.csv (specbasis.dynamics.train.SIM_COLUMNS + scale): |cos| of each
rank's singular vectors between epoch e and e − 1 (reference "previous") or the last epoch ("final").
posttrain: results/dynamics/posttrain/<scale>-<mode>.csv (POST_COLUMNS + scale): |cos| to the pretrained
vectors at post-training step `step` (epoch = step / steps per epoch).

Every panel plots `top_mean`: |cos| averaged over ranks 1..top, both sides (u, v) and every analysed
matrix (the paper's "top singular vectors"), one line per scale (or per label condition in fig9).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from specbasis.figures import grid, page_note

LABELS = {"classify": "true labels", "classify_shuffled": "shuffled labels"}
FIT_LABELS = {"fit": "true labels", "fit_shuffled": "shuffled labels"}  # fig9's fitted runs: few images, long


def top_mean(table: pd.DataFrame, keys: list[str], top: int) -> pd.DataFrame:
    """Mean |cos| over ranks 1..top, sides and matrices, per `keys` (long form: keys + cos)."""
    rows = table[table["rank"] <= top]
    return rows.groupby(keys, as_index=False, sort=True)["cos"].mean()


POSTTRAIN_PLOTTED = ["scale", "mode", "step", "epoch", "rank", "cos"]  # the columns the post-training figures read


def final_top_mean(posttrain: pd.DataFrame, top: int) -> pd.DataFrame:
    """Per (scale, mode): top_mean at the last post-training step (what fig9 and fig21 end on; their scripts log it)."""
    last = posttrain["step"] == posttrain.groupby(["scale", "mode"])["step"].transform("max")
    return top_mean(posttrain[last], ["scale", "mode"], top)


def scale_label(n: int) -> str:
    return f"{n:,} images"


def _with_scale_label(df: pd.DataFrame) -> pd.DataFrame:
    df = df.sort_values("scale")
    return df.assign(data=df["scale"].map(scale_label))


def _palette(scales) -> dict:
    scales = sorted(set(scales))
    return dict(zip(map(scale_label, scales), sns.color_palette("viridis", len(scales))))


def _posttrain_panel(ax: plt.Axes, post: pd.DataFrame, mode: str, top: int, title: str, palette: dict) -> None:
    rows = post[post["mode"] == mode]
    if rows.empty:
        ax.text(0.5, 0.5, f"no {mode} runs", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        return
    data = _with_scale_label(top_mean(rows, ["scale", "epoch"], top))
    sns.lineplot(data=data, x="epoch", y="cos", hue="data", palette=palette, ax=ax)
    ax.set(title=title, xlabel="post-training epoch", ylabel=f"mean |cos| to pretrained, top {top}")


def schedule_control(similarity: pd.DataFrame, top: int) -> pd.DataFrame:
    """fig4 D's points: per scale and epoch, the mean |cos| of the top vectors to the previous epoch (top_mean) and
    the analysed matrices' mean relative displacement since it (analysis.alignment.relative_change)."""
    previous = similarity[similarity["reference"] == "previous"]
    cos = top_mean(previous, ["scale", "epoch"], top)
    moved = previous.groupby(["scale", "epoch"], as_index=False, sort=True)["displacement"].mean()
    return cos.merge(moved, on=["scale", "epoch"])


def fig4(similarity: pd.DataFrame, posttrain: pd.DataFrame, top: int, new_data: str = "new data") -> plt.Figure:
    """A: similarity between successive pretraining epochs (solid) and to the final epoch (dashed);
    B: to the pretrained basis during classification post-training; C: during reconstruction on new data.
    B and C show the smallest and largest scale. D, the schedule control: A's successive-epoch similarity against
    how far the matrices moved between those epochs: if the similarity rose only because the (cosine) learning rate
    shrinks the steps, every scale would lie on one curve; a basis that settles sits higher at the same step."""
    if similarity.empty and posttrain.empty:
        return page_note("No pretraining-dynamics results: the config has no `dynamics:` section.")
    fig, axes = grid(4)
    sim = _with_scale_label(top_mean(similarity, ["scale", "epoch", "reference"], top))
    sns.lineplot(data=sim, x="epoch", y="cos", hue="data", style="reference", style_order=["previous", "final"],
                 palette=_palette(similarity["scale"]), ax=axes[0])
    axes[0].set(title="A. pretraining: vs previous / final epoch", xlabel="pretraining epoch",
                ylabel=f"mean |cos|, top {top}")
    scales = sorted(posttrain["scale"].unique()) if not posttrain.empty else []
    ends = posttrain[posttrain["scale"].isin(scales[:1] + scales[-1:])]
    palette = _palette(similarity["scale"].tolist() + scales)
    _posttrain_panel(axes[1], ends, "classify", top, "B. post-training: classification", palette)
    _posttrain_panel(axes[2], ends, "reconstruct", top, f"C. post-training: reconstruction, {new_data}", palette)
    if "displacement" in similarity:
        control = _with_scale_label(schedule_control(similarity, top)).sort_values(["scale", "epoch"])
        sns.lineplot(data=control, x="displacement", y="cos", hue="data", palette=_palette(similarity["scale"]),
                     marker="o", sort=False, ax=axes[3], legend=False)
        axes[3].set(xscale="log", title="D. control: vs the step between epochs",
                    xlabel="relative change of W since the previous epoch", ylabel=f"mean |cos|, top {top}")
    return fig


def fig21(posttrain: pd.DataFrame, top: int, new_data: str = "new data") -> plt.Figure:
    """fig4's B and C for every scale."""
    if posttrain.empty:
        return page_note("No post-training results: the config has no `dynamics:` section.")
    fig, axes = grid(2)
    palette = _palette(posttrain["scale"])
    _posttrain_panel(axes[0], posttrain, "classify", top, "A. classification", palette)
    _posttrain_panel(axes[1], posttrain, "reconstruct", top, f"B. reconstruction, {new_data}", palette)
    return fig


def fig9(posttrain: pd.DataFrame, top: int) -> plt.Figure:
    """Classification post-training from the same checkpoint with true vs shuffled labels, one panel per scale:
    top row, matched steps (the classify settings); bottom row (modes fit, fit_shuffled), few images trained
    until the labels are fitted, each line's final training accuracy in its legend."""
    groups = [(title, labels, posttrain[posttrain["mode"].isin(list(labels))]) for title, labels in
              (("matched steps", LABELS), ("fitted", FIT_LABELS))]
    groups = [g for g in groups if not g[2].empty]
    if not groups:
        return page_note("No classification post-training results (dynamics.modes has no classify or fit mode).")
    scales = sorted(set().union(*(set(rows["scale"]) for _, _, rows in groups)))
    fig, axes = plt.subplots(len(groups), len(scales), figsize=(3.4 * len(scales), 2.9 * len(groups)),
                             squeeze=False, layout="constrained")
    colours = sns.color_palette("colorblind", 2)
    for row_axes, (title, labels, rows) in zip(axes, groups):
        for ax, n in zip(row_axes, scales):
            data = top_mean(rows[rows["scale"] == n], ["mode", "epoch"], top)
            if data.empty:
                ax.set_axis_off()
                continue
            names = {m: _with_accuracy(label, rows[(rows["scale"] == n) & (rows["mode"] == m)])
                     for m, label in labels.items()}
            data = data.assign(labels=data["mode"].map(names))
            sns.lineplot(data=data, x="epoch", y="cos", hue="labels", hue_order=list(names.values()),
                         palette=dict(zip(names.values(), colours)), ax=ax)
            ax.set(title=f"{scale_label(n)}, {title}", xlabel="post-training epoch",
                   ylabel=f"mean |cos| to pretrained, top {top}")
    return fig


def _with_accuracy(label: str, rows: pd.DataFrame) -> str:
    """A legend entry with the run's final training accuracy, where its table has one."""
    if "train_accuracy" not in rows or rows["train_accuracy"].dropna().empty:
        return label
    return f"{label} (train acc. {rows['train_accuracy'].dropna().iloc[0]:.2f})"
