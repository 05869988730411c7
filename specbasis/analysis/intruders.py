"""Intruder dimensions (Shuttleworth et al. 2024, "LoRA vs Full Fine-tuning: An Illusion of Equivalence"): a top
singular vector of the finetuned matrix that is far from every singular vector of the pretrained one.

For W_pt = U S Vh and W_ft = Ũ S̃ Ṽh, the top-`top` left singular vector ũ_i (i ≤ top) is an intruder at ε when

    max_j |ũ_iᵀ u_j| < ε        (j over every pretrained singular vector, not only the matched u_i)

counted per matrix for ε over EPSILONS (0.1 .. 0.9), the paper's ε = 0.5 marked (MARK). A rotation of the basis
inside itself (swapped or sign-flipped vectors, rotations within a subspace of nearly equal σ that leave ũ_i a
combination of few u_j) gives none; a new direction gives one. Uses the left vectors by default (`side="v"`: the
rows of Vh). Torch-free, on specbasis.svd.SVD objects or plain arrays.
"""
from __future__ import annotations

import numpy as np

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
