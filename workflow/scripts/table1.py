"""Table 1: every finetuning method of the peft grid x its tasks: test score, parameters, step time, memory.

Snakemake: input.runs (the runs' model folders), params.cells (task, method, seed, model of each cell),
params.columns ({dataset: column}), params.paper (add the paper's reported rows), output.csv/md/tex, log[0].
"""
import logging

from specbasis.logs import setup_logging
from specbasis.analysis.peft import read_metrics, run_rows, table1
from specbasis.io.tables import write_table


def main(cells: list[dict], columns: dict, paper: bool, csv: str, md: str, tex: str) -> None:
    metrics = {c["model"]: read_metrics(f"results/models/{c['model']}") for c in cells}
    runs = run_rows(cells, metrics)
    for row in runs.itertuples():
        logging.getLogger("specbasis").info("%s %s seed %d: %.2f (%s), %d parameters, %.3f s/step", row.task,
                                            row.method, row.seed, row.score, row.metric, row.parameters,
                                            row.step_seconds)
    write_table(table1(runs, columns, paper=paper), csv, md, tex)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    p = snakemake.params  # noqa: F821
    main(list(p.cells), dict(p.columns), bool(p.paper), snakemake.output.csv, snakemake.output.md,  # noqa: F821
         snakemake.output.tex)  # noqa: F821
