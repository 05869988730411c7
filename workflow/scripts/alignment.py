"""Alignment |cos| of matched singular vectors for one pair -> results/alignment/{pair}.csv."""
import logging

from specbasis.analysis.alignment import alignment_table
from specbasis.logs import setup_logging
from specbasis.svd import read_svd
from specbasis.io.tables import warn_one_sided, write_csv


def main(pair: str, pretrained: str, finetuned: str, out: str, max_rank: int) -> None:
    log = logging.getLogger("specbasis")
    pt, ft = read_svd(pretrained, rank=max_rank), read_svd(finetuned, rank=max_rank)
    table, only = alignment_table(pair, pt, ft, max_rank)
    warn_one_sided(pair, only, pt)
    log.info("%s: %d matrices in both models, %d rows", pair, table.groupby(["layer", "kind"]).ngroups, len(table))
    write_csv(table, out)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.wildcards.pair, snakemake.input.pretrained, snakemake.input.finetuned,  # noqa: F821
         snakemake.output[0], snakemake.params.max_rank)  # noqa: F821
