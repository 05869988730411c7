"""Table 5: the per-task training settings of table1's runs (epochs or steps, learning rates), from the config.

Snakemake: params.settings ({task: {method: settings}}), params.columns, output.csv/md/tex, log[0].
params.provenance: the suite's record, written with the specbasis commit to output.provenance
(<table>.provenance.json) and as a last comment line of the markdown and LaTeX.
"""
from specbasis.logs import setup_logging
from specbasis.analysis.peft import table5
from specbasis.io.tables import write_table


def main(settings: dict, columns: dict, csv: str, md: str, tex: str, provenance: dict | None = None) -> None:
    write_table(table5(settings, columns), csv, md, tex, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(dict(snakemake.params.settings), dict(snakemake.params.columns), snakemake.output.csv,  # noqa: F821
         snakemake.output.md, snakemake.output.tex, provenance=dict(snakemake.params.provenance))  # noqa: F821
