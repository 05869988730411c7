"""Cumulative gradient ΔW against W_pt, rank by rank, for one pair -> results/cumgrad/{pair}.csv.

Snakemake: input.delta (results/delta/{pair}.h5), input.pretrained (results/svd/{model}.h5 of the
pair's pretrained model); wildcards.pair; params.max_rank; output[0] results/cumgrad/{pair}.csv;
log[0]. Columns: specbasis.analysis.cumgrad.COLUMNS.
"""
import logging

from specbasis.analysis.cumgrad import cumgrad_table
from specbasis.logs import setup_logging
from specbasis.svd import read_svd
from specbasis.io.tables import write_csv


def main(pair: str, delta: str, pretrained: str, out: str, max_rank: int) -> None:
    log = logging.getLogger("specbasis")
    dw, pt = read_svd(delta, rank=max_rank), read_svd(pretrained, rank=max_rank)
    for key in sorted(k for k, svd in dw.items() if not svd.S.any()):
        log.warning("%s: matrix %s is unchanged by finetuning (ΔW == 0): ratio 0, alignment NaN", pair, key)
    table = cumgrad_table(pair, dw, pt, max_rank)
    log.info("%s: %d matrices, %d rows", pair, len(dw), len(table))
    write_csv(table, out)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.wildcards.pair, snakemake.input.delta, snakemake.input.pretrained,  # noqa: F821
         snakemake.output[0], snakemake.params.max_rank)  # noqa: F821
