"""Singular-value spectra of one pair -> results/spectra/{pair}.csv (one row per matrix) and
results/spectra/{pair}.ranks.csv (one row per matrix and rank).

Snakemake: input.pretrained, input.finetuned (SVD stores), wildcards.pair, output.per_matrix,
output.per_rank, log[0]. Only the singular values S are read, never U or Vh.
"""
import logging

from specbasis.logs import setup_logging
from specbasis.analysis.spectra import read_spectra, spectra_tables
from specbasis.io.tables import warn_one_sided, write_csv


def main(pair: str, pretrained: str, finetuned: str, per_matrix: str, per_rank: str) -> None:
    log = logging.getLogger("specbasis")
    pt, ft = read_spectra(pretrained), read_spectra(finetuned)
    matrices, ranks, only = spectra_tables(pair, pt, ft)
    warn_one_sided(pair, only, pt)
    log.info("%s: %d matrices in both models, RSD %.3g to %.3g, %d undefined relative changes (zero σ_pt)",
             pair, len(matrices), matrices["rsd"].min(), matrices["rsd"].max(), ranks["rel_change"].isna().sum())
    write_csv(matrices, per_matrix)
    write_csv(ranks, per_rank)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.wildcards.pair, snakemake.input.pretrained, snakemake.input.finetuned,  # noqa: F821
         snakemake.output.per_matrix, snakemake.output.per_rank)  # noqa: F821
