"""Interventions on singular vectors: the low-rank corrections that swap, randomise, remove or mask
singular pairs of a finetuned weight matrix (the paper's first claim, and its Appendix I masking).

Convention (that of specbasis.svd): W̃ is (m, n) = (out, in), torch Linear orientation, and

    W̃ = U diag(σ) Vh,   u_i = U[:, i] in the output space, v_i = Vh[i, :] in the input space,

σ descending. Component i is the rank-1 term σ_i u_i v_iᵀ, numbered 0 (largest σ) .. r-1, r = min(m, n).

Every edit is a correction Δ = left @ right of rank ≤ 2k, never a dense W, so that applying it
costs O(m n k) (writeback.LiveMatrices adds it to the model's own W̃) and k = 0 is W̃ exactly:

    swap (every `how`): the top-k pairs (u_i, v_i) become (x_i, y_i), the σ_i are KEPT:
        W_edit = W̃ - U_k Σ_k Vh_k + X Σ_k Yh
        Δ      = (X - U_k) Σ_k Yh + U_k Σ_k (Yh - Vh_k)      (exactly 0 when X = U_k and Yh = Vh_k)
    mask (remove the components I):  Δ = -U_I Σ_I Vh_I

What replaces the top-k pairs (`how`):
    pretrained         the pretrained model's (u_i, v_i) of the same matrix: a `donor` SVD
    cross              another model's, finetuned from the same pretrained one on another task: a `donor`
    random             seeded Gaussian unit vectors, independent: NOT orthogonal to each other nor to the
                       kept vectors (the paper's control), so the edited W's σ are not the kept σ
    random_orthogonal  seeded random vectors orthonormal to each other and to the kept vectors u_k.., v_k..
                       (beyond the paper): the edited W has singular values exactly σ and singular vectors
                       [X, U_kept], [Yh; Vh_kept]. Needs every singular vector (svd.rank: all)
    zero               nothing: the top-k components are removed

Signs: a rank-1 term σ u vᵀ does not change when u and v flip sign together, and every SVD store
fixes the sign of each pair jointly (svd.fix_signs), so donor vectors need no sign matching.

Masking counts: fraction f of the r components is c(f) = floor(f r + 1/2) (half rounds up, unlike
Python's round), so f = 0 removes none and f = 1 removes all r in both orders. top_down removes
components 0 .. c-1, bottom_up removes r-c .. r-1 (which needs every singular vector: svd.rank all).
f = 1 leaves W̃ - U Σ Vh, the float32 reconstruction residual of the store (about 1e-6 |W̃|), not 0.

Groups: 'ffn' = ffn_in, ffn_out; 'attn' = attn_q/k/v/o (self-attention); 'xattn' = xattn_q/k/v/o
(decoder cross-attention, in neither of the others); any layer and index.
"""
from __future__ import annotations

import math
import zlib
from typing import Iterable, Mapping, NamedTuple

import numpy as np

from specbasis.io.namemaps import CROSS_KINDS, FFN_KINDS, parse_id, sort_key
from specbasis.svd import SVD

HOWS = ("pretrained", "cross", "random", "random_orthogonal", "zero")
DONOR_HOWS = ("pretrained", "cross")
ORDERS = ("top_down", "bottom_up")
GROUPS = {"ffn": FFN_KINDS, "attn": ("attn_q", "attn_k", "attn_v", "attn_o"), "xattn": CROSS_KINDS}


class LowRank(NamedTuple):
    """A correction Δ = left @ right of a (m, n) matrix, in float64."""

    left: np.ndarray   # (m, j)
    right: np.ndarray  # (j, n)

    @property
    def rank(self) -> int:
        return self.left.shape[1]

    def dense(self) -> np.ndarray:
        return self.left @ self.right  # (m, n)


# ----------------------------------------------------------------------------------- checks

def _dims(svd: SVD, name: str) -> tuple[int, int, int, int]:
    """(m, n, r, K): shape, rank min(m, n) and how many vectors the store holds."""
    m, K = svd.U.shape
    n = svd.Vh.shape[1]
    r = min(m, n)
    assert svd.Vh.shape[0] == K and len(svd.S) == r, (
        f"matrix {name}: malformed SVD U {svd.U.shape}, S {svd.S.shape}, Vh {svd.Vh.shape}")
    return m, n, r, K


def check_k(svd: SVD, k: int, name: str = "?") -> None:
    """k must be a count of components the matrix has and the store holds."""
    m, n, r, K = _dims(svd, name)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"matrix {name}: k={k!r} must be a whole number of components, 0 .. {r}")
    if k > r:
        raise ValueError(f"matrix {name}: k={k} exceeds its rank min(m, n) = {r} (shape ({m}, {n}))")
    if k > K:
        raise ValueError(f"matrix {name}: k={k} but the SVD store holds only the top {K} of its {r} singular "
                         f"vectors; recompute the SVD with svd.rank >= {k} (or 'all')")


def require_all_vectors(svd: SVD, why: str, name: str = "?") -> None:
    m, n, r, K = _dims(svd, name)
    if K < r:
        raise ValueError(f"matrix {name}: {why} needs all {r} singular vectors, but the SVD store holds only "
                         f"{K}; recompute the SVD with svd.rank: all")


def check_donor(svd: SVD, donor: SVD, k: int, name: str = "?") -> None:
    """The donor must be a matrix of the same shape holding at least k vectors."""
    m, n, r, K = _dims(svd, name)
    dm, dn, _, dK = _dims(donor, f"{name} (donor)")
    if (dm, dn) != (m, n):
        raise ValueError(f"matrix {name}: the donor's matrix has shape ({dm}, {dn}), this one ({m}, {n}); "
                         f"a donor must be finetuned from the same pretrained model")
    if k > dK:
        raise ValueError(f"matrix {name}: k={k} but the donor's SVD store holds only {dK} vectors; recompute it "
                         f"with svd.rank >= {k} (or 'all')")


# ------------------------------------------------------------------------------- the vectors

def matrix_rng(seed: int, name: str) -> np.random.Generator:
    """A generator of its own for each (seed, matrix): the same vectors whatever else is edited."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def random_unit(d: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(d, k): k independent Gaussian directions, each of norm 1."""
    G = rng.standard_normal((d, k))
    return G / np.linalg.norm(G, axis=0, keepdims=True)


def random_orthogonal(kept: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(d, k) random orthonormal columns, orthogonal to the orthonormal columns of `kept` (d, j).

    Needs j + k <= d. Gaussian columns, projected off `kept` twice (one pass leaves round-off
    of order eps·cond), then orthonormalised by QR."""
    d, j = kept.shape
    assert j + k <= d, f"no room for {k} directions orthogonal to {j} in dimension {d}"
    G = rng.standard_normal((d, k))
    for _ in range(2):
        G = G - kept @ (kept.T @ G)
    Q, _ = np.linalg.qr(G)
    Q = Q - kept @ (kept.T @ Q)
    Q, _ = np.linalg.qr(Q)
    return Q  # (d, k)


def replacement(svd: SVD, how: str, k: int, donor: SVD | None = None, rng: np.random.Generator | None = None,
                name: str = "?") -> tuple[np.ndarray, np.ndarray]:
    """What takes the place of the top-k pairs: X (m, k) left vectors, Yh (k, n) right vectors."""
    if how not in HOWS:
        raise ValueError(f"matrix {name}: unknown intervention {how!r}; allowed: {', '.join(HOWS)}")
    check_k(svd, k, name)
    m, n, r, K = _dims(svd, name)
    if (donor is not None) != (how in DONOR_HOWS):
        raise ValueError(f"matrix {name}: intervention {how!r} " + (
            "needs a donor SVD (the pretrained model's, or another task's)" if how in DONOR_HOWS
            else "takes no donor"))
    if how in ("random", "random_orthogonal") and rng is None:
        raise ValueError(f"matrix {name}: intervention {how!r} needs a seeded rng (see matrix_rng)")
    if how in DONOR_HOWS:
        check_donor(svd, donor, k, name)
        return np.asarray(donor.U[:, :k], np.float64), np.asarray(donor.Vh[:k], np.float64)
    if how == "zero":
        return np.zeros((m, k)), np.zeros((k, n))
    if how == "random":
        return random_unit(m, k, rng), random_unit(n, k, rng).T
    require_all_vectors(svd, "random_orthogonal (orthogonal to every kept vector)", name)
    U, Vh = np.asarray(svd.U, np.float64), np.asarray(svd.Vh, np.float64)
    return random_orthogonal(U[:, k:], k, rng), random_orthogonal(Vh[k:].T, k, rng).T


# ---------------------------------------------------------------------------- the corrections

def swap_correction(svd: SVD, X: np.ndarray, Yh: np.ndarray, name: str = "?") -> LowRank:
    """Δ that turns the top-k pairs (u_i, v_i) into (X[:, i], Yh[i]), σ_i kept; k = X.shape[1]."""
    k = X.shape[1]
    check_k(svd, k, name)
    m, n, _, _ = _dims(svd, name)
    assert X.shape == (m, k) and Yh.shape == (k, n), f"matrix {name}: X {X.shape}, Yh {Yh.shape} for ({m}, {n})"
    U, S, Vh = (np.asarray(a, np.float64) for a in (svd.U[:, :k], svd.S[:k], svd.Vh[:k]))
    # x yᵀ - u vᵀ = (x - u) yᵀ + u (y - v)ᵀ: each half is exactly 0 when the vectors are the same
    left = np.concatenate([(X - U) * S, U * S], axis=1)  # (m, 2k)
    right = np.concatenate([Yh, Yh - Vh], axis=0)        # (2k, n)
    return LowRank(left, right)


def edit_correction(svd: SVD, how: str, k: int, donor: SVD | None = None, rng: np.random.Generator | None = None,
                    name: str = "?") -> LowRank:
    """Δ of intervention `how` on the top-k components (see the module docstring)."""
    return swap_correction(svd, *replacement(svd, how, k, donor, rng, name), name)


def mask_count(fraction: float, r: int) -> int:
    """How many of r components the fraction f removes: floor(f r + 1/2)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"masking fraction {fraction!r} is outside [0, 1]")
    return min(r, int(math.floor(fraction * r + 0.5)))


def masked_components(order: str, fraction: float, r: int) -> np.ndarray:
    """Indices (0 = largest σ) of the components removed: the top c or the bottom c."""
    if order not in ORDERS:
        raise ValueError(f"unknown masking order {order!r}; allowed: {', '.join(ORDERS)}")
    c = mask_count(fraction, r)
    return np.arange(c) if order == "top_down" else np.arange(r - c, r)


def mask_correction(svd: SVD, order: str, fraction: float, name: str = "?") -> LowRank:
    """Δ = -U_I Σ_I Vh_I that removes the components I = masked_components(order, fraction, r)."""
    m, n, r, K = _dims(svd, name)
    idx = masked_components(order, fraction, r)
    if order == "bottom_up" and len(idx):
        require_all_vectors(svd, "bottom-up masking", name)
    if len(idx) and idx[-1] >= K:
        raise ValueError(f"matrix {name}: masking fraction {fraction} top-down removes {len(idx)} components, "
                         f"but the SVD store holds only {K}; recompute the SVD with svd.rank: all")
    U, S, Vh = (np.asarray(a, np.float64) for a in (svd.U[:, idx], svd.S[idx], svd.Vh[idx]))
    return LowRank(-U * S, Vh)


# ------------------------------------------------------------------------------------ groups

def group_ids(ids: Iterable[str], group: str, model: str = "?") -> list[str]:
    """The ids of one group ('ffn', 'attn', 'xattn'), in canonical order; an error if there are none."""
    if group not in GROUPS:
        raise ValueError(f"unknown matrix group {group!r}; allowed: {', '.join(GROUPS)}")
    ids = list(ids)
    chosen = sorted((i for i in ids if parse_id(i)["kind"] in GROUPS[group]), key=sort_key)
    if not chosen:
        kinds = sorted({parse_id(i)["kind"] for i in ids})
        raise ValueError(f"model {model}: no {group} matrices ({', '.join(GROUPS[group])}) among its {len(ids)} "
                         f"matrices (kinds: {', '.join(kinds) or 'none'}); leave group {group!r} out for it")
    return chosen


def _svd_of(svds: Mapping[str, SVD], key: str, whose: str) -> SVD:
    if key not in svds:
        raise KeyError(f"{whose} has no SVD of matrix {key!r} ({len(svds)} matrices, e.g. "
                       f"{', '.join(sorted(svds, key=sort_key)[:4])})")
    return svds[key]


def edit_group(svds: Mapping[str, SVD], ids: Iterable[str], how: str, k: int,
               donors: Mapping[str, SVD] | None = None, seed: int = 0, model: str = "?",
               donor_model: str = "the donor") -> dict[str, LowRank]:
    """id -> Δ of intervention `how` on the top-k components of each matrix of `ids`.

    Random vectors come from matrix_rng(seed, id): the same for a matrix whatever the group."""
    out = {}
    for key in ids:
        name = f"{key} of {model}"
        donor = _svd_of(donors, key, donor_model) if donors is not None else None
        rng = matrix_rng(seed, key) if how in ("random", "random_orthogonal") else None
        out[key] = edit_correction(_svd_of(svds, key, model), how, k, donor, rng, name)
    return out


def mask_group(svds: Mapping[str, SVD], ids: Iterable[str], order: str, fraction: float,
               model: str = "?") -> dict[str, LowRank]:
    """id -> Δ that masks fraction f of each matrix's components, top-down or bottom-up."""
    return {key: mask_correction(_svd_of(svds, key, model), order, fraction, f"{key} of {model}") for key in ids}
