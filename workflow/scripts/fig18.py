"""Figure 18: similarity against generalization (paper Appendix J).

Snakemake names:
  input.tests      results/generalization.csv
  input.alignment  list: results/alignment/{pair}.csv of every pair
  input.metrics    list: results/models/{finetuned}/metrics.json (empty for the paper suite)
  input.style      the shared matplotlib style file
  params.pairs     {pair: finetuned model}
  params.accuracy  {finetuned model: its config `accuracy`, or None}
  params.alpha     the FDR level results/generalization.csv was made with
  output.pdf, output.png
  log[0]
"""
import matplotlib.pyplot as plt
import pandas as pd

from specbasis.figures import save
from specbasis.figures.generalization import fig18
from specbasis.generalization import accuracies, similarity_by_layer
from specbasis.logs import setup_logging
from specbasis.tables import read_csvs


def main(tests: str, alignment: list[str], metrics: list[str], pairs: dict, accuracy: dict, alpha: float,
         style: str, pdf: str, png: str) -> None:
    plt.style.use(style)
    similarity = similarity_by_layer(read_csvs(alignment))
    save(fig18(pd.read_csv(tests), similarity, accuracies(pairs, metrics, accuracy), alpha), pdf, png)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.tests, snakemake.input.alignment, snakemake.input.metrics,  # noqa: F821
         snakemake.params.pairs, snakemake.params.accuracy, snakemake.params.alpha,  # noqa: F821
         snakemake.input.style, snakemake.output.pdf, snakemake.output.png)  # noqa: F821
