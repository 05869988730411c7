"""Figure 6: relative change of the singular values against the rank quantile, one panel per pair.

Snakemake: input.tables (every pair's results/spectra/{pair}.ranks.csv), input.style, output.pdf,
output.png, params.provenance (the suite's record, embedded with the specbasis commit in the PDF and
PNG), log[0].
"""
import matplotlib.pyplot as plt

from specbasis.figures import save
from specbasis.figures.spectra import fig6
from specbasis.logs import setup_logging
from specbasis.io.tables import read_csvs


def main(tables: list[str], style: str, pdf: str, png: str, provenance: dict | None = None) -> None:
    plt.style.use(style)
    save(fig6(read_csvs(tables)), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.tables, snakemake.input.style, snakemake.output.pdf, snakemake.output.png,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
