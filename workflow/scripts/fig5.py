"""Figure 5: the spectral adapter's rank budget, layer location and block location (seeds, mean ± sd).

Snakemake: input.table (results/peft/fig5.csv), input.reference, input.style, params.cells (table1's full
finetuning cells on the sweep task: their score is drawn as a reference), params.task, params.provenance (the
suite's record, embedded with the specbasis commit in the PDF and PNG), output.pdf/png, log[0].
"""
import logging
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from specbasis.figures import save
from specbasis.figures.peft import fig5, summary
from specbasis.logs import setup_logging
from specbasis.analysis.peft import read_metrics, score


def main(table: str, style: str, cells: list[dict], reference: list[str], task: str, pdf: str, png: str,
         provenance: dict | None = None) -> None:
    """reference: the model folders of `cells` (<results>/models/<run>)."""
    plt.style.use(style)
    sweeps = pd.read_csv(table)
    for row in summary(sweeps).itertuples():
        logging.getLogger("specbasis").info("%s %s: %.2f ± %.2f (min %.2f, max %.2f, %d seeds)", row.sweep, row.x,
                                            row.mean, row.sd, row.lo, row.hi, row.seeds)
    folder = {Path(path).name: path for path in reference}
    full = [score(read_metrics(folder[c["model"]])) for c in cells]  # plan.peft.sweep_reference's
    save(fig5(sweeps, sum(full) / len(full) if full else None, task), pdf, png, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.table, snakemake.input.style, list(snakemake.params.cells),  # noqa: F821
         list(snakemake.input.reference), snakemake.params.task,  # noqa: F821
         snakemake.output.pdf, snakemake.output.png, provenance=dict(snakemake.params.provenance))  # noqa: F821
