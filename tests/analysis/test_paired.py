"""specbasis.analysis.paired against cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from specbasis import glue_metrics
from specbasis.analysis import paired
from specbasis.analysis.paired import mcnemar, paired_bootstrap
from specbasis.evaluate import wilson_interval


def test_mcnemar_counts_only_the_discordant_pairs():
    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1], bool)
    b = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], bool)
    p, n01, n10 = mcnemar(a, b)
    assert (n01, n10) == (10, 0) and p == pytest.approx(2 * 0.5 ** 10)   # exact: 0.00195
    assert mcnemar(b, a)[0] == pytest.approx(p)
    p, n01, n10 = mcnemar([1, 0, 1, 0], [0, 1, 0, 1])
    assert (n01, n10) == (2, 2) and p == 1.0
    assert mcnemar([1, 1, 0], [1, 1, 0]) == (1.0, 0, 0)
    # pooled over seeds: a (2, n) grid is its 2n pairs
    a2, b2 = np.tile(a, (2, 1)), np.tile(b, (2, 1))
    assert mcnemar(a2, b2) == (pytest.approx(binomtest(20, 20, 0.5).pvalue), 20, 0)


def test_identical_methods_differ_by_exactly_nothing():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    pred = rng.integers(0, 2, (3, 500))
    r = paired_bootstrap(y, pred, pred.copy(), replicates=500)
    assert r.difference == 0 and r.low == 0 and r.high == 0 and r.p_bootstrap == 1.0 and r.p_mcnemar == 1.0
    assert (r.seeds, r.examples, r.replicates) == (3, 500, 500)


def test_the_interval_is_the_binomial_one_for_one_seed():
    """One seed, a right and b wrong on a fraction q of the examples, equal elsewhere: the difference is q and its
    standard error sqrt(q (1 - q) / n); the 95% percentile interval is q ± 1.96 se within a few percent."""
    n, q = 4000, 0.1
    y = np.zeros(n, int)
    a = np.zeros((1, n), int)
    b = np.zeros((1, n), int)
    b[0, : int(q * n)] = 1   # b wrong where a is right
    r = paired_bootstrap(y, a, b, replicates=4000, seed=1)
    se = np.sqrt(q * (1 - q) / n)
    assert r.difference == pytest.approx(q)
    assert r.low == pytest.approx(q - 1.96 * se, abs=0.1 * 1.96 * se)
    assert r.high == pytest.approx(q + 1.96 * se, abs=0.1 * 1.96 * se)
    assert r.p_bootstrap == pytest.approx(2 / 4001)   # no replicate at or below 0: the smallest p B allows
    assert r.p_mcnemar < 1e-100 and (r.a_only, r.b_only) == (400, 0)


def test_seeds_that_disagree_widen_the_interval():
    """The same examples, seeds that move the difference by ±5 points: drawing the seeds adds their spread."""
    n = 2000
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, n)
    b = np.where(rng.random((3, n)) < 0.8, y, 1 - y)     # 80% right
    a = b.copy()
    for s, k in enumerate((0, 100, 200)):               # a gains 0, 5 and 10 points over b seed by seed
        wrong = np.flatnonzero(b[s] != y)[:k]
        a[s, wrong] = y[wrong]
    one = paired_bootstrap(y, a[1:2], b[1:2], replicates=2000)
    three = paired_bootstrap(y, a, b, replicates=2000)
    assert three.difference == pytest.approx(0.05) and one.difference == pytest.approx(0.05)
    assert (three.high - three.low) > 2 * (one.high - one.low)
    assert three.low < 0.03 and three.high > 0.07


def test_other_metrics_are_recomputed_per_replicate():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 400)
    a = np.where(rng.random((2, 400)) < 0.9, y, 1 - y)
    b = np.where(rng.random((2, 400)) < 0.6, y, 1 - y)
    r = paired_bootstrap(y, a, b, "matthews", replicates=300)
    from sklearn.metrics import matthews_corrcoef

    expected = np.mean([matthews_corrcoef(y, a[s]) - matthews_corrcoef(y, b[s]) for s in range(2)])
    assert r.difference == pytest.approx(expected) and r.low < r.difference < r.high and r.low > 0
    # regression: Pearson, no McNemar
    t = rng.normal(size=300)
    r = paired_bootstrap(t, t + rng.normal(scale=0.3, size=(2, 300)), t + rng.normal(scale=1.0, size=(2, 300)),
                         "pearson", replicates=300)
    assert r.difference > 0 and r.low > 0 and r.p_mcnemar is None and r.a_only is None


def test_predictions_that_do_not_pair_up_are_refused():
    with pytest.raises(ValueError, match="do not pair up"):
        paired_bootstrap(np.zeros(5), np.zeros((2, 5)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="do not pair up"):
        mcnemar(np.zeros(4), np.zeros(5))


@pytest.mark.parametrize("metric, classes", [("matthews", 2), ("matthews", 3), ("pearson", None), ("accuracy", 3),
                                             ("f1", 2), ("spearman", None)])
@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn's, on the constant draw
def test_replicate_scores_are_the_metric_of_each_draw(metric, classes):
    rng = np.random.default_rng(3)
    n = 40
    if classes is None:
        y, pred = rng.normal(size=n), rng.normal(size=n)
        pred = pred + y
    else:
        y = rng.integers(0, classes, n)
        pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, classes, n))
    draws = rng.integers(0, n, size=(50, n))
    draws[0] = 0  # one draw of a single example repeated: a constant vector (Matthews 0, correlations NaN)
    got = paired.replicate_scores(metric, y, pred, draws)
    want = np.array([glue_metrics.SCORERS[metric](y[d], pred[d]) for d in draws])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_the_interval_is_wilsons_for_accuracy_and_a_bootstrap_for_the_others():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    pred = np.where(rng.random(300) < 0.8, y, 1 - y)
    assert paired.interval(y, pred, "accuracy") == wilson_interval(int((y == pred).sum()), 300)
    lo, hi = paired.interval(y, pred, "matthews")
    mcc = glue_metrics.SCORERS["matthews"](y, pred)
    assert lo < mcc < hi and 0.05 < hi - lo < 0.3  # about ±2 standard errors of a Matthews of 0.6 on 300 examples
    assert paired.interval(y, y, "matthews") == (1.0, 1.0)  # every draw is perfect
    const = np.zeros(300)
    assert all(np.isnan(paired.interval(const, rng.normal(size=300), "pearson")))  # undefined in every draw
