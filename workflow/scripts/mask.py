"""Mask a fraction of every singular component of a finetuned model's matrices, top-down or bottom-up
-> results/mask/{model}.csv.

input.model: results/models/{model}; input.svd: its SVD store; input.data: the finetune's dataset folder.
params.settings: model, family, device, split (the finetune's format, seed, max_train, max_eval),
groups, orders, fractions, max_eval, batch_size. One row per group x order x fraction
(specbasis.interventions.sweep.MASK_COLUMNS).
"""
import logging

import torch

from specbasis.logs import setup_logging
from specbasis.interventions.sweep import MASK_COLUMNS, load_sweep, mask_points, run_sweep
from specbasis.io.tables import write_csv


def main(model: str, svd: str, data: str, out: str, settings: dict, threads: int) -> None:
    name = settings["model"]
    subject, svds, groups = load_sweep(model, svd, data, settings, threads)
    logging.getLogger("specbasis").info("%s: groups %s, orders %s, fractions %s; %d threads", name,
                                        {g: len(ids) for g, ids in groups.items()}, settings["orders"],
                                        settings["fractions"], torch.get_num_threads())
    points = mask_points(svds, groups, settings["orders"], settings["fractions"], name)
    table = run_sweep(subject.live, points, subject.evaluator(settings["batch_size"], settings["max_eval"]),
                      MASK_COLUMNS)
    write_csv(table, out)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.model, snakemake.input.svd, snakemake.input.data, snakemake.output[0],  # noqa: F821
         dict(snakemake.params.settings), snakemake.threads)  # noqa: F821
