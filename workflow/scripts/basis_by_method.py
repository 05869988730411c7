"""fig22 and table6: how each table1 method moves the pretrained basis, beside its table1 score.

Snakemake: input.basis (results/peft/basis/<run>.csv of every table1 run), input.runs (their model folders),
params.cells (table1's cells), output.pdf/png (rule fig22) or output.csv/md/tex (rule table6), log[0].
"""
import matplotlib.pyplot as plt
import pandas as pd

from specbasis.analysis.peft import basis_by_method, read_metrics
from specbasis.figures import save
from specbasis.figures.peft import fig22
from specbasis.io.tables import write_table
from specbasis.logs import setup_logging


def table(cells: list[dict]) -> pd.DataFrame:
    basis = {c["model"]: pd.read_csv(f"results/peft/basis/{c['model']}.csv") for c in cells}
    metrics = {c["model"]: read_metrics(f"results/models/{c['model']}") for c in cells}
    return basis_by_method(cells, basis, metrics)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    out = snakemake.output  # noqa: F821
    result = table(list(snakemake.params.cells))  # noqa: F821
    if "pdf" in out.keys():
        plt.style.use(snakemake.input.style)  # noqa: F821
        save(fig22(result), out.pdf, out.png)
    else:
        write_table(result, out.csv, out.md, out.tex)
