"""Table 1: every finetuning method of the peft grid x its tasks: test score, parameters, step time, memory, and
each method against the spectral adapter, paired by seed and test example (analysis.peft.paired_rows).

Snakemake: input.runs (the runs' model folders), params.cells (task, method, seed, model of each cell),
params.columns ({dataset: column}), params.paper (add the paper's reported rows), output.csv/md/tex, log[0].
params.provenance: the suite's record, written with the specbasis commit to output.provenance
(<table>.provenance.json) and as a last comment line of the markdown and LaTeX.
"""
import logging
from pathlib import Path

from specbasis.logs import setup_logging
from specbasis.analysis.peft import paired_rows, read_metrics, run_rows, table1, table1_display
from specbasis.io.metrics import read_predictions
from specbasis.io.tables import write_table


def main(runs: list[str], cells: list[dict], columns: dict, paper: bool, csv: str, md: str, tex: str,
         provenance: dict | None = None) -> None:
    folder = {Path(run).name: run for run in runs}  # a model's folder: <suite's results>/models/<model>
    metrics = {c["model"]: read_metrics(folder[c["model"]]) for c in cells}
    runs = run_rows(cells, metrics)
    for row in runs.itertuples():
        logging.getLogger("specbasis").info("%s %s seed %d: %.2f (%s), %d parameters, %.3f s/step", row.task,
                                            row.method, row.seed, row.score, row.metric, row.parameters,
                                            row.step_seconds)
    predictions = {c["model"]: read_predictions(folder[c["model"]]) for c in cells}
    paired = paired_rows(cells, metrics, predictions)
    for row in paired.itertuples():
        logging.getLogger("specbasis").info("%s %s - %s over %d seeds: %+.2f [%+.2f, %+.2f], p %.3g (bootstrap), "
                                            "%s (McNemar)", row.task, row.method, row.reference, row.seeds,
                                            row.difference, row.low, row.high, row.p_bootstrap, row.p_mcnemar)
    table = table1(runs, columns, paper=paper, paired=paired)
    write_table(table, csv, md, tex, display=table1_display(table, columns), provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    p = snakemake.params  # noqa: F821
    out = snakemake.output  # noqa: F821
    main(list(snakemake.input.runs), list(p.cells), dict(p.columns), bool(p.paper), out.csv, out.md,  # noqa: F821
         out.tex, provenance=dict(p.provenance))
