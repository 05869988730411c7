import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from fake_metrics import fake_metrics
from scipy.stats import spearmanr

from specbasis.figures.generalization import fig18
from specbasis.analysis.generalization import (COLUMNS, accuracies, bh_adjust, correlation_tests, min_attainable_p,
                                      relative_depth, similarity_by_layer, spearman_test)


def alignment(pair, n_layers, cos, max_rank=200, stack=None):
    """A tidy alignment table: FFN and attention matrices of n_layers layers, cos = cos(layer, side, rank)."""
    rows = []
    for layer in range(n_layers):
        label = f"{stack}.{layer:02d}" if stack else layer
        for kind in ("ffn_in", "ffn_out", "attn_q"):
            for side in ("u", "v"):
                for rank in range(1, max_rank + 1):
                    rows.append((pair, label, kind, side, rank, cos(layer, side, rank) if kind != "attn_q" else 0.0))
    return pd.DataFrame(rows, columns=["pair", "layer", "kind", "side", "rank", "cos"])


def suite(similarities, n_layers=6):
    """One pair per similarity value, the same |cos| everywhere in the pair."""
    return pd.concat([alignment(f"p{i}", n_layers, lambda *_, c=c: c, max_rank=60)
                      for i, c in enumerate(similarities)], ignore_index=True)


def test_bh_matches_a_hand_worked_example_and_skips_nan():
    # p = 0.01, 0.04, 0.03, 0.005 (m = 4 tests made; the NaN is a test not made and not counted).
    # Sorted: 0.005 (k=1), 0.01 (k=2), 0.03 (k=3), 0.04 (k=4); p * m / k = 0.02, 0.02, 0.04, 0.04;
    # running minimum from the largest k down leaves them as they are: q = 0.02, 0.02, 0.04, 0.04.
    # Back in input order: 0.01 -> 0.02, 0.04 -> 0.04, 0.03 -> 0.04, 0.005 -> 0.02.
    q = bh_adjust([0.01, np.nan, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(q, [0.02, np.nan, 0.04, 0.04, 0.02])


@pytest.mark.parametrize("y, rho", [([0.1, 0.2, 0.3, 0.4], 1.0), ([0.4, 0.3, 0.2, 0.1], -1.0)])
def test_exact_p_of_four_monotone_pairs_is_two_in_twenty_four(y, rho):
    # Of the 4! = 24 orderings of y, only the identity gives rho = +1 and only the reversal rho = -1:
    # two-sided p = 2 * (1/24) = 0.0833 > 0.05.
    r, p, note = spearman_test(np.array([1.0, 2.0, 3.0, 4.0]), np.array(y))
    assert r == pytest.approx(rho) and p == pytest.approx(2 / 24) and "exact" in note


@pytest.mark.parametrize("n", [3, 4, 5, 6, 8])
def test_min_attainable_p_is_two_over_n_factorial(n):
    assert min_attainable_p(n) == pytest.approx(2 / math.factorial(n))


def test_exact_p_matches_brute_force_enumeration():
    rng = np.random.default_rng(1)
    x, y = rng.random(6), rng.random(6)
    rho = spearmanr(x, y).statistic
    null = [spearmanr(x, y[list(order)]).statistic for order in itertools.permutations(range(6))]
    p = 2 * min(np.mean(np.array(null) >= rho - 1e-12), np.mean(np.array(null) <= rho + 1e-12))
    assert spearman_test(x, y)[:2] == pytest.approx((rho, min(p, 1.0)))


@pytest.mark.parametrize("x, y, reason", [
    ([0.5, 0.6], [0.7, 0.8], "2 pairs < 3"),
    ([0.5, 0.5, 0.5], [0.7, 0.8, 0.9], "mean |cos| is the same"),
    ([0.5, 0.6, 0.7], [0.8, 0.8, 0.8], "accuracy is the same"),
])
def test_untestable_cells_give_nan_and_say_why(x, y, reason):
    rho, p, note = spearman_test(np.array(x), np.array(y))
    assert np.isnan(rho) and np.isnan(p) and reason in note


def test_metrics_json_gives_test_accuracy(tmp_path):
    for model, acc in (("m-rt", 0.8), ("m-party", 0.6)):
        (tmp_path / model).mkdir()
        fake_metrics(test_accuracy=acc).write(tmp_path / model)
    paths = [tmp_path / "m-rt" / "metrics.json", str(tmp_path / "m-party" / "metrics.json")]
    assert accuracies({"rt": "m-rt", "party": "m-party"}, paths, {"m-rt": None, "m-party": 0.1}) == {
        "rt": 0.8, "party": 0.6}  # measured wins over configured


def test_config_accuracy_serves_hub_models():
    assert accuracies({"bert": "bert-mnli"}, [], {"bert-mnli": 0.84}) == {"bert": 0.84}


@pytest.mark.parametrize("config", [{"bert-mnli": None}, {}])
def test_missing_accuracy_names_the_pair_and_where_it_comes_from(config):
    with pytest.raises(ValueError, match=r"pair bert: .*bert-mnli.*metrics\.json.*accuracy"):
        accuracies({"bert": "bert-mnli"}, [], config)


def test_relative_depth_puts_models_of_different_depth_into_comparable_thirds():
    table = pd.concat([alignment("six", 6, lambda *_: 0.5, max_rank=1),
                       alignment("sixteen", 16, lambda *_: 0.5, max_rank=1),
                       alignment("albert", 1, lambda *_: 0.5, max_rank=1)])
    similarity = similarity_by_layer(table)
    assert set(similarity["depth"]) == {"early", "middle", "late"}
    # block centres (i + 0.5)/n: 6 layers -> 2 per third; 16 layers -> 5, 6, 5; one layer -> middle
    six = relative_depth(pd.Series(range(6)))
    assert pd.cut(six, [0, 1 / 3, 2 / 3, 1], right=False).value_counts().tolist() == [2, 2, 2]
    sixteen = relative_depth(pd.Series(range(16)))
    assert pd.cut(sixteen, [0, 1 / 3, 2 / 3, 1], right=False).value_counts(sort=False).tolist() == [5, 6, 5]
    assert similarity.loc[similarity["pair"] == "albert", "depth"].tolist() == ["middle"]


def test_encoder_comes_before_decoder_in_depth():
    layers = pd.Series(["dec.00", "dec.01", "enc.00", "enc.01"])
    assert relative_depth(layers).tolist() == [0.625, 0.875, 0.125, 0.375]


def test_similarity_averages_ffn_sides_and_ranks_per_range():
    # u = 1, v = 0 in layer 0 only: mean 0.5 there; attention matrices (cos 0) are left out
    table = alignment("p", 3, lambda layer, side, rank: float(side == "u") if layer == 0 else 0.9)
    similarity = similarity_by_layer(table, rank_edges=(10, 50))
    assert similarity["ranks"].cat.categories.tolist() == ["1-10", "11-50"]  # ranks above 50 unused
    by_depth = similarity.groupby("depth", observed=True)["mean_cos"].mean()
    assert by_depth.to_dict() == pytest.approx({"early": 0.5, "middle": 0.9, "late": 0.9})


def test_tests_table_has_its_columns_and_excludes_untested_cells_from_fdr():
    table = pd.concat([suite([0.2, 0.4, 0.6, 0.8]),
                       alignment("short", 6, lambda *_: 0.3, max_rank=10)])  # in ranks 1-10 only, monotone
    acc = {"p0": 0.5, "p1": 0.6, "p2": 0.7, "p3": 0.9, "short": 0.55}
    tests = correlation_tests(similarity_by_layer(table, rank_edges=(10, 50)), acc)
    assert tests.columns.tolist() == COLUMNS
    assert set(tests["n_pairs"]) == {5, 4}
    # ranks 1-10: 5 monotone pairs, p = 2/5! = 1/60; ranks 11-50: 4, p = 2/4! = 1/12; three depths each.
    # BH over m = 6: 1/60 * 6/3 = 1/30 for the three smallest, 1/12 * 6/6 = 1/12 for the rest.
    five, four = tests[tests["n_pairs"] == 5], tests[tests["n_pairs"] == 4]
    assert (five["ranks"] == "1-10").all() and five["p"].tolist() == pytest.approx([1 / 60] * 3)
    assert four["rho"].tolist() == pytest.approx([1.0] * 3) and four["p"].tolist() == pytest.approx([1 / 12] * 3)
    assert five["q"].tolist() == pytest.approx([1 / 30] * 3) and five["significant"].all()
    assert four["q"].tolist() == pytest.approx([1 / 12] * 3) and not four["significant"].any()
    two = correlation_tests(similarity_by_layer(suite([0.2, 0.4])), {"p0": 0.5, "p1": 0.6})
    assert two["q"].isna().all() and not two["significant"].any() and (two["note"] == "not tested: 2 pairs < 3").all()


def texts(fig):
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_fig18_says_no_test_survives_when_none_does():
    table = suite([0.2, 0.4, 0.6, 0.8])
    acc = {"p0": 0.5, "p1": 0.6, "p2": 0.7, "p3": 0.9}
    similarity = similarity_by_layer(table)
    fig = fig18(correlation_tests(similarity, acc), similarity, acc, alpha=0.05)
    words = texts(fig)
    assert "no test survives" in words and "4 pairs" in words and "0.0833" in words
    assert "no test can be significant" in words
    assert not any(p.get_linewidth() == 2.5 for p in fig.axes[0].patches)  # nothing outlined


def test_fig18_outlines_and_counts_significant_tests():
    similarities = np.linspace(0.2, 0.9, 8)
    acc = {f"p{i}": 0.5 + 0.05 * i for i in range(8)}
    similarity = similarity_by_layer(suite(similarities))
    tests = correlation_tests(similarity, acc)
    assert tests["significant"].all()
    fig = fig18(tests, similarity, acc, alpha=0.05)
    assert f"{len(tests)} significant" in texts(fig)
    assert sum(p.get_linewidth() == 2.5 for p in fig.axes[0].patches) == len(tests)
