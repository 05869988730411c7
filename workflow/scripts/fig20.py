"""Figure 20: singular values of the cumulative gradient ΔW against those of W_pt, per pair.

Snakemake: input.cumgrad (list of results/cumgrad/{pair}.csv), input.style; params.provenance (the suite's
record, embedded with the specbasis commit in the PDF and PNG); output.pdf, output.png; log[0].
"""
import matplotlib.pyplot as plt

from specbasis.figures import save
from specbasis.figures.cumgrad import fig20
from specbasis.logs import setup_logging
from specbasis.io.tables import read_csvs


def main(cumgrad: list[str], style: str, pdf: str, png: str, provenance: dict | None = None) -> None:
    plt.style.use(style)
    save(fig20(read_csvs(cumgrad)), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.cumgrad, snakemake.input.style, snakemake.output.pdf, snakemake.output.png,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
