"""SVD stage against a per-matrix numpy.linalg.svd float64 loop and against its floor, side by side in one run.

Usage:  python benchmarks/svd_speed.py [results/weights/minilm.h5] [--device cpu|cuda] [--repeats 3]

Reads every matrix of one model's weights store (run the workflow first, or
`snakemake --cores 2 results/weights/minilm.h5`), then, interleaving the three so that a busy
machine slows all alike, times:
  - specbasis.svd.svd_all, the function the SVD rule runs (batched by shape, method auto);
  - numpy.linalg.svd(W.astype(float64)) one matrix at a time (the reference);
  - the Gram products alone: XᵀX in float64 with X = W or Wᵀ, whichever makes XᵀX the smaller,
    batched and split over threads exactly as svd_all batches (stacking and widening included).
    The bound that no SVD beats: a dense SVD of an m×n matrix (m ≥ n) takes at least the 2mn²
    flops of XᵀX (Householder bidiagonalisation alone takes 4mn² − 4n³/3), and the SVD stage's
    Gram route computes XᵀX and then more (eigh of it, X·V).
Prints the best time of each, their ratios, the largest relative reconstruction error
||W - U S Vh||_F / ||W||_F of ours, the largest relative error of the singular values, and
|cos| between our top-50 singular vectors and the float64 reference wherever the relative gap
to the neighbouring singular values exceeds --gap (elsewhere vectors are not well defined).
Target on CPU: ratio >= 3 with reconstruction error <= 1e-5.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from specbasis.io.extract import read_weights
from specbasis.svd import shape_batches, svd_all


def relative_gaps(S: np.ndarray) -> np.ndarray:
    """min(σ_{i-1} - σ_i, σ_i - σ_{i+1}) / σ_i for each i (one-sided at the ends)."""
    d = -np.diff(S)
    left = np.concatenate([[np.inf], d])
    right = np.concatenate([d, [np.inf]])
    return np.minimum(left, right) / np.maximum(S, np.finfo(S.dtype).tiny)


def gram_products(mats: dict[str, np.ndarray], device: str) -> list[torch.Tensor]:
    """XᵀX (float64, the smaller side) of every matrix, in the batches specbasis.svd.svd_all forms."""
    out = []
    for _, batch in shape_batches(mats):
        X = torch.from_numpy(batch).to(device).double()                    # (B, m, n)
        out.append(X.transpose(-1, -2) @ X if X.shape[-2] >= X.shape[-1] else X @ X.transpose(-1, -2))
    if device == "cuda":
        torch.cuda.synchronize()
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="?", default="results/weights/minilm.h5")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--method", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top", type=int, default=50)
    ap.add_argument("--gap", type=float, default=1e-2, help="relative gap that makes a vector well defined")
    args = ap.parse_args(argv)

    mats = read_weights(args.weights)
    n_el = sum(m.size for m in mats.values())
    print(f"{args.weights}: {len(mats)} matrices, {n_el / 1e6:.1f} M entries, torch threads {torch.get_num_threads()}")

    def ours():
        out = dict(svd_all(mats, device=args.device, method=args.method, progress=False))
        if args.device == "cuda":
            torch.cuda.synchronize()
        return out

    def reference():
        return {k: np.linalg.svd(m.astype(np.float64), full_matrices=False) for k, m in mats.items()}

    def floor():
        return gram_products(mats, args.device)

    ours(), floor()  # warm-up (allocations, CUDA context, LAPACK workspaces)
    t_ours, t_ref, t_gram = [], [], []
    for _ in range(args.repeats):
        t = time.perf_counter(); res = ours(); t_ours.append(time.perf_counter() - t)
        t = time.perf_counter(); ref = reference(); t_ref.append(time.perf_counter() - t)
        t = time.perf_counter(); floor(); t_gram.append(time.perf_counter() - t)

    rec, s_err, cos_min, n_cmp = 0.0, 0.0, 1.0, 0
    for k, W in mats.items():
        W64 = W.astype(np.float64)
        s = res[k]
        approx = (s.U.astype(np.float64) * s.S[: s.U.shape[1]]) @ s.Vh.astype(np.float64)
        rec = max(rec, np.linalg.norm(W64 - approx) / np.linalg.norm(W64))
        U0, S0, Vh0 = ref[k]
        s_err = max(s_err, float(np.max(np.abs(s.S - S0) / S0.max())))
        top = min(args.top, len(S0))
        ok = relative_gaps(S0)[:top] > args.gap
        cu = np.abs(np.sum(s.U[:, :top] * U0[:, :top], axis=0))[ok]
        cv = np.abs(np.sum(s.Vh[:top] * Vh0[:top], axis=1))[ok]
        if ok.any():
            cos_min = min(cos_min, cu.min(), cv.min())
        n_cmp += 2 * int(ok.sum())

    best_o, best_r, best_g = min(t_ours), min(t_ref), min(t_gram)
    print(f"specbasis svd_all ({args.device}, method {args.method}): "
          f"best {best_o:.3f} s of {args.repeats}")
    print(f"numpy.linalg.svd float64 loop:                best {best_r:.3f} s of {args.repeats}")
    print(f"ratio (numpy / specbasis): {best_r / best_o:.2f}x   (target >= 3x on CPU)")
    print(f"Gram products alone (float64, batched alike):  best {best_g:.3f} s of {args.repeats}   "
          "(the bound that no SVD beats)")
    print(f"ratio (specbasis / Gram products): {best_o / best_g:.2f}x   (1x would be the bound)")
    print(f"max relative reconstruction error: {rec:.2e}   (target <= 1e-5)")
    print(f"max |σ - σ_ref| / σ_max: {s_err:.2e}")
    print(f"min |cos| of top-{args.top} vectors vs float64 reference where relative gap > {args.gap}: "
          f"{cos_min:.6f} over {n_cmp} vectors")


if __name__ == "__main__":
    main()
