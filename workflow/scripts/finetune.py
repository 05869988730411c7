"""Finetune a prepared pretrained model on one dataset -> results/models/{model}/ (+ metrics.json).

params.work_dir: the run's resumable state (specbasis.training.resume), beside the outputs and never one of them
(Snakemake deletes a job's outputs before running it again): a job stopped (SIGTERM, a preempted cluster job) and run
again goes on after its last checkpoint.
"""
import logging
import os
from pathlib import Path

from specbasis import methods
from specbasis.data import load_splits
from specbasis.logs import setup_logging
from specbasis.training.finetune import finetune
from specbasis.training.settings import CONFIG_KEYS, FinetuneSettings


def main(base: str, data: str, out: str, settings: dict, threads: int, cache: str | None = None,
         svd: str | None = None, work_dir: str | None = None) -> None:
    task = {"task": settings["task"]} if settings.get("task") else {}
    splits = load_splits(settings["format"], Path(data), settings["seed"], **task,
                         max_train=settings.get("max_train"), max_eval=settings.get("max_eval"))
    if settings.get("validation_only"):  # the lr selection's runs: the test split withheld, val in its place
        splits = splits.validation_only()
    train = FinetuneSettings.from_mapping({  # epochs (the paper's Table 5): steps from the training split's size
        **{k: settings[k] for k in CONFIG_KEYS if k in settings}, "seed": settings.get("train_seed", settings["seed"]),
        "device": settings["device"], "threads": min(threads, os.cpu_count() or 1)})
    method = methods.parse(settings.get("method"))  # parsed once, here; the object travels
    extra = {}
    if svd:  # the spectral adapter's U_r, V_r from the workflow's SVD store of the base model (where it holds them)
        from specbasis.svd import StoredSVDs

        extra["spectral_factors"] = StoredSVDs(svd, min_rank=method.svd_rank())
    if cache:
        from specbasis.training.prefix_cache import PrefixCache

        extra["prefix_cache"] = PrefixCache.load(cache)
    metrics = finetune(Path(base), settings["family"], splits, Path(out), train, method=method,
                       work_dir=Path(work_dir) if work_dir else None, **extra)
    logging.getLogger("specbasis").info("test %s %s", metrics["test_metric"]["name"], metrics["test_metric"]["value"])


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.base, snakemake.input.data, snakemake.output[0],  # noqa: F821
         dict(snakemake.params.settings), snakemake.threads,  # noqa: F821
         snakemake.input.get("cache") or None, snakemake.input.get("svd") or None,  # noqa: F821
         snakemake.params.work_dir)  # noqa: F821
