"""Alignment figures render from small synthetic tables, including the cases with nothing to plot."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from specbasis.alignment import COLUMNS, random_cos
from specbasis.figures.alignment import fig2, fig8, fig_attention, measures_long, top_k_summary


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
