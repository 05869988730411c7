"""The learning-rate selection: every candidate's validation score and the chosen one per method.

Snakemake: input.runs (the selection runs' model folders), params.cells (task, method, lr, seed, model,
configured_lr of each), output[0] (<results>/peft/lr_selection.csv), log[0].
"""
import logging
from pathlib import Path

from specbasis.analysis.peft import lr_selection, read_metrics
from specbasis.io.tables import write_csv
from specbasis.logs import setup_logging


def main(runs: list[str], cells: list[dict], out: str) -> None:
    folder = {Path(run).name: run for run in runs}  # a model's folder: <suite's results>/models/<model>
    metrics = {c["model"]: read_metrics(folder[c["model"]]) for c in cells}
    table = lr_selection(cells, metrics)
    log = logging.getLogger("specbasis")
    for row in table[table["chosen"]].itertuples():
        log.info("%s %s: lr %g (val %s %.2f)%s", row.task, row.method, row.lr, row.metric, row.val_score,
                 "" if row.configured_is_chosen else f"; the config has {row.configured_lr:g}")
    write_csv(table, out)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(list(snakemake.input.runs), list(snakemake.params.cells), snakemake.output[0])  # noqa: F821
