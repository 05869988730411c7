"""specbasis.plan.peft (the `peft:` section expanded into runs) and specbasis.analysis.peft (table1, table5, fig5's
table): pure functions of the config and of metrics.json contents."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_metrics import fake_metrics
from test_config import _break

from specbasis.plan import peft as peft_grid

from specbasis.analysis import peft as peft_results
from specbasis.config import load_config, validate_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def default():
    return load_config(ROOT / "config.yaml")


@pytest.fixture(scope="module")
def reusing(default):
    """The default suite with tasks that train with the suite's own finetune settings (no overrides)."""
    config = copy.deepcopy(default)
    config["peft"]["tasks"] = {"rotten_tomatoes": {}, "political": {}}
    return config


def test_table_runs_are_methods_x_tasks_x_seeds_and_full_reuses_the_suites_finetune(reusing):
    runs = peft_grid.table_runs(reusing)
    methods, tasks = list(reusing["peft"]["methods"]), list(reusing["peft"]["tasks"])
    seeds = reusing["peft"]["seeds"]
    assert len(seeds) >= 3  # table1's cells are 3 seeds or more, the same seeds for every method
    assert sorted((r.task, r.row, r.seed) for r in runs) == sorted((t, m, s) for t in tasks for m in methods
                                                                   for s in seeds)
    reused = {r.row: r.reuse for r in runs if r.reuse}
    # the suite's finetunes are seed 0's: only those runs reuse them
    assert set(reused) == {"full"} and sorted(r.reuse for r in runs if r.reuse) == ["minilm-party", "minilm-rt"]
    assert all(r.seed == 0 for r in runs if r.reuse)
    spectral = next(r for r in runs if r.row == "spectral")
    assert spectral.name == "peft-rotten_tomatoes-spectral-s0" and spectral.train == {"lr": 1e-2}
    assert "lr" not in spectral.method  # lr is a training setting, not a method setting
    entries = peft_grid.model_entries(reusing)
    assert "peft-rotten_tomatoes-full-s0" not in entries and "peft-political-psoft-s0" in entries
    assert entries["peft-political-psoft-s0"]["finetune"]["method"]["r"] == 150


def test_the_default_suite_trains_its_own_full_runs_at_table1s_shorter_budget(default):
    runs = peft_grid.table_runs(default)
    assert not any(r.reuse for r in runs)
    entries = peft_grid.model_entries(default)
    full = entries["peft-rotten_tomatoes-full-s0"]["finetune"]
    assert full["method"] == {"method": "full"} and full["train"]["steps"] == 100
    assert all(peft_grid.resolved_train(default, r)["steps"] == 200 for r in peft_grid.sweep_runs(default))  # fig5's


def test_fig5s_reference_is_a_full_finetune_trained_as_its_sweeps(default):
    # the sweeps train with the suite's settings: its finetune of the task (200 steps), not table1's 100-step run
    assert peft_grid.sweep_reference(default) == [{"task": "rotten_tomatoes", "method": "full", "seed": 0,
                                                  "model": "minilm-rt"}]
    config = copy.deepcopy(default)
    config["peft"]["sweeps"]["train"] = {"steps": 100}
    assert [c["model"] for c in peft_grid.sweep_reference(config)] == [
        f"peft-rotten_tomatoes-full-s{s}" for s in config["peft"]["seeds"]]  # table1's full cells, every seed
    config["peft"]["sweeps"]["task"] = "political"  # a task table1 does not run: no table1 cell to reuse
    config["peft"]["tasks"].pop("political", None)
    assert peft_grid.sweep_reference(config) == []


def test_full_is_not_reused_when_its_settings_differ(reusing):
    config = copy.deepcopy(reusing)
    config["peft"]["tasks"]["political"] = {"steps": 50}
    runs = {r.name: r for r in peft_grid.table_runs(config)}
    assert runs["peft-rotten_tomatoes-full-s0"].reuse == "minilm-rt"
    assert runs["peft-political-full-s0"].reuse is None
    config["peft"]["seeds"] = [0, 1]
    runs = {r.name: r for r in peft_grid.table_runs(config)}
    assert runs["peft-rotten_tomatoes-full-s1"].reuse is None  # another seed: another run


def test_sweep_points_shared_by_panels_run_once(default):
    runs = peft_grid.sweep_runs(default)
    names = [r.name for r in runs]
    assert len(names) == len(set(names))
    shared = next(r for r in runs if r.name == "fig5-L4_5-k0-m96-s0")
    assert sorted(shared.points, key=str) == sorted([("rank", 96), ("layers", "4_5"), ("block", 0)], key=str)
    sweeps = default["peft"]["sweeps"]
    points = {(s, x) for r in runs for s, x in r.points}
    expected = (len(sweeps["rank"]["m"]) + len(sweeps["layers"]["layers"]) + len(sweeps["block"]["k"]))
    assert len(points) == expected
    assert len(runs) == len({(r.method["k"], r.method["m"], tuple(r.layers)) for r in runs}) * len(sweeps["seeds"])
    seed = sweeps["seeds"][-1]
    block = next(r for r in runs if r.name == f"fig5-L4_5-k144-m240-s{seed}")
    assert block.method == {"method": "spectral", "k": 144, "m": 240,
                            "targets": {"layers": [4, 5], "kinds": ["ffn_in", "ffn_out"]}} and block.seed == seed
    cached = {r.first_layer for r in runs if peft_grid.uses_cache(default, r)}
    assert cached == {2, 4}  # blocks 0-1 adapted: nothing before them to cache
    rows = peft_grid.sweep_models(default)
    assert len(rows) == expected * len(sweeps["seeds"])


def test_resolved_training_settings_layer_suite_task_and_method(default):
    config = copy.deepcopy(default)
    config["peft"]["tasks"]["political"] = {"epochs": 2, "lr": 5e-4}
    settings = peft_grid.table5_settings(config)
    assert settings["rotten_tomatoes"]["full"]["lr"] == default["finetune"]["text"]["lr"]
    assert settings["rotten_tomatoes"]["spectral"]["lr"] == 1e-2
    assert settings["political"]["full"]["lr"] == 5e-4 and settings["political"]["full"]["epochs"] == 2
    assert "steps" not in settings["political"]["full"]
    assert settings["political"]["lora_kaiming"]["lr"] == 1e-3  # the method's lr wins over the task's


@pytest.mark.parametrize("edit, fragments", [
    (lambda c: c["peft"].update(base="nope"), ["peft.base", "'nope' is not a model"]),
    (lambda c: c["peft"].update(base="minilm-rt"), ["peft.base", "finetuned model"]),
    (lambda c: c["peft"]["tasks"].update(imdb={}), ["peft.tasks", "'imdb' is not a dataset"]),
    (lambda c: c["peft"]["methods"].update(x={"method": "lorax"}), ["peft.methods.x", "lorax", "allowed: full"]),
    (lambda c: c["peft"]["methods"]["spectral"].update(k=150), ["peft.methods.spectral", "must exceed k = 150"]),
    (lambda c: c["peft"]["methods"]["spectral"].pop("targets"), ["peft.methods.spectral", "targets", "required"]),
    (lambda c: c["peft"]["methods"]["lora_kaiming"].update(peft={"use_rslorra": True}),
     ["peft.methods.lora_kaiming", "peft.use_rslorra", "no such option"]),
    (lambda c: c["peft"]["methods"]["bitfit"].update(r=4), ["peft.methods.bitfit", "not a setting of bitfit"]),
    (lambda c: c["peft"]["sweeps"]["block"].update(width=0), ["peft.sweeps.block.width", "minimum"]),
    (lambda c: c["peft"]["sweeps"]["rank"].update(k=48), ["peft.sweeps.rank", "k = 48, m = 24"]),
    (lambda c: c["peft"]["sweeps"]["layers"].update(layers=[[-2, -1]]), ["cache_prefix needs block indices"]),
    (lambda c: c["peft"]["tasks"].update(political={"steps": 5, "epochs": 1}), ["peft.tasks.political", "not both"]),
    (lambda c: c["models"]["minilm-rt"]["finetune"].update(method={"method": "lora", "rr": 4}),
     ["models.minilm-rt.finetune.method", "rr", "not a setting of lora"]),
    (lambda c: c["models"]["minilm-rt"].update(finetune={"from": "minilm", "dataset": "political", "speed": 1}),
     ["models.minilm-rt.finetune", "'speed'"]),
])
def test_bad_peft_input_stops_at_parse_time_naming_the_key(default, edit, fragments):
    message = _break(default, edit)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_no_peft_section_no_runs(default):
    config = copy.deepcopy(default)
    del config["peft"]
    validate_config(config)
    assert peft_grid.peft_problems(config) == []


# ------------------------------------------------------------------------------------------- results

def _metrics(acc, method="spectral", adapter=100, trainable=110, step=0.1, peak=2 * 2 ** 20, metric=None):
    return fake_metrics(test_accuracy=acc, method={"method": method}, trainable_parameters=trainable,
                        parameter_counts={"trainable": trainable, "adapter": adapter, "head": trainable - adapter,
                                          "base": 1000},
                        step_seconds_median=step, seconds=10.0, inference={"mergeable": True, "forward_ratio": 1.0},
                        peak_memory={"device": "cpu", "peak_bytes": 10 * 2 ** 20, "peak_above_step_start_bytes": peak},
                        **({"test_metric": metric} if metric else {}))


def test_table1_means_seeds_and_tasks_and_counts_adapters_without_the_head():
    cells = [{"task": t, "method": meth, "seed": s, "model": f"{t}-{meth}-{s}"}
             for t in ("a", "b") for meth in ("full", "spectral") for s in (0, 1)]
    metrics = {c["model"]: _metrics(0.5 + 0.1 * (c["task"] == "b") + 0.02 * c["seed"], c["method"],
                                    adapter=900 if c["method"] == "full" else 100,
                                    trainable=1000 if c["method"] == "full" else 110) for c in cells}
    metrics["b-spectral-1"].test_metric = {"name": "matthews", "value": 0.40}
    runs = peft_results.run_rows(cells, metrics)
    table = peft_results.table1(runs, {"a": "A", "b": "B"})
    spectral = table[table["method"] == "spectral"].iloc[0]
    assert spectral["A"] == pytest.approx(51.0) and spectral["A sd"] == pytest.approx(np.std([50, 52], ddof=1), abs=0.01)
    assert spectral["B"] == pytest.approx(50.0)  # (60 + 40) / 2: the run's task metric wins over accuracy
    assert spectral["average"] == pytest.approx(50.5)
    assert spectral["parameters"] == 100 and table[table["method"] == "full"].iloc[0]["parameters"] == 1000
    assert spectral["step seconds"] == pytest.approx(0.1) and spectral["step memory MiB"] == pytest.approx(2.0)
    assert spectral["paper_row"] == "the paper's spectral method"
    assert set(table["method"]) == {"full", "spectral"}  # what ran, nothing else
    assert spectral["inference x base"] == 1.0  # a merged adapter: the base model's forward
    assert "paper, Table 1" not in set(table["source"])
    with_paper = peft_results.table1(runs, {"a": "A", "b": "B"}, paper=True)
    reported = with_paper[with_paper["source"] == "paper, Table 1"]
    assert len(reported) == 10
    row = reported[reported["method"] == "the paper's spectral method"].iloc[0]
    assert row["MNLI"] == 87.45 and row["average"] == 86.73 and row["parameters"] == "0.36M"


def test_glue_datasets_take_the_papers_columns():
    datasets = {"glue-cola": {"task": "cola"}, "glue-stsb": {"task": "stsb"}, "rotten_tomatoes": {}}
    assert peft_grid.task_columns(list(datasets), datasets) == {"glue-cola": "CoLA", "glue-stsb": "STS-B",
                                                                   "rotten_tomatoes": "rotten_tomatoes"}


def test_table5_lists_learning_rates_by_the_methods_that_share_them(default):
    table = peft_results.table5(peft_grid.table5_settings(default), {})
    rt = table[table["task"] == "rotten_tomatoes"].iloc[0]
    assert rt["steps"] == 100 and rt["batch size"] == 32
    assert "0.0001 (full)" in rt["lr"] and "0.003 (psoft, bitfit, dora, hadapter, padapter)" in rt["lr"] and "0.01 (spectral)" in rt["lr"]
    single = peft_results.table5({"t": {"a": {"lr": 2e-4, "epochs": 3, "batch_size": 16}}}, {"t": "T"})
    assert single.iloc[0]["lr"] == "0.0002" and single.iloc[0]["task"] == "T" and single.iloc[0]["epochs"] == 3


def test_sweep_table_and_its_summary():
    from specbasis.figures.peft import fig5, summary

    points = [{"sweep": "rank", "x": m, "seed": s, "k": 0, "m": m, "layers": "4_5", "model": f"m{m}s{s}"}
              for m in (24, 96) for s in (0, 1, 2)]
    metrics = {p["model"]: _metrics(0.6 + p["m"] / 1000 + 0.01 * p["seed"]) for p in points}
    table = peft_results.sweep_table(points, metrics)
    assert list(table.columns) == peft_results.SWEEP_COLUMNS and len(table) == 6
    s = summary(table).set_index("x")
    assert s.loc[96, "mean"] == pytest.approx(70.6) and s.loc[96, "seeds"] == 3
    assert s.loc[24, "sd"] == pytest.approx(1.0)
    fig = fig5(table, full=80.0, task="t")
    assert len(fig.axes) == 1
    note = fig5(pd.DataFrame(columns=peft_results.SWEEP_COLUMNS))
    assert note.axes[0].texts


def test_table1_compares_every_method_with_the_spectral_adapter_paired_by_seed_and_example():
    """3 seeds, 400 test examples: spectral right on the first 300 (every seed); full right on 320 (20 more);
    bitfit right on 280 (20 fewer). Paired, full's difference is +5 points with an interval above 0."""
    import pandas as pd

    n = 400
    labels = np.zeros(n, int)
    right = {"spectral": 300, "full": 320, "bitfit": 280}
    cells = [{"task": "a", "method": meth, "seed": s, "model": f"a-{meth}-{s}"} for meth in right for s in (0, 1, 2)]
    predictions, metrics = {}, {}
    for c in cells:
        pred = np.ones(n, int)
        pred[: right[c["method"]]] = 0
        predictions[c["model"]] = pd.DataFrame({"example": range(n), "label": labels, "prediction": pred})
        metrics[c["model"]] = _metrics(right[c["method"]] / n + 0.001 * c["seed"], c["method"])
    paired = peft_results.paired_rows(cells, metrics, predictions, replicates=500)
    assert list(paired["method"]) == ["full", "bitfit"] and set(paired["seeds"]) == {3}
    full = paired.set_index("method").loc["full"]
    assert full["difference"] == pytest.approx(5.0) and 0 < full["low"] < 5 < full["high"]
    assert full["method_only_right"] == 60 and full["reference_only_right"] == 0   # 20 examples x 3 seeds
    assert full["p_mcnemar"] == pytest.approx(2 * 0.5 ** 60) and full["p_bootstrap"] < 0.01
    assert paired.set_index("method").loc["bitfit", "difference"] == pytest.approx(-5.0)
    table = peft_results.table1(peft_results.run_rows(cells, metrics), {"a": "A"}, paired=paired).set_index("method")
    assert table.loc["full", "A Δ"] == pytest.approx(5.0) and np.isnan(table.loc["spectral", "A Δ"])
    assert table.loc["full", "A seed 2"] == pytest.approx(100 * (320 / n + 0.002))
    assert table.loc["full", "A p McNemar"] == pytest.approx(2 * 0.5 ** 60)
    shown = peft_results.table1_display(table.reset_index(), {"a": "A"}).set_index("method")
    assert shown.loc["full", "A vs spectral"].startswith("+5.00 [") and shown.loc["spectral", "A vs spectral"] == ""
    assert shown.loc["full", "A"] == f"{100 * (320 / n + 0.001):.2f} ± 0.10"
    # tested on other examples: refused
    predictions["a-full-1"] = predictions["a-full-1"].assign(label=1)
    with pytest.raises(ValueError, match="tested on other examples"):
        peft_results.paired_rows(cells, metrics, predictions, replicates=10)


# ------------------------------------------------------------------------------------------- lr selection

def test_lr_candidates_plan_validation_only_runs_outside_all(default):
    from specbasis.plan import Plan

    config = copy.deepcopy(default)
    for entry in config["peft"]["methods"].values():
        entry.pop("lr_candidates", None)
    assert peft_grid.selection_runs(config) == []
    config["peft"]["methods"]["spectral"]["lr_candidates"] = [3e-3, 1e-2]
    config["peft"]["methods"]["bitfit"]["lr_candidates"] = [1e-3]
    validate_config(config)
    runs = peft_grid.selection_runs(config)
    assert [r.name for r in runs] == ["lrsel-rotten_tomatoes-spectral-lr0.003-s0",
                                      "lrsel-rotten_tomatoes-spectral-lr0.01-s0", "lrsel-rotten_tomatoes-bitfit-lr0.001-s0"]
    assert all(r.validation_only and r.train == {"steps": 100, "lr": r.train["lr"]} for r in runs)
    plan = Plan(config)
    entry = plan.models["lrsel-rotten_tomatoes-spectral-lr0.01-s0"]
    assert entry["finetune"]["validation_only"] is True and entry["finetune"]["method"]["m"] == 150
    settings = plan.finetune_settings("lrsel-rotten_tomatoes-spectral-lr0.01-s0")
    assert settings["validation_only"] is True and settings["lr"] == 1e-2
    assert "validation_only" not in plan.finetune_settings("peft-rotten_tomatoes-spectral-s0")
    assert not any("lr_selection" in t or "lrsel" in t for t in plan.all_targets())
    cells = plan.lr_selection_cells()
    assert [(c["method"], c["lr"], c["configured_lr"]) for c in cells] == [
        ("spectral", 3e-3, 1e-2), ("spectral", 1e-2, 1e-2), ("bitfit", 1e-3, 3e-3)]
    # table1's runs are as before: the candidates change nothing of them
    assert [r.train for r in peft_grid.table_runs(config)] == [r.train for r in peft_grid.table_runs(default)]
    config["peft"]["select_lr"] = {"task": "political", "seed": 4}
    assert peft_grid.selection_runs(config)[0].name == "lrsel-political-spectral-lr0.003-s4"
    config["peft"]["select_lr"] = {"task": "mnli"}
    assert any("peft.select_lr.task: 'mnli' is not a task of peft.tasks" in p for p in peft_grid.peft_problems(config))


class ValidationOnly:
    """A run's metrics that fail the test on any read of a test score: the selection must read validation alone."""

    def __init__(self, val: float, validation_only: bool = True):
        self.val_metric = {"name": "accuracy", "value": val}
        self.validation_only = validation_only

    def __getattr__(self, name):
        raise AssertionError(f"the lr selection read {name} of a run")


def test_lr_selection_chooses_on_validation_and_never_reads_a_test_score():
    cells = [{"task": "t", "method": meth, "lr": lr, "seed": 0, "model": f"{meth}-{lr}", "configured_lr": 1e-3}
             for meth in ("a", "b") for lr in (1e-3, 3e-3, 1e-2)]
    val = {"a-0.001": 0.70, "a-0.003": 0.75, "a-0.01": 0.72, "b-0.001": 0.80, "b-0.003": 0.80, "b-0.01": None}
    table = peft_results.lr_selection(cells, {m: ValidationOnly(v) for m, v in val.items()})
    chosen = table[table["chosen"]].set_index("method")
    assert chosen.loc["a", "lr"] == 3e-3 and chosen.loc["b", "lr"] == 1e-3   # a tie: the candidate listed first
    assert chosen.loc["a", "val_score"] == pytest.approx(75.0) and len(table) == 6 and np.isnan(table["val_score"][5])
    assert list(table["configured_is_chosen"]) == [False] * 3 + [True] * 3
    with pytest.raises(ValueError, match="not trained with the test split withheld"):
        peft_results.lr_selection(cells[:1], {"a-0.001": ValidationOnly(0.7, validation_only=False)})


def test_basis_by_method_means_the_changed_matrices_and_names_methods_that_change_none():
    from specbasis.analysis.intruders import BASIS_COLUMNS
    from specbasis.figures.peft import fig22

    cells = [{"task": "a", "method": meth, "seed": s, "model": f"{meth}-{s}"} for meth in ("lora", "bitfit")
             for s in (0, 1)]

    def frame(model, n, alignment, intruders):
        return pd.DataFrame([{"model": model, "layer": i, "kind": "ffn_in", "relative_change": 0.01,
                              "alignment_u": alignment, "alignment_v": alignment,
                              **{c: intruders if c == "intruders_0.5" else 0 for c in BASIS_COLUMNS
                                 if c.startswith("intruders_")}} for i in range(n)], columns=BASIS_COLUMNS)

    basis = {"lora-0": frame("lora-0", 4, 0.9, 1), "lora-1": frame("lora-1", 4, 0.7, 3),
             "bitfit-0": frame("bitfit-0", 0, 1, 0), "bitfit-1": frame("bitfit-1", 0, 1, 0)}
    metrics = {c["model"]: _metrics(0.8 if c["method"] == "lora" else 0.7, c["method"]) for c in cells}
    table = peft_results.basis_by_method(cells, basis, metrics).set_index("method")
    assert table.loc["lora", "matrices changed"] == 4 and table.loc["lora", "alignment"] == pytest.approx(0.8)
    assert table.loc["lora", "intruders ε=0.5"] == pytest.approx(2.0) and table.loc["lora", "score"] == 80.0
    assert table.loc["bitfit", "note"] == "changes no weight matrix" and np.isnan(table.loc["bitfit", "alignment"])
    fig = fig22(table.reset_index())
    assert len(fig.axes[1].get_lines()) >= 1 and "bitfit" in fig.axes[0].texts[-1].get_text()
