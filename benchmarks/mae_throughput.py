"""Training throughput of the pretraining-dynamics MAE on this machine: images per second.

For each model size: MAE pretraining steps (forward + backward + AdamW step, masked 60%, the cost
`dynamics.pretrain` pays per image) and classification steps (the encoder on all patches + a linear
head: `dynamics.posttrain(mode="classify")`), batch 64, Fashion-MNIST-shaped random images, plus the
evaluation-only forward of the MAE (validation). A script, not a test:

    python benchmarks/mae_throughput.py                        # default and paper sizes, torch's threads
    python benchmarks/mae_throughput.py --threads 2 --seconds 10
    python benchmarks/mae_throughput.py --size hidden_size=96,num_layers=4,num_heads=3

Sizes: `default` = MAESpec() (the default suite's), `paper` = the paper's sizes on 28×28×1 images
(encoder 192×6×3, decoder 64×2×4), `paper_cifar` = the paper's model on 32×32×3 (its own data shape).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from specbasis.dynamics.mae import PAPER, PAPER_FMNIST, MAEClassifier, MAESpec, build_mae, mask_noise


def parse_size(text: str) -> MAESpec:
    named = {"default": MAESpec(), "paper": PAPER_FMNIST, "paper_cifar": PAPER}
    if text in named:
        return named[text]
    fields = dict(item.split("=", 1) for item in text.split(","))
    types = {k: type(v) for k, v in MAESpec().to_dict().items()}
    return MAESpec.from_dict({k: (v.lower() == "true") if types.get(k) is bool else types.get(k, str)(v)
                              for k, v in fields.items()})


def rate(step, batch: int, seconds: float, warmup: int = 3) -> float:
    """Images per second of `step()` over about `seconds`, after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n * batch / (time.perf_counter() - t0)


def measure(spec: MAESpec, batch: int, seconds: float) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, spec.num_channels, spec.image_size, spec.image_size, generator=gen)
    mae = build_mae(spec, 0)
    opt = torch.optim.AdamW([p for p in mae.parameters() if p.requires_grad], lr=1e-4)

    def mae_step():
        loss = mae(pixel_values=x, noise=mask_noise(batch, spec.num_patches, gen)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mae.parameters(), 1.0)
        opt.step()

    @torch.inference_mode()
    def mae_eval():
        mae(pixel_values=x, noise=mask_noise(batch, spec.num_patches, gen))

    clf = MAEClassifier.from_mae(mae, 10, 0)
    copt = torch.optim.AdamW([p for p in clf.parameters() if p.requires_grad], lr=1e-4)
    y = torch.randint(0, 10, (batch,), generator=gen)

    def clf_step():
        loss = torch.nn.functional.cross_entropy(clf(x), y)
        copt.zero_grad(set_to_none=True)
        loss.backward()
        copt.step()

    params = sum(p.numel() for p in mae.vit.parameters() if p.requires_grad)
    return {"encoder_params": params, "mae_train": rate(mae_step, batch, seconds),
            "mae_eval": rate(mae_eval, batch, seconds / 2), "classify_train": rate(clf_step, batch, seconds)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", action="append", help="default | paper | paper_cifar | key=value,... (repeatable)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=8.0, help="timed seconds per measurement")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print(f"{'size':<12} {'encoder':>30} {'params':>8} {'mae train':>10} {'mae eval':>9} {'classify':>9}  (images/s)")
    for text in args.size or ["default", "paper"]:
        spec = parse_size(text)
        r = measure(spec, args.batch, args.seconds)
        shape = (f"{spec.image_size}²×{spec.num_channels} d{spec.hidden_size}×{spec.num_layers}×{spec.num_heads}"
                 f" dec{spec.decoder_hidden_size}×{spec.decoder_layers}")
        print(f"{text[:12]:<12} {shape:>30} {r['encoder_params']:>8} {r['mae_train']:>10.0f} "
              f"{r['mae_eval']:>9.0f} {r['classify_train']:>9.0f}", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
