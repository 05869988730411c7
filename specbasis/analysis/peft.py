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

from specbasis.analysis.intruders import BASIS_COLUMNS
from specbasis.analysis.paired import N_BOOTSTRAP, paired_bootstrap
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


REFERENCE = "spectral"  # the row every other method is compared with, paired, in table1


def paired_rows(cells: list[dict], metrics: dict[str, FinetuneMetrics], predictions: dict[str, pd.DataFrame],
                reference: str = REFERENCE, replicates: int = N_BOOTSTRAP) -> pd.DataFrame:
    """Each method against `reference` on each task, paired by seed and by test example (the seeds both ran):
    the difference in the task's metric in points (method − reference), its 95% bootstrap interval, the bootstrap
    p and exact McNemar's p (specbasis.analysis.paired). Empty where the reference did not run."""
    by = {(c["task"], c["method"], c["seed"]): c["model"] for c in cells}
    rows = []
    for (task, method) in dict.fromkeys((c["task"], c["method"]) for c in cells):
        if method == reference:
            continue
        seeds = sorted(s for (t, m, s) in by if t == task and m == method and (task, reference, s) in by)
        if not seeds:
            continue
        mine = [predictions[by[task, method, s]] for s in seeds]
        theirs = [predictions[by[task, reference, s]] for s in seeds]
        labels = mine[0]["label"].to_numpy()
        for frame in mine + theirs:
            if not np.array_equal(frame["label"].to_numpy(), labels):
                raise ValueError(f"table1: the runs of {task} were tested on other examples ({method} vs "
                                 f"{reference}); paired comparisons need the same test split")
        metric = metrics[by[task, method, seeds[0]]].test_metric["name"]
        r = paired_bootstrap(labels, np.stack([f["prediction"].to_numpy() for f in mine]),
                             np.stack([f["prediction"].to_numpy() for f in theirs]), metric, replicates=replicates)
        rows.append({"task": task, "method": method, "reference": reference, "metric": metric, "seeds": len(seeds),
                     "examples": r.examples, "difference": 100 * r.difference, "low": 100 * r.low,
                     "high": 100 * r.high, "p_bootstrap": r.p_bootstrap, "p_mcnemar": r.p_mcnemar,
                     "method_only_right": r.a_only, "reference_only_right": r.b_only})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


PAIRED_COLUMNS = ["task", "method", "reference", "metric", "seeds", "examples", "difference", "low", "high",
                  "p_bootstrap", "p_mcnemar", "method_only_right", "reference_only_right"]


def table1(runs: pd.DataFrame, task_columns: dict[str, str], paper: bool = False,
           paired: pd.DataFrame | None = None) -> pd.DataFrame:
    """Methods x tasks (mean over seeds, the spread where there are several, and each seed's score), parameters,
    the average over tasks, step time and peak memory (means over tasks), the inference cost, the paper's row each
    method stands for; with `paired` (paired_rows) each method's difference from the reference per task, its
    interval and p values; with `paper`, the paper's reported Table 1 rows below (source "paper, Table 1")."""
    out = []
    seeds = runs.groupby("method")["seed"].nunique().max() if len(runs) else 1
    all_seeds = sorted(runs["seed"].unique()) if len(runs) else []
    paired = paired if paired is not None else pd.DataFrame(columns=PAIRED_COLUMNS)
    for method, sub in runs.groupby("method", sort=False):
        row = {"method": method, "paper_row": PAPER_ROWS.get(method, ""), "source": "measured",
               "parameters": int(sub["parameters"].max())}
        means = []
        for task, column in task_columns.items():
            cell = sub[sub["task"] == task]["score"]
            row[column] = round(float(cell.mean()), 2) if len(cell) else np.nan
            if seeds > 1:
                row[f"{column} sd"] = round(float(cell.std(ddof=1)), 2) if len(cell) > 1 else np.nan
                for seed in all_seeds:
                    one = sub[(sub["task"] == task) & (sub["seed"] == seed)]["score"]
                    row[f"{column} seed {seed}"] = round(float(one.iloc[0]), 2) if len(one) else np.nan
            means.append(row[column])
            versus = paired[(paired["task"] == task) & (paired["method"] == method)]
            if len(versus):
                v = versus.iloc[0]
                row[f"{column} Δ"], row[f"{column} Δ low"], row[f"{column} Δ high"] = (
                    round(float(v[k]), 2) for k in ("difference", "low", "high"))
                row[f"{column} p"] = float(v["p_bootstrap"])
                row[f"{column} p McNemar"] = float(v["p_mcnemar"]) if pd.notna(v["p_mcnemar"]) else np.nan
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
    compared = [f"{c} {x}" for c in task_columns.values() for x in ("Δ", "Δ low", "Δ high", "p", "p McNemar")
                if len(paired)]
    per_seed = [f"{c} seed {s}" for c in task_columns.values() for s in all_seeds if seeds > 1]
    columns = (["method", "paper_row", "source", "parameters"] + [c for c in _task_order(task_columns, paper, seeds)]
               + ["average", "step seconds", "step memory MiB", "peak memory MiB", "inference x base"]
               + compared + per_seed + ["note"])
    table = pd.DataFrame(out)
    for c in columns:
        if c not in table:
            table[c] = np.nan
    if not paper:  # whole numbers, also beside the rows of methods not run
        table["parameters"] = table["parameters"].astype("Int64")
    return table[columns]


def table1_display(table: pd.DataFrame, task_columns: dict[str, str], reference: str = REFERENCE) -> pd.DataFrame:
    """table1 compactly, for its md and tex: per task the mean ± sd and, against the reference, the difference
    with its 95% interval and the bootstrap p; parameters, average, step time and memory, inference cost."""
    rows = []
    names = list(dict.fromkeys([*task_columns.values(), *(c for c in PAPER_TASKS if c in table)]))
    for _, r in table.iterrows():
        row = {"method": r["method"], "source": r["source"], "parameters": r["parameters"]}
        for c in names:
            if c not in table or pd.isna(r[c]):
                row[c] = ""
                continue
            sd = r.get(f"{c} sd")
            row[c] = f"{r[c]:.2f}" + (f" ± {sd:.2f}" if sd is not None and pd.notna(sd) else "")
            if f"{c} Δ" in table and pd.notna(r[f"{c} Δ"]):
                row[f"{c} vs {reference}"] = (f"{r[f'{c} Δ']:+.2f} [{r[f'{c} Δ low']:+.2f}, {r[f'{c} Δ high']:+.2f}] "
                                              f"p={r[f'{c} p']:.2g}")
            elif f"{c} Δ" in table:
                row[f"{c} vs {reference}"] = ""
        for c in ("average", "step seconds", "step memory MiB", "inference x base"):
            row[c] = r[c]
        rows.append(row)
    return pd.DataFrame(rows)


def _task_order(task_columns: dict[str, str], paper: bool, seeds: int) -> list[str]:
    names = list(task_columns.values())
    if paper:
        names = list(PAPER_TASKS) + [c for c in names if c not in PAPER_TASKS]  # the paper's columns, all of them
    return [x for c in names for x in ([c, f"{c} sd"] if seeds > 1 else [c])]


SELECTION_COLUMNS = ["task", "method", "lr", "seed", "model", "metric", "val_score", "chosen", "configured_lr",
                     "configured_is_chosen"]


def lr_selection(cells: list[dict], metrics: dict[str, FinetuneMetrics]) -> pd.DataFrame:
    """The learning-rate selection (specbasis.plan.peft.selection_cells): every candidate's validation score in
    percent, and per (task, method) the best one chosen (ties: the candidate listed first). Reads each run's
    validation metric alone, and refuses a run that was not trained with the test split withheld."""
    rows = []
    for c in cells:
        m = metrics[c["model"]]
        if not m.validation_only:
            raise ValueError(f"lr selection: {c['model']} was not trained with the test split withheld "
                             f"(validation_only); a setting is chosen on validation alone")
        value = m.val_metric["value"]
        rows.append({**c, "metric": m.val_metric["name"], "val_score": np.nan if value is None else 100.0 * value})
    table = pd.DataFrame(rows, columns=[c for c in SELECTION_COLUMNS if c not in ("chosen", "configured_is_chosen")])
    table["chosen"] = False
    for _, sub in table.groupby(["task", "method"], sort=False):
        scored = sub["val_score"].dropna()
        if len(scored):
            table.loc[scored.index[scored.to_numpy().argmax()], "chosen"] = True
    chosen = table[table["chosen"]].set_index(["task", "method"])["lr"]
    table["configured_is_chosen"] = [chosen.get((t, m)) == lr for t, m, lr in
                                     zip(table["task"], table["method"], table["configured_lr"])]
    return table[SELECTION_COLUMNS]


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


def basis_by_method(cells: list[dict], basis: dict[str, pd.DataFrame], metrics: dict[str, FinetuneMetrics]) -> pd.DataFrame:
    """table6: per table1 method, how its runs moved the pretrained basis (specbasis.analysis.intruders.basis_rows of
    every run, results/peft/basis/<run>.csv) beside its table1 score: matrices changed per run, their mean relative
    change and top-10 alignment (u and v), and intruders per changed matrix at every ε (means over matrices, tasks
    and seeds); a method that changes no matrix (BitFit: biases; the bottleneck adapters: modules beside them)
    says so."""
    rows = []
    epsilon_columns = [c for c in BASIS_COLUMNS if c.startswith("intruders_")]
    for method in dict.fromkeys(c["method"] for c in cells):
        mine = [c for c in cells if c["method"] == method]
        frames = [basis[c["model"]] for c in mine]
        changed = pd.concat(frames, ignore_index=True) if any(len(f) for f in frames) else pd.DataFrame(
            columns=BASIS_COLUMNS)
        row = {"method": method, "runs": len(mine), "score": round(float(np.nanmean([score(metrics[c["model"]])
                                                                                      for c in mine])), 2),
               "matrices changed": float(np.mean([len(f) for f in frames]))}
        if len(changed):
            row["relative change"] = float(changed["relative_change"].mean())
            row["alignment"] = float(changed[["alignment_u", "alignment_v"]].to_numpy().mean())
            row.update({c.replace("intruders_", "intruders ε="): float(changed[c].mean()) for c in epsilon_columns})
            row["note"] = ""
        else:
            row["note"] = "changes no weight matrix"
        rows.append(row)
    columns = (["method", "runs", "score", "matrices changed", "relative change", "alignment"]
               + [c.replace("intruders_", "intruders ε=") for c in epsilon_columns] + ["note"])
    return pd.DataFrame(rows).reindex(columns=columns)
