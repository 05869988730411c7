"""Alignment figures render from small synthetic tables, including the cases with nothing to plot."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from specbasis.analysis.alignment import COLUMNS, random_cos
from specbasis.figures.alignment import fig2, fig7, fig8, fig_attention, measures_long, top_k_summary


def table(pair: str, kinds, layers=2, ranks=12, dim=16, cos=0.9):
    rows = [(pair, layer, kind, side, r, cos, 1.0, 0.1, 0.1, dim)
            for layer in range(layers) for kind in kinds for side in "uv" for r in range(1, ranks + 1)]
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture
def tables():
    return pd.concat([table("bert-a", ["ffn_in", "ffn_out", "attn_q", "attn_k", "attn_v", "attn_o"]),
                      table("net-b", ["ffn_in", "ffn_out"], layers=3, cos=0.5)], ignore_index=True)


MODALITY = {"bert-a": "language", "net-b": "vision"}


def test_random_reference_is_random_cos_of_the_dimension(tables):
    long = measures_long(tables)
    assert set(long["measure"]) == {"matched |cos|", "subspace", "random |cos|", "random subspace"}
    np.testing.assert_allclose(long[long["measure"] == "random |cos|"]["value"], random_cos(16))
    rand_sub = long[long["measure"] == "random subspace"]
    np.testing.assert_allclose(rand_sub["value"], rand_sub["rank"] / 16)
    assert len(long) == 4 * len(tables)


def test_top_k_summary(tables):
    s = top_k_summary(tables, k=10).set_index(["pair", "side"])
    assert s.loc[("bert-a", "u"), "cos"] == pytest.approx(0.9) and s.loc[("net-b", "v"), "cos"] == pytest.approx(0.5)
    assert s.loc[("net-b", "u"), "subspace"] == pytest.approx(1.0)


BRAIN = {**MODALITY, "labram-a": "eeg", "brainlm-b": "fmri", "jepa-c": "fmri"}


@pytest.fixture
def brain_tables(tables):
    return pd.concat([tables, table("labram-a", ["ffn_in", "ffn_out", "attn_q"], cos=0.8),
                      table("brainlm-b", ["ffn_in", "ffn_out"], layers=3, cos=0.7),
                      table("jepa-c", ["ffn_in", "ffn_out"], cos=0.6)], ignore_index=True)


def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_fig7_one_column_per_brain_modality_with_layer_means(brain_tables):
    fig = fig7(brain_tables, BRAIN)
    titles = _titles(fig)
    assert sum(t.startswith("A  EEG") for t in titles) == 1 and sum(t.startswith("A  fMRI") for t in titles) == 1
    assert not any("vision" in t or "language" in t for t in titles)
    by_layer = next(ax for ax in fig.axes if ax.get_title().startswith("C  fMRI"))
    ys = sorted({round(float(y), 6) for line in by_layer.get_lines() for y in line.get_ydata() if np.isfinite(y)})
    assert ys == [0.6, 0.7]  # the two fMRI pairs' top-10 |cos|, per layer
    plt.close(fig)


def test_fig7_says_when_the_suite_has_no_brain_pairs(tables):
    fig = fig7(tables, MODALITY)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("No EEG or fMRI pairs in this suite" in t for t in texts)
    plt.close(fig)


def test_fig7_renders_from_an_empty_table():
    fig = fig7(pd.DataFrame(columns=COLUMNS), {})
    assert any("No EEG or fMRI pairs" in t.get_text() for ax in fig.axes for t in ax.texts)
    plt.close(fig)


def test_fig8_has_a_column_per_modality(brain_tables):
    fig = fig8(brain_tables, BRAIN)
    tops = [t.split(":")[0] for t in _titles(fig) if t.endswith("left (u) vectors")]
    assert tops == ["vision", "language", "eeg", "fmri"]
    plt.close(fig)


@pytest.mark.parametrize("make", [lambda t: fig2(t), lambda t: fig8(t, MODALITY),
                                  lambda t: fig_attention(t, MODALITY, "language"),
                                  lambda t: fig_attention(t, MODALITY, "vision"),
                                  lambda t: fig_attention(t, {"bert-a": "language"}, "vision")])
def test_figures_render(tables, make):
    fig = make(tables)
    assert isinstance(fig, plt.Figure)
    plt.close(fig)


def test_attention_figure_says_when_there_is_none(tables):
    fig = fig_attention(tables, MODALITY, "vision")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("No attention matrices in the vision pairs (net-b)" in t for t in texts)
    plt.close(fig)


def test_fig2_without_ffn_names_the_problem(tables):
    with pytest.raises(ValueError, match="no FFN matrices"):
        fig2(tables[tables["kind"] == "attn_q"])


# -- interventions (specbasis.figures.interventions) ------------------------------------------------

from specbasis.figures.interventions import fig12, fig13, fig14, fig15, fig17, swap_figure  # noqa: E402
from specbasis.interventions.sweep import MASK_COLUMNS, SWAP_COLUMNS  # noqa: E402


def _stats(acc, base=0.8, n=200, p=0.5, metric="accuracy"):
    return {"n": n, "metric": metric, "score": acc, "score_ci_low": acc - 0.05, "score_ci_high": acc + 0.05,
            "base_score": base, "base_score_ci_low": base - 0.05, "base_score_ci_high": base + 0.05,
            "delta_score": acc - base, "delta_ci_low": acc - base - 0.07, "delta_ci_high": acc - base + 0.07,
            "p_score": p, "accuracy": acc, "ci_low": acc - 0.05, "ci_high": acc + 0.05, "base_accuracy": base,
            "base_ci_low": base - 0.05, "base_ci_high": base + 0.05, "delta": acc - base, "only_base_correct": 3,
            "only_edited_correct": 1, "p_mcnemar": p}


@pytest.fixture
def swaps():
    """text-a: ffn and attn, with a cross donor; net-b: ffn only, no cross donor."""
    rows = []
    for model, groups, sources in (("text-a", ("ffn", "attn"), ("pretrained", "cross", "random", "zero")),
                                   ("net-b", ("ffn",), ("pretrained", "random", "random_orthogonal", "zero"))):
        for group in groups:
            for source in sources:
                for k in (0, 1, 4, 16):
                    acc = 0.8 if k == 0 else 0.8 - 0.02 * k * (source != "pretrained")
                    rows.append({"model": model, "group": group, "source": source,
                                 "donor": {"pretrained": "pt", "cross": "text-c"}.get(source, ""), "k": k,
                                 "matrices": 4, **_stats(acc, p=1.0 if k == 0 else 0.01)})
    return pd.DataFrame(rows, columns=SWAP_COLUMNS)


@pytest.fixture
def masks():
    rows = [{"model": model, "group": group, "order": order, "fraction": f, "removed": int(f * 40), "components": 40,
             "matrices": 4, **_stats(0.8 - (0.6 * f if order == "top_down" else 0.6 * f ** 4))}
            for model, groups in (("text-a", ("ffn", "attn")), ("net-b", ("ffn",)))
            for group in groups for order in ("top_down", "bottom_up") for f in (0, 0.5, 0.9, 1)]
    return pd.DataFrame(rows, columns=MASK_COLUMNS)


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes]


def test_swap_figures_draw_a_panel_per_model_with_the_sources(swaps):
    fig = fig12(swaps)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["text-a", "net-b"]
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["unedited, 95% CI", "pretrained", "random", "zero"]  # no random_orthogonal; cross: fig13
    assert np.allclose(ax.get_xticks(), [0, 1, 4, 16])
    plt.close(fig)


def test_swap_panels_plot_the_tasks_metric(swaps):
    """A CoLA model's panel is its Matthews correlation, on a correlation's axis; the points are `score`."""
    cola = swaps.copy()
    cola.loc[cola["model"] == "net-b", ["metric", "score"]] = ["matthews", -0.3]
    fig = fig12(cola)
    text_a, net_b = [ax for ax in fig.axes if ax.get_title() in ("text-a", "net-b")]
    assert text_a.get_ylabel() == "test accuracy" and text_a.get_ylim() == (-0.02, 1.02)
    assert net_b.get_ylabel() == "test Matthews correlation" and net_b.get_ylim() == (-1.02, 1.02)
    assert any(np.allclose(line.get_ydata(), -0.3) for line in net_b.get_lines() if len(line.get_ydata()) > 1)
    plt.close(fig)


def test_swap_figures_say_what_a_model_lacks(swaps):
    attn = fig14(swaps)
    assert any("net-b: no attention matrices" in t for t in _texts(attn))
    cross = fig13(swaps)
    texts = _texts(cross)
    assert "text-a ← text-c" in texts and any("net-b: no cross donor" in t for t in texts)
    both = fig15(swaps)
    assert any("net-b: no attention matrices" in t for t in _texts(both))
    for fig in (attn, cross, both):
        plt.close(fig)


def test_intervention_figures_without_models_say_so():
    for fig in (swap_figure(pd.DataFrame(columns=SWAP_COLUMNS), "ffn"), fig17(pd.DataFrame(columns=MASK_COLUMNS))):
        assert any("nothing to plot" in t for t in _texts(fig))
        plt.close(fig)


def test_fig17_has_both_orders_and_groups_per_model(masks):
    fig = fig17(masks)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["text-a", "net-b (no attention matrices)"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"top_down", "bottom_up", "ffn", "attn"} <= set(legend)
    plt.close(fig)


def test_fig2_gains_swap_panels_d_and_e(tables, swaps):
    plain, full = fig2(tables), fig2(tables, swaps)
    titles = [ax.get_title() for ax in full.axes]
    assert [t for t in titles if t[:1] in "DE" and t[1:3] == "  "] == [
        "D  pretrained / random / zero vectors swapped in", "E  another task's finetuned vectors swapped in"]
    assert [ax.get_title() for ax in plain.axes] == titles[:len(plain.axes)]  # A-C as they were
    empty = fig2(tables, pd.DataFrame(columns=SWAP_COLUMNS))
    assert sum("no pretrained / random / zero swaps" in t for t in _texts(empty)) == 1
    for fig in (plain, full, empty):
        plt.close(fig)
