"""Figure 5: the spectral adapter's rank budget, layer location and block location (seeds, mean ± sd).

Snakemake: input.table (results/peft/fig5.csv), input.reference, input.style, params.cells (table1's full
finetuning cells on the sweep task: their score is drawn as a reference), params.task, output.pdf/png, log[0].
"""
import logging

import matplotlib.pyplot as plt
import pandas as pd

from specbasis.figures import save
from specbasis.figures.peft import fig5, summary
from specbasis.logs import setup_logging
from specbasis.analysis.peft import read_metrics, score


def main(table: str, style: str, cells: list[dict], task: str, pdf: str, png: str) -> None:
    plt.style.use(style)
    sweeps = pd.read_csv(table)
    for row in summary(sweeps).itertuples():
        logging.getLogger("specbasis").info("%s %s: %.2f ± %.2f (min %.2f, max %.2f, %d seeds)", row.sweep, row.x,
                                            row.mean, row.sd, row.lo, row.hi, row.seeds)
    full = [score(read_metrics(f"results/models/{c['model']}")) for c in cells]  # plan.peft.sweep_reference's
    save(fig5(sweeps, sum(full) / len(full) if full else None, task), pdf, png)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.table, snakemake.input.style, list(snakemake.params.cells), snakemake.params.task,  # noqa: F821
         snakemake.output.pdf, snakemake.output.png)  # noqa: F821
