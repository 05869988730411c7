"""SVD of every matrix of a weights store into results/svd/{model}.h5."""
import os

import torch

from specbasis.logs import setup_logging
from specbasis.svd import write_svd_store


def main(weights: str, out: str, rank, method: str, device: str, threads: int) -> None:
    torch.set_num_threads(min(threads, os.cpu_count() or 1))
    write_svd_store(weights, out, rank=rank, method=method, device=device)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input[0], snakemake.output[0], snakemake.params.rank, snakemake.params.method,  # noqa: F821
         snakemake.params.device, snakemake.threads)  # noqa: F821
