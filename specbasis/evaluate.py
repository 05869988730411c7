"""Evaluation of a (maybe edited) classifier on its task's held-out test split, with the statistics
every intervention point reports: a 95% interval for its accuracy and a paired test against the
unedited model.

    accuracy interval   Wilson score interval (better than the normal one near 0 and 1 and for small n)
    paired test         exact McNemar: on the examples that exactly one of the two models gets right,
                        a two-sided binomial test of "each is as likely to be the one" (p = 0.5);
                        p = 1 when there are no such examples. Both models must see the same examples
                        in the same order: keep the `index` of the Evaluation.

`max_examples` takes an evenly spaced subset of the split (positions round(linspace(0, N-1, n))),
the same every call and spread over the whole split, so subsets of every point stay paired.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from specbasis import glue_metrics
from specbasis.data import Part, Splits
from specbasis.models import logits_of


def to_device(inputs, device):
    if isinstance(inputs, dict):
        return {k: v.to(device) for k, v in inputs.items()}
    return inputs.to(device)


def select(x, idx):
    return [x[i] for i in idx] if isinstance(x, list) else x[idx]


@torch.inference_mode()
def predict_logits(model, preprocess, x, device, batch_size: int = 128) -> torch.Tensor:
    """(N, C) logits in eval mode. Texts are batched by length (less padding), then put back in order."""
    model.eval()
    n = len(x)
    order = np.argsort([len(t) for t in x], kind="stable") if isinstance(x, list) else np.arange(n)
    out = torch.empty(n, dtype=torch.float32) if n else torch.zeros(0)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        logits = logits_of(model, to_device(preprocess(select(x, idx)), device)).float().cpu()
        if start == 0:
            out = torch.empty(n, logits.shape[1])
        out[torch.as_tensor(idx)] = logits
    return out


def accuracy(model, preprocess, part: Part, device, batch_size: int = 128) -> float:
    logits = predict_logits(model, preprocess, part.x, device, batch_size)
    return float((logits.argmax(1).numpy() == part.y).mean())


def predictions(logits: torch.Tensor, task_type: str) -> np.ndarray:
    """(N,) what the model predicts from its (N, C) logits: the argmax class, or the one output (regression)."""
    if task_type == "regression":
        assert logits.shape[1] == 1, f"a regression head has one output, these logits have {logits.shape[1]}"
        return logits[:, 0].numpy().astype(np.float64)
    return logits.argmax(1).numpy()


def scores(model, preprocess, splits: Splits, part: Part, device, batch_size: int = 128) -> dict[str, float]:
    """The task's metrics (glue_metrics.score) of the model on `part`, the main one first."""
    logits = predict_logits(model, preprocess, part.x, device, batch_size)
    return glue_metrics.score(splits.task, part.y, predictions(logits, splits.task_type))



@dataclass(frozen=True)
class Evaluation:
    index: np.ndarray    # (n,) positions in the split of the examples evaluated
    logits: np.ndarray   # (n, C) float32
    correct: np.ndarray | None  # (n,) bool: argmax of the logits is the label; None for a regression task
    labels: np.ndarray | None = None      # (n,) the targets (class labels, or scores for regression)
    prediction: np.ndarray | None = None  # (n,) what the model predicts (`predictions` of the logits)
    task: str | None = None               # the GLUE task, which picks the metric (glue_metrics); None: accuracy

    @property
    def n(self) -> int:
        return len(self.index)

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if self.correct is not None and self.n else float("nan")

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """The accuracy's Wilson interval ((nan, nan) for a regression task, which has no accuracy)."""
        if self.correct is None:
            return float("nan"), float("nan")
        return wilson_interval(int(self.correct.sum()), self.n, level)

    @property
    def metric(self) -> str:
        """The task's main metric (glue_metrics.metric_name): accuracy, or GLUE's (CoLA Matthews, STS-B Pearson)."""
        return glue_metrics.metric_name(self.task)

    @property
    def score(self) -> float:
        """The task's main metric on these examples."""
        if self.labels is None:  # made without the targets: only the accuracy is known
            if self.metric != "accuracy":
                raise ValueError(f"an Evaluation without labels has no {self.metric}")
            return self.accuracy
        return glue_metrics.score(self.task, self.labels, self.prediction)[self.metric]


def subset(n_total: int, max_examples: int | None) -> np.ndarray:
    """Positions of at most max_examples examples of a split of n_total, evenly spaced; all if None."""
    if max_examples is None or max_examples >= n_total:
        return np.arange(n_total)
    if max_examples < 1:
        raise ValueError(f"max_examples={max_examples}: must be at least 1 (or None for the whole split)")
    return np.unique(np.round(np.linspace(0, n_total - 1, max_examples)).astype(np.int64))


def evaluate(model: torch.nn.Module, preprocess, part: Part, device, batch_size: int = 128,
             max_examples: int | None = None, task: str | None = None,
             task_type: str = "classification") -> Evaluation:
    """Logits, predictions and (classification) per-example correctness of the model as it is now (edited or
    not), in eval mode, with what its task's metric needs (task: the GLUE task or None; task_type: the split's).

    The model must already be on `device`; inputs are moved there batch by batch (predict_logits)."""
    if len(part) == 0:
        raise ValueError("evaluate: the split is empty; an accuracy of nothing is undefined")
    index = subset(len(part), max_examples)
    chosen = part.take(index) if len(index) < len(part) else part
    logits = predict_logits(model, preprocess, chosen.x, torch.device(device), batch_size)  # (n, C)
    prediction = predictions(logits, task_type)
    correct = None if task_type == "regression" else prediction == chosen.y
    return Evaluation(index, logits.numpy(), correct, np.asarray(chosen.y), prediction, task)


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n: center (p + z²/2n)/(1 + z²/n), half-width
    z sqrt(p(1-p)/n + z²/4n²)/(1 + z²/n), z the two-sided normal quantile of `level`."""
    if not (0 <= k <= n) or n < 1:
        raise ValueError(f"wilson_interval: need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0 < level < 1:
        raise ValueError(f"wilson_interval: level {level} must be in (0, 1)")
    z = stats.norm.ppf(0.5 + level / 2)
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 (k = n) the bound is 0 (1) exactly; round-off would leave it an ulp off, outside p
    lo = 0.0 if k == 0 else max(0.0, float(center - half))
    hi = 1.0 if k == n else min(1.0, float(center + half))
    return lo, hi


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value of two models' per-example correctness on the same examples."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"mcnemar_exact: correctness arrays of shapes {a.shape} and {b.shape}; they must be "
                         f"1-D, one entry per example, the same examples in the same order")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue)


def compare(base: Evaluation, edited: Evaluation, level: float = 0.95) -> dict:
    """One point of a sweep against the unedited model: accuracy, its interval, the paired test (NaN for a
    regression task: specbasis.interventions.sweep adds the task's own metric)."""
    if not np.array_equal(base.index, edited.index):
        raise ValueError(f"compare: the evaluations are of different examples ({base.n} vs {edited.n}); "
                         f"evaluate both with the same split and max_examples")
    lo, hi = edited.interval(level)
    if base.correct is None or edited.correct is None:
        nan = float("nan")
        return {"n": edited.n, "accuracy": nan, "ci_low": nan, "ci_high": nan, "base_accuracy": nan, "delta": nan,
                "only_base_correct": nan, "only_edited_correct": nan, "p_mcnemar": nan}
    return {"n": edited.n, "accuracy": edited.accuracy, "ci_low": lo, "ci_high": hi,
            "base_accuracy": base.accuracy, "delta": edited.accuracy - base.accuracy,
            "only_base_correct": int((base.correct & ~edited.correct).sum()),
            "only_edited_correct": int((~base.correct & edited.correct).sum()),
            "p_mcnemar": mcnemar_exact(base.correct, edited.correct)}
