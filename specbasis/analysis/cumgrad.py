"""The cumulative gradient ΔW = W_ft − W_pt against the pretrained matrix, rank by rank.

Finetuning adds ΔW, the sum of all its updates, to each pretrained matrix. With the SVDs
ΔW = Ũ S̃ Ṽh and W_pt = U S Vh (conventions of specbasis.svd), at rank i (1-based) we measure

    r_i   = σ_i(ΔW) / σ_i(W_pt)        how large the update is along its i-th direction,
    a_u,i = |ũ_iᵀ u_i|,  a_v,i = |ṽ_iᵀ v_i|   whether that direction is W_pt's own i-th one,

for i = 1..R, R = min(max_rank, K) (K the vectors both stores hold). The absolute value makes a
independent of the sign convention. Known answers: ΔW = c·W_pt gives a_u,i = a_v,i = 1 and
r_i = |c| at every rank with a well-separated σ_i; a rank-1 ΔW = ε u_j v_jᵀ gives r_1 = ε/σ_1 and
a_1 = 1 if j = 1, 0 otherwise.

Unchanged matrices (ΔW == 0, e.g. frozen ones): every σ_i(ΔW) is 0 and its singular vectors are
arbitrary, so wherever σ_i(ΔW) == 0 exactly we set r_i = 0 and a_u,i = a_v,i = NaN. (A ΔW of low
rank has σ_i near, not exactly, 0 beyond its rank: its vectors there are as arbitrary, but kept.)
σ_i(W_pt) == 0 < σ_i(ΔW) gives r_i = inf.
"""
from __future__ import annotations

import logging
from typing import Mapping

import numpy as np
import pandas as pd

from specbasis.analysis.alignment import matched_cos
from specbasis.io.extract import matrix_ids
from specbasis.svd import SVD, write_svd_matrices
from specbasis.io.tables import id_columns

log = logging.getLogger(__name__)

COLUMNS = ["pair", "layer", "kind", "rank", "s_delta", "s_pt", "ratio", "align_u", "align_v"]


class _Difference:
    """ΔW = W_ft − W_pt of two same-shape (out, in) datasets, read only when made an array."""

    def __init__(self, ft, pt):
        self.ft, self.pt = ft, pt
        self.shape = pt.shape  # (out, in)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.ft[()] - self.pt[()], dtype=dtype)  # (out, in)


def write_delta_store(pretrained, finetuned, out, *, rank: int | str = "all", method: str = "auto",
                      device: str = "auto") -> dict:
    """SVD of ΔW = W_ft − W_pt for every matrix id in both weights stores, into an SVD store.

    The store has the layout of specbasis.svd (U, S, Vh per id, same sign convention), root attrs
    `matrix`, `pretrained` and `finetuned` saying what it holds; it is written atomically. Ids in
    only one store are logged and skipped. Returns a summary: matrices, seconds, only_pretrained,
    only_finetuned.
    """
    import h5py

    with h5py.File(pretrained, "r") as pt, h5py.File(finetuned, "r") as ft:
        pt_ids, ft_ids = set(matrix_ids(pt)), set(matrix_ids(ft))
        only = {"pretrained": sorted(pt_ids - ft_ids), "finetuned": sorted(ft_ids - pt_ids)}
        for role, path in (("pretrained", pretrained), ("finetuned", finetuned)):
            for key in only[role]:
                log.warning("matrix %s is only in the %s model (%s); skipped", key, role, path)
        common = sorted(pt_ids & ft_ids)
        if not common:
            raise ValueError(f"{pretrained} and {finetuned} have no matrix id in common; are they one architecture?")
        for key in common:
            if pt[key].shape != ft[key].shape:
                raise ValueError(f"matrix {key} is {pt[key].shape} in {pretrained} but {ft[key].shape} in "
                                 f"{finetuned}; ΔW needs the same shape: were both extracted with one name map?")
        summary = write_svd_matrices({k: _Difference(ft[k], pt[k]) for k in common}, out, rank=rank,
                                     method=method, device=device,
                                     attrs={"matrix": "ΔW = W_ft - W_pt", "pretrained": str(pretrained),
                                            "finetuned": str(finetuned)})
    log.info("SVD of ΔW of %d matrices (%s -> %s) in %.2f s", summary["matrices"], pretrained, finetuned,
             summary["seconds"])
    return {**summary, "only_pretrained": only["pretrained"], "only_finetuned": only["finetuned"]}


def cumgrad_ranks(delta: SVD, pt: SVD, max_rank: int) -> dict[str, np.ndarray]:
    """s_delta, s_pt, ratio, align_u, align_v at ranks 1..R (definitions in the module docstring)."""
    r = min(max_rank, delta.U.shape[1], pt.U.shape[1])
    s_delta, s_pt = delta.S[:r].astype(np.float64), pt.S[:r].astype(np.float64)  # (r,)
    changed = s_delta > 0                                                          # (r,) False where ΔW has no σ_i
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(changed, s_delta / s_pt, 0.0)
    return {
        "s_delta": s_delta, "s_pt": s_pt, "ratio": ratio,
        "align_u": np.where(changed, matched_cos(delta.U[:, :r], pt.U[:, :r], axis=0), np.nan),    # columns of U
        "align_v": np.where(changed, matched_cos(delta.Vh[:r, :], pt.Vh[:r, :], axis=1), np.nan),  # rows of Vh
    }


def cumgrad_table(pair: str, delta: Mapping[str, SVD], pt: Mapping[str, SVD], max_rank: int) -> pd.DataFrame:
    """Tidy table, one row per matrix id of the delta store and rank: the columns of COLUMNS."""
    frames = []
    for key in sorted(delta):
        if key not in pt:
            raise KeyError(f"{pair}: matrix {key} has a ΔW but is not in the pretrained SVD store; were both "
                           f"made from the same weights store?")
        assert delta[key].U.shape[0] == pt[key].U.shape[0] and delta[key].Vh.shape[1] == pt[key].Vh.shape[1], (
            f"{pair}: matrix {key} is {delta[key].U.shape[0]}x{delta[key].Vh.shape[1]} in the delta store but "
            f"{pt[key].U.shape[0]}x{pt[key].Vh.shape[1]} in the pretrained one")
        cols = cumgrad_ranks(delta[key], pt[key], max_rank)
        frames.append(pd.DataFrame({"pair": pair, **id_columns(key), "rank": np.arange(1, len(cols["ratio"]) + 1),
                                    **cols}))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return table[COLUMNS]
