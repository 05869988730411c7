"""Why the CPU SVD stage stays in float64: what float32 routes would do to the spectra analyses.

Usage:  python benchmarks/svd_precision.py [results/weights/minilm.h5 results/weights/minilm-rt.h5] [--repeats 3]

For a pretrained and a finetuned weights store, computes the singular values of every matrix id in
both with four routes, each computing the full decomposition (U, S, Vh) as the SVD stage does,
timed side by side in one run:
  - numpy.linalg.svd in float64, one matrix at a time (the reference);
  - specbasis.svd.svd_all (the rule's route: float64 Gram eigendecomposition);
  - a float32 Gram eigendecomposition (what a ~4x faster CPU route would be);
  - torch.linalg.svd in float32 (gesdd; the route the GPU takes).
and, per route, the error of the relative change δ_i = (σ̃_i − σ_i) / σ_i between the two models,
the quantity behind fig6 and table4, computed as the spectra rule does (specbasis.analysis.spectra.relative_change,
which leaves out numerically zero σ_i): for each matrix, max_i |δ_i − δ_i(reference)| divided by
max_i |δ_i(reference)|, reported as the worst matrix. Values near 0 leave the analysis intact;
values near or above 1 mean the route's error is as large as the finetuning signal itself.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from specbasis.io.extract import read_weights
from specbasis.analysis.spectra import Spectrum, relative_change
from specbasis.svd import svd_all


def reference(mats):
    return {k: np.linalg.svd(W.astype(np.float64), full_matrices=False)[1] for k, W in mats.items()}


def specbasis_route(mats):
    return {k: r.S.astype(np.float64) for k, r in svd_all(mats, progress=False)}


def gram32(mats):
    out = {}
    for k, W in mats.items():
        X = torch.from_numpy(W)
        X = X if X.shape[0] >= X.shape[1] else X.T
        _, V = torch.linalg.eigh(X.T @ X)
        XV = X @ V.flip(-1)
        S = torch.linalg.vector_norm(XV, dim=0)
        U = XV / S  # computed, as the stage computes U, though only S is compared
        out[k] = S.double().numpy()
    return out


def gesdd32(mats):
    return {k: torch.linalg.svd(torch.from_numpy(W), full_matrices=False)[1].double().numpy() for k, W in mats.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pretrained", nargs="?", default="results/weights/minilm.h5")
    ap.add_argument("finetuned", nargs="?", default="results/weights/minilm-rt.h5")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    pt, ft = read_weights(args.pretrained), read_weights(args.finetuned)
    ids = sorted(set(pt) & set(ft))
    pt, ft = {k: pt[k] for k in ids}, {k: ft[k] for k in ids}
    print(f"{args.pretrained} vs {args.finetuned}: {len(ids)} matrices, torch threads {torch.get_num_threads()}")

    routes = {"numpy float64 (reference)": reference, "specbasis (float64 Gram)": specbasis_route,
              "float32 Gram": gram32, "float32 gesdd (torch)": gesdd32}
    for fn in routes.values():
        fn(pt)  # warm-up
    times = {name: [] for name in routes}
    results = {}
    for _ in range(args.repeats):
        for name, fn in routes.items():
            t = time.perf_counter()
            results[name] = (fn(pt), fn(ft))
            times[name].append(time.perf_counter() - t)

    def delta(s_pt, s_ft, k):  # as the spectra rule computes it: NaN where σ_pt is numerically zero
        return relative_change(Spectrum(s_pt[k], pt[k].shape), Spectrum(s_ft[k], ft[k].shape))

    delta_ref = {k: delta(*results["numpy float64 (reference)"], k) for k in ids}
    t_ref = min(times["numpy float64 (reference)"])
    print(f"{'route':28s} {'best s':>8s} {'speed-up':>9s} {'worst δσ error / max |δσ|':>27s}  (matrix)")
    for name in routes:
        s_pt, s_ft = results[name]
        err = {k: np.nanmax(np.abs(delta(s_pt, s_ft, k) - delta_ref[k])) / np.nanmax(np.abs(delta_ref[k]))
               for k in ids}
        worst = max(err, key=err.get)
        best = min(times[name])
        print(f"{name:28s} {best:8.3f} {t_ref / best:8.2f}x {err[worst]:27.3g}  ({worst})")


if __name__ == "__main__":
    main()
