"""Singular value decomposition of every weight matrix, once, batched by shape.

Convention (torch Linear orientation): W is (out, in) = (m, n) and

    W = U @ diag(S) @ Vh,   U: (m, K), S: (min(m, n),) descending, Vh: (K, n)

so the left singular vectors u_i = U[:, i] live in the output space and the right ones
v_i = Vh[i, :] in the input space. (numpy/torch give Vh, not V: W^T = V S U^T.)

Signs: a singular pair (u_i, v_i) is only defined up to a joint sign flip. We fix it so that the
entry of u_i with the largest absolute value is positive (the first such entry on ties), flipping
v_i with it, so the same matrix always gives the same vectors whatever the LAPACK driver or device.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch

from specbasis.device import resolve_device

log = logging.getLogger(__name__)

SIGN_CONVENTION = "largest-|entry| of each left singular vector u_i is positive; v_i flipped with it"


@dataclass(frozen=True)
class SVD:
    U: np.ndarray   # (m, K)
    S: np.ndarray   # (min(m, n),) descending, all of them whatever K is
    Vh: np.ndarray  # (K, n)


def fix_signs(U: torch.Tensor, Vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the sign convention to batched U (B, m, r) and Vh (B, r, n)."""
    idx = U.abs().argmax(dim=-2, keepdim=True)           # (B, 1, r): argmax takes the first on ties
    sign = torch.sign(torch.gather(U, -2, idx))           # (B, 1, r)
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return U * sign, Vh * sign.transpose(-1, -2)          # flip u_i and v_i together


def _gram_svd(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SVD through the float64 eigendecomposition of the smaller Gram matrix.

    For X = W (m >= n) or Wᵀ (m < n), (n_, n_) = XᵀX = V diag(S²) Vᵀ, and U = X V / S. Cheaper
    than a bidiagonalising SVD on CPU; float64 keeps σ² accurate to eps64·κ², ample for weight
    matrices (κ ≲ 1e5 seen). U S Vh reconstructs X to float64 round-off whatever κ is.
    """
    tall = W.shape[-2] >= W.shape[-1]
    X = (W if tall else W.transpose(-1, -2)).double()         # (B, m_, n_) with m_ >= n_
    lam, V = torch.linalg.eigh(X.transpose(-1, -2) @ X)        # ascending
    V = V.flip(-1)                                             # (B, n_, n_) descending
    XV = X @ V                                                 # (B, m_, n_) = U diag(S)
    S = torch.linalg.vector_norm(XV, dim=-2)                   # (B, n_)
    U = XV / S.clamp_min(torch.finfo(S.dtype).tiny).unsqueeze(-2)
    if tall:
        return U, S, V.transpose(-1, -2)
    return V, S, U.transpose(-1, -2)


# Below this ratio σ_min/σ_max the Gram route loses orthogonality of the smallest vectors;
# such matrices go through the bidiagonalising SVD instead.
GRAM_MIN_RATIO = 1e-6


def svd_batch(mats: torch.Tensor, rank: int | None = None, method: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SVD of a stack of same-shape matrices (B, m, n); returns float32 U (B,m,K), S (B,r), Vh (B,K,n).

    method: "gesdd" (torch.linalg.svd in float32: the GPU path), "gram" (float64 Gram
    eigendecomposition: the CPU path), or "auto" (gesdd on CUDA, gram elsewhere).
    """
    assert mats.ndim == 3, f"expected (B, m, n), got {tuple(mats.shape)}"
    if method == "auto":
        method = "gesdd" if mats.is_cuda else "gram"
    if method == "gram":
        U, S, Vh = _gram_svd(mats)
        # (B,) near rank-deficient; `<=` takes the all-zero matrix too (e.g. ΔW of a frozen matrix),
        # whose Gram route gives U = 0 instead of orthonormal vectors
        bad = S[:, -1] <= GRAM_MIN_RATIO * S[:, 0]
        if bad.any():
            U[bad], S[bad], Vh[bad] = torch.linalg.svd(mats[bad].double(), full_matrices=False)
    elif method == "gesdd":
        U, S, Vh = torch.linalg.svd(mats.float(), full_matrices=False)  # W = U S Vh
    else:
        raise ValueError(f"unknown SVD method {method!r}; allowed: auto, gram, gesdd")
    U, Vh = fix_signs(U, Vh)
    if rank is not None:
        U, Vh = U[..., :rank], Vh[..., :rank, :]
    return U.float(), S.float(), Vh.float()


def shape_batches(matrices: Mapping[str, np.ndarray], max_batch_bytes: int = 256 * 2**20
                  ) -> Iterable[tuple[list[str], np.ndarray]]:
    """(ids, float32 stack (B, m, n)) of the matrices, grouped by shape, at most max_batch_bytes a batch.

    `matrices` may be lazy (e.g. an h5py group): each matrix is read when its batch is formed.
    """
    by_shape: dict[tuple[int, int], list[str]] = defaultdict(list)
    for key in matrices:
        by_shape[tuple(matrices[key].shape)].append(key)
    for (m, n), keys in by_shape.items():
        per_batch = max(1, max_batch_bytes // (4 * m * n))
        for start in range(0, len(keys), per_batch):
            chunk = keys[start:start + per_batch]
            yield chunk, np.stack([np.asarray(matrices[k], dtype=np.float32) for k in chunk])


def svd_all(
    matrices: Mapping[str, np.ndarray],
    *,
    rank: int | None = None,
    device: str = "auto",
    method: str = "auto",
    max_batch_bytes: int = 256 * 2**20,
    progress: bool = True,
) -> Iterable[tuple[str, SVD]]:
    """Yield (id, SVD) for every matrix, batching matrices of one shape (see shape_batches)."""
    from tqdm.auto import tqdm

    dev = resolve_device(device)
    bar = tqdm(total=len(matrices), desc=f"SVD ({dev.type})", unit="matrix", disable=not progress)
    for chunk, batch in shape_batches(matrices, max_batch_bytes):
        stack = torch.from_numpy(batch)
        bad = [k for k, ok in zip(chunk, torch.isfinite(stack).flatten(1).all(1).tolist()) if not ok]
        if bad:
            raise ValueError(f"matrix {bad[0]} holds NaN or Inf; its SVD is undefined (re-extract the weights)")
        U, S, Vh = (t.cpu().numpy() for t in svd_batch(stack.to(dev), rank, method))
        for i, key in enumerate(chunk):
            yield key, SVD(U[i], S[i], Vh[i])
        bar.update(len(chunk))
    bar.close()


def reconstruction_error(W: np.ndarray, svd: SVD) -> float:
    """||W - U S Vh||_F / ||W||_F (needs K = min(m, n))."""
    k = svd.U.shape[1]
    approx = (svd.U * svd.S[:k]) @ svd.Vh
    return float(np.linalg.norm(W - approx) / np.linalg.norm(W))


def write_svd_matrices(matrices: Mapping[str, np.ndarray], out_path, *, rank: int | str = "all",
                       method: str = "auto", device: str = "auto", attrs: Mapping | None = None) -> dict:
    """SVD of every matrix of a mapping (lazy is fine: see svd_all) into an SVD store, atomically.

    Layout: one group per matrix id holding float32 datasets U (m, K), S (min(m, n),), Vh (K, n),
    with attrs shape (m, n); root attrs say the convention, rank, method and device, plus `attrs`
    (where the matrices came from). Returns a summary: matrices, seconds.
    """
    import time

    import h5py

    from specbasis.io.store import atomic_path

    k = None if rank == "all" else int(rank)
    t0 = time.perf_counter()
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as dst:
        dst.attrs.update(
            convention="W = U @ diag(S) @ Vh, W in torch Linear orientation (out, in)",
            sign_convention=SIGN_CONVENTION, rank=str(rank), method=method, device=str(resolve_device(device)),
            dtype="float32", **(attrs or {}),
        )
        for key, res in svd_all(matrices, rank=k, device=device, method=method):
            g = dst.create_group(key)
            g.create_dataset("U", data=res.U)
            g.create_dataset("S", data=res.S)
            g.create_dataset("Vh", data=res.Vh)
            g.attrs["shape"] = matrices[key].shape
        dst.flush()
    return {"matrices": len(matrices), "seconds": time.perf_counter() - t0}


def write_svd_store(weights_path, out_path, *, rank: int | str = "all", method: str = "auto",
                    device: str = "auto") -> dict:
    """Read every matrix of a weights store, write its SVD store atomically; return a summary.

    Layout: that of `write_svd_matrices`, with root attr `weights` naming the weights store.
    """
    import h5py

    from specbasis.io.extract import matrix_ids

    with h5py.File(weights_path, "r") as src:
        ids = matrix_ids(src)
        summary = write_svd_matrices({i: src[i] for i in ids}, out_path, rank=rank, method=method, device=device,
                                     attrs={"weights": str(weights_path)})
    log.info("SVD of %d matrices of %s in %.2f s on %s", summary["matrices"], weights_path, summary["seconds"],
             resolve_device(device))
    return summary


def read_svd(path, ids: Iterable[str] | None = None, rank: int | None = None) -> dict[str, SVD]:
    """Read (the leading `rank` vectors of) the SVDs of an SVD store."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for key in ids if ids is not None else f.keys():
            g = f[key]
            sl = slice(None) if rank is None else slice(0, rank)
            out[key] = SVD(g["U"][:, sl], g["S"][:], g["Vh"][sl, :])
    return out


class StoredSVDs:
    """Read-on-demand view of an SVD store for the spectral adapter (specbasis.methods.spectral_adapter.apply_spectral's
    `factors`): `get(matrix id)` gives its SVD when the store holds at least `min_rank` vectors of it, else the
    default (the adapter then computes the SVD itself)."""

    def __init__(self, path, min_rank: int = 0):
        self.path, self.min_rank = path, min_rank

    def get(self, key: str, default=None):
        import h5py

        with h5py.File(self.path, "r") as f:
            if key not in f or f[key]["U"].shape[1] < self.min_rank:
                return default
        return read_svd(self.path, [key])[key]

