"""Figure 19: r_i against the pretrained–finetuned alignment at ranks 1, 5, 10 and 100.

Snakemake: input.cumgrad (list of results/cumgrad/{pair}.csv), input.alignment (list of
results/alignment/{pair}.csv), input.style; params.provenance (the suite's record, embedded with the
specbasis commit in the PDF and PNG); output.pdf, output.png; log[0].
"""
import matplotlib.pyplot as plt

from specbasis.figures import save
from specbasis.figures.cumgrad import fig19
from specbasis.logs import setup_logging
from specbasis.io.tables import read_csvs


def main(cumgrad: list[str], alignment: list[str], style: str, pdf: str, png: str,
         provenance: dict | None = None) -> None:
    plt.style.use(style)
    save(fig19(read_csvs(cumgrad), read_csvs(alignment)), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.cumgrad, snakemake.input.alignment, snakemake.input.style,  # noqa: F821
         snakemake.output.pdf, snakemake.output.png, provenance=dict(snakemake.params.provenance))  # noqa: F821
