"""|cos| of the analysed matrices' top singular vectors between successive pretraining epochs and to the
final epoch -> results/dynamics/pretrain/{scale}.csv (specbasis.dynamics.train.epoch_similarity + scale).

input.run: results/dynamics/pretrain/{scale}/ (its snapshots.h5); params.max_rank, params.scale.
"""
from pathlib import Path

from specbasis.dynamics.train import epoch_similarity
from specbasis.logs import setup_logging
from specbasis.io.store import atomic_path


def main(run: str, max_rank: int, scale: int, out: str) -> None:
    table = epoch_similarity(Path(run) / "snapshots.h5", max_rank).assign(scale=scale)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.run, snakemake.params.max_rank, snakemake.params.scale, snakemake.output[0])  # noqa: F821
