"""Finetuning on GLUE: specbasis.glue_metrics against values worked out by hand, load_splits("glue") on tiny
parquet folders laid out as nyu-mll/glue's (a single-sentence task, sentence-pair tasks, STS-B's regression),
and short finetunes of the tiny BERT of tests/test_train.py whose metrics.json holds the task's metric."""
from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hubstub import HubStub
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import matthews_corrcoef
from test_data import write_glue_parquet
from test_methods import scaled_dir  # noqa: F401 (fixture)
from test_train import CLASS_WORDS, NEUTRAL, TEXT_SETTINGS, bert_src, text_splits  # noqa: F401 (fixture)

from specbasis import glue_metrics
from specbasis.config import ConfigError, validate_config
from specbasis.data import GLUE_TASKS, Part, Splits, load_splits, load_test
from specbasis.models import REGRESSION_LABEL, load_classifier
from specbasis.evaluate import predict_logits
from specbasis.training.finetune import finetune

ROOT = Path(__file__).resolve().parents[2]
GOOD, BAD = CLASS_WORDS  # the tiny BERT's vocabulary: words of the two sentiments, and neutral words


# ------------------------------------------------------------------------------------------- glue_metrics

# A 2x2 confusion matrix: TP 3, FN 2, FP 1, TN 2 (positive = label 1).
Y_TRUE = np.array([1, 1, 1, 1, 1, 0, 0, 0])
Y_PRED = np.array([1, 1, 1, 0, 0, 1, 0, 0])
TP, FN, FP, TN = 3, 2, 1, 2
MCC = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))  # 4 / sqrt(240)
F1 = 2 * TP / (2 * TP + FP + FN)  # precision 3/4, recall 3/5: 2/3
ACCURACY = (TP + TN) / 8


@pytest.mark.parametrize("task,expected", [
    ("cola", {"matthews": MCC, "accuracy": ACCURACY}),
    ("mrpc", {"accuracy": ACCURACY, "f1": F1}),
    ("qqp", {"accuracy": ACCURACY, "f1": F1}),
    ("rte", {"accuracy": ACCURACY}),
    ("sst2", {"accuracy": ACCURACY}),
    (None, {"accuracy": ACCURACY}),  # a data set that is not GLUE
])
def test_classification_scores_match_the_formulas(task, expected):
    got = glue_metrics.score(task, Y_TRUE, Y_PRED)
    assert list(got) == list(expected) and list(got)[0] == glue_metrics.metric_name(task)  # main metric first
    assert got == pytest.approx(expected, abs=1e-12)
    assert MCC == pytest.approx(0.2581988897, abs=1e-9) and F1 == pytest.approx(2 / 3)


@pytest.mark.parametrize("prediction,pearson,spearman", [
    ([1, 3, 2], 0.5, 0.5),  # deviations (-1, 0, 1) . (-1, 1, 0) = 1 over sqrt(2 * 2); the same ranks
    ([3, 2, 1], -1.0, -1.0),
    ([2, 4, 6], 1.0, 1.0),
])
def test_stsb_correlations_by_hand(prediction, pearson, spearman):
    got = glue_metrics.score("stsb", [1.0, 2.0, 3.0], prediction)
    assert list(got) == ["pearson", "spearman"]
    assert got == pytest.approx({"pearson": pearson, "spearman": spearman}, abs=1e-12)


def test_pearson_and_spearman_differ_on_a_monotone_curve():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    got = glue_metrics.score("stsb", x, x ** 2)
    # deviations (-1.5, -.5, .5, 1.5) and (-6.5, -3.5, 1.5, 8.5): 25 / sqrt(5 * 129); ranks agree
    assert got["pearson"] == pytest.approx(25 / math.sqrt(5 * 129), abs=1e-12) and got["spearman"] == pytest.approx(1.0)


def test_undefined_scores_and_bad_input():
    constant = glue_metrics.score("stsb", [1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert math.isnan(constant["pearson"]) and math.isnan(constant["spearman"])
    assert glue_metrics.score("cola", [0, 1, 1], [1, 1, 1])["matthews"] == 0.0  # sklearn's convention
    with pytest.raises(ValueError, match="unknown GLUE task 'colaa'"):
        glue_metrics.metric_name("colaa")
    with pytest.raises(ValueError, match="same 1-d shape"):
        glue_metrics.score("rte", [0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="no examples"):
        glue_metrics.score("rte", [], [])


def test_every_glue_task_has_a_metric():
    assert {t: glue_metrics.metric_name(t) for t in GLUE_TASKS} == {
        "mnli": "accuracy", "mnli_mismatched": "accuracy", "qnli": "accuracy", "sst2": "accuracy",
        "cola": "matthews", "rte": "accuracy", "mrpc": "accuracy", "qqp": "accuracy", "wnli": "accuracy",
        "stsb": "pearson"}
    # every classification task reports accuracy too (metrics.json's test_accuracy); the regression task none
    for task, spec in GLUE_TASKS.items():
        assert ("accuracy" in glue_metrics.metrics_of(task)) == (spec.task_type == "classification")


# ------------------------------------------------------------------------------------------- GLUE folders

def _sentence(rng, words, n_class: int = 2, n_neutral: int = 3) -> str:
    picked = list(rng.choice(words, n_class)) if n_class else []
    return " ".join(rng.permutation(picked + list(rng.choice(NEUTRAL, n_neutral))))


def glue_rows(task: str, n: int, seed: int) -> list[tuple]:
    """n rows of `task` whose label the tiny BERT can learn from the words: (text column values..., label)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        if task == "cola":  # 70% acceptable (1), as CoLA is about; one in eight says the other class's words
            label = int(i % 10 < 7)
            rows.append((_sentence(rng, GOOD if label != (i % 8 == 5) else BAD), label))
        elif task == "rte":
            label = i % 2  # entailment 0, not_entailment 1
            rows.append((_sentence(rng, NEUTRAL, 0, 5), _sentence(rng, BAD if label else GOOD), label))
        elif task == "mnli":
            label = i % 3  # entailment: good words, neutral: none, contradiction: bad words
            words = {0: GOOD, 1: NEUTRAL, 2: BAD}[label]
            rows.append((_sentence(rng, NEUTRAL, 0, 5), _sentence(rng, words), label))
        else:  # stsb: 5 x the share of good words among the pair's four sentiment words
            good = int(rng.integers(0, 5))
            words = rng.permutation(list(rng.choice(GOOD, good)) + list(rng.choice(BAD, 4 - good)))
            first = " ".join(rng.permutation(list(words[:2]) + list(rng.choice(NEUTRAL, 3))))
            second = " ".join(rng.permutation(list(words[2:]) + list(rng.choice(NEUTRAL, 3))))
            rows.append((first, second, 5.0 * good / 4))
    return rows


SIZES = {"cola": (100, 30), "rte": (80, 20), "mnli": (90, 24), "stsb": (120, 40)}  # (train, validation)


def write_task(folder: Path, task: str, n_train: int, n_val: int, seed: int = 0) -> None:
    """`task`'s train and labelled validation splits (mnli: both validation_* splits) as nyu-mll/glue has them."""
    write_glue_parquet(folder / "train-00000-of-00001.parquet", task, glue_rows(task, n_train, seed))
    splits = ["validation_matched", "validation_mismatched"] if task == "mnli" else ["validation"]
    for k, split in enumerate(splits, start=1):
        write_glue_parquet(folder / f"{split}-00000-of-00001.parquet", task, glue_rows(task, n_val, seed + k))


@pytest.fixture(scope="module")
def glue_root(tmp_path_factory) -> Path:
    """The repo's layout: <task>/<split>-00000-of-00001.parquet for cola, rte, mnli and stsb."""
    root = tmp_path_factory.mktemp("glue")
    for task, (n_train, n_val) in SIZES.items():
        write_task(root / task, task, n_train, n_val)
    return root


@pytest.mark.parametrize("where", ["task folder", "repo root"])
@pytest.mark.parametrize("task", ["cola", "rte", "mnli"])
def test_classification_splits_carve_a_stratified_val_from_train(glue_root, task, where):
    root = glue_root / task if where == "task folder" else glue_root  # member 'cola/' or a wider member
    splits = load_splits("glue", root, seed=0, task=task, val_frac=0.2)
    n_train, n_val = SIZES[task]
    train_rows, test_rows = glue_rows(task, n_train, 0), glue_rows(task, n_val, 1)
    assert (splits.task, splits.task_type, splits.classes) == (task, "classification", list(GLUE_TASKS[task].classes))
    assert splits.num_classes == len(GLUE_TASKS[task].classes) and splits.modality == "text"
    labels = np.array([r[-1] for r in train_rows])
    per_class = np.bincount(labels)
    assert np.bincount(splits.val.y, minlength=len(per_class)).tolist() == [round(0.2 * c) for c in per_class]
    assert splits.full_sizes == splits.sizes() == {"train": n_train - len(splits.val), "val": len(splits.val),
                                                   "test": n_val}
    # train and val partition the official train split; test is the official validation split, in order
    as_x = (lambda r: r[0]) if len(GLUE_TASKS[task].text) == 1 else (lambda r: tuple(r[:-1]))
    official = sorted(map(as_x, train_rows))
    assert sorted(splits.train.x + splits.val.x) == official
    assert splits.test.x == [as_x(r) for r in test_rows] and splits.test.y.tolist() == [r[-1] for r in test_rows]
    assert splits.train.y.dtype == splits.test.y.dtype == np.int64


def test_stsb_is_regression_with_a_random_val(glue_root):
    splits = load_splits("glue", glue_root / "stsb", seed=0, task="stsb", val_frac=0.25)
    assert (splits.task_type, splits.classes, splits.num_classes) == ("regression", [], 1)
    assert splits.sizes() == {"train": 90, "val": 30, "test": 40}
    assert splits.train.y.dtype == splits.val.y.dtype == splits.test.y.dtype == np.float64
    rows = glue_rows("stsb", 120, 0)
    assert sorted(zip(splits.train.x + splits.val.x, np.concatenate([splits.train.y, splits.val.y]).tolist())) == \
        sorted((tuple(r[:2]), r[2]) for r in rows)
    assert set(splits.val.y.tolist()) <= {0.0, 1.25, 2.5, 3.75, 5.0} and splits.test.y.max() <= 5.0


@pytest.mark.parametrize("task", ["cola", "stsb"])
def test_glue_splits_are_seeded_and_capped_like_load_test(glue_root, task):
    a = load_splits("glue", glue_root, seed=3, task=task)
    b = load_splits("glue", glue_root, seed=3, task=task)
    c = load_splits("glue", glue_root, seed=4, task=task)
    assert a.val.x == b.val.x and a.train.x == b.train.x and a.val.y.tolist() == b.val.y.tolist()
    assert a.val.x != c.val.x and a.test.x == c.test.x  # another carve; the same official test part
    capped = load_splits("glue", glue_root, seed=3, task=task, max_train=20, max_eval=7)
    assert capped.sizes() == {"train": 20, "val": 7, "test": 7} and capped.full_sizes == a.sizes()
    held = load_test("glue", glue_root, seed=3, task=task, max_eval=7)  # the interventions' test part
    assert held.part.x == capped.test.x and held.part.y.tolist() == capped.test.y.tolist()
    assert held.split == "validation" and held.full_size == len(a.test)


def test_mnli_tests_on_matched_and_mismatched_trains_on_train(glue_root):
    matched = load_splits("glue", glue_root / "mnli", seed=0, task="mnli")
    mismatched = load_splits("glue", glue_root / "mnli", seed=0, task="mnli_mismatched")
    assert matched.train.x == mismatched.train.x and matched.test.x != mismatched.test.x
    assert mismatched.test.x == [tuple(r[:2]) for r in glue_rows("mnli", 24, 2)]


def test_a_validation_only_folder_says_to_fetch_the_task_folder(tmp_path):
    write_glue_parquet(tmp_path / "validation-00000-of-00001.parquet", "cola", glue_rows("cola", 10, 1))
    assert len(load_test("glue", tmp_path, seed=0, task="cola").part) == 10  # the test part alone reads
    with pytest.raises(FileNotFoundError, match=r"no train-\*\.parquet .* member: cola/ \(the whole task folder\)"):
        load_splits("glue", tmp_path, seed=0, task="cola")


def test_stsb_scores_are_checked(tmp_path):
    rows = glue_rows("stsb", 10, 0)
    write_glue_parquet(tmp_path / "train-00000-of-00001.parquet", "stsb", rows)
    write_glue_parquet(tmp_path / "validation-00000-of-00001.parquet", "stsb", [(a, b, -1.0) for a, b, _ in rows])
    with pytest.raises(ValueError, match=r"scores \[-1.0\] outside \[0.0, 5.0\] \(-1: unlabelled"):
        load_splits("glue", tmp_path, seed=0, task="stsb")
    write_glue_parquet(tmp_path / "validation-00000-of-00001.parquet", "stsb", [(a, b, 1) for a, b, _ in rows],
                       names=["low", "high"])  # a ClassLabel: not STS-B's float score
    with pytest.raises(ValueError, match=r"label names \['low', 'high'\] are not GLUE stsb's \[\]"):
        load_splits("glue", tmp_path, seed=0, task="stsb")


def test_splits_refuse_a_task_type_that_does_not_fit():
    part = Part(["a b"], np.array([1.5]))
    assert part.y.dtype == np.float64 and Part(["a"], [1]).y.dtype == np.int64
    with pytest.raises(ValueError, match="a regression task needs no class names"):
        Splits(part, part, part, ["low"], "text", task_type="regression")
    with pytest.raises(ValueError, match="task_type 'ordinal'"):
        Splits(part, part, part, [], "text", task_type="ordinal")


def test_glue_task_folder_fetched_from_the_hub_stub_trains(tmp_path):
    """The paper suite's way: hf:datasets/nyu-mll/glue@main with member mnli/ (the whole task folder)."""
    repo = tmp_path / "repos" / "glue"
    for task, (n_train, n_val) in SIZES.items():
        write_task(repo / task, task, n_train, n_val)
    write_glue_parquet(repo / "mnli" / "test_matched-00000-of-00001.parquet", "mnli",
                       [(a, b, -1) for a, b, _ in glue_rows("mnli", 5, 9)])  # GLUE's hidden test labels
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    with HubStub({}, datasets={"nyu-mll/glue": repo}) as hub:
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1",
                   NO_PROXY="127.0.0.1", PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, "-m", "specbasis.io.fetch", "hf:datasets/nyu-mll/glue@main",
                               str(tmp_path / "res" / "glue-mnli"), "--member", "mnli/"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert hub.requested("stsb/") == [] and hub.requested("cola/") == []  # that task's folder only
    fetched = tmp_path / "res" / "glue-mnli"
    assert sorted(p.name for p in fetched.glob("*.parquet")) == [
        "test_matched-00000-of-00001.parquet", "train-00000-of-00001.parquet",
        "validation_matched-00000-of-00001.parquet", "validation_mismatched-00000-of-00001.parquet"]
    splits = load_splits("glue", fetched, seed=0, task="mnli")
    assert splits.sizes() == {"train": 81, "val": 9, "test": 24}
    assert splits.test.x == [tuple(r[:2]) for r in glue_rows("mnli", 24, 1)]  # validation_matched, not test_matched


# ------------------------------------------------------------------------------------------- the config

def test_a_glue_dataset_can_be_finetuned_on():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["datasets"]["glue-cola"] = {"source": "hf:datasets/nyu-mll/glue@main", "member": "cola/", "format": "glue",
                                       "task": "cola"}
    tuned = copy.deepcopy(config["models"]["minilm-rt"])
    tuned["finetune"]["dataset"] = "glue-cola"
    config["models"]["minilm-cola"] = tuned
    validate_config(copy.deepcopy(config))  # no problem: glue trains now
    del config["datasets"]["glue-cola"]["task"]
    with pytest.raises(ConfigError, match="datasets.glue-cola.task: required for format 'glue'"):
        validate_config(config)


# ------------------------------------------------------------------------------------------- finetuning

SETTINGS = {**TEXT_SETTINGS, "lr": 5e-3, "steps": 60, "eval_every": 20}
CLASSIFICATION_ONLY = {"test_accuracy", "val_accuracy", "step0_test_accuracy", "chance_accuracy", "majority_accuracy"}


@pytest.fixture(scope="module")
def glue_runs(scaled_dir, glue_root, tmp_path_factory):  # noqa: F811
    """stsb, cola and rte finetuned once each: {task: (metrics, out_dir, splits)}."""
    out = {}
    for task in ("stsb", "cola", "rte"):
        splits = load_splits("glue", glue_root / task, seed=0, task=task)
        out_dir = tmp_path_factory.mktemp(f"ft_{task}") / "model"
        out[task] = (finetune(scaled_dir, "bert", splits, out_dir, **SETTINGS), out_dir, splits)
    return out


def test_stsb_regression_lowers_the_mse_and_records_pearson(glue_runs):
    metrics, out_dir, splits = glue_runs["stsb"]
    on_disk = json.loads((out_dir / "metrics.json").read_text())
    assert on_disk["test_metric"] == metrics["test_metric"] and on_disk["test_metric"]["name"] == "pearson"
    losses = [loss for _, loss in metrics["loss_curve"]]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), (losses[:5], losses[-5:])
    assert (metrics["task_type"], metrics["task"], metrics["classes"], metrics["num_classes"]) == \
        ("regression", "stsb", [], 1)
    assert not CLASSIFICATION_ONLY & set(on_disk)  # no accuracy of a regression
    assert list(metrics["test_scores"]) == ["pearson", "spearman"]
    assert metrics["test_metric"]["value"] == metrics["test_scores"]["pearson"] > 0.5
    assert metrics["val_metric"] == {"name": "pearson", "value": metrics["val_curve"][-1][1]}
    assert [s for s, _ in metrics["val_curve"]] == [20, 40, 60]
    assert metrics["step0_test_metric"]["name"] == "pearson"


def test_stsb_model_reloads_as_a_regression_head_with_its_logits(glue_runs):
    metrics, out_dir, splits = glue_runs["stsb"]
    config = json.loads((out_dir / "config.json").read_text())
    assert config["id2label"] == {"0": REGRESSION_LABEL} and config["problem_type"] == "regression"
    model, preprocess = load_classifier(out_dir, "bert", 1)
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    logits = predict_logits(model, preprocess, splits.test.x, "cpu")
    assert logits.shape == (len(splits.test), 1)
    head = torch.tensor(metrics["test_logits_head"])
    torch.testing.assert_close(logits[:len(head)], head, rtol=0, atol=1e-4)
    prediction = logits[:, 0].numpy().astype(np.float64)
    assert pearsonr(splits.test.y, prediction)[0] == pytest.approx(metrics["test_metric"]["value"], abs=1e-4)
    assert spearmanr(splits.test.y, prediction)[0] == pytest.approx(metrics["test_scores"]["spearman"], abs=1e-3)


def test_cola_records_matthews_that_sklearn_gives_on_the_saved_model(glue_runs):
    metrics, out_dir, splits = glue_runs["cola"]
    assert metrics["test_metric"]["name"] == "matthews" and list(metrics["test_scores"]) == ["matthews", "accuracy"]
    model, preprocess = load_classifier(out_dir, "bert", 2)
    prediction = predict_logits(model, preprocess, splits.test.x, "cpu").argmax(1).numpy()
    assert metrics["test_metric"]["value"] == pytest.approx(matthews_corrcoef(splits.test.y, prediction), abs=1e-12)
    assert metrics["test_accuracy"] == metrics["test_scores"]["accuracy"] == float((prediction == splits.test.y).mean())
    assert metrics["val_metric"] == {"name": "matthews", "value": metrics["val_curve"][-1][1]}
    assert metrics["val_accuracy"] == metrics["val_scores"]["accuracy"]
    assert metrics["majority_accuracy"] == pytest.approx(0.7) and metrics["chance_accuracy"] == 0.5
    assert json.loads((out_dir / "config.json").read_text())["id2label"] == {"0": "unacceptable", "1": "acceptable"}
    assert 0.3 < metrics["test_metric"]["value"] < 1  # it learnt the words; the noisy labels keep it from 1


def test_a_pair_task_trains_on_sentence_pairs(glue_runs):
    metrics, out_dir, splits = glue_runs["rte"]
    assert isinstance(splits.train.x[0], tuple) and metrics["task"] == "rte"
    assert metrics["test_metric"] == {"name": "accuracy", "value": metrics["test_accuracy"]}
    assert metrics["test_accuracy"] >= 0.8


def test_a_data_set_that_is_not_glue_scores_accuracy(scaled_dir, tmp_path):  # noqa: F811
    metrics = finetune(scaled_dir, "bert", text_splits(), tmp_path / "out", **{**SETTINGS, "steps": 4})
    assert (metrics["task_type"], metrics["task"]) == ("classification", None)
    assert metrics["test_metric"] == {"name": "accuracy", "value": metrics["test_accuracy"]}
    assert metrics["val_metric"] == {"name": "accuracy", "value": metrics["val_accuracy"]}
    assert metrics["step0_test_metric"] == {"name": "accuracy", "value": metrics["step0_test_accuracy"]}
    assert metrics["val_curve"][-1] == [4, metrics["val_accuracy"]] and CLASSIFICATION_ONLY <= set(metrics)
