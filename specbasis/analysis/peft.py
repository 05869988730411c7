"""table1, table5 and fig5's table from the runs of the `peft:` grid (specbasis.plan.peft): pure functions of the
runs' metrics.json and the config, unit-tested without Snakemake.

Each run's score is its test metric (metrics.json `test_metric`: accuracy, or GLUE's metric of the task: CoLA
Matthews, STS-B Pearson), in percent as the paper's Table 1. Parameters are the adapter's (the task head, which
every method trains in full, left out, as the paper counts them; full finetuning: every parameter). Step time
and peak memory are each run's own (metrics.json: the median seconds of its optimizer steps; the peak memory of
its steps above what was held before each), averaged over the tasks, every method measured the same way.
Inference cost is the forward's time against the base model's: 1 for every method whose adapter merges into the
weights; measured for the bottleneck adapters, which cannot merge (metrics.json `inference`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from specbasis.io.metrics import FinetuneMetrics
from specbasis.plan.peft import PAPER_ROWS

# The paper's Table 1 (shared/paper-tables.md): DeBERTa-v3-base on GLUE's dev sets, reported, not measured here.
PAPER_TASKS = ("RTE", "QQP", "CoLA", "MRPC", "SST-2", "QNLI", "MNLI", "STS-B")
PAPER_TABLE1 = {  # row -> (params, scores in PAPER_TASKS order, "all")
    "Full FT": ("184M", (83.75, 92.40, 69.19, 89.46, 95.63, 94.03, 89.90, 91.60), 88.25),
    "PiSSA": ("1.33M", (88.69, 92.33, 73.12, 91.50, 96.22, 94.43, 90.37, 92.00), 89.83),
    "LoRA (Kaiming init of B)": ("1.33M", (84.84, 92.03, 70.69, 90.28, 95.64, 93.84, 89.96, 91.68), 88.62),
    "LoRA (Gaussian init of B)": ("1.33M", (85.20, 91.99, 69.82, 89.95, 94.95, 93.87, 90.65, 91.60), 88.50),
    "AdaLoRA": ("1.27M", (88.09, 92.23, 71.45, 90.69, 96.10, 94.55, 90.76, 91.84), 89.46),
    "DoRA": ("1.27M", (86.04, 92.07, 70.85, 90.93, 95.79, 94.10, 90.29, 91.79), 88.98),
    "HAdapter (Houlsby)": ("1.22M", (84.48, 91.91, 68.64, 89.95, 95.53, 94.11, 90.13, 91.48), 88.28),
    "PAdapter (Pfeiffer)": ("1.18M", (85.20, 92.04, 68.77, 89.46, 95.61, 94.29, 90.33, 91.54), 88.41),
    "BitFit": ("0.1M", (78.70, 88.41, 66.96, 87.75, 94.84, 92.24, 89.37, 91.35), 86.20),
    "the paper's spectral method": ("0.36M", (84.12, 89.22, 68.13, 88.48, 95.53, 92.06, 87.45, 88.85), 86.73),
}
GLUE_COLUMNS = {"rte": "RTE", "qqp": "QQP", "cola": "CoLA", "mrpc": "MRPC", "sst2": "SST-2", "qnli": "QNLI",
                "mnli": "MNLI", "stsb": "STS-B"}
MiB = 2 ** 20


def read_metrics(folder) -> FinetuneMetrics:
    return FinetuneMetrics.read(folder)


def score(metrics: FinetuneMetrics) -> float:
    """The run's test metric in percent (accuracy, or GLUE's metric of the task)."""
    value = metrics.score
    return np.nan if value is None else 100.0 * float(value)  # None: undefined (a constant prediction's correlation)


def adapter_parameters(metrics: FinetuneMetrics) -> int:
    """The adapter's trainable parameters (the head left out); a run that trained every parameter (full
    finetuning) counts them all, the head too, as the paper counts Full FT."""
    counts = metrics.parameter_counts
    return int(counts["trainable"] if metrics.trained_every_parameter else counts["adapter"])


def forward_ratio(metrics: FinetuneMetrics) -> float:
    """The trained model's forward time against the base model's: 1 for an adapter merged into the weights, the
    measured ratio for one that cannot merge (metrics.json `inference`); NaN for a run from before it was recorded."""
    return np.nan if metrics.inference is None else float(metrics.inference["forward_ratio"])


def _run_fields(m: FinetuneMetrics) -> dict:
    """What table1 and fig5 both read from a run's metrics.json."""
    return {"score": score(m), "metric": m.test_metric["name"], "parameters": adapter_parameters(m),
            "step_seconds": m.step_seconds_median}


def run_rows(cells: list[dict], metrics: dict[str, FinetuneMetrics]) -> pd.DataFrame:
    """One row per table1 run: task, method, seed, model, score, parameters, step seconds, peak memory."""
    rows = []
    for cell in cells:
        m = metrics[cell["model"]]
        peak = m.peak_memory
        rows.append({**cell, **_run_fields(m), "head_parameters": m.parameter_counts["head"],
                     "peak_step_mib": peak["peak_above_step_start_bytes"] / MiB, "peak_mib": peak["peak_bytes"] / MiB,
                     "device": peak["device"], "forward_ratio": forward_ratio(m)})
    return pd.DataFrame(rows)


def table1(runs: pd.DataFrame, task_columns: dict[str, str], paper: bool = False) -> pd.DataFrame:
    """Methods x tasks (mean over seeds, and the spread where there are several), parameters, the average over
    tasks, step time and peak memory (means over tasks), the paper's row each method stands for; with `paper`,
    the paper's reported Table 1 rows below (source "paper, Table 1")."""
    out = []
    seeds = runs.groupby("method")["seed"].nunique().max() if len(runs) else 1
    for method, sub in runs.groupby("method", sort=False):
        row = {"method": method, "paper_row": PAPER_ROWS.get(method, ""), "source": "measured",
               "parameters": int(sub["parameters"].max())}
        means = []
        for task, column in task_columns.items():
            cell = sub[sub["task"] == task]["score"]
            row[column] = round(float(cell.mean()), 2) if len(cell) else np.nan
            if seeds > 1:
                row[f"{column} sd"] = round(float(cell.std(ddof=1)), 2) if len(cell) > 1 else np.nan
            means.append(row[column])
        row["average"] = round(float(np.nanmean(means)), 2) if means else np.nan
        row["step seconds"] = round(float(sub["step_seconds"].mean()), 4)
        row["step memory MiB"] = round(float(sub["peak_step_mib"].mean()), 1)
        row["peak memory MiB"] = round(float(sub["peak_mib"].mean()), 1)
        row["inference x base"] = round(float(sub["forward_ratio"].mean()), 2)
        row["note"] = ""
        out.append(row)
    if paper:
        for label, (params, scores, average) in PAPER_TABLE1.items():
            row = {"method": label, "paper_row": label, "source": "paper, Table 1", "parameters": params,
                   "average": average, "note": "reported (DeBERTa-v3-base, GLUE dev)"}
            row.update(dict(zip(PAPER_TASKS, scores)))
            out.append(row)
    columns = (["method", "paper_row", "source", "parameters"] + [c for c in _task_order(task_columns, paper, seeds)]
               + ["average", "step seconds", "step memory MiB", "peak memory MiB", "inference x base", "note"])
    table = pd.DataFrame(out)
    for c in columns:
        if c not in table:
            table[c] = np.nan
    if not paper:  # whole numbers, also beside the rows of methods not run
        table["parameters"] = table["parameters"].astype("Int64")
    return table[columns]


def _task_order(task_columns: dict[str, str], paper: bool, seeds: int) -> list[str]:
    names = list(task_columns.values())
    if paper:
        names = list(PAPER_TASKS) + [c for c in names if c not in PAPER_TASKS]  # the paper's columns, all of them
    return [x for c in names for x in ([c, f"{c} sd"] if seeds > 1 else [c])]


def task_columns(tasks: list[str], datasets: dict) -> dict[str, str]:
    """{dataset: its column}: GLUE's task label (the paper's columns) or the dataset's name."""
    return {t: GLUE_COLUMNS.get(datasets[t].get("task"), t) for t in tasks}


def table5(settings: dict[str, dict[str, dict]], columns: dict[str, str]) -> pd.DataFrame:
    """Per task: epochs or steps, batch size, max length, warm-up, weight decay and the learning rates used.
    settings: {task: {method: resolved training settings}}; methods that share a learning rate are listed
    together."""
    rows = []
    for task, by_method in settings.items():
        first = next(iter(by_method.values()))
        lrs: dict[float, list[str]] = {}
        for method, s in by_method.items():
            lrs.setdefault(s["lr"], []).append(method)
        lr = (f"{next(iter(lrs)):g}" if len(lrs) == 1 else
              "; ".join(f"{v:g} ({', '.join(ms)})" for v, ms in lrs.items()))
        rows.append({"task": columns.get(task, task),
                     "epochs": first.get("epochs", np.nan), "steps": first.get("steps", np.nan),
                     "batch size": first.get("batch_size"), "max length": first.get("max_length"),
                     "warm-up": first.get("warmup_frac"), "weight decay": first.get("weight_decay"), "lr": lr})
    return pd.DataFrame(rows)


SWEEP_COLUMNS = ["sweep", "x", "seed", "k", "m", "layers", "model", "score", "metric", "parameters",
                 "step_seconds", "seconds", "prefix_cache_start"]


def sweep_table(points: list[dict], metrics: dict[str, FinetuneMetrics]) -> pd.DataFrame:
    """fig5's tidy table: one row per (panel, point, seed)."""
    rows = []
    for p in points:
        m = metrics[p["model"]]
        rows.append({**p, **_run_fields(m), "seconds": m.seconds,
                     "prefix_cache_start": None if m.prefix_cache is None else m.prefix_cache["start"]})
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)
