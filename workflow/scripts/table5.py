"""Table 5: the per-task training settings of table1's runs (epochs or steps, learning rates), from the config.

Snakemake: params.settings ({task: {method: settings}}), params.columns, output.csv/md/tex, log[0].
"""
from specbasis.logs import setup_logging
from specbasis.analysis.peft import table5
from specbasis.io.tables import write_table

if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    write_table(table5(dict(snakemake.params.settings), dict(snakemake.params.columns)),  # noqa: F821
                snakemake.output.csv, snakemake.output.md, snakemake.output.tex)  # noqa: F821
