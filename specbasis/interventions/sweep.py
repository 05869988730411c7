"""Intervention sweeps: one finetuned model, loaded once, evaluated unedited, then at every point of a
grid, each point an in-place edit of its weights (specbasis.interventions.writeback) that is undone after it.

    swap  group x source x k        the top-k singular pairs of every matrix of the group replaced
                                    (specbasis.interventions.edits: pretrained, cross, random,
                                    random_orthogonal, zero), σ kept
    mask  group x order x fraction  a fraction of every matrix's components removed, top-down or
                                    bottom-up

Every point is compared with the unedited model on the same examples, by its task's own metric
(specbasis.glue_metrics: CoLA Matthews, STS-B Pearson, accuracy otherwise; `metric_statistics`):
`score` with its 95% interval (Wilson's for accuracy, else a bootstrap over the examples), `delta_score`
against the unedited model with its paired-bootstrap 95% interval (the same example draws for both), and
`p_score` (exact McNemar for accuracy, else the paired bootstrap's two-sided p); and, for classification,
by accuracy as well (specbasis.evaluate.compare: Wilson interval, Δ accuracy, exact McNemar; NaN for a
regression task, which has no accuracy). A point whose corrections are
all of rank 0 (k = 0, fraction 0) leaves W̃ exactly as it is, so its evaluation IS the unedited one:
it is not run again.

Which k: a group's grid is the requested k's up to the smallest rank min(m, n) among its matrices
(`usable_ks`), so every matrix of the group gets the same k; the k's left out are logged. Anything
else that cannot be done (a donor of another shape or lacking a matrix, a store holding too few
vectors, a group without matrices) is an error raised while planning, before any evaluation, naming
the model, the matrix and the value (`swap_points` and `mask_points` build the largest edit of each
line once to run every check of specbasis.interventions.edits).

Everything here takes the loaded objects (a LiveMatrices, SVDs, an `evaluate_now` callable), so the
tests drive it with tiny models; `load_subject` is what the workflow scripts call to load a
finetuned model and its test split as the finetune saw them.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from specbasis.analysis.paired import N_BOOTSTRAP, interval, paired_bootstrap
from specbasis.evaluate import Evaluation, compare
from specbasis.interventions.edits import (DONOR_HOWS, HOWS, ORDERS, LowRank, edit_group, group_ids, mask_count,
                                     mask_group)
from specbasis.svd import SVD
from specbasis.interventions.writeback import LiveMatrices
from specbasis.io.metrics import FILE as METRICS_FILE, FinetuneMetrics

log = logging.getLogger(__name__)

STATS = ["n", "metric", "score", "score_ci_low", "score_ci_high", "base_score", "base_score_ci_low",
         "base_score_ci_high", "delta_score", "delta_ci_low", "delta_ci_high", "p_score",
         "accuracy", "ci_low", "ci_high", "base_accuracy", "base_ci_low", "base_ci_high", "delta",
         "only_base_correct", "only_edited_correct", "p_mcnemar"]
SWAP_COLUMNS = ["model", "group", "source", "donor", "k", "matrices", *STATS]
MASK_COLUMNS = ["model", "group", "order", "fraction", "removed", "components", "matrices", *STATS]
STORE_RTOL = 1e-3  # |W_live - U S Vh| / |W_live|: a float32 store of this very model is ~1e-6


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its labels (the CSV columns before the statistics) and its edit."""

    labels: dict
    corrections: Callable[[], dict[str, LowRank]]  # id -> Δ, built when the point is run


# ----------------------------------------------------------------------------------- planning

def model_groups(ids: Iterable[str], groups: Sequence[str], model: str = "?") -> dict[str, list[str]]:
    """group -> its matrix ids; a group without matrices is an error naming the model and the group."""
    ids = list(ids)
    return {group: group_ids(ids, group, model) for group in groups}


def rank_limit(svds: Mapping[str, SVD], ids: Iterable[str]) -> int:
    """The smallest rank min(m, n) among the matrices `ids`."""
    return min(min(svds[i].U.shape[0], svds[i].Vh.shape[1]) for i in ids)


def usable_ks(ks: Iterable[int], limit: int) -> tuple[list[int], list[int]]:
    """(the k's <= limit, sorted; the k's left out)."""
    ks = sorted(set(int(k) for k in ks))
    return [k for k in ks if k <= limit], [k for k in ks if k > limit]


def check_store(live: LiveMatrices, svds: Mapping[str, SVD], ids: Iterable[str], model: str = "?") -> None:
    """The SVD store must be that of the live model's matrices: same shapes, U S Vh reconstructing them."""
    for key in ids:
        if key not in svds:
            raise KeyError(f"model {model}: its SVD store has no matrix {key!r}; it holds {len(svds)} "
                           f"(e.g. {', '.join(sorted(svds)[:4])}): the store is not this model's")
        W = live.original(key).double().cpu().numpy()           # (m, n)
        svd = svds[key]
        m, n = svd.U.shape[0], svd.Vh.shape[1]
        if W.shape != (m, n):
            raise ValueError(f"matrix {key} of {model}: the model holds a {W.shape} matrix, its SVD store a "
                             f"({m}, {n}) one: the store is not this model's")
        K = svd.U.shape[1]
        rec = (svd.U.astype(np.float64) * svd.S[:K]) @ svd.Vh.astype(np.float64)
        err = np.linalg.norm(W - rec) / max(np.linalg.norm(W), np.finfo(float).tiny)
        if K == min(m, n) and not err <= STORE_RTOL:
            raise ValueError(f"matrix {key} of {model}: its SVD store reconstructs the model's matrix only to a "
                             f"relative error of {err:.2g} (> {STORE_RTOL}): the store is not this model's "
                             f"(rebuild results/svd for it)")


def swap_points(svds: Mapping[str, SVD], groups: Mapping[str, list[str]], sources: Sequence[str], ks: Iterable[int],
                donors: Mapping[str, tuple[str, Mapping[str, SVD]]] | None = None, seed: int = 0,
                model: str = "?") -> list[Point]:
    """Every swap point: group x source x k, k up to the group's smallest rank (larger k's logged).

    donors: {'pretrained': (its name, its SVDs), 'cross': (...)} for the sources that need one.
    The largest-k edit of every (group, source) is built here once, so that every check runs now."""
    donors = dict(donors or {})
    points = []
    for source in sources:
        if source not in HOWS:
            raise ValueError(f"model {model}: unknown swap source {source!r}; allowed: {', '.join(HOWS)}")
        if source in DONOR_HOWS and source not in donors:
            raise ValueError(f"model {model}: source {source!r} needs a donor model's SVDs; none given")
    for group, ids in groups.items():
        grid, dropped = usable_ks(ks, rank_limit(svds, ids))
        if dropped:
            log.info("%s %s: k = %s left out: above the group's smallest rank %d", model, group,
                     ", ".join(map(str, dropped)), rank_limit(svds, ids))
        for source in sources:
            donor_name, donor = donors.get(source, ("", None)) if source in DONOR_HOWS else ("", None)

            def make(k=0, ids=ids, source=source, donor=donor, donor_name=donor_name):
                return edit_group(svds, ids, source, k, donors=donor, seed=seed, model=model,
                                  donor_model=donor_name or "the donor")

            if grid:
                make(max(grid))  # every check of every matrix, before any evaluation
            points += [Point({"model": model, "group": group, "source": source, "donor": donor_name, "k": k,
                              "matrices": len(ids)}, lambda k=k, make=make: make(k)) for k in grid]
    return points


def mask_points(svds: Mapping[str, SVD], groups: Mapping[str, list[str]], orders: Sequence[str],
                fractions: Iterable[float], model: str = "?") -> list[Point]:
    """Every masking point: group x order x fraction (the largest fraction of each line built once here)."""
    fractions = sorted(set(float(f) for f in fractions))
    for order in orders:
        if order not in ORDERS:
            raise ValueError(f"model {model}: unknown masking order {order!r}; allowed: {', '.join(ORDERS)}")
    points = []
    for group, ids in groups.items():
        ranks = [min(svds[i].U.shape[0], svds[i].Vh.shape[1]) for i in ids]
        for order in orders:
            def make(f=0.0, ids=ids, order=order):
                return mask_group(svds, ids, order, f, model=model)

            if fractions:
                make(max(fractions))
            points += [Point({"model": model, "group": group, "order": order, "fraction": f,
                              "removed": sum(mask_count(f, r) for r in ranks), "components": sum(ranks),
                              "matrices": len(ids)}, lambda f=f, make=make: make(f)) for f in fractions]
    return points


# ------------------------------------------------------------------------------------ running

def metric_statistics(base: Evaluation, edited: Evaluation, base_interval: tuple[float, float] | None = None,
                      replicates: int = N_BOOTSTRAP, seed: int = 0) -> dict:
    """A point against the unedited model in the task's main metric (module docstring): metric, score and its
    interval, base_score and its interval (`base_interval` when already known), delta_score, its paired
    interval and p_score. Both evaluations must be of the same examples (evaluate with the same max_examples)."""
    if not np.array_equal(base.index, edited.index):
        raise ValueError(f"the evaluations are of different examples ({base.n} vs {edited.n}); evaluate both "
                         f"with the same split and max_examples")
    metric = edited.metric
    if edited.labels is None or base.labels is None:  # accuracy only: the Evaluations hold no targets
        y, a, b = np.ones(edited.n, bool), edited.correct, base.correct
    else:
        y, a, b = edited.labels, edited.prediction, base.prediction
    lo, hi = interval(y, a, metric, replicates=replicates, seed=seed)
    base_lo, base_hi = base_interval if base_interval is not None else interval(y, b, metric, replicates=replicates,
                                                                                seed=seed)
    paired = paired_bootstrap(y, a, b, metric, replicates=replicates, seed=seed)
    p = paired.p_mcnemar if metric == "accuracy" else paired.p_bootstrap
    return {"metric": metric, "score": edited.score, "score_ci_low": lo, "score_ci_high": hi,
            "base_score": base.score, "base_score_ci_low": base_lo, "base_score_ci_high": base_hi,
            "delta_score": edited.score - base.score, "delta_ci_low": paired.low, "delta_ci_high": paired.high,
            "p_score": p}


def run_sweep(live: LiveMatrices, points: Sequence[Point], evaluate_now: Callable[[], Evaluation],
              columns: Sequence[str] | None = None, base: Evaluation | None = None) -> pd.DataFrame:
    """Evaluate the unedited model (unless `base` is given), then every point: edit in place, evaluate,
    restore. One row per point: its labels and compare(unedited, edited), plus the unedited interval."""
    t0 = time.perf_counter()
    base = evaluate_now() if base is None else base
    lo, hi = base.interval()
    base_stats = metric_statistics(base, base)
    base_interval = (base_stats["score_ci_low"], base_stats["score_ci_high"])
    log.info("%s unedited: %s %.4f [%.4f, %.4f] on %d examples (%.1f s)", live.name, base.metric, base.score,
             *base_interval, base.n, time.perf_counter() - t0)
    rows = []
    for i, point in enumerate(points, start=1):
        t = time.perf_counter()
        deltas = point.corrections()
        if all(d.rank == 0 for d in deltas.values()):
            result = base  # W̃ exactly: the unedited evaluation
        else:
            with live.edited(deltas):
                result = evaluate_now()
        row = {**point.labels, **metric_statistics(base, result, base_interval), **compare(base, result),
               "base_ci_low": lo, "base_ci_high": hi}
        rows.append(row)
        log.info("%d/%d %s: %s %.4f [%.4f, %.4f], delta %+.4f [%+.4f, %+.4f], p %.3g (%.2f s)", i, len(points),
                 " ".join(f"{k}={v}" for k, v in point.labels.items() if k not in ("model", "matrices")),
                 row["metric"], row["score"], row["score_ci_low"], row["score_ci_high"], row["delta_score"],
                 row["delta_ci_low"], row["delta_ci_high"], row["p_score"], time.perf_counter() - t)
    log.info("%s: %d points in %.1f s", live.name, len(points), time.perf_counter() - t0)
    table = pd.DataFrame(rows)
    if columns is not None:
        table = table.reindex(columns=list(columns))
    return table


# -------------------------------------------------------------------------------- the workflow

@dataclass
class Subject:
    """A finetuned model loaded for a sweep, with its test split as its finetune saw it."""

    name: str
    model: object          # torch.nn.Module, on `device`, eval mode
    preprocess: Callable
    test: object           # specbasis.data.Part
    device: object         # torch.device
    live: LiveMatrices
    task: str | None = None             # the GLUE task (its metric), None for other data sets (accuracy)
    task_type: str = "classification"   # or "regression" (STS-B: one output, the predicted score)

    def evaluator(self, batch_size: int, max_examples: int | None) -> Callable[[], Evaluation]:
        from specbasis.evaluate import evaluate

        return lambda: evaluate(self.model, self.preprocess, self.test, self.device, batch_size, max_examples,
                                self.task, self.task_type)


def load_subject(name: str, model_dir: str | Path, data_dir: str | Path, family: str, split: Mapping,
                 device: str = "auto") -> Subject:
    """Load a finetuned model once (its recorded preprocessing) and the test split its finetune used.

    split: the finetune's reader `format`, `seed`, `max_train` and `max_eval` (load_splits caps test
    with max_eval), so the examples are the ones its metrics.json test accuracy was measured on."""
    import torch

    from specbasis.data import load_splits
    from specbasis.device import resolve_device
    from specbasis.models import load_classifier

    if split.get("held_out", "finetune") == "evaluate_on":  # a fetched model: its evaluate_on dataset
        test, model, preprocess, task_type = _load_fetched(name, model_dir, data_dir, family, split)
        task = split.get("task")
    else:
        task = {"task": split["task"]} if split.get("task") else {}  # a GLUE finetune
        splits = load_splits(split["format"], Path(data_dir), split["seed"], **task, max_train=split.get("max_train"),
                             max_eval=split.get("max_eval"))
        if (Path(model_dir) / METRICS_FILE).is_file():
            trained = FinetuneMetrics.read(model_dir)
            if trained.num_classes != splits.num_classes or trained.sizes.get("test") != len(splits.test):
                raise ValueError(f"model {name}: its finetune saw {trained.num_classes} classes and "
                                 f"{trained.sizes.get('test')} test examples, the split made here has "
                                 f"{splits.num_classes} and {len(splits.test)}: the split settings differ from the "
                                 f"finetune's (seed, max_train, max_eval)")
        model, preprocess = load_classifier(Path(model_dir), family, splits.num_classes)
        test, task, task_type = splits.test, splits.task, splits.task_type
    device = resolve_device(device)
    if device.type == "cpu":
        # as the finetune does: edited weights (random vectors above all) drive activations into denormal
        # floats, which x86 CPUs handle in microcode; measured on EfficientNet, a point went 0.15 s -> 5 s
        torch.set_flush_denormal(True)
    model.to(device)
    return Subject(name, model, preprocess, test, device, LiveMatrices(model, family, name=name), task, task_type)


def load_sweep(model_dir: str | Path, svd_path: str | Path, data_dir: str | Path, settings: Mapping,
               threads: int) -> tuple[Subject, dict[str, SVD], dict[str, list[str]]]:
    """What a swap or mask job starts from: the model loaded once with its test part, its SVD store, and
    the matrix ids of each of settings['groups'], the store checked against the live matrices."""
    import os

    import torch

    from specbasis.svd import read_svd

    torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
    name = settings["model"]
    subject = load_subject(name, model_dir, data_dir, settings["family"], settings["split"], settings["device"])
    svds = read_svd(svd_path)
    groups = model_groups(subject.live.ids, settings["groups"], name)
    check_store(subject.live, svds, [i for ids in groups.values() for i in ids], name)
    return subject, svds, groups


def _load_fetched(name: str, model_dir: str | Path, data_dir: str | Path, family: str, split: Mapping):
    """(test part, model, preprocess, task type) of a fetched finetuned model (a hub checkpoint with its own head)
    on its evaluate_on dataset: the head's rows are put in the dataset's class order once, through the
    checkpoint's id2label or the config's `labels` (labels.logit_order refuses generic names). A regression task
    (STS-B: no classes) has one output, nothing to order."""
    from specbasis.data import load_test
    from specbasis.labels import logit_order
    from specbasis.models import load_classifier

    held = load_test(split["format"], Path(data_dir), split["seed"], task=split.get("task"))
    if not held.classes:
        model, preprocess = load_classifier(Path(model_dir), family, 1)
        return held.part, model, preprocess, "regression"
    checkpoint = json.loads((Path(model_dir) / "config.json").read_text())
    order = logit_order(checkpoint, held.classes, model=name, labels=split.get("labels"))
    model, preprocess = load_classifier(Path(model_dir), family, len(held.classes))
    model.load_state_dict(reorder_head(model, order, name))
    return held.part, model, preprocess, "classification"


def reorder_head(model, order: Sequence[int], name: str = "?") -> dict:
    """The model's state dict with its output layer's rows permuted, so that logit j is class order[j]'s
    (logits[:, order] of the original): the one Linear of the head whose outputs are the classes."""
    from specbasis.models import head_prefixes

    n = len(order)
    heads = [p.removesuffix(".") for p in head_prefixes(model)]
    state = model.state_dict()
    rows = [k for k in state if any(k.startswith(h + ".") for h in heads) and state[k].ndim >= 1
            and state[k].shape[0] == n and k.rsplit(".", 1)[-1] in ("weight", "bias")]
    weights = [k for k in rows if k.endswith(".weight")]
    if len(weights) != 1:
        raise ValueError(f"model {name}: cannot find the one output layer of its head with {n} rows among "
                         f"{heads} (found {weights or 'none'}); its logits cannot be put in the dataset's class order")
    layer = weights[0].removesuffix(".weight")
    return {k: (v[list(order)] if k in (f"{layer}.weight", f"{layer}.bias") else v) for k, v in state.items()}
