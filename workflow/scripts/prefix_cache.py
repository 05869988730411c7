"""The hidden states entering block `start` of the pretrained model, for every text of a task's splits.

Snakemake: input.base (results/models/<base>), input.data (resources/datasets/<task>), params.settings (the
sweep runs' finetune settings + start), output[0] (a safetensors file, temporary), log[0], threads.
"""
import logging
import os
import time
from pathlib import Path

import torch

from specbasis.data import load_splits
from specbasis.logs import setup_logging
from specbasis.models import load_classifier
from specbasis.training.prefix_cache import build


def main(base: str, data: str, out: str, settings: dict, threads: int) -> None:
    torch.set_num_threads(min(threads, os.cpu_count() or 1))
    task = {"task": settings["task"]} if settings.get("task") else {}
    splits = load_splits(settings["format"], Path(data), settings["seed"], **task,
                         max_train=settings.get("max_train"), max_eval=settings.get("max_eval"))
    model, preprocess = load_classifier(Path(base), settings["family"], max(2, splits.num_classes),
                                        max_length=settings.get("max_length"))
    t0 = time.perf_counter()
    texts = list(splits.train.x) + list(splits.val.x) + list(splits.test.x)
    cache = build(model, preprocess, texts, settings["start"])
    cache.save(Path(out), base=base, max_length=settings.get("max_length"))
    logging.getLogger("specbasis").info("prefix cache: %d texts before block %d in %.1f s -> %s", len(cache),
                                        settings["start"], time.perf_counter() - t0, out)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.base, snakemake.input.data, snakemake.output[0], dict(snakemake.params.settings),  # noqa: F821
         snakemake.threads)  # noqa: F821
