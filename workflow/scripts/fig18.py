"""Figure 18: similarity against generalization (paper Appendix J).

Snakemake names:
  input.tests       results/generalization.csv
  input.similarity  results/generalization.pairs.csv (pair, depth, ranks, mean_cos, accuracy)
  input.style       the shared matplotlib style file
  params.alpha      the FDR level results/generalization.csv was made with
  params.provenance the suite's record, embedded with the specbasis commit in the PDF and PNG
  output.pdf, output.png
  log[0]
"""
import matplotlib.pyplot as plt
import pandas as pd

from specbasis.figures import save
from specbasis.figures.generalization import fig18
from specbasis.logs import setup_logging


def main(tests: str, similarity: str, alpha: float, style: str, pdf: str, png: str,
         provenance: dict | None = None) -> None:
    plt.style.use(style)
    cells = pd.read_csv(similarity)
    accuracy = dict(zip(cells["pair"], cells["accuracy"]))
    save(fig18(pd.read_csv(tests), cells.drop(columns="accuracy"), accuracy, alpha), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.tests, snakemake.input.similarity, snakemake.params.alpha,  # noqa: F821
         snakemake.input.style, snakemake.output.pdf, snakemake.output.png,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
