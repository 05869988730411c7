"""Sweeps on tiny objects: the grid, the checks before any evaluation, the rows against an independent
computation, the model restored after; and the `interventions` section of the config."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import stats

from specbasis.config import FAMILY_GROUPS, validate_config
from specbasis.data import Part
from specbasis.evaluate import Evaluation, compare, evaluate
from specbasis.interventions.edits import mask_count
from specbasis.models import load_classifier
from specbasis.plan.interventions import intervention_groups, intervention_models, intervention_sources
from specbasis.svd import SVD, svd_all
from specbasis.interventions.sweep import (MASK_COLUMNS, SWAP_COLUMNS, check_store, mask_points, model_groups, rank_limit,
                             metric_statistics, run_sweep, swap_points, usable_ks)
from specbasis.interventions.writeback import LiveMatrices
from test_config import _break
from tiny_suite import FILLER, WORDS, tiny_bert, tiny_effnet

ROOT = Path(__file__).resolve().parents[2]


def svd_of(W: np.ndarray) -> SVD:
    return dict(svd_all({"w": W}, progress=False))["w"]


def stores(shapes: dict[str, tuple[int, int]], seed: int = 0) -> dict[str, SVD]:
    rng = np.random.default_rng(seed)
    return {key: svd_of(rng.standard_normal(shape).astype(np.float32)) for key, shape in shapes.items()}


SHAPES = {"00.ffn_in": (12, 6), "00.ffn_out": (6, 12), "00.attn_q": (6, 6), "01.ffn_in": (12, 6),
          "01.ffn_out": (6, 12), "01.attn_q": (6, 6)}


# ------------------------------------------------------------------------------------ the grid

@pytest.mark.parametrize("ks,limit,kept,dropped", [
    ([0, 1, 2, 4], 16, [0, 1, 2, 4], []),
    ([30, 0, 16, 200, 2], 16, [0, 2, 16], [30, 200]),   # sorted; the limit itself is allowed
    ([5], 4, [], [5]),
])
def test_usable_ks_stop_at_the_smallest_rank(ks, limit, kept, dropped):
    assert usable_ks(ks, limit) == (kept, dropped)


def test_rank_limit_is_the_smallest_rank_of_the_group():
    svds = stores({"a": (12, 6), "b": (3, 9), "c": (8, 8)})
    assert rank_limit(svds, ["a", "c"]) == 6 and rank_limit(svds, ["a", "b", "c"]) == 3


def test_swap_points_grid_labels_and_left_out_ks(caplog):
    svds = stores(SHAPES)
    pre = stores(SHAPES, seed=1)
    groups = model_groups(svds, ["ffn", "attn"], "m")
    assert groups == {"ffn": ["00.ffn_in", "00.ffn_out", "01.ffn_in", "01.ffn_out"], "attn": ["00.attn_q", "01.attn_q"]}
    with caplog.at_level("INFO", logger="specbasis.interventions.sweep"):
        points = swap_points(svds, groups, ["pretrained", "zero"], [0, 2, 6, 8], {"pretrained": ("p", pre)}, 0, "m")
    assert [(p.labels["group"], p.labels["source"], p.labels["k"]) for p in points] == [
        (g, s, k) for g in ("ffn", "attn") for s in ("pretrained", "zero") for k in (0, 2, 6)]
    assert "m ffn: k = 8 left out: above the group's smallest rank 6" in caplog.text
    first = points[1]
    assert first.labels == {"model": "m", "group": "ffn", "source": "pretrained", "donor": "p", "k": 2, "matrices": 4}
    deltas = first.corrections()
    assert set(deltas) == set(groups["ffn"]) and all(d.rank == 4 for d in deltas.values())
    assert all(d.rank == 0 for d in points[0].corrections().values())  # k = 0: nothing


def test_mask_points_count_the_removed_components():
    svds = stores(SHAPES)
    points = mask_points(svds, model_groups(svds, ["ffn"], "m"), ["top_down", "bottom_up"], [0, 0.5, 1], "m")
    assert len(points) == 6
    half = points[1].labels
    assert half == {"model": "m", "group": "ffn", "order": "top_down", "fraction": 0.5,
                    "removed": 4 * mask_count(0.5, 6), "components": 24, "matrices": 4}
    assert points[2].labels["removed"] == 24


class Never:
    """An evaluate_now that must not be called."""

    def __call__(self):
        raise AssertionError("evaluated before the checks")


def _refusal(make, pattern):
    with pytest.raises((ValueError, KeyError), match=pattern):
        points = make()
        run_sweep(None, points, Never())


@pytest.mark.parametrize("case,make,pattern", [
    ("donor of another shape",
     lambda: swap_points(stores(SHAPES), {"ffn": ["00.ffn_in"]}, ["cross"], [0, 2],
                         {"cross": ("d", stores({"00.ffn_in": (12, 7)}))}, 0, "m"),
     r"matrix 00\.ffn_in of m: the donor's matrix has shape \(12, 7\), this one \(12, 6\)"),
    ("donor without the matrix",
     lambda: swap_points(stores(SHAPES), {"ffn": ["00.ffn_in", "00.ffn_out"]}, ["pretrained"], [1],
                         {"pretrained": ("p", stores({"00.ffn_in": (12, 6)}))}, 0, "m"),
     r"p has no SVD of matrix '00\.ffn_out'"),
    ("donor source without a donor",
     lambda: swap_points(stores(SHAPES), {"ffn": ["00.ffn_in"]}, ["cross"], [1], {}, 0, "m"),
     r"model m: source 'cross' needs a donor"),
    ("unknown source",
     lambda: swap_points(stores(SHAPES), {"ffn": ["00.ffn_in"]}, ["shuffle"], [1], {}, 0, "m"),
     r"model m: unknown swap source 'shuffle'"),
    ("group without matrices",
     lambda: model_groups(["00.ffn_in", "00.ffn_out"], ["ffn", "attn"], "effnet-x"),
     r"model effnet-x: no attn matrices"),
    ("bottom-up from a truncated store",
     lambda: mask_points({"00.ffn_in": SVD(*(lambda s: (s.U[:, :3], s.S, s.Vh[:3]))(stores(SHAPES)["00.ffn_in"]))},
                         {"ffn": ["00.ffn_in"]}, ["bottom_up"], [0, 0.5], "m"),
     r"matrix 00\.ffn_in of m: bottom-up masking needs all 6 singular vectors"),
    ("random_orthogonal from a truncated store",
     lambda: swap_points({"00.ffn_in": SVD(*(lambda s: (s.U[:, :3], s.S, s.Vh[:3]))(stores(SHAPES)["00.ffn_in"]))},
                         {"ffn": ["00.ffn_in"]}, ["random_orthogonal"], [0, 2], {}, 0, "m"),
     r"matrix 00\.ffn_in of m: random_orthogonal .* needs all 6 singular vectors"),
])
def test_bad_input_is_refused_before_any_evaluation(case, make, pattern):
    _refusal(make, pattern)


# ----------------------------------------------------------------- a tiny classifier, end to end

@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep") / "bert"
    tiny_bert(folder)
    model, preprocess = load_classifier(folder, "bert", 2, max_length=16)
    torch.manual_seed(0)
    with torch.no_grad():  # a head with logits of order 1, so that edits move predictions
        model.classifier.weight.normal_(0.0, 1.0)
    rng = np.random.default_rng(0)
    words = FILLER + WORDS[0] + WORDS[1]
    test = Part([" ".join(rng.choice(words, 6)) for _ in range(60)], rng.integers(0, 2, 60))
    live = LiveMatrices(model, "bert", name="tiny")
    own = dict(svd_all({k: live.matrix(k).numpy() for k in live.ids}, progress=False))
    other = {k: svd_of((live.matrix(k).numpy() + 0.3 * np.random.default_rng(1).standard_normal(
        live.matrix(k).shape)).astype(np.float32)) for k in live.ids}  # a "pretrained" model nearby
    return {"model": model, "preprocess": preprocess, "test": test, "live": live, "own": own, "other": other}


class Counting:
    def __init__(self, b, max_examples=None):
        self.b, self.calls, self.max_examples = b, 0, max_examples

    def __call__(self):
        self.calls += 1
        return evaluate(self.b["model"], self.b["preprocess"], self.b["test"], "cpu", 16, self.max_examples)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_swap_sweep_rows_match_an_independent_edit(bert):
    b = bert
    before = snapshot(b["model"])
    groups = model_groups(b["live"].ids, ["ffn", "attn"], "tiny")
    points = swap_points(b["own"], groups, ["pretrained", "zero"], [0, 3, 32], {"pretrained": ("pt", b["other"])}, 0,
                         "tiny")
    count = Counting(b, max_examples=50)
    table = run_sweep(b["live"], points, count, SWAP_COLUMNS)
    assert list(table.columns) == SWAP_COLUMNS and len(table) == 2 * 2 * 3
    assert count.calls == 1 + 2 * 2 * 2  # the baseline, then every point but k = 0
    for name, tensor in b["model"].state_dict().items():  # restored bit for bit
        assert torch.equal(tensor, before[name]), name
    base = count()
    k0 = table[table["k"] == 0]
    assert (k0["accuracy"] == base.accuracy).all() and (k0["p_mcnemar"] == 1).all() and (k0["delta"] == 0).all()
    assert (table["n"] == 50).all() and (table["base_accuracy"] == base.accuracy).all()

    # the pretrained swap of the FFN group at k = 3, rebuilt here from the SVDs with numpy
    row = table[(table["group"] == "ffn") & (table["source"] == "pretrained") & (table["k"] == 3)].iloc[0]
    k, model = 3, b["model"]
    with torch.no_grad():
        for layer in range(2):
            for kind, name in (("ffn_in", "intermediate.dense"), ("ffn_out", "output.dense")):
                own, pt = b["own"][f"{layer:02d}.{kind}"], b["other"][f"{layer:02d}.{kind}"]
                source = f"bert.encoder.layer.{layer}.{name}.weight"
                W = before[source].double().numpy()  # (m, n): W̃, top-k pairs (u, v) -> pretrained ones, σ kept
                W += (pt.U[:, :k] * own.S[:k]) @ pt.Vh[:k] - (own.U[:, :k] * own.S[:k]) @ own.Vh[:k]
                model.state_dict()[source].copy_(torch.as_tensor(W, dtype=torch.float32))
        edited = evaluate(model, b["preprocess"], b["test"], "cpu", 16, 50)
        for name, tensor in before.items():
            model.state_dict()[name].copy_(tensor)
    assert row["accuracy"] == pytest.approx(edited.accuracy)
    only_base = int((base.correct & ~edited.correct).sum())
    only_edit = int((~base.correct & edited.correct).sum())
    assert (row["only_base_correct"], row["only_edited_correct"]) == (only_base, only_edit)
    expected_p = 1.0 if only_base + only_edit == 0 else stats.binomtest(only_base, only_base + only_edit).pvalue
    assert row["p_mcnemar"] == pytest.approx(expected_p)
    lo, hi = row["ci_low"], row["ci_high"]
    assert lo <= row["accuracy"] <= hi and 0 <= lo < hi <= 1
    zero_all = table[(table["source"] == "zero") & (table["k"] == 32)]
    assert len(zero_all) == 2  # ffn and attn, every component removed


def test_own_vectors_change_nothing_and_masks_meet_at_fraction_one(bert):
    b = bert
    groups = model_groups(b["live"].ids, ["ffn"], "tiny")
    own = run_sweep(b["live"], swap_points(b["own"], groups, ["pretrained"], [5], {"pretrained": ("self", b["own"])},
                                           0, "tiny"), Counting(b))
    assert own["only_base_correct"].iloc[0] + own["only_edited_correct"].iloc[0] == 0
    masks = run_sweep(b["live"], mask_points(b["own"], groups, ["top_down", "bottom_up"], [0, 0.5, 1], "tiny"),
                      Counting(b), MASK_COLUMNS)
    assert list(masks.columns) == MASK_COLUMNS
    one = masks[masks["fraction"] == 1].set_index("order")
    assert one.loc["top_down", "accuracy"] == one.loc["bottom_up", "accuracy"]
    assert (one["removed"] == one["components"]).all()


def test_check_store_refuses_another_models_store(bert):
    b = bert
    check_store(b["live"], b["own"], b["live"].ids, "tiny")
    with pytest.raises(ValueError, match=r"matrix 00\.attn_q of tiny: its SVD store reconstructs .* not this model's"):
        check_store(b["live"], b["other"], ["00.attn_q"], "tiny")
    with pytest.raises(KeyError, match="tiny: its SVD store has no matrix '00.attn_q'"):
        check_store(b["live"], {"00.ffn_in": b["own"]["00.ffn_in"]}, ["00.attn_q"], "tiny")


def test_family_groups_are_what_the_name_maps_give(tmp_path):
    """FAMILY_GROUPS (the config's parse-time knowledge) against the name maps of tiny real models."""
    from specbasis.interventions.edits import GROUPS
    from specbasis.io.namemaps import parse_id

    for family, build in (("bert", tiny_bert), ("efficientnet_lite", tiny_effnet)):
        build(tmp_path / family)
        model, _ = load_classifier(tmp_path / family, family, 2, max_length=16, image_size=32)
        kinds = {parse_id(i)["kind"] for i in LiveMatrices(model, family).ids}
        assert set(FAMILY_GROUPS[family]) == {g for g, members in GROUPS.items() if kinds & set(members)}, family


# --------------------------------------------------------------------------- the config section

@pytest.fixture(scope="module")
def default():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def _section(**kw):
    return lambda c: c.setdefault("interventions", {}).update(kw)


CONFIG_CASES = [
    ("a fetched model without evaluate_on", _section(models=["minilm"]),
     ["interventions.models: 'minilm' has no test data", "models with either: minilm-rt"]),
    ("evaluate_on names no dataset", lambda c: c["models"]["minilm"].update(evaluate_on="glue-sst2"),
     ["models.minilm.evaluate_on: 'glue-sst2' is not a dataset"]),
    ("evaluate_on on a finetune", lambda c: c["models"]["minilm-rt"].update(evaluate_on="political"),
     ["models.minilm-rt.evaluate_on: a model the workflow finetunes is evaluated on its finetune's test split"]),
    ("glue without task", lambda c: c["datasets"].update(g={"source": "hf:datasets/nyu-mll/glue@main",
                                                            "member": "sst2/validation-*.parquet", "format": "glue"}),
     ["datasets.g.task: required for format 'glue'"]),
    ("task on another format", lambda c: c["datasets"]["political"].update(task="sst2"),
     ["datasets.political.task: only format(s) glue take a task"]),
    ("no such model", _section(models=["minilm-sst"]), ["interventions.models: 'minilm-sst' is not a model"]),
    ("donor of another pretrained model", _section(cross={"minilm-rt": "effnet-mnist"}),
     ["interventions.cross.minilm-rt: donor 'effnet-mnist' is finetuned from 'effnet', 'minilm-rt' from 'minilm'"]),
    ("donor is itself", _section(cross={"minilm-rt": "minilm-rt"}),
     ["interventions.cross.minilm-rt: a model cannot be its own cross donor"]),
    ("unknown donor", _section(cross={"minilm-rt": "minilm-x"}),
     ["interventions.cross.minilm-rt: donor 'minilm-x' is not a model"]),
    ("donor for a model not intervened on", _section(models=["minilm-rt"], cross={"minilm-party": "minilm-rt"}),
     ["interventions.cross.minilm-party: 'minilm-party' is not a model the interventions run on"]),
    ("a group no model of the family has", _section(groups=["attn"]),
     ["interventions.groups: model 'effnet-fmnist' (efficientnet_lite) has no matrices of group(s) attn"]),
    ("k beyond the stored vectors", lambda c: (c["svd"].update(rank=20), c.setdefault("interventions", {}).update(
        k=[0, 10, 30, 50])), ["interventions.k: 30, 50 exceed svd.rank = 20"]),
    ("unknown source", _section(sources=["pretrained", "shuffled"]),
     ["interventions.sources.1: 'shuffled' is not allowed"]),
    ("fraction above one", _section(fractions=[0, 1.5]), ["interventions.fractions.1"]),
    ("misspelt key", _section(fraction=[0.5]), ["interventions: unknown key(s) 'fraction'"]),
]


@pytest.mark.parametrize("what,edit,fragments", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_interventions_config_is_refused_naming_key_and_value(default, what, edit, fragments):
    message = _break(default, edit)
    for fragment in fragments:
        assert fragment in message, f"{what}: {fragment!r} missing from:\n{message}"


def test_interventions_defaults_and_per_model_plan(default):
    config = validate_config(copy.deepcopy(default))
    assert intervention_models(config) == ["minilm-rt", "minilm-party", "effnet-fmnist", "effnet-mnist"]
    assert intervention_groups(config, "minilm-rt") == ["ffn", "attn"]
    assert intervention_groups(config, "effnet-mnist") == ["ffn"]  # EfficientNet: no attention
    assert config["interventions"]["cross"]["effnet-mnist"] == "effnet-fmnist"
    bare = copy.deepcopy(default)
    del bare["interventions"]
    validate_config(bare)
    assert intervention_models(bare) == intervention_models(config)  # default: every finetune of the workflow
    assert "cross" not in intervention_sources(bare, "minilm-rt")  # no donor: no cross rows
    assert bare["interventions"]["fractions"] == [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]
    none = copy.deepcopy(default)
    none["interventions"] = {"models": []}
    assert intervention_models(validate_config(none)) == []


# --------------------------------------------------------------- fetched models (the paper suite)

def test_a_fetched_classifier_is_evaluated_on_its_dataset_in_class_order(tmp_path):
    """A hub-style checkpoint whose head lists the classes in another order than the dataset (id2label
    [positive, negative] vs GLUE SST-2's [negative, positive]): load_subject puts the head's rows in the
    dataset's order, so its logits agree with the checkpoint's own, permuted."""
    import json

    from transformers import BertForSequenceClassification

    from specbasis.interventions.sweep import load_subject
    from test_data import write_glue_parquet

    tiny_bert(tmp_path / "base")
    model = BertForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=2,
                                                          id2label={0: "POSITIVE", 1: "NEGATIVE"})
    torch.manual_seed(0)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0)
        model.classifier.bias.copy_(torch.tensor([0.3, -0.2]))
    folder = tmp_path / "hub-sst2"
    model.save_pretrained(folder)
    for f in (tmp_path / "base").iterdir():
        if f.name.startswith(("vocab", "tokenizer", "special")):
            (folder / f.name).write_bytes(f.read_bytes())
    rows = [("the film is great fun", 1), ("a dull boring mess", 0), ("this movie was superb", 1)]
    write_glue_parquet(tmp_path / "glue" / "validation-00000-of-00001.parquet", "sst2", rows)
    split = {"held_out": "evaluate_on", "format": "glue", "task": "sst2", "seed": 0, "labels": None}
    subject = load_subject("hub-sst2", folder, tmp_path / "glue", "bert", split, "cpu")
    assert subject.test.y.tolist() == [1, 0, 1]
    original = BertForSequenceClassification.from_pretrained(folder).eval()
    inputs = subject.preprocess(subject.test.x)
    with torch.no_grad():
        want = original(**inputs).logits[:, [1, 0]]  # logits[:, order]: negative, positive
        got = subject.model(**inputs).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    generic = {**split, "labels": None}
    model.config.id2label = {0: "LABEL_0", 1: "LABEL_1"}
    model.save_pretrained(folder)
    with pytest.raises(ValueError, match="hub-sst2"):
        load_subject("hub-sst2", folder, tmp_path / "glue", "bert", generic, "cpu")
    named = load_subject("hub-sst2", folder, tmp_path / "glue", "bert", {**split, "labels": ["positive", "negative"]},
                         "cpu")
    with torch.no_grad():
        torch.testing.assert_close(named.model(**inputs).logits, want, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ the task's own metric (CoLA, STS-B)

def _evaluation(y, pred, task, regression=False):
    y, pred = np.asarray(y), np.asarray(pred)
    logits = pred[:, None].astype(np.float32) if regression else np.eye(2, dtype=np.float32)[pred]
    return Evaluation(np.arange(len(y)), logits, None if regression else pred == y, y, pred, task)


def test_metric_statistics_score_by_the_tasks_metric():
    from sklearn.metrics import matthews_corrcoef

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    base_pred = np.where(rng.random(200) < 0.85, y, 1 - y)
    worse = np.where(rng.random(200) < 0.3, 1 - base_pred, base_pred)
    base, edited = _evaluation(y, base_pred, "cola"), _evaluation(y, worse, "cola")
    same = metric_statistics(base, base)
    assert same["metric"] == "matthews" and same["delta_score"] == 0 and same["p_score"] == 1.0
    assert same["delta_ci_low"] == same["delta_ci_high"] == 0.0
    row = metric_statistics(base, edited)
    assert row["score"] == pytest.approx(matthews_corrcoef(y, worse))
    assert row["base_score"] == pytest.approx(matthews_corrcoef(y, base_pred))
    assert row["delta_score"] == pytest.approx(row["score"] - row["base_score"])
    assert row["score_ci_low"] < row["score"] < row["score_ci_high"]
    assert row["delta_ci_high"] < 0 and row["p_score"] < 0.01  # 30% of the predictions flipped: clearly worse
    # accuracy tasks: Wilson's interval and the exact McNemar test, as evaluate.compare
    acc_base, acc_edited = _evaluation(y, base_pred, "sst2"), _evaluation(y, worse, "sst2")
    acc = metric_statistics(acc_base, acc_edited)
    old = compare(acc_base, acc_edited)
    assert acc["metric"] == "accuracy" and acc["score"] == old["accuracy"] and acc["p_score"] == old["p_mcnemar"]
    assert (acc["score_ci_low"], acc["score_ci_high"]) == (old["ci_low"], old["ci_high"])


def test_a_regression_point_has_a_pearson_score_and_no_accuracy():
    from scipy.stats import pearsonr

    rng = np.random.default_rng(1)
    y = rng.uniform(0, 5, 150)
    base, edited = _evaluation(y, y + rng.normal(0, 0.5, 150), "stsb", True), _evaluation(y, rng.uniform(0, 5, 150),
                                                                                           "stsb", True)
    row = {**metric_statistics(base, edited), **compare(base, edited)}
    assert row["metric"] == "pearson" and row["score"] == pytest.approx(pearsonr(y, edited.prediction)[0])
    assert row["base_score"] > 0.9 and row["delta_ci_high"] < 0 and row["p_score"] < 0.01
    assert np.isnan(row["accuracy"]) and np.isnan(row["p_mcnemar"])


def test_a_fetched_stsb_regressor_is_swept_by_pearson(tmp_path):
    """A hub-style STS-B checkpoint (one output, no classes): loaded without a label order, every point scored by
    Pearson's correlation of its predicted scores with the targets, accuracy NaN."""
    from scipy.stats import pearsonr
    from transformers import BertForSequenceClassification

    from specbasis.interventions.sweep import load_subject
    from test_data import write_glue_parquet

    tiny_bert(tmp_path / "base")
    model = BertForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=1)
    torch.manual_seed(0)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0)
    folder = tmp_path / "hub-stsb"
    model.save_pretrained(folder)
    for f in (tmp_path / "base").iterdir():
        if f.name.startswith(("vocab", "tokenizer", "special")):
            (folder / f.name).write_bytes(f.read_bytes())
    rng = np.random.default_rng(0)
    words = FILLER + WORDS[0] + WORDS[1]
    rows = [(" ".join(rng.choice(words, 5)), " ".join(rng.choice(words, 5)), float(rng.uniform(0, 5)))
            for _ in range(40)]
    write_glue_parquet(tmp_path / "glue" / "validation-00000-of-00001.parquet", "stsb", rows)
    split = {"held_out": "evaluate_on", "format": "glue", "task": "stsb", "seed": 0, "labels": None}
    subject = load_subject("hub-stsb", folder, tmp_path / "glue", "bert", split, "cpu")
    assert (subject.task, subject.task_type) == ("stsb", "regression")
    live = subject.live
    svds = dict(svd_all({k: live.matrix(k).numpy() for k in live.ids}, progress=False))
    groups = model_groups(live.ids, ["ffn"], "hub-stsb")
    evaluate_now = subject.evaluator(16, None)
    table = run_sweep(live, mask_points(svds, groups, ["top_down"], [0, 0.5], "hub-stsb"), evaluate_now, MASK_COLUMNS)
    assert (table["metric"] == "pearson").all() and table["accuracy"].isna().all()
    base = evaluate_now()
    assert table["base_score"].iloc[0] == pytest.approx(pearsonr(subject.test.y, base.prediction)[0])
    zero = table[table["fraction"] == 0].iloc[0]
    assert zero["delta_score"] == 0 and zero["p_score"] == 1.0
    assert table["score_ci_low"].le(table["score"]).all() and table["score"].le(table["score_ci_high"]).all()
