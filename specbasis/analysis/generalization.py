"""Similarity against generalization (paper Appendix J): do finetuned models that kept more of their
pretrained singular vectors reach a higher held-out accuracy?

Method
------
1. Similarity. Of each pair's alignment table, the FFN rows (ffn_in, ffn_out, every index of a
   repeated FFN) are averaged over matrices, both sides (u and v) and the ranks of a rank range into
   one mean |cos| per pair x depth bin x rank range. The sides are averaged, not tested apart: they
   describe the same matrices, and testing them apart would double the tests the FDR correction pays
   for without adding a single pair.
2. Depth. Layers of models of different depth are compared by relative depth: the i-th of a pair's n
   FFN layers (0-based, encoder before decoder) sits at its centre (i + 0.5) / n, binned into thirds:
   early [0, 1/3), middle [1/3, 2/3), late [2/3, 1). (ALBERT's one shared layer is middle.)
3. Ranks. Ranges 1-e1, e1+1-e2, ... of `RANK_EDGES`; ranks above the last edge are not used.
4. Test. Per depth bin x rank range: Spearman rho across pairs between mean |cos| and the finetuned
   model's held-out accuracy, with a two-sided permutation p-value: exact (all n! orderings of the
   accuracies) for n <= 8 pairs, 8! random orderings (Monte Carlo, seed 0) beyond. The smallest p a
   test of n pairs can reach is 2/n! (n = 4: 2/24 = 0.083 > 0.05, so no test of 4 pairs can be
   significant, whatever the data). A test of n < 3 pairs, or of a variable that is the same for all
   pairs, has no rho and no p, says why in `note`, and is left out of the correction.
5. Multiple tests. Benjamini-Hochberg q over all tests made; significant = q < alpha.

What the numbers cannot show: the pairs are taken as independent, though pairs finetuned from one
pretrained model are not, and raw accuracies of tasks with different chance levels are compared.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, permutation_test, rankdata

from specbasis.io.namemaps import FFN_KINDS
from specbasis.io.metrics import FinetuneMetrics
from specbasis.io.tables import base_kind, layer_order

DEPTH_BINS = ("early", "middle", "late")  # thirds of relative depth
RANK_EDGES = (10, 50, 200)  # upper edges of the rank ranges; 200 = alignment.max_rank of both suites
EXACT_MAX_N = 8  # exact permutation p up to 8! = 40,320 orderings; as many random ones beyond
COLUMNS = ["depth", "ranks", "n_pairs", "rho", "p", "q", "significant", "min_attainable_p", "note"]


def read_test_accuracy(path: str | os.PathLike) -> tuple[str, float]:
    """(model, test_accuracy) of a finetuned model's folder results/models/<model> or its metrics.json."""
    path = Path(path)
    path = path / "metrics.json" if path.is_dir() else path
    metrics = FinetuneMetrics.read(path)
    if metrics.test_accuracy is None:
        raise KeyError(f"{path}: no test accuracy (task_type {metrics.task_type}: a regression run has none)")
    return path.parent.name, float(metrics.test_accuracy)


def accuracies(pairs: Mapping[str, str], metrics: Iterable[str | os.PathLike],
               config_accuracy: Mapping[str, float | None]) -> dict[str, float]:
    """{pair: held-out accuracy of its finetuned model}.

    pairs: {pair: finetuned model}. metrics: the metrics.json files of the models the workflow
    finetunes, results/models/<model>/metrics.json (their `test_accuracy`), or those model folders.
    config_accuracy:
    {model: the config's `accuracy` or None}, for hub models (the paper suite). A measured accuracy
    wins over a configured one."""
    measured = dict(map(read_test_accuracy, metrics))
    out = {}
    for pair, model in pairs.items():
        accuracy = measured.get(model, config_accuracy.get(model))
        if accuracy is None:
            raise ValueError(
                f"pair {pair}: no held-out accuracy for its finetuned model {model}: expected "
                f"'test_accuracy' in results/models/{model}/metrics.json (a model the workflow finetunes) "
                f"or 'accuracy:' under models: {model}: in the config (a hub model: the paper's reported "
                f"accuracy, a fraction)")
        out[pair] = float(accuracy)
    return out


def relative_depth(layers: pd.Series) -> pd.Series:
    """Centre (i + 0.5) / n of each layer, the i-th of the n distinct layers in `layers` (one model)."""
    order = sorted(layers.unique(), key=layer_order)
    return (layers.map({layer: i for i, layer in enumerate(order)}) + 0.5) / len(order)


def rank_range(rank: pd.Series, edges=RANK_EDGES) -> pd.Series:
    """Label each rank with its range '1-10', '11-50', ...; NaN above the last edge."""
    bounds = [0, *edges]
    return pd.cut(rank, bins=bounds, labels=[f"{lo + 1}-{hi}" for lo, hi in zip(bounds[:-1], bounds[1:])])


def similarity_by_layer(alignment_table: pd.DataFrame, rank_edges=RANK_EDGES) -> pd.DataFrame:
    """Mean |cos| of the FFN matrices per pair x depth bin x rank range (steps 1-3 of the module
    docstring). Columns: pair, depth, ranks, mean_cos; depth and ranks are ordered categories."""
    ffn = alignment_table[base_kind(alignment_table["kind"]).isin(FFN_KINDS)]
    if ffn.empty:
        raise ValueError("similarity: no FFN matrices (kinds ffn_in/ffn_out) in the alignment tables")
    depth = ffn.groupby("pair", sort=False)["layer"].transform(relative_depth)
    cells = ffn.assign(depth=pd.cut(depth, bins=[0, 1 / 3, 2 / 3, 1], labels=DEPTH_BINS, right=False),
                       ranks=rank_range(ffn["rank"], rank_edges))
    return (cells.groupby(["pair", "depth", "ranks"], observed=True)["cos"].mean()
            .rename("mean_cos").reset_index())


def spearman_test(x, y) -> tuple[float, float, str]:
    """Spearman rho of paired samples and its two-sided permutation p (step 4); NaN and the reason
    when there is nothing to test."""
    n = len(x)
    if n < 3:
        return math.nan, math.nan, f"not tested: {n} pairs < 3"
    for name, values in (("mean |cos|", x), ("accuracy", y)):
        if np.ptp(values) == 0:
            return math.nan, math.nan, f"not tested: {name} is the same for all {n} pairs"
    rx, ry = rankdata(x), rankdata(y)  # Pearson r of the ranks (ties averaged) is Spearman's rho

    def rho(y_ranks, axis=-1):  # vectorized over orderings of y: (..., n)
        a = rx - rx.mean()
        b = y_ranks - y_ranks.mean(axis=axis, keepdims=True)
        return (a * b).sum(axis=axis) / np.sqrt((a * a).sum() * (b * b).sum(axis=axis))

    orderings = math.factorial(EXACT_MAX_N)
    result = permutation_test((ry,), rho, permutation_type="pairings", vectorized=True,
                              n_resamples=orderings, alternative="two-sided", rng=np.random.default_rng(0))
    how = (f"exact permutation p ({math.factorial(n)} orderings)" if n <= EXACT_MAX_N
           else f"Monte Carlo permutation p ({orderings} orderings)")
    return float(result.statistic), float(result.pvalue), how


@lru_cache
def min_attainable_p(n: int) -> float:
    """Smallest p `spearman_test` can give with n pairs, that of perfectly monotone data: 2/n! up to
    n = 8 (exact), 2/(8! + 1) beyond (the Monte Carlo floor)."""
    return spearman_test(np.arange(n), np.arange(n))[1]


def bh_adjust(p) -> np.ndarray:
    """Benjamini-Hochberg q-values of the p-values; a NaN (a test not made) stays NaN and does not
    count among the m tests."""
    p = np.asarray(p, dtype=float)
    q = np.full_like(p, np.nan)
    made = ~np.isnan(p)
    if made.any():
        q[made] = false_discovery_control(p[made], method="bh")
    return q


def correlation_tests(similarity: pd.DataFrame, accuracy: Mapping[str, float], alpha: float = 0.05) -> pd.DataFrame:
    """One Spearman test per depth bin x rank range across pairs, BH-adjusted (steps 4-5)."""
    missing = sorted(set(similarity["pair"]) - set(accuracy))
    if missing:
        raise ValueError(f"no accuracy for pairs {missing} (accuracies given: {sorted(accuracy)})")
    rows = []
    for (depth, ranks), cell in similarity.groupby(["depth", "ranks"], observed=True):
        rho, p, note = spearman_test(cell["mean_cos"].to_numpy(), cell["pair"].map(accuracy).to_numpy())
        n = len(cell)
        rows.append({"depth": depth, "ranks": ranks, "n_pairs": n, "rho": rho, "p": p,
                     "min_attainable_p": min_attainable_p(n) if n >= 3 else math.nan, "note": note})
    tests = pd.DataFrame(rows)
    tests["q"] = bh_adjust(tests["p"])
    tests["significant"] = tests["q"] < alpha  # NaN (not tested) is never significant
    return tests[COLUMNS]


def power_statement(tests: pd.DataFrame, alpha: float) -> str:
    """What the tests can and did show: n pairs, smallest attainable p, tests made, tests significant."""
    made = tests[tests["p"].notna()]
    if made.empty:
        return f"no test could be made ({len(tests)} cells: {'; '.join(sorted(set(tests['note'])))})"
    n_lo, n_hi = made["n_pairs"].min(), made["n_pairs"].max()
    n = f"{n_lo}" if n_lo == n_hi else f"{n_lo}-{n_hi}"
    min_p = made["min_attainable_p"].min()
    lines = [f"{n} pairs per test; smallest attainable p = {min_p:.3g}"
             + (f" > alpha = {alpha}: no test can be significant, whatever the data" if min_p >= alpha else "")]
    significant = int(made["significant"].sum())
    lines.append(f"{len(made)} tests, BH-FDR at q < {alpha}: "
                 + (f"{significant} significant" if significant else "no test survives"))
    if len(made) < len(tests):
        untested = len(tests) - len(made)
        lines.append(f"{untested} cell{'s' * (untested > 1)} not tested (fewer than 3 pairs or a constant variable)")
    return "\n".join(lines)
