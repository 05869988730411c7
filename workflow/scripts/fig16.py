"""Figure 16: explained variance of the last block's FFN matrices of each pretrained model.

Snakemake: input.tables (every pretrained model's results/energy/{model}.csv), input.style,
output.pdf, output.png, params.provenance (the suite's record, embedded with the specbasis commit in the PDF and
PNG), log[0].
"""
import matplotlib.pyplot as plt

from specbasis.figures import save
from specbasis.figures.spectra import fig16
from specbasis.logs import setup_logging
from specbasis.io.tables import read_csvs


def main(tables: list[str], style: str, pdf: str, png: str, provenance: dict | None = None) -> None:
    plt.style.use(style)
    save(fig16(read_csvs(tables)), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.tables, snakemake.input.style, snakemake.output.pdf, snakemake.output.png,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
