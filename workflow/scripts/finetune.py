"""Finetune a prepared pretrained model on one dataset -> results/models/{model}/ (+ metrics.json)."""
import logging
import math
import os
from pathlib import Path

from specbasis.data import load_splits
from specbasis.logs import setup_logging
from specbasis.training.finetune import finetune

TRAIN_KEYS = ("steps", "batch_size", "lr", "weight_decay", "warmup_frac", "max_length", "image_size", "eval_every")


def main(base: str, data: str, out: str, settings: dict, threads: int, cache: str | None = None,
         svd: str | None = None) -> None:
    task = {"task": settings["task"]} if settings.get("task") else {}
    splits = load_splits(settings["format"], Path(data), settings["seed"], **task,
                         max_train=settings.get("max_train"), max_eval=settings.get("max_eval"))
    train = {k: settings[k] for k in TRAIN_KEYS if k in settings}
    if "epochs" in settings:  # passes over the training split, as the paper's Table 5 gives them
        train["steps"] = max(1, math.ceil(settings["epochs"] * len(splits.train) / train["batch_size"]))
        train.setdefault("eval_every", train["steps"])
    extra = {}
    if svd:  # the spectral adapter's U_r, V_r from the workflow's SVD store of the base model (where it holds them)
        from specbasis.svd import StoredSVDs

        extra["spectral_factors"] = StoredSVDs(svd, min_rank=settings["method"]["m"])
    if cache:
        from specbasis.training.prefix_cache import PrefixCache

        extra["prefix_cache"] = PrefixCache.load(cache)
    metrics = finetune(Path(base), settings["family"], splits, Path(out), **train,
                       seed=settings.get("train_seed", settings["seed"]), device=settings["device"],
                       threads=min(threads, os.cpu_count() or 1), method=settings.get("method"),
                       eval_step0=settings.get("eval_step0", True), **extra)
    logging.getLogger("specbasis").info("test %s %s", metrics["test_metric"]["name"], metrics["test_metric"]["value"])


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.base, snakemake.input.data, snakemake.output[0],  # noqa: F821
         dict(snakemake.params.settings), snakemake.threads,  # noqa: F821
         snakemake.input.get("cache") or None, snakemake.input.get("svd") or None)  # noqa: F821
