"""SVD of ΔW = W_ft − W_pt of every matrix of a pair -> results/delta/{pair}.h5 (an SVD store).

Snakemake: input.pretrained, input.finetuned (weights stores results/weights/{model}.h5 of the
pair's two models); output[0] results/delta/{pair}.h5; params.rank, params.method, params.device
(as in rule svd); threads; log[0].
"""
import os

import torch

from specbasis.analysis.cumgrad import write_delta_store
from specbasis.logs import setup_logging


def main(pretrained: str, finetuned: str, out: str, rank, method: str, device: str, threads: int) -> None:
    torch.set_num_threads(min(threads, os.cpu_count() or 1))
    write_delta_store(pretrained, finetuned, out, rank=rank, method=method, device=device)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.pretrained, snakemake.input.finetuned, snakemake.output[0],  # noqa: F821
         snakemake.params.rank, snakemake.params.method, snakemake.params.device, snakemake.threads)  # noqa: F821
