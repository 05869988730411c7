"""specbasis.plan.Plan: what the workflow builds from a suite (models, pairs, edited models, scales, prefix caches,
figures, `all`), computed without Snakemake; and the import arrows between config and the plan."""
import copy
import sys
from pathlib import Path

import pytest

from specbasis.config import load_config, validate_config
from specbasis.plan import Plan, peft, reads_svd_store
from specbasis.plan.suite import FIGURES, SWAP_FIGURES

ROOT = Path(__file__).resolve().parents[2]
ALL_FIGURES = list(FIGURES) + ["fig4", "fig9", "fig21", "fig5", "fig22"]


@pytest.fixture(scope="module")
def default():
    return load_config(ROOT / "config.yaml")


@pytest.fixture(scope="module")
def paper():
    return load_config(ROOT / "config/paper.yaml")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import tiny_suite

    return load_config(tiny_suite.build(tmp_path_factory.mktemp("tiny")))


def _every_answer(plan: Plan) -> None:
    """Ask the plan everything the rules ask (so that a test can see nothing of it changes the config)."""
    plan.all_targets(), plan.tested_pair_finetuned(), plan.config_accuracies(), plan.trained_pair_models()
    plan.pretrained_of_pairs(), plan.modality_pairs("vision"), plan.table5_settings(), plan.peft_sweep_points()
    plan.peft_table_cells(), plan.peft_reference_cells()
    for model in plan.finetuned:
        plan.finetune_settings(model), plan.prefix_cache_of(model)
    for model in plan.edited:
        plan.swap_settings(model), plan.mask_settings(model)
    for scale in plan.scales:
        plan.dynamics_pretrain_settings(scale)
        for mode in plan.dynamics_modes:
            plan.dynamics_posttrain_settings(scale, mode)
    for cache in plan.prefix_caches:
        plan.prefix_cache_settings(cache)


def test_plan_of_the_default_suite(default):
    plan = Plan(default)
    grid = peft.model_entries(default)
    assert list(plan.models) == list(default["models"]) + list(grid)  # the suite's models, then the grid's runs
    assert plan.fetched == ["minilm", "effnet"] and len(plan.finetuned) == 4 + len(grid) == 78  # 11 methods x 1 task x 3 seeds + 8 sweep runs + 33 lr candidates
    assert plan.edited == ["minilm-rt", "minilm-party", "effnet-fmnist", "effnet-mnist"]
    assert plan.pretrained_of("effnet-mnist") == "effnet" and plan.cross_donor("effnet-mnist") == "effnet-fmnist"
    assert plan.tested_pairs == list(default["pairs"]) and plan.warnings == []
    assert plan.figures == ALL_FIGURES and plan.tables == ["table2", "table3", "table4", "table1", "table5", "table6"]
    targets = plan.all_targets()
    assert len(targets) == 2 * len(ALL_FIGURES) + 3 * 6 and "results/fig18.png" in targets
    assert "results/table5.tex" in targets
    assert plan.scales == {"1k": 1000, "2k": 2000, "4k": 4000, "8k": 8000, "16k": 16000}
    assert len(plan.prefix_caches) == 2 and all(plan.prefix_cache_of(r.name) in plan.prefix_caches
                                                for r in plan.prefix_caches.values())
    assert set(SWAP_FIGURES) <= set(plan.figures)


def test_plan_of_the_paper_suite(paper):
    plan = Plan(paper)
    runs = peft.table_runs(paper) + peft.sweep_runs(paper)
    assert len(plan.fetched) == len(paper["models"]) == 77 and len(plan.finetuned) == len(runs) == 117  # 11 methods x 8 tasks + 29 sweep runs
    assert len(plan.pairs) == 41 and len(plan.edited) == 5 and plan.figures == ALL_FIGURES
    assert plan.prefix_caches == {}  # the paper's sweeps start from the embeddings
    assert len(plan.tested_pairs) == 32
    assert plan.warnings == ["fig18 leaves out pairs without a held-out accuracy: albert-base, bart-large, "
                             "bert-base-uncased-ta-cola, bert-base-uncased-ta-mnli, bert-base-uncased-ta-qnli, "
                             "bert-base-uncased-ta-sst2, bert-base-uncased-ta-stsb, convnext-base, deberta-base (add `accuracy:` to their "
                             "finetuned models in the config to include them)"]


def test_plan_of_the_tiny_suite(tiny):
    plan = Plan(tiny)
    assert plan.fetched == ["bert", "bert-x10", "effnet", "jepa", "jepa-ft"]
    assert len(plan.finetuned) == 2 + 16  # bert-rt and effnet-digits, the grid's 6 methods, fig5's 8, lr selection's 2
    assert plan.edited == ["bert-rt", "effnet-digits"] and plan.figures == ALL_FIGURES
    assert plan.trained_pair_models() == ["bert-rt", "effnet-digits"]
    assert plan.tested_pairs == ["bert-rt", "bert-self", "effnet-digits"]  # jepa: no accuracy
    assert plan.pair_modality() == {"bert-rt": "language", "bert-self": "language", "effnet-digits": "vision",
                                    "jepa": "fmri"}
    assert plan.scales == {"64": 64, "128": 128}
    assert plan.posttrain_runs(["classify", "reconstruct"], ends=True) == [
        ("64", "classify"), ("64", "reconstruct"), ("128", "classify"), ("128", "reconstruct")]
    assert list(plan.prefix_caches) == ["bert-x10-reviews-L1"]
    assert plan.prefix_cache_settings("bert-x10-reviews-L1")["start"] == 1
    assert plan.swap_settings("bert-rt")["groups"] == ["ffn", "attn"]
    assert plan.mask_settings("effnet-digits")["groups"] == ["ffn"]  # EfficientNet: no attention


def test_fig18_is_left_out_with_fewer_than_three_tested_pairs(tiny):
    config = copy.deepcopy(tiny)
    del config["models"]["bert"]["accuracy"]  # bert-self's "finetuned" model, a hub model: no accuracy left
    plan = Plan(config)
    assert plan.tested_pairs == ["bert-rt", "effnet-digits"]
    assert "fig18" not in plan.figures and not any("fig18" in t for t in plan.all_targets())
    assert plan.warnings == ["fig18 is left out of `all`: only 2 pairs have a held-out accuracy (fewer than 3); "
                             "without one: bert-self, jepa (add `accuracy:` to their finetuned models in the config)"]


@pytest.mark.parametrize("section, figures, tables", [
    ("dynamics", ["fig4", "fig9", "fig21"], []), ("peft", ["fig5", "fig22"], ["table1", "table5", "table6"])])
def test_an_absent_stage_has_no_figures_nor_wildcards(default, section, figures, tables):
    config = copy.deepcopy(default)
    del config[section]
    plan = Plan(validate_config(config))
    assert [f for f in ALL_FIGURES if f not in plan.figures] == figures
    assert [t for t in ("table1", "table5", "table6") if t not in plan.tables] == tables
    if section == "dynamics":
        assert plan.scales == {} and plan.dynamics_modes == [] and plan.dynamics_only_datasets == {}
        assert plan.posttrain_runs(["classify"]) == []
    else:
        assert plan.models == default["models"] and plan.prefix_caches == {} and plan.sweep_runs == {}
        assert plan.peft_table_cells() == plan.peft_sweep_points() == [] and plan.table5_settings() == {}


@pytest.mark.parametrize("suite", ["default", "paper", "tiny"])
def test_the_plan_never_changes_the_config(suite, request):
    config = copy.deepcopy(request.getfixturevalue(suite))
    before = copy.deepcopy(config)
    _every_answer(Plan(config))
    assert config == before


def test_only_spectral_finetunes_read_the_base_models_svd_store(default):
    plan = Plan(default)
    readers = sorted(m for m in plan.finetuned if reads_svd_store(plan.models[m]))
    assert readers and all(plan.models[m]["finetune"]["method"]["method"] == "spectral" for m in readers)
    assert not reads_svd_store(plan.models["minilm-rt"])  # a full finetune: no method entry
    lora = {"method": "lora", "r": 4, "targets": {"layers": [0]}}
    assert not reads_svd_store({"finetune": {"from": "x", "dataset": "y", "method": lora}})


def test_config_never_imports_the_plan():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import import_cycles

    graph = import_cycles.arrows()
    assert not any(target.startswith("specbasis.plan") for target in graph["specbasis.config"])
    assert not [c for c in import_cycles.cycles(graph) if any(m.startswith(("specbasis.plan", "specbasis.config"))
                                                              for m in c)]


def test_the_plan_sections_checks_run_in_validation(default):
    config = copy.deepcopy(default)
    config["interventions"]["cross"] = {"minilm-rt": "effnet-mnist"}  # a donor from another pretrained model
    config["peft"]["base"] = "nope"
    with pytest.raises(ValueError) as info:
        validate_config(config)
    assert "interventions.cross.minilm-rt" in str(info.value) and "peft.base: 'nope'" in str(info.value)

