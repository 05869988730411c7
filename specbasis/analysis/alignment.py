"""Alignment of singular vectors between a pretrained and a finetuned matrix.

For W_pt = U S Vh and W_ft = Ũ S̃ Ṽh (same shape), the alignment at rank i (1-based) is
    cos_u(i) = |ũ_iᵀ u_i|   and   cos_v(i) = |ṽ_iᵀ v_i|.
The absolute value makes it independent of the sign convention. 1 means the i-th direction is
unchanged; independent random unit vectors in d dimensions give E|cos| = random_cos(d) ≈ sqrt(2/(πd)).

Matched indices are ill-defined where two singular values are nearly equal: the two vectors can
swap or rotate within their plane without any real change of the matrix. So the table also has
  - subspace(k) = ‖U_kᵀ Ũ_k‖_F² / k, the mean squared cosine of the principal angles between
    span(u_1..u_k) and span(ũ_1..ũ_k) (likewise for V): 1 when the top-k subspaces agree whatever
    happens inside them; random k-dimensional subspaces of R^d give k/d on average;
  - gap_pt(i) = (σ_i − σ_{i+1}) / σ_i of the pretrained matrix (gap_ft likewise): where it is small,
    a low matched |cos| at rank i says little;
  - dim, the length of the vectors (m for u, n for v), so that plots can draw random_cos(dim).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy.special import gammaln

from specbasis.io.tables import id_columns, split_ids
from specbasis.svd import SVD

COLUMNS = ["pair", "layer", "kind", "side", "rank", "cos", "subspace", "gap_pt", "gap_ft", "dim"]


def matched_cos(A: np.ndarray, B: np.ndarray, axis: int) -> np.ndarray:
    """|cos| between the i-th vectors of A and B; vectors are columns (axis=0) or rows (axis=1)."""
    assert A.shape == B.shape, f"shape mismatch {A.shape} vs {B.shape}"
    dots = np.abs(np.sum(A.astype(np.float64) * B.astype(np.float64), axis=axis))
    norms = np.linalg.norm(A.astype(np.float64), axis=axis) * np.linalg.norm(B.astype(np.float64), axis=axis)
    return dots / norms


def relative_change(reference: np.ndarray, W: np.ndarray) -> float:
    """‖W − W_ref‖_F / ‖W_ref‖_F (float64): how far a matrix moved, relative to its size."""
    reference, W = np.asarray(reference, np.float64), np.asarray(W, np.float64)
    return float(np.linalg.norm(W - reference) / np.linalg.norm(reference))


def random_cos(d):
    """E|xᵀy| for independent uniform unit vectors x, y in R^d: Γ(d/2) / (√π Γ((d+1)/2)) (d a number or array)."""
    d = np.asarray(d, dtype=np.float64)
    return np.exp(gammaln(d / 2) - gammaln((d + 1) / 2)) / np.sqrt(np.pi)


def subspace_similarity(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """For orthonormal columns A, B (d, r): ‖A_kᵀ B_k‖_F² / k for k = 1..r (A_k: first k columns)."""
    M2 = np.square(A.astype(np.float64).T @ B.astype(np.float64))      # (r, r) squared cosines
    inner = np.cumsum(np.cumsum(M2, axis=0), axis=1).diagonal()        # sum over i, j <= k
    return inner / np.arange(1, M2.shape[0] + 1)


def random_subspace(k: np.ndarray, d: int) -> np.ndarray:
    """E‖P_kᵀ Q_k‖_F² / k for independent uniform k-dimensional subspaces of R^d: k / d."""
    return np.asarray(k, dtype=np.float64) / d


def relative_gap(S: np.ndarray) -> np.ndarray:
    """(σ_i − σ_{i+1}) / σ_i for every i (the last against 0); 0 where σ_i is 0."""
    S = S.astype(np.float64)
    nxt = np.append(S[1:], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(S > 0, (S - nxt) / S, 0.0)


def align_pair(pt: SVD, ft: SVD, max_rank: int) -> dict[str, np.ndarray]:
    """cos per rank for the left (u) and right (v) vectors, ranks 1..min(max_rank, K)."""
    r = min(max_rank, pt.U.shape[1], ft.U.shape[1])
    return {
        "u": matched_cos(pt.U[:, :r], ft.U[:, :r], axis=0),    # columns of U: (m,)
        "v": matched_cos(pt.Vh[:r, :], ft.Vh[:r, :], axis=1),  # rows of Vh: (n,)
    }


def alignment_table(pair: str, pt: Mapping[str, SVD], ft: Mapping[str, SVD], max_rank: int) -> tuple[pd.DataFrame, list[str]]:
    """Tidy alignment table for every matrix id in both models; also the ids present in only one."""
    common, only = split_ids(pt, ft)
    frames = []
    for key in common:
        assert pt[key].U.shape[0] == ft[key].U.shape[0] and pt[key].Vh.shape[1] == ft[key].Vh.shape[1], (
            f"{pair}: matrix {key} has shape {pt[key].U.shape[0]}x{pt[key].Vh.shape[1]} in the pretrained model "
            f"but {ft[key].U.shape[0]}x{ft[key].Vh.shape[1]} in the finetuned one")
        ids = id_columns(key)
        a, b = pt[key], ft[key]
        r = min(max_rank, a.U.shape[1], b.U.shape[1])
        gaps = {"gap_pt": relative_gap(a.S)[:r], "gap_ft": relative_gap(b.S)[:r]}
        for side, cos in align_pair(a, b, max_rank).items():
            X, Y = (a.U[:, :r], b.U[:, :r]) if side == "u" else (a.Vh[:r].T, b.Vh[:r].T)  # (dim, r)
            frames.append(pd.DataFrame({"pair": pair, **ids, "side": side, "rank": np.arange(1, r + 1),
                                        "cos": cos, "subspace": subspace_similarity(X, Y), **gaps,
                                        "dim": X.shape[0]}))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return table[COLUMNS], only
