"""fig22 and table6: how each table1 method moves the pretrained basis, beside its table1 score.

Snakemake: input.basis (results/peft/basis/<run>.csv of every table1 run), input.runs (their model folders),
params.cells (table1's cells), output.pdf/png (rule fig22) or output.csv/md/tex (rule table6), log[0].
params.provenance: the suite's record with the specbasis commit, embedded in the PDF and PNG (fig22), or written to
output.provenance (table6.provenance.json) and as a last comment line of the markdown and LaTeX (table6).
"""
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from specbasis.analysis.peft import basis_by_method, read_metrics
from specbasis.figures import save
from specbasis.figures.peft import fig22
from specbasis.io.tables import write_table
from specbasis.logs import setup_logging


def table(cells: list[dict], basis_csvs: list[str], runs: list[str]) -> pd.DataFrame:
    """basis_csvs: <results>/peft/basis/<run>.csv, runs: <results>/models/<run> (the suite's results folder)."""
    csv = {Path(path).stem: path for path in basis_csvs}
    folder = {Path(path).name: path for path in runs}
    basis = {c["model"]: pd.read_csv(csv[c["model"]]) for c in cells}
    metrics = {c["model"]: read_metrics(folder[c["model"]]) for c in cells}
    return basis_by_method(cells, basis, metrics)


def main(cells: list[dict], basis_csvs: list[str], runs: list[str], out, style: str | None = None,
         provenance: dict | None = None) -> None:
    """`out`: the rule's outputs, pdf and png (fig22, drawn in `style`) or csv, md and tex (table6)."""
    result = table(cells, basis_csvs, runs)
    if "pdf" in out.keys():
        plt.style.use(style)
        save(fig22(result), out.pdf, out.png, provenance=provenance)
    else:
        write_table(result, out.csv, out.md, out.tex, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    out = snakemake.output  # noqa: F821
    main(list(snakemake.params.cells), list(snakemake.input.basis), list(snakemake.input.runs), out,  # noqa: F821
         snakemake.input.get("style"),  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
