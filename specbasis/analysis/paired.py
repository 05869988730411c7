"""Paired comparisons of two finetuning methods run on the same seeds and scored on the same test examples.

Two tests, both on the per-example predictions each run saves (test_predictions.csv beside its metrics.json):

    bootstrap   the difference of the task's metric (method a − method b, mean over seeds), its 95% interval and
                a two-sided p value, from B replicates that each draw the test examples with replacement (the same
                draw for both methods and every seed: the pairing by example) and the seeds with replacement (the
                same seeds for both methods: the pairing by seed). The interval is the replicates' percentiles; p
                is twice the smaller tail of the replicates at 0, (1 + count) / (1 + B), capped at 1. Any metric
                of specbasis.glue_metrics (accuracy, Matthews and Pearson vectorised over the replicates:
                `replicate_scores`; F1 and Spearman recomputed per replicate).
    McNemar     exact, on correctness pooled over the seeds (classification): n01 = pairs (example, seed) that a
                gets right and b wrong, n10 the reverse; p = the two-sided binomial test of n01 against
                n01 + n10 at 1/2 (specbasis.evaluate.mcnemar_exact, the interventions' test). It ignores that
                the seeds share examples.

One model's metric gets an interval by `interval`: Wilson's for accuracy (closed form), the bootstrap's
percentiles otherwise (specbasis.interventions.sweep scores its points with both).

Unit-tested against cases with known answers (tests/analysis/test_paired.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specbasis import glue_metrics
from specbasis.evaluate import mcnemar_exact, wilson_interval

N_BOOTSTRAP = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Paired:
    """a − b: the difference of the means over seeds, its interval and p values."""

    difference: float
    low: float
    high: float
    p_bootstrap: float
    p_mcnemar: float | None   # None for a metric of a regression task (no correctness)
    a_only: int | None        # McNemar's discordant counts, pooled over seeds: a right and b wrong
    b_only: int | None        # b right and a wrong
    seeds: int
    examples: int
    replicates: int


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, int, int]:
    """(p, n01, n10) of the exact two-sided McNemar test (specbasis.evaluate.mcnemar_exact) on paired correctness of
    any shape, pooled."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"mcnemar: {a.shape} and {b.shape} correctness values do not pair up")
    a, b = a.ravel(), b.ravel()
    return mcnemar_exact(a, b), int((a & ~b).sum()), int((~a & b).sum())


def paired_bootstrap(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, metric: str = "accuracy", *,
                     replicates: int = N_BOOTSTRAP, seed: int = 0, level: float = LEVEL) -> Paired:
    """Method a against method b: y (n,) the test targets; pred_a, pred_b (seeds, n) the predictions of each
    method's runs, seed by seed in the same order. Returns the difference in the metric's own units."""
    y = np.asarray(y)
    pred_a, pred_b = np.atleast_2d(pred_a), np.atleast_2d(pred_b)
    if pred_a.shape != pred_b.shape or pred_a.shape[1] != len(y):
        raise ValueError(f"paired_bootstrap: predictions {pred_a.shape} and {pred_b.shape} do not pair up over "
                         f"{len(y)} examples")
    seeds, n = pred_a.shape
    if n == 0:
        raise ValueError("paired_bootstrap: no examples")
    scorer = glue_metrics.SCORERS[metric]
    rng = np.random.default_rng(seed)
    draw_seeds = rng.integers(0, seeds, size=(replicates, seeds))
    draw_examples = rng.integers(0, n, size=(replicates, n))
    if metric == "accuracy":
        diff = (pred_a == y).astype(np.float64) - (pred_b == y).astype(np.float64)   # (seeds, n)
        observed = float(diff.mean())
        per_seed = np.stack([diff[s][draw_examples].mean(axis=1) for s in range(seeds)], axis=1)  # (B, seeds)
    else:
        observed = float(np.mean([scorer(y, pred_a[s]) - scorer(y, pred_b[s]) for s in range(seeds)]))
        per_seed = np.stack([replicate_scores(metric, y, pred_a[s], draw_examples)
                             - replicate_scores(metric, y, pred_b[s], draw_examples) for s in range(seeds)], axis=1)
    stats = np.take_along_axis(per_seed, draw_seeds, axis=1).mean(axis=1)   # (B,) seeds drawn per replicate
    stats = stats[np.isfinite(stats)]  # a replicate where a correlation is undefined
    tail = (1 - level) / 2
    low, high = (float(q) for q in np.quantile(stats, [tail, 1 - tail]))
    p = min(1.0, 2 * (1 + min(int((stats <= 0).sum()), int((stats >= 0).sum()))) / (1 + len(stats)))
    if np.all(stats == 0):
        p = 1.0
    if metric in ("pearson", "spearman"):
        p_mc, a_only, b_only = None, None, None
    else:
        p_mc, a_only, b_only = mcnemar(pred_a == y, pred_b == y)
    return Paired(observed, low, high, p, p_mc, a_only, b_only, seeds, n, len(stats))


def replicate_scores(metric: str, y: np.ndarray, pred: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(B,) the metric of `pred` against `y` on each row of `draws` (B, n): example positions drawn with replacement.
    Accuracy, Matthews and Pearson vectorised (one pass over the draws); the others through glue_metrics' scorer.
    An undefined value (a constant vector under a correlation) is NaN, as glue_metrics'; Matthews is 0 there."""
    y, pred, draws = np.asarray(y), np.asarray(pred), np.asarray(draws)
    if metric == "accuracy":
        return (pred == y)[draws].mean(axis=1)
    if metric == "matthews":
        classes = np.unique(np.concatenate([y, pred]))
        k = len(classes)
        code = np.searchsorted(classes, y) * k + np.searchsorted(classes, pred)        # (n,) cell of the confusion
        rows = np.arange(len(draws))[:, None] * (k * k)
        conf = np.bincount((rows + code[draws]).ravel(), minlength=len(draws) * k * k).reshape(-1, k, k).astype(float)
        total = conf.sum(axis=(1, 2))
        correct = np.trace(conf, axis1=1, axis2=2)
        true, predicted = conf.sum(axis=2), conf.sum(axis=1)                          # (B, k) per class
        cov = correct * total - (true * predicted).sum(axis=1)
        denom = np.sqrt((total ** 2 - (predicted ** 2).sum(axis=1)) * (total ** 2 - (true ** 2).sum(axis=1)))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)     # sklearn's 0 where undefined
    if metric == "pearson":
        a, b = y.astype(np.float64)[draws], pred.astype(np.float64)[draws]            # (B, n)
        a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
        denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, (a * b).sum(axis=1) / np.where(denom > 0, denom, 1.0), np.nan)
    scorer = glue_metrics.SCORERS[metric]
    return np.array([scorer(y[idx], pred[idx]) for idx in draws])


def interval(y: np.ndarray, pred: np.ndarray, metric: str = "accuracy", *, replicates: int = N_BOOTSTRAP,
             seed: int = 0, level: float = LEVEL) -> tuple[float, float]:
    """A `level` interval of one model's metric on these examples: Wilson's for accuracy (a proportion: closed
    form, specbasis.evaluate.wilson_interval), else the percentiles of `replicates` bootstrap draws of the examples
    (the replicates where the metric is undefined left out; (nan, nan) if all are)."""
    y, pred = np.asarray(y), np.asarray(pred)
    if y.shape != pred.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError(f"interval: targets {y.shape} and predictions {pred.shape} must be the same non-empty 1-d shape")
    if metric == "accuracy":
        return wilson_interval(int((pred == y).sum()), len(y), level)
    draws = np.random.default_rng(seed).integers(0, len(y), size=(replicates, len(y)))
    values = replicate_scores(metric, y, pred, draws)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)

