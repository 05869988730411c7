"""The `peft:` section of a suite: table1's grid (methods x tasks x seeds) and fig5's three sweeps, expanded
into the finetuned models the workflow trains; torch-free (the workflow expands it when it parses the config).
The section's checks (and those of every model's `finetune.method`) are registered with specbasis.config.

    peft:
      base: minilm                          # a model of `models` (finetunable family)
      tasks: {rotten_tomatoes: {}, political: {lr: 2e-4, epochs: 3}}   # dataset -> overrides of the training settings
      seeds: [0]                            # table1's seeds
      paper_rows: false                     # table1: the paper's reported rows below the measured ones
      train: {...}                          # optional: the training settings (default: finetune.<modality>)
      methods: {spectral: {method: spectral, k: 0, m: 150, targets: ..., lr: 3e-3}, ...}   # row -> method spec (+ lr)
      sweeps:                               # fig5, spectral runs on one task
        task: rotten_tomatoes
        seeds: [0, 1, 2]
        lr: 3e-3                            # and/or train: {...}: overrides for every sweep run
        kinds: [ffn_in, ffn_out]
        rank: {layers: [4, 5], k: 0, m: [24, 48, 96]}       # A: rank budget
        layers: {m: 96, layers: [[0, 1], [2, 3], [4, 5]]}   # B: layer location
        block: {layers: [4, 5], width: 96, k: [0, 96]}      # C: block location
        cache_prefix: true

A run's training settings: `train` (else finetune.<modality>), then the task's overrides, then the method's `lr`
(a sweep's `lr`). `epochs` (instead of steps) is turned into steps by the finetune script once the training split's
size is known. The seed of a run seeds the head's initialisation, the batch order and dropout; the data split is
the suite's `seed`'s for every run, so every seed is tested on the same examples.

Learning rates are chosen on validation only, by the workflow: a row of `methods` may list `lr_candidates`; the
target results/peft/lr_selection.csv (not part of `all`) trains each candidate on `select_lr`'s task (default: the
first task) with one seed (default: the suite's), scores it on the validation split alone (the runs' test split is
withheld: `validation_only`), and lists every score and the best; the row's `lr` then carries the chosen value.

    methods: {lora_kaiming: {method: lora, ..., lr: 1.0e-3, lr_candidates: [3.0e-4, 1.0e-3, 3.0e-3]}}
    select_lr: {task: rotten_tomatoes, seed: 0}

Names: table1's runs are `peft-<task>-<method>-s<seed>`; the selection's `lrsel-<task>-<method>-lr<lr>-s<seed>`; a run whose settings and method equal those of a model the
suite already finetunes (`full` on a task of `finetune:`) is that model, not a second run. fig5's runs are named by
what they train, `fig5-L<blocks>-k<k>-m<m>-s<seed>`, so a point two panels share runs once.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from specbasis.config import FINETUNABLE_FAMILIES, modality, section_check
from specbasis.methods import parse as parse_method

SWEEPS = ("rank", "layers", "block")  # fig5's panels A, B, C
# Settings that change what is measured during training, not the trained model (evaluation runs in eval mode and
# draws no random numbers): a suite's finetune differing only in these is still table1's `full` run.
EVAL_ONLY = ("eval_every", "eval_step0")
# The paper's Table 1 rows (shared/paper-tables.md) for the method names the suites use.
PAPER_ROWS = {"full": "Full FT", "pissa": "PiSSA", "lora_kaiming": "LoRA (Kaiming init of B)",
              "lora_gaussian": "LoRA (Gaussian init of B)", "adalora": "AdaLoRA", "dora": "DoRA",
              "hadapter": "HAdapter (Houlsby)", "padapter": "PAdapter (Pfeiffer)", "bitfit": "BitFit",
              "spectral": "the paper's spectral method"}

# table1's and table5's column of a GLUE dataset: the paper's label of its task.
GLUE_COLUMNS = {"rte": "RTE", "qqp": "QQP", "cola": "CoLA", "mrpc": "MRPC", "sst2": "SST-2", "qnli": "QNLI",
                "mnli": "MNLI", "stsb": "STS-B"}


def task_columns(tasks: list[str], datasets: dict) -> dict[str, str]:
    """{dataset: its column}: GLUE's task label (the paper's columns) or the dataset's name. Torch-free, so that the
    workflow reads it while it parses the config without importing the analyses (torch, scipy: seconds)."""
    return {t: GLUE_COLUMNS.get(datasets[t].get("task"), t) for t in tasks}


@dataclass
class Run:
    """One finetune of the grid."""

    name: str                  # the model's name (results/models/<name>)
    task: str                  # a dataset of the suite
    seed: int
    method: dict               # a method spec (parse_method's flat form)
    train: dict                # the overrides of the training settings (lr included)
    row: str | None = None     # table1: the method's row name
    points: list = field(default_factory=list)  # fig5: [(sweep, x)] this run is a point of
    layers: list | None = None  # fig5: the adapted blocks
    reuse: str | None = None   # table1: an existing model of the suite with these very settings
    validation_only: bool = False  # lr selection: scored on the validation split, the test split withheld

    @property
    def first_layer(self) -> int | None:
        return None if self.layers is None else min(self.layers)


def _train_settings(config: dict, section: dict) -> dict:
    base = section.get("train")
    if base is None:
        family = config["models"][section["base"]]["family"]
        base = config.get("finetune", {}).get(modality(family), {})
    return dict(base)


def table_runs(config: dict) -> list[Run]:
    """table1's runs, methods x tasks x seeds, in that order (a `reuse` run is an existing model)."""
    section = config["peft"]
    runs = []
    for task, overrides in section["tasks"].items():
        for row, entry in section["methods"].items():
            entry, lr, _ = method_entry(entry)
            train = {**(overrides or {}), **({"lr": lr} if lr is not None else {})}
            for seed in section.get("seeds", [config.get("seed", 0)]):
                runs.append(Run(f"peft-{task}-{row}-s{seed}", task, seed, entry, train, row=row,
                                reuse=_existing(config, section, task, seed, entry, train)))
    return runs


def method_entry(entry: dict) -> tuple[dict, float | None, list]:
    """A row of peft.methods: (its method spec, its lr, its lr candidates)."""
    entry = dict(entry)
    return entry, entry.pop("lr", None), list(entry.pop("lr_candidates", []))


def selection_task(config: dict) -> tuple[str, int]:
    """(task, seed) the learning rates are selected on: peft.select_lr's, default the first task, the suite's seed."""
    section = config["peft"]
    chosen = section.get("select_lr") or {}
    return chosen.get("task", next(iter(section["tasks"]))), chosen.get("seed", config.get("seed", 0))


def selection_runs(config: dict) -> list[Run]:
    """The learning-rate selection's runs (not part of `all`: results/peft/lr_selection.csv): every candidate of
    every method that lists `lr_candidates`, trained with the task's settings and one seed, and scored on the
    validation split alone (validation_only: the test split is withheld from these runs)."""
    section = config["peft"]
    task, seed = selection_task(config)
    overrides = section["tasks"].get(task) or {}
    runs = []
    for row, entry in section["methods"].items():
        method, _, candidates = method_entry(entry)
        for lr in candidates:
            runs.append(Run(f"lrsel-{task}-{row}-lr{lr:g}-s{seed}", task, seed, method, {**overrides, "lr": lr},
                            row=row, validation_only=True))
    return runs


def selection_cells(config: dict) -> list[dict]:
    """The selection's cells: {task, method (row), lr, configured_lr, seed, model}."""
    section = config["peft"]
    configured = {row: method_entry(e)[1] for row, e in section["methods"].items()}
    default = _train_settings(config, section).get("lr")
    task_lr = (section["tasks"].get(selection_task(config)[0]) or {}).get("lr", default)
    return [{"task": r.task, "method": r.row, "lr": r.train["lr"], "seed": r.seed, "model": r.name,
             "configured_lr": configured[r.row] if configured[r.row] is not None else task_lr}
            for r in selection_runs(config)]


def _existing(config, section, task, seed, method, train) -> str | None:
    """A model of the suite finetuned exactly so (full finetuning only: the suite's finetunes are full)."""
    if not parse_method(method).trains_every_weight or seed != config.get("seed", 0) or "train" in section:
        return None
    default = _train_settings(config, section)
    if any(train.get(k, default.get(k)) != default.get(k) for k in train if k not in EVAL_ONLY):
        return None
    for name, spec in config["models"].items():
        ft = spec.get("finetune")
        if ft and ft["from"] == section["base"] and ft["dataset"] == task and "method" not in ft and "train" not in ft:
            return name
    return None


def _layers_name(layers) -> str:
    return "_".join(str(i) for i in layers)


def sweep_runs(config: dict) -> list[Run]:
    """fig5's runs (points x seeds), each once, with every (sweep, x) it is a point of."""
    sweeps = config["peft"].get("sweeps")
    if not sweeps:
        return []
    points = []  # (sweep, x, layers, k, m)
    if "rank" in sweeps:
        s = sweeps["rank"]
        points += [("rank", m, s["layers"], s.get("k", 0), m) for m in s["m"]]
    if "layers" in sweeps:
        s = sweeps["layers"]
        points += [("layers", _layers_name(ls), ls, s.get("k", 0), s["m"]) for ls in s["layers"]]
    if "block" in sweeps:
        s = sweeps["block"]
        points += [("block", k, s["layers"], k, k + s["width"]) for k in s["k"]]
    runs: dict[str, Run] = {}
    for sweep, x, layers, k, m in points:
        for seed in sweeps["seeds"]:
            name = f"fig5-L{_layers_name(layers)}-k{k}-m{m}-s{seed}"
            if name not in runs:
                method = {"method": "spectral", "k": k, "m": m,
                          "targets": {"layers": list(layers), "kinds": list(sweeps.get("kinds", ["ffn_in", "ffn_out"]))}}
                train = {**sweeps.get("train", {}), **({"lr": sweeps["lr"]} if "lr" in sweeps else {})}
                runs[name] = Run(name, sweeps["task"], seed, method, train, layers=list(layers))
            runs[name].points.append((sweep, x))
    return list(runs.values())


def uses_cache(config: dict, run: Run) -> bool:
    """A sweep run starts from cached outputs of the frozen blocks before its first adapted block."""
    sweeps = config["peft"].get("sweeps") or {}
    return bool(sweeps.get("cache_prefix")) and run.first_layer is not None and run.first_layer > 0


def model_entries(config: dict) -> dict[str, dict]:
    """{name: model entry} of every run to train (table1's not reused, and fig5's), as `models:` entries with
    the run's method, seed and training overrides under `finetune:`."""
    section = config["peft"]
    base = config["models"][section["base"]]
    out = {}
    for run in table_runs(config) + sweep_runs(config) + selection_runs(config):
        if run.reuse:
            continue
        # step 0's test score (a fresh head on the frozen backbone) says nothing about a method: not measured
        train = {"eval_step0": False, **section.get("train", {}), **run.train}
        what = "lr selection" if run.validation_only else run.row or "fig5 point"
        out[run.name] = {"family": base["family"], "task": f"{run.task}, {what} (peft grid)",
                         "finetune": {"from": section["base"], "dataset": run.task, "method": copy.deepcopy(run.method),
                                      "seed": run.seed, "train": train,
                                      **({"validation_only": True} if run.validation_only else {})}}
    return out


def resolved_train(config: dict, run: Run) -> dict:
    """The training settings a run trains with (what table5 lists): the suite's, the section's, the task's, the method's."""
    section = config["peft"]
    settings = {**_train_settings(config, section), **run.train}
    if "epochs" in run.train:
        settings.pop("steps", None)
    return settings


def table5_settings(config: dict) -> dict[str, dict[str, dict]]:
    """{task: {method: resolved training settings}} of table1's runs (the first seed's)."""
    out: dict[str, dict[str, dict]] = {}
    for run in table_runs(config):
        out.setdefault(run.task, {}).setdefault(run.row, resolved_train(config, run))
    return out


def table_models(config: dict) -> list[dict]:
    """table1's cells: {task, method (row), seed, model} (model: the run's, or the reused model's name)."""
    return [{"task": r.task, "method": r.row, "seed": r.seed, "model": r.reuse or r.name} for r in table_runs(config)]


def sweep_reference(config: dict) -> list[dict]:
    """fig5's full-finetuning reference on the sweep task, as table1's cells: the suite's own finetune of that task
    where the sweeps train with the suite's settings (their lr and evaluation settings aside), else table1's
    `full` cells on the task ([] without either)."""
    section = config["peft"]
    task = (section.get("sweeps") or {}).get("task")
    if task is None:
        return []
    seed = config.get("seed", 0)
    name = _existing(config, section, task, seed, {"method": "full"}, section["sweeps"].get("train", {}))
    if name is not None:
        return [{"task": task, "method": "full", "seed": seed, "model": name}]
    return [c for r, c in zip(table_runs(config), table_models(config))
            if r.task == task and parse_method(r.method).trains_every_weight]


def sweep_models(config: dict) -> list[dict]:
    """fig5's points: {sweep, x, seed, k, m, layers, model}, one row per (point, seed)."""
    rows = []
    for run in sweep_runs(config):
        for sweep, x in run.points:
            rows.append({"sweep": sweep, "x": x, "seed": run.seed, "k": run.method["k"], "m": run.method["m"],
                         "layers": _layers_name(run.layers), "model": run.name})
    return rows


@section_check
def method_problems(config: dict) -> list[str]:
    """Each finetuned model's `finetune.method`, checked as the training will check it."""
    problems = []
    for name, spec in config.get("models", {}).items():
        method = (spec.get("finetune") or {}).get("method")
        if method is not None:
            try:
                parse_method(method)
            except ValueError as e:
                problems.append(f"models.{name}.finetune.method: {e}")
    return problems


@section_check
def peft_problems(config: dict) -> list[str]:
    """Cross-checks of the `peft:` section (absent: none), each naming the key and what is allowed."""
    section = config.get("peft")
    if not section:
        return []
    problems: list[str] = []
    models, datasets = config.get("models", {}), config.get("datasets", {})
    base = section["base"]
    if base not in models:
        return [f"peft.base: {base!r} is not a model; models: {', '.join(models)}"]
    family = models[base].get("family")
    if "finetune" in models[base]:
        problems.append(f"peft.base: {base!r} is a finetuned model; name a pretrained one (the paper: deberta-v3-base)")
    if family not in FINETUNABLE_FAMILIES:
        problems.append(f"peft.base: {base!r} has family {family!r}, which the workflow cannot finetune; allowed: "
                        f"{', '.join(sorted(FINETUNABLE_FAMILIES))}")
        return problems
    tasks = list(section["tasks"]) + ([section["sweeps"]["task"]] if section.get("sweeps") else [])
    for task in tasks:
        if task not in datasets:
            problems.append(f"peft.tasks: {task!r} is not a dataset; datasets: {', '.join(datasets) or '(none)'}")
    for task, overrides in section["tasks"].items():
        if overrides and "steps" in overrides and "epochs" in overrides:
            problems.append(f"peft.tasks.{task}: give steps or epochs, not both")
    for row, entry in section["methods"].items():
        entry, _, _ = method_entry(entry)
        try:
            parse_method(entry)
        except ValueError as e:
            problems.append(f"peft.methods.{row}: {e}")
    chosen = section.get("select_lr") or {}
    if chosen.get("task") is not None and chosen["task"] not in section["tasks"]:
        problems.append(f"peft.select_lr.task: {chosen['task']!r} is not a task of peft.tasks; allowed: "
                        f"{', '.join(section['tasks'])}")
    sweeps = section.get("sweeps")
    if sweeps:
        if len(set(sweeps["seeds"])) != len(sweeps["seeds"]):
            problems.append(f"peft.sweeps.seeds: {sweeps['seeds']} repeat a seed")
        for sweep in SWEEPS:
            s = sweeps.get(sweep)
            if not s:
                continue
            grid = ([(s.get("k", 0), m) for m in s["m"]] if sweep == "rank" else
                    [(s.get("k", 0), s["m"])] if sweep == "layers" else [(k, k + s["width"]) for k in s["k"]])
            for k, m in grid:
                if not 0 <= k < m:
                    problems.append(f"peft.sweeps.{sweep}: k = {k}, m = {m}: need 0 ≤ k < m")
            layer_sets = s["layers"] if sweep == "layers" else [s["layers"]]
            for ls in layer_sets:
                if not ls or len(set(ls)) != len(ls):
                    problems.append(f"peft.sweeps.{sweep}.layers: {ls}: a non-empty list of distinct block indices")
                elif sweeps.get("cache_prefix") and min(ls) < 0:
                    problems.append(f"peft.sweeps.{sweep}.layers: {ls}: cache_prefix needs block indices counted from "
                                    f"0 (the cache is made before the first adapted block)")
        if sweeps.get("cache_prefix") and modality(family) != "text":
            problems.append(f"peft.sweeps.cache_prefix: the prefix cache is for text models; {base!r} is {family}")
    if problems:
        return problems
    names = [r.name for r in table_runs(config) + sweep_runs(config) + selection_runs(config) if not r.reuse]
    clash = sorted(set(names) & set(models))
    if clash:
        problems.append(f"peft: the grid's model names {clash} are models of `models` already; rename those models")
    return problems
