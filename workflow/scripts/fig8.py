"""Figure 8: alignment over ranks 1..200 of the FFN matrices, one line per pair, by modality.

input.tables: results/alignment/{pair}.csv of every pair; input.style: the shared style file.
params.modality: {pair: modality (vision, language, eeg, fmri)}; params.max_rank: the last rank shown.
params.provenance: the suite's record, embedded with the specbasis commit in the PDF and PNG.
output.pdf, output.png.
"""
import matplotlib.pyplot as plt

from specbasis.figures import save
from specbasis.figures.alignment import fig8
from specbasis.logs import setup_logging
from specbasis.io.tables import read_csvs


def main(tables: list[str], style: str, modality: dict, max_rank: int, pdf: str, png: str,
         provenance: dict | None = None) -> None:
    plt.style.use(style)
    save(fig8(read_csvs(tables), dict(modality), max_rank), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.tables, snakemake.input.style, snakemake.params.modality,  # noqa: F821
         snakemake.params.max_rank, snakemake.output.pdf, snakemake.output.png,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
