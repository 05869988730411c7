"""Intruder dimensions (Shuttleworth et al. 2024, "LoRA vs Full Fine-tuning: An Illusion of Equivalence"): a top
singular vector of the finetuned matrix that is far from every singular vector of the pretrained one.

For W_pt = U S Vh and W_ft = Ũ S̃ Ṽh, the top-`top` left singular vector ũ_i (i ≤ top) is an intruder at ε when

    max_j |ũ_iᵀ u_j| < ε        (j over every pretrained singular vector, not only the matched u_i)

counted per matrix for ε over EPSILONS (0.1 .. 0.9), the paper's ε = 0.5 marked (MARK). A rotation of the basis
inside itself (swapped or sign-flipped vectors, rotations within a subspace of nearly equal σ that leave ũ_i a
combination of few u_j) gives none; a new direction gives one. Uses the left vectors by default (`side="v"`: the
rows of Vh). `basis_rows`: per changed matrix of a finetuned model, its change, top-k alignment and intruder counts
(the workflow runs it for every table1 run: results/peft/basis/<run>.csv, fig22, table6).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from specbasis.analysis.alignment import align_pair, relative_change
from specbasis.io.tables import id_columns
from specbasis.svd import SVD

EPSILONS = tuple(round(0.1 * i, 1) for i in range(1, 10))
MARK = 0.5
TOP = 10


def vectors(svd: SVD, side: str) -> np.ndarray:
    """The singular vectors of one side as columns: U (m, K) for "u", Vhᵀ (n, K) for "v"."""
    if side not in ("u", "v"):
        raise ValueError(f"side = {side!r}: allowed: u, v")
    return np.asarray(svd.U if side == "u" else svd.Vh.T, dtype=np.float64)


def max_cos(pretrained: np.ndarray, finetuned: np.ndarray, top: int = TOP) -> np.ndarray:
    """(top,) max_j |ũ_iᵀ u_j| for the first `top` columns ũ_i of `finetuned` against every column u_j of
    `pretrained` (both unit columns of the same length)."""
    pretrained, finetuned = np.asarray(pretrained, np.float64), np.asarray(finetuned, np.float64)
    if pretrained.shape[0] != finetuned.shape[0]:
        raise ValueError(f"max_cos: vectors of length {pretrained.shape[0]} and {finetuned.shape[0]}")
    top = min(top, finetuned.shape[1])
    return np.abs(finetuned[:, :top].T @ pretrained).max(axis=1)


def intruder_counts(pt: SVD, ft: SVD, *, top: int = TOP, epsilons=EPSILONS, side: str = "u") -> dict[float, int]:
    """{ε: how many of the finetuned matrix's top `top` singular vectors are intruders at ε}. The pretrained SVD
    should hold every singular vector (a truncated one makes vectors outside it look like intruders)."""
    best = max_cos(vectors(pt, side), vectors(ft, side), top)
    return {float(eps): int((best < eps).sum()) for eps in epsilons}


BASIS_COLUMNS = ["model", "layer", "kind", "relative_change", "alignment_u", "alignment_v"] + [
    f"intruders_{eps:g}" for eps in EPSILONS]
CHANGE_TOLERANCE = 1e-7  # a matrix whose relative change is at most this is unchanged (copied, or float noise)


def basis_rows(model: str, pretrained: Mapping[str, np.ndarray], pretrained_svd: Mapping[str, SVD],
               finetuned: Mapping[str, np.ndarray], *, top: int = TOP, device: str = "cpu") -> pd.DataFrame:
    """How a finetuned model moved its pretrained basis, one row per matrix it changed: the relative change
    ‖W_ft − W_pt‖_F / ‖W_pt‖_F, the matched alignment of the top `top` vectors (mean |ũ_iᵀ u_i| and |ṽ_iᵀ v_i|,
    specbasis.analysis.alignment) and the intruders among them at every ε of EPSILONS. Unchanged matrices (relative
    change ≤ CHANGE_TOLERANCE: a method that trains no matrix, or one outside its targets) have no row."""
    from specbasis.svd import svd_all

    changed = {}
    change = {}
    for key in sorted(set(pretrained) & set(finetuned)):
        rel = relative_change(pretrained[key], finetuned[key])
        if rel > CHANGE_TOLERANCE:
            changed[key], change[key] = np.asarray(finetuned[key]), rel
    rows = []
    for key, ft in svd_all(changed, device=device, progress=False):
        pt = pretrained_svd[key]
        cos = align_pair(pt, ft, top)
        counts = intruder_counts(pt, ft, top=top)
        rows.append({"model": model, **id_columns(key), "relative_change": change[key],
                     "alignment_u": float(cos["u"].mean()), "alignment_v": float(cos["v"].mean()),
                     **{f"intruders_{eps:g}": n for eps, n in counts.items()}})
    return pd.DataFrame(rows, columns=BASIS_COLUMNS)
