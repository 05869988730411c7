"""Table 4: spectral change of the last block's FFN matrices, one row per pair and FFN kind.

Snakemake: input.tables (every pair's results/spectra/{pair}.csv), output.csv, output.md, output.tex,
log[0]. params.provenance: the suite's record, written with the specbasis commit to output.provenance
(<table>.provenance.json) and as a last comment line of the markdown and LaTeX.
"""
from specbasis.figures.spectra import table4
from specbasis.logs import setup_logging
from specbasis.io.tables import read_csvs, write_table


def main(tables: list[str], csv: str, md: str, tex: str, provenance: dict | None = None) -> None:
    write_table(table4(read_csvs(tables)), csv, md, tex, provenance=provenance)


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(snakemake.input.tables, snakemake.output.csv, snakemake.output.md, snakemake.output.tex,  # noqa: F821
         provenance=dict(snakemake.params.provenance))  # noqa: F821
