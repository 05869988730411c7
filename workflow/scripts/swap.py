"""Swap the top-k singular vectors of a finetuned model's matrices -> results/swap/{model}.csv.

input.model: results/models/{model} (a finetune: weights, preprocess.json, metrics.json);
input.svd: its SVD store; input.pretrained: the SVD store of the model it was finetuned from;
input.cross: [] or the SVD store of its cross-task donor; input.data: the finetune's dataset folder.
params.settings: model, family, device, split (the finetune's format, seed, max_train, max_eval),
groups, sources, k, seed, max_eval, batch_size, pretrained (name), cross (name or None).
One row per group x source x k (specbasis.interventions.sweep.SWAP_COLUMNS).
"""
import logging

import torch

from specbasis.logs import setup_logging
from specbasis.svd import read_svd
from specbasis.interventions.sweep import SWAP_COLUMNS, load_sweep, run_sweep, swap_points
from specbasis.io.tables import write_csv


def main(model: str, svd: str, pretrained: str, cross: list[str], data: str, out: str, settings: dict,
         threads: int) -> None:
    name = settings["model"]
    subject, svds, groups = load_sweep(model, svd, data, settings, threads)
    donors = {"pretrained": (settings["pretrained"], read_svd(pretrained))}
    if cross:
        donors["cross"] = (settings["cross"], read_svd(cross[0]))
    logging.getLogger("specbasis").info("%s: groups %s, sources %s, k %s; donors %s; %d threads", name,
                                        {g: len(ids) for g, ids in groups.items()}, settings["sources"],
                                        settings["k"], {s: d[0] for s, d in donors.items()}, torch.get_num_threads())
    points = swap_points(svds, groups, settings["sources"], settings["k"], donors, settings["seed"], name)
    table = run_sweep(subject.live, points, subject.evaluator(settings["batch_size"], settings["max_eval"]),
                      SWAP_COLUMNS)
    write_csv(table, out)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.model, snakemake.input.svd, snakemake.input.pretrained,  # noqa: F821
         list(snakemake.input.cross), snakemake.input.data, snakemake.output[0],  # noqa: F821
         dict(snakemake.params.settings), snakemake.threads)  # noqa: F821
