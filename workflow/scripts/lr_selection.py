"""The learning-rate selection: every candidate's validation score and the chosen one per method.

Snakemake: input.runs (the selection runs' model folders), params.cells (task, method, lr, seed, model,
configured_lr of each), output[0] (results/peft/lr_selection.csv), log[0].
"""
import logging

from specbasis.analysis.peft import lr_selection, read_metrics
from specbasis.io.tables import write_csv
from specbasis.logs import setup_logging


def main(cells: list[dict], out: str) -> None:
    metrics = {c["model"]: read_metrics(f"results/models/{c['model']}") for c in cells}
    table = lr_selection(cells, metrics)
    log = logging.getLogger("specbasis")
    for row in table[table["chosen"]].itertuples():
        log.info("%s %s: lr %g (val %s %.2f)%s", row.task, row.method, row.lr, row.metric, row.val_score,
                 "" if row.configured_is_chosen else f"; the config has {row.configured_lr:g}")
    write_csv(table, out)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(list(snakemake.params.cells), snakemake.output[0])  # noqa: F821
