"""Finetune a prepared pretrained model on one dataset -> results/models/{model}/ (+ metrics.json)."""
import logging
import os
from pathlib import Path

from specbasis.data import load_splits
from specbasis.logs import setup_logging
from specbasis.train import finetune

TRAIN_KEYS = ("steps", "batch_size", "lr", "weight_decay", "warmup_frac", "max_length", "image_size", "eval_every")


def main(base: str, data: str, out: str, settings: dict, threads: int) -> None:
    splits = load_splits(settings["format"], Path(data), settings["seed"],
                         max_train=settings.get("max_train"), max_eval=settings.get("max_eval"))
    metrics = finetune(Path(base), settings["family"], splits, Path(out),
                       **{k: settings[k] for k in TRAIN_KEYS if k in settings},
                       seed=settings["seed"], device=settings["device"], threads=min(threads, os.cpu_count() or 1))
    logging.getLogger("specbasis").info("test accuracy %.4f", metrics["test_accuracy"])


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.base, snakemake.input.data, snakemake.output[0],  # noqa: F821
         dict(snakemake.params.settings), snakemake.threads)  # noqa: F821
