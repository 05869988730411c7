"""Singular-value spectra: how finetuning changes them (Appendix B), and explained variance (Appendix H).

For one matrix W (m, n) with pretrained singular values s_pt and finetuned s_ft, all r = min(m, n) of
each in descending order (rank i pairs the i-th largest of each; ranks are 1-based):

    rc_i    = (s_ft,i - s_pt,i) / s_pt,i            relative change at rank i, signed
    RSD     = ||s_ft - s_pt||_2 / ||s_pt||_2         relative spectral distance, all ranks
    MRC     = mean_i |rc_i|                          mean relative change
    MaxRC   = max_i |rc_i|                           largest relative change
    T1RC    = rc_1                                   top-1 relative change, signed
    TailRC  = mean |rc_i| over the ceil(r/10) smallest singular values (ranks r - ceil(r/10) + 1 .. r):
              unsigned, like MRC; at least one value
    erank   = exp(-sum_i p_i log p_i),  p_i = s_i / sum_j s_j,  0 log 0 = 0   (Roy & Vetterli, 2007):
              r for a flat spectrum of r values, 1 for a rank-1 matrix
    dER     = erank(s_ft) - erank(s_pt)

Zero pretrained values: rc_i is undefined where s_pt,i is numerically zero, i.e.
s_pt,i <= max(m, n) * eps_float32 * s_pt,1 (numpy.linalg.matrix_rank's tolerance at the float32
precision of the stored weights). Such ranks get rc_i = NaN in the per-rank table and are left out
of MRC, MaxRC and TailRC (a statistic with no defined rank is NaN); RSD and erank use every value.

Rank quantile (per-rank table): q_i = (i - 0.5) / r, the midpoint of the i-th of r equal bins of
(0, 1), so spectra of different r share one axis.

Explained variance (energy) of the leading k singular values: E_k = sum_{j<=k} s_j^2 / sum_j s_j^2,
non-decreasing in k, with E_r = 1. Its relative rank is k / r.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from specbasis.io.tables import id_columns, split_ids

EPS = float(np.finfo(np.float32).eps)  # the weights and singular values are stored as float32

MATRIX_COLUMNS = ["pair", "layer", "kind", "m", "n", "rsd", "mrc", "maxrc", "t1rc", "tailrc",
                  "erank_pt", "erank_ft", "d_erank"]
RANK_COLUMNS = ["pair", "layer", "kind", "rank", "quantile", "s_pt", "s_ft", "rel_change"]
ENERGY_COLUMNS = ["model", "layer", "kind", "rank", "rel_rank", "energy"]


@dataclass(frozen=True)
class Spectrum:
    S: np.ndarray            # (min(m, n),) every singular value, descending
    shape: tuple[int, int]   # (m, n) of W: sets the zero tolerance

    def nonzero(self) -> np.ndarray:
        """Mask of the numerically nonzero values (see the module docstring)."""
        return self.S > max(self.shape) * EPS * self.S[0]


def read_spectra(path, ids: Iterable[str] | None = None) -> dict[str, Spectrum]:
    """The singular values and shapes of (some of) the matrices of an SVD store; U and Vh are not read."""
    import h5py

    with h5py.File(path, "r") as f:
        return {key: Spectrum(f[key]["S"][:].astype(np.float64), (f[key]["U"].shape[0], f[key]["Vh"].shape[1]))
                for key in (ids if ids is not None else f.keys())}


def relative_change(pt: Spectrum, ft: Spectrum) -> np.ndarray:
    """rc_i for every rank; NaN where s_pt,i is numerically zero."""
    ok = pt.nonzero()
    return np.divide(ft.S - pt.S, pt.S, out=np.full(len(pt.S), np.nan), where=ok)


def effective_rank(s: np.ndarray) -> float:
    """Roy & Vetterli's entropy effective rank exp(-sum p_i log p_i), p_i = s_i / sum s."""
    p = s[s > 0] / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def _abs_stat(stat, x: np.ndarray) -> float:
    """stat (np.mean, np.max) of |x| over the defined (non-NaN) values; NaN if there are none."""
    x = np.abs(x[~np.isnan(x)])
    return float(stat(x)) if len(x) else float("nan")


def matrix_stats(pt: Spectrum, ft: Spectrum) -> dict[str, float]:
    """RSD, MRC, MaxRC, T1RC, TailRC, erank of each and dER (see the module docstring)."""
    rc = relative_change(pt, ft)
    tail = -(-len(rc) // 10)  # ceil(r / 10) >= 1
    er_pt, er_ft = effective_rank(pt.S), effective_rank(ft.S)
    return {
        "rsd": float(np.linalg.norm(ft.S - pt.S) / np.linalg.norm(pt.S)),
        "mrc": _abs_stat(np.mean, rc),
        "maxrc": _abs_stat(np.max, rc),
        "t1rc": float(rc[0]),
        "tailrc": _abs_stat(np.mean, rc[-tail:]),
        "erank_pt": er_pt, "erank_ft": er_ft, "d_erank": er_ft - er_pt,
    }


def spectra_tables(pair: str, pt: Mapping[str, Spectrum], ft: Mapping[str, Spectrum]
                   ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Per-matrix statistics and per-rank values of every matrix id in both models; also the ids in only one."""
    common, only = split_ids(pt, ft)
    rows, frames = [], []
    for key in common:
        assert pt[key].shape == ft[key].shape, (
            f"{pair}: matrix {key} has shape {pt[key].shape} in the pretrained model "
            f"but {ft[key].shape} in the finetuned one")
        ids = id_columns(key)
        m, n = pt[key].shape
        rows.append({"pair": pair, **ids, "m": m, "n": n, **matrix_stats(pt[key], ft[key])})
        r = len(pt[key].S)
        rank = np.arange(1, r + 1)
        frames.append(pd.DataFrame({"pair": pair, **ids, "rank": rank, "quantile": (rank - 0.5) / r,
                                    "s_pt": pt[key].S, "s_ft": ft[key].S,
                                    "rel_change": relative_change(pt[key], ft[key])}))
    per_rank = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RANK_COLUMNS)
    return pd.DataFrame(rows, columns=MATRIX_COLUMNS), per_rank[RANK_COLUMNS], only


def energy_table(model: str, S: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Cumulative explained variance E_k of every matrix, k = 1 .. r."""
    frames = []
    for key in sorted(S):
        s2 = np.asarray(S[key], dtype=np.float64) ** 2
        rank = np.arange(1, len(s2) + 1)
        frames.append(pd.DataFrame({"model": model, **id_columns(key), "rank": rank,
                                    "rel_rank": rank / len(s2), "energy": np.cumsum(s2) / s2.sum()}))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ENERGY_COLUMNS)
    return table[ENERGY_COLUMNS]
