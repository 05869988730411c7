"""Alignment of singular vectors between a pretrained and a finetuned matrix.

For W_pt = U S Vh and W_ft = Ũ S̃ Ṽh (same shape), the alignment at rank i (1-based) is
    cos_u(i) = |ũ_iᵀ u_i|   and   cos_v(i) = |ṽ_iᵀ v_i|.
The absolute value makes it independent of the sign convention. 1 means the i-th direction is
unchanged; independent random unit vectors in d dimensions give E|cos| = random_cos(d) ≈ sqrt(2/(πd)).
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd
from scipy.special import gammaln

from .tables import id_columns
from .svd import SVD

COLUMNS = ["pair", "layer", "kind", "side", "rank", "cos"]


def matched_cos(A: np.ndarray, B: np.ndarray, axis: int) -> np.ndarray:
    """|cos| between the i-th vectors of A and B; vectors are columns (axis=0) or rows (axis=1)."""
    assert A.shape == B.shape, f"shape mismatch {A.shape} vs {B.shape}"
    dots = np.abs(np.sum(A.astype(np.float64) * B.astype(np.float64), axis=axis))
    norms = np.linalg.norm(A.astype(np.float64), axis=axis) * np.linalg.norm(B.astype(np.float64), axis=axis)
    return dots / norms


def random_cos(d: int) -> float:
    """E|xᵀy| for independent uniform unit vectors x, y in R^d: Γ(d/2) / (√π Γ((d+1)/2))."""
    return float(math.exp(gammaln(d / 2) - gammaln((d + 1) / 2)) / math.sqrt(math.pi))


def align_pair(pt: SVD, ft: SVD, max_rank: int) -> dict[str, np.ndarray]:
    """cos per rank for the left (u) and right (v) vectors, ranks 1..min(max_rank, K)."""
    r = min(max_rank, pt.U.shape[1], ft.U.shape[1])
    return {
        "u": matched_cos(pt.U[:, :r], ft.U[:, :r], axis=0),    # columns of U: (m,)
        "v": matched_cos(pt.Vh[:r, :], ft.Vh[:r, :], axis=1),  # rows of Vh: (n,)
    }


def alignment_table(pair: str, pt: Mapping[str, SVD], ft: Mapping[str, SVD], max_rank: int) -> tuple[pd.DataFrame, list[str]]:
    """Tidy alignment table for every matrix id in both models; also the ids present in only one."""
    common = sorted(set(pt) & set(ft))
    only = sorted(set(pt) ^ set(ft))
    frames = []
    for key in common:
        assert pt[key].U.shape[0] == ft[key].U.shape[0] and pt[key].Vh.shape[1] == ft[key].Vh.shape[1], (
            f"{pair}: matrix {key} has shape {pt[key].U.shape[0]}x{pt[key].Vh.shape[1]} in the pretrained model "
            f"but {ft[key].U.shape[0]}x{ft[key].Vh.shape[1]} in the finetuned one")
        ids = id_columns(key)
        for side, cos in align_pair(pt[key], ft[key], max_rank).items():
            frames.append(pd.DataFrame({"pair": pair, **ids, "side": side,
                                        "rank": np.arange(1, len(cos) + 1), "cos": cos}))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return table[COLUMNS], only
