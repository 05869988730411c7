"""The score of a finetuned model on its task: GLUE's metric for a GLUE task, accuracy otherwise.

GLUE's usual validation metrics (Wang et al. 2019, Table 1; the glue metric of `datasets`/`evaluate`),
computed here with scikit-learn and scipy, nothing fetched at run time:

    cola                 Matthews correlation (main), accuracy
    stsb                 Pearson correlation (main), Spearman correlation: regression, the predicted score
    mrpc, qqp            accuracy (main), F1 of the positive class (label 1: equivalent / duplicate)
    every other task     accuracy (mnli, mnli_mismatched, qnli, rte, sst2, wnli)
    no task (None)       accuracy: the data sets that are not GLUE (rotten_tomatoes, idx, ...)

`prediction` is what the model predicts: class labels (the argmax of the logits) for classification,
the one output for regression. A correlation of a constant vector is undefined: NaN (sklearn's Matthews
correlation is 0 there, by its own convention).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from specbasis.data import GLUE_TASKS

# task -> the metrics reported, the main one first
TASK_METRICS = {"cola": ("matthews", "accuracy"), "stsb": ("pearson", "spearman"),
                "mrpc": ("accuracy", "f1"), "qqp": ("accuracy", "f1")}
DEFAULT_METRICS = ("accuracy",)


def metrics_of(task: str | None) -> tuple[str, ...]:
    """The metrics of `task` (a key of data.GLUE_TASKS, or None for a data set that is not GLUE), main first."""
    if task is not None and task not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; allowed: {', '.join(GLUE_TASKS)} (or None: accuracy)")
    return TASK_METRICS.get(task, DEFAULT_METRICS)


def metric_name(task: str | None) -> str:
    """The main metric of `task`: the one a model is selected and reported by."""
    return metrics_of(task)[0]


def _correlation(fn, y_true: np.ndarray, prediction: np.ndarray) -> float:
    if np.ptp(y_true) == 0 or np.ptp(prediction) == 0:
        return float("nan")  # undefined: scipy would warn and return NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(y_true, prediction)[0])


SCORERS = {
    "accuracy": lambda y, p: float(accuracy_score(y, p)),
    "f1": lambda y, p: float(f1_score(y, p, pos_label=1, average="binary", zero_division=0.0)),
    "matthews": lambda y, p: float(matthews_corrcoef(y, p)),
    "pearson": lambda y, p: _correlation(pearsonr, y, p),
    "spearman": lambda y, p: _correlation(spearmanr, y, p),
}


def score(task: str | None, y_true, prediction) -> dict[str, float]:
    """{metric: value} of `prediction` against `y_true` for `task`, the main metric first."""
    y_true, prediction = np.asarray(y_true), np.asarray(prediction)
    if y_true.shape != prediction.shape or y_true.ndim != 1:
        raise ValueError(f"score: y_true {y_true.shape} and prediction {prediction.shape} must be the same 1-d shape")
    if len(y_true) == 0:
        raise ValueError("score: no examples; a metric of nothing is undefined")
    return {name: SCORERS[name](y_true, prediction) for name in metrics_of(task)}
