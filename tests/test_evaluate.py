"""Evaluation and its statistics against hand-worked answers: per-example correctness of a model whose
logits are its inputs, the Wilson interval, the exact McNemar test, the paired comparison."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from specbasis.data import Part
from specbasis.evaluate import compare, evaluate, mcnemar_exact, subset, wilson_interval


class Echo(torch.nn.Module):
    """A 'classifier' whose logits are its (preprocessed) inputs: the answers are known."""

    def forward(self, x):
        return x


def as_logits(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


LOGITS = np.array([[2, 1, 0], [0, 3, 1], [1, 0, 5], [4, 0, 0], [0, 0, 1], [0, 2, 0]], np.float32)
LABELS = np.array([0, 1, 1, 0, 2, 0])  # right, right, wrong, right, right, wrong


@pytest.mark.parametrize("batch_size", [1, 4, 128])
def test_evaluate_gives_logits_correctness_and_accuracy(batch_size):
    result = evaluate(Echo(), as_logits, Part(LOGITS, LABELS), "cpu", batch_size=batch_size)
    assert result.correct.tolist() == [True, True, False, True, True, False]
    assert result.n == 6 and result.accuracy == 4 / 6
    np.testing.assert_array_equal(result.logits, LOGITS)
    assert result.index.tolist() == list(range(6))


@pytest.mark.parametrize("n_total, max_examples, expected", [
    (6, None, [0, 1, 2, 3, 4, 5]), (6, 10, [0, 1, 2, 3, 4, 5]), (6, 3, [0, 2, 5]), (10, 4, [0, 3, 6, 9]),
    (5, 1, [0]),
])
def test_subset_is_evenly_spaced_and_fixed(n_total, max_examples, expected):
    assert subset(n_total, max_examples).tolist() == expected


def test_evaluate_max_examples_takes_the_subset():
    result = evaluate(Echo(), as_logits, Part(LOGITS, LABELS), "cpu", max_examples=3)
    assert result.index.tolist() == [0, 2, 5] and result.correct.tolist() == [True, False, False]


def test_evaluate_refuses_an_empty_split():
    with pytest.raises(ValueError, match="split is empty"):
        evaluate(Echo(), as_logits, Part(np.zeros((0, 3), np.float32), np.zeros(0)), "cpu")


@pytest.mark.parametrize("k, n, level, expected", [
    # by hand: z = 1.959964, p = 0.8: center (0.8 + z²/20)/(1 + z²/10) = 0.716740,
    # half z sqrt(0.016 + z²/400)/(1 + z²/10) = 0.226578 (published: 0.4902 to 0.9433)
    (8, 10, 0.95, (0.490162, 0.943318)),
    (0, 10, 0.95, (0.0, 0.277533)),         # z²/n / (1 + z²/n)
    (10, 10, 0.95, (0.722467, 1.0)),
    (50, 100, 0.95, (0.403832, 0.596168)),
    (8, 10, 0.99, (0.400819, 0.959869)),    # z = 2.575829: center 0.680344, half 0.279525
])
def test_wilson_interval_matches_hand_computed_values(k, n, level, expected):
    np.testing.assert_allclose(wilson_interval(k, n, level), expected, atol=2e-6)


@pytest.mark.parametrize("k, n, level", [(-1, 10, 0.95), (11, 10, 0.95), (0, 0, 0.95), (5, 10, 1.0)])
def test_wilson_interval_refuses_bad_input(k, n, level):
    with pytest.raises(ValueError, match=r"wilson_interval"):
        wilson_interval(k, n, level)


def pairs(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither, bool)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither, bool)
    return a, b


@pytest.mark.parametrize("counts, p", [
    ((5, 1, 9, 3), 22 / 1024),        # 10 discordant, 1 vs 9: 2 (C(10,0) + C(10,1)) / 2^10
    ((5, 9, 1, 3), 22 / 1024),        # symmetric
    ((0, 0, 5, 0), 2 / 32),           # all 5 one way: 2 / 2^5
    ((7, 3, 3, 2), 1.0),              # balanced
    ((7, 0, 0, 2), 1.0),              # no discordant pairs
    ((0, 2, 1, 0), 1.0),              # 2 vs 1: 2 (C(3,0) + C(3,1)) / 8 = 1
])
def test_mcnemar_exact_matches_hand_worked_examples(counts, p):
    assert mcnemar_exact(*pairs(*counts)) == pytest.approx(p, rel=1e-12)


def test_mcnemar_refuses_unpaired_arrays():
    with pytest.raises(ValueError, match=r"shapes \(3,\) and \(4,\)"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))


def test_compare_a_point_with_the_unedited_model():
    base = evaluate(Echo(), as_logits, Part(LOGITS, LABELS), "cpu")
    flipped = LOGITS.copy()
    flipped[2] = [0, 9, 0]   # now right
    flipped[0] = [0, 0, 9]   # now wrong
    flipped[1] = [0, 0, 9]   # now wrong
    point = evaluate(Echo(), as_logits, Part(flipped, LABELS), "cpu")
    row = compare(base, point)
    assert row["accuracy"] == 3 / 6 and row["base_accuracy"] == 4 / 6 and row["delta"] == pytest.approx(-1 / 6)
    assert (row["only_base_correct"], row["only_edited_correct"]) == (2, 1)
    assert row["p_mcnemar"] == pytest.approx(1.0)
    assert (row["ci_low"], row["ci_high"]) == wilson_interval(3, 6)
    assert compare(base, base)["p_mcnemar"] == 1.0
    with pytest.raises(ValueError, match="different examples"):
        compare(base, evaluate(Echo(), as_logits, Part(LOGITS, LABELS), "cpu", max_examples=3))


@pytest.mark.parametrize("n", [1, 7, 48, 400])
def test_wilson_interval_contains_the_estimate_at_the_ends(n):
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0
    for k in range(n + 1):
        lo, hi = wilson_interval(k, n)
        assert lo <= k / n <= hi
