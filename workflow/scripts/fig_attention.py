"""Figures 10 (vision pairs) and 11 (language pairs): alignment of the attention matrices.

input.tables: results/alignment/{pair}.csv of every pair; input.style: the shared style file.
params.modality: {pair: 'vision' | 'language'}; params.which: 'vision' or 'language'.
params.provenance: the suite's record, embedded with the specbasis commit in the PDF and PNG.
output.pdf, output.png. Pairs without attention matrices (EfficientNet) are named, not an error.
"""
import logging

import matplotlib.pyplot as plt

from specbasis.figures import save
from specbasis.figures.alignment import fig_attention
from specbasis.logs import setup_logging
from specbasis.io.tables import read_csvs


def main(tables: list[str], style: str, modality: dict, which: str, pdf: str, png: str,
         provenance: dict | None = None) -> None:
    plt.style.use(style)
    table = read_csvs(tables)
    pairs = [p for p, m in modality.items() if m == which]
    logging.getLogger("specbasis").info("%s pairs: %s; attention kinds present: %s", which, pairs or "none",
                                        sorted(set(table[table["pair"].isin(pairs)]["kind"]) & {"attn_q", "attn_k",
                                                                                                "attn_v", "attn_o"}))
    save(fig_attention(table, dict(modality), which), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.tables, snakemake.input.style, snakemake.params.modality,  # noqa: F821
         snakemake.params.which, snakemake.output.pdf, snakemake.output.png,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
