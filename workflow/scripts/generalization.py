"""Similarity against generalization (paper Appendix J): Spearman tests across pairs, BH-FDR ->
results/generalization.csv (columns: specbasis.analysis.generalization.COLUMNS), and the values tested,
results/generalization.pairs.csv (pair, depth, ranks, mean_cos, accuracy), which fig18 plots.

Snakemake names:
  input.alignment  list: results/alignment/{pair}.csv of every pair
  input.metrics    list: results/models/{finetuned} (folders holding metrics.json) of the models the workflow
                   trains (empty for the paper suite, whose models come from the hub)
  params.pairs     {pair: finetuned model}
  params.accuracy  {finetuned model: its config `accuracy`, or None}
  params.alpha     FDR level, e.g. 0.05
  output.tests       results/generalization.csv
  output.similarity  results/generalization.pairs.csv
  log[0]           the accuracies used and the power statement
"""
import logging

from specbasis.analysis.generalization import accuracies, correlation_tests, power_statement, similarity_by_layer
from specbasis.logs import setup_logging
from specbasis.io.tables import read_csvs, write_csv


def main(alignment: list[str], metrics: list[str], pairs: dict, accuracy: dict, alpha: float,
         out: str, out_similarity: str) -> None:
    log = logging.getLogger("specbasis")
    acc = accuracies(pairs, metrics, accuracy)
    for pair, value in acc.items():
        log.info("%s: held-out accuracy %.4f (%s)", pair, value, pairs[pair])
    similarity = similarity_by_layer(read_csvs(alignment))
    tests = correlation_tests(similarity, acc, alpha)
    log.info("power: %s", power_statement(tests, alpha).replace("\n", "; "))
    write_csv(tests, out)
    write_csv(similarity.assign(accuracy=similarity["pair"].map(acc)), out_similarity)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.alignment, snakemake.input.metrics, snakemake.params.pairs,  # noqa: F821
         snakemake.params.accuracy, snakemake.params.alpha, snakemake.output.tests,  # noqa: F821
         snakemake.output.similarity)  # noqa: F821
