"""fig5's tidy table: one row per (panel, point, seed) of the spectral sweeps, from the runs' metrics.json.

Snakemake: input.runs, params.points (sweep, x, seed, k, m, layers, model), output[0], log[0].
"""
from pathlib import Path

from specbasis.logs import setup_logging
from specbasis.analysis.peft import read_metrics, sweep_table
from specbasis.io.tables import write_csv

if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    points = list(snakemake.params.points)  # noqa: F821
    folder = {Path(run).name: run for run in snakemake.input.runs}  # noqa: F821 - <results>/models/<run>
    metrics = {p["model"]: read_metrics(folder[p["model"]]) for p in points}
    write_csv(sweep_table(points, metrics), snakemake.output[0])  # noqa: F821
