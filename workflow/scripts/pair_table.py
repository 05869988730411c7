"""Tables 2 (vision pairs) and 3 (language pairs): reported and measured accuracies of the pairs.

input.alignment: results/alignment/{pair}.csv of the table's pairs; input.metrics: the folders
results/models/{finetuned} of the models this workflow finetunes (holding metrics.json).
params.pairs: {pair: {pretrained, finetuned}} of the table's pairs; params.models: the config's models.
params.provenance: the suite's record, written with the specbasis commit to output.provenance
(<table>.provenance.json) and as a last comment line of the markdown and LaTeX.
output.csv, output.md, output.tex.
"""
import logging

import pandas as pd

from specbasis.figures.pairs import pair_table
from specbasis.analysis.generalization import read_test_accuracy
from specbasis.logs import setup_logging
from specbasis.io.tables import read_csvs, write_table


def main(alignment: list[str], metrics: list[str], pairs: dict, models: dict, csv: str, md: str, tex: str,
         provenance: dict | None = None) -> None:
    measured = dict(map(read_test_accuracy, metrics))
    rows = read_csvs(alignment) if alignment else pd.DataFrame(columns=["pair", "kind", "rank", "cos"])
    table = pair_table(pairs, models, measured, rows)
    missing = table.loc[table["reported_accuracy"].isna(), "pair"].tolist()
    if missing:
        logging.getLogger("specbasis").warning("no reported accuracy in the config for %s", ", ".join(missing))
    write_table(table, csv, md, tex, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.alignment, snakemake.input.metrics, snakemake.params.pairs,  # noqa: F821
         snakemake.params.models, snakemake.output.csv, snakemake.output.md, snakemake.output.tex,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
