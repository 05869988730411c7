"""specbasis.data on tiny files written in each real format: parsing, labels, seeded splits."""
from __future__ import annotations

import bz2
import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hubstub import HubStub

from specbasis.data import (FASHION_MNIST_CLASSES, FORMATS, GLUE_TASKS, TASK_FORMATS, load_splits, load_test,
                            read_idx, split_sentences, stratified_split)


# ---------------------------------------------------------------------------------------------
# Fixtures: one folder per format, laid out as the fetch stage leaves them


@pytest.fixture
def rotten_dir(tmp_path):
    rows = [("plot", f"A synopsis of film {i}. It has a plot.", f"film{i}", True) for i in range(5)]
    rows += [("fresh", f"fresh review number {i}, a delight", f"film{i % 7}", False) for i in range(30)]
    rows += [("rotten", f"rotten review number {i}, a bore", f"film{i % 7}", False) for i in range(20)]
    rows += [("rotten", None, "film0", False)]  # a missing text is dropped
    df = pd.DataFrame(rows, columns=["category", "text", "movie_name", "has_plot_and_reviews"])
    with bz2.open(tmp_path / "rotten_tomatoes_corpus_full.csv.bz2", "wt") as fh:
        df.to_csv(fh, index=False)
    return tmp_path


SPEECH = ("Thank you. Thank you so much.\nWe are here tonight to talk about {topic} and the road ahead. "
          "Our party believes in {topic} for every family in this nation! Is that not what {topic} means, "
          "my friends and neighbours? Applause.\n\"We will win this fight for {topic},\" she told me.")


@pytest.fixture
def political_dir(tmp_path):
    speakers = ([("democrat", f"DEM {i}") for i in range(8)] + [("republican", f"REP {i}") for i in range(6)]
                + [("democrat", "DEM 0"), ("republican", None)])  # DEM 0 speaks twice; one speaker unknown
    df = pd.DataFrame([(p, s, SPEECH.format(topic=f"topic{i}")) for i, (p, s) in enumerate(speakers)],
                      columns=["party", "speaker", "text"])
    df.to_csv(tmp_path / "political_data.csv", index=False)
    return tmp_path


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 100), ("t10k", 30)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = labels  # lets the test check images stay with their labels
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return tmp_path


@pytest.fixture
def mnist_dir(tmp_path):
    n = 200
    labels = np.arange(n) % 10
    pixels = np.zeros((n, 784), np.int64)
    pixels[:, 0] = labels  # top-left pixel = label
    pixels[:, 28] = 255  # first pixel of the second image row
    table = np.column_stack([pixels, labels])
    pd.DataFrame(table).to_csv(tmp_path / "mnist_5k.csv.gz", header=False, index=False)
    return tmp_path


@pytest.fixture
def dirs(rotten_dir, political_dir, idx_dir, mnist_dir):
    return {"rotten_tomatoes": rotten_dir, "political_speeches": political_dir, "idx": idx_dir,
            "mnist_csv": mnist_dir}


# ---------------------------------------------------------------------------------------------


def all_parts(splits):
    return {name: getattr(splits, name) for name in ("train", "val", "test")}


def test_rotten_tomatoes_drops_plots_and_maps_labels(rotten_dir):
    s = load_splits("rotten_tomatoes", rotten_dir, seed=0)
    assert s.classes == ["rotten", "fresh"] and s.modality == "text"
    texts = [t for p in all_parts(s).values() for t in p.x]
    assert len(texts) == 50 and not any("synopsis" in t for t in texts)
    for part in all_parts(s).values():
        for text, label in zip(part.x, part.y):
            assert text.startswith(s.classes[label])
    assert np.bincount(s.test.y).tolist() == [4, 6]  # stratified: 20 % of 20 rotten, of 30 fresh


@pytest.mark.parametrize("text, expected", [
    ("One two three four five. Six seven eight nine ten!", ["One two three four five.", "Six seven eight nine ten!"]),
    ("Thank you. Thank you so much.", []),  # under five words
    ("Is this the one we want now? Yes it is the one.", ["Is this the one we want now?", "Yes it is the one."]),
    ('"We will win this fight," she said. And so we did, all of us.', ['"We will win this fight," she said.',
                                                                     "And so we did, all of us."]),
    ("A line without an end mark here\nand another line without one", ["A line without an end mark here",
                                                                      "and another line without one"]),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_political_speeches_split_by_speech_and_speaker(political_dir):
    s = load_splits("political_speeches", political_dir, seed=0, val_frac=0.2, test_frac=0.25)
    assert s.classes == ["democrat", "republican"]
    df = pd.read_csv(political_dir / "political_data.csv")
    parts = all_parts(s)
    speeches = {name: set(p.group.tolist()) for name, p in parts.items()}
    assert all(speeches[a].isdisjoint(speeches[b]) for a, b in [("train", "val"), ("train", "test"), ("val", "test")])
    assert set().union(*speeches.values()) == set(range(len(df)))
    speakers = {name: {df.speaker[g] for g in v if isinstance(df.speaker[g], str)} for name, v in speeches.items()}
    assert speakers["train"].isdisjoint(speakers["test"]) and speakers["train"].isdisjoint(speakers["val"])
    for part in parts.values():
        assert np.array_equal(part.y, [["democrat", "republican"].index(df.party[g]) for g in part.group])
        assert all(len(t.split()) >= 5 for t in part.x)
        assert not any(t.startswith("Thank you") for t in part.x)
    for name in ("val", "test"):  # stratified by party: both parties on each side
        assert set(parts[name].y.tolist()) == {0, 1}
    assert len(s.train) == 4 * len(df) - len(s.val) - len(s.test)  # four sentences a speech survive


def test_idx_uses_official_test_and_carves_val_from_train(idx_dir):
    s = load_splits("idx", idx_dir, seed=0, val_frac=0.2)
    assert s.classes == FASHION_MNIST_CLASSES and s.modality == "image"
    assert s.test.x.shape == (30, 28, 28) and s.test.x.dtype == np.uint8 and s.test.y.dtype == np.int64
    official = read_idx(idx_dir / "t10k-images-idx3-ubyte.gz")
    assert np.array_equal(s.test.x, official)
    assert (len(s.train), len(s.val)) == (80, 20) and np.bincount(s.val.y).tolist() == [2] * 10
    for part in all_parts(s).values():
        assert np.array_equal(part.x[:, 0, 0], part.y)


def test_idx_rejects_a_wrong_header(tmp_path):
    with gzip.open(tmp_path / "bad.gz", "wb") as fh:
        fh.write(struct.pack(">HBB", 0, 0x0D, 1) + struct.pack(">I", 4) + b"\0" * 16)  # float IDX
    with pytest.raises(ValueError, match="unsigned-byte"):
        read_idx(tmp_path / "bad.gz")
    write_idx(tmp_path / "short.gz", np.zeros((3, 2, 2)))
    with gzip.open(tmp_path / "short.gz", "rb") as fh:
        data = fh.read()
    with gzip.open(tmp_path / "short.gz", "wb") as fh:
        fh.write(data[:-1])
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "short.gz")


def test_mnist_csv_label_last_and_rows_in_order(mnist_dir):
    s = load_splits("mnist_csv", mnist_dir, seed=0)
    assert s.classes == [str(d) for d in range(10)] and s.modality == "image"
    assert (len(s.train), len(s.val), len(s.test)) == (140, 20, 40)
    for part in all_parts(s).values():
        assert part.x.shape[1:] == (28, 28) and part.x.dtype == np.uint8
        assert np.array_equal(part.x[:, 0, 0], part.y)
        assert (part.x[:, 1, 0] == 255).all() and (part.x[:, 0, 1] == 0).all()  # row-major 28 x 28
    assert np.bincount(s.test.y).tolist() == [4] * 10


def fingerprint(splits):
    return {name: (list(p.x) if isinstance(p.x, list) else p.x.tobytes(), p.y.tolist())
            for name, p in all_parts(splits).items()}


CUT_FORMATS = [f for f in FORMATS if f not in TASK_FORMATS]  # glue's seeds and caps: tests/test_glue_train.py


@pytest.mark.parametrize("fmt", CUT_FORMATS)
def test_splits_are_fixed_by_the_seed(dirs, fmt):
    a, b = load_splits(fmt, dirs[fmt], seed=3), load_splits(fmt, dirs[fmt], seed=3)
    assert fingerprint(a) == fingerprint(b)
    c = load_splits(fmt, dirs[fmt], seed=4)
    changed = [n for n in ("train", "val", "test") if fingerprint(a)[n] != fingerprint(c)[n]]
    assert changed == (["train", "val"] if fmt == "idx" else ["train", "val", "test"])


@pytest.mark.parametrize("fmt", CUT_FORMATS)
def test_caps_take_fixed_subsets(dirs, fmt):
    full = load_splits(fmt, dirs[fmt], seed=0)
    capped = load_splits(fmt, dirs[fmt], seed=0, max_train=7, max_eval=5)
    again = load_splits(fmt, dirs[fmt], seed=0, max_train=7, max_eval=5)
    assert fingerprint(capped) == fingerprint(again)
    assert capped.sizes() == {"train": 7, "val": min(5, len(full.val)), "test": 5}
    assert capped.full_sizes == full.sizes()
    for name in ("train", "val", "test"):  # a subset of the uncapped split
        big, small = getattr(full, name), getattr(capped, name)
        keys = {(bytes(x) if not isinstance(x, str) else x, y) for x, y in zip(big.x, big.y)}
        assert all((bytes(x) if not isinstance(x, str) else x, y) in keys for x, y in zip(small.x, small.y))


def test_stratified_split_keeps_class_proportions():
    y = np.repeat([0, 1, 2], [100, 50, 10])
    test, val, train = stratified_split(y, (0.2, 0.1), np.random.default_rng(0))
    assert np.bincount(y[test]).tolist() == [20, 10, 2] and np.bincount(y[val]).tolist() == [10, 5, 1]
    assert sorted(np.concatenate([test, val, train]).tolist()) == list(range(len(y)))


# ---------------------------------------------------------------------------------------------
# GLUE: parquet files as nyu-mll/glue stores them, written with pyarrow the way `datasets` writes them
# (ClassLabel names in the schema's "huggingface" metadata; STS-B's label a float32 Value)

GLUE_ROWS = {  # task -> rows of (text column values..., label)
    "mnli": [("A man plays a guitar.", "A person makes music.", 0), ("A dog runs.", "The dog is asleep.", 2),
             ("Two kids talk.", "The kids are siblings.", 1), ("It rains.", "The ground gets wet.", 0)],
    "qnli": [("Who wrote it?", "It was written by Ann.", 0), ("When did it end?", "The war was long.", 1),
             ("Where is it?", "It is in Paris.", 0)],
    "sst2": [("a gorgeous film ", 1), ("dull and lifeless ", 0), ("it works ", 1)],
    "cola": [("The book was read by Mary.", 1), ("Book the read Mary.", 0), ("She left.", 1)],
}


def write_glue_parquet(path, task, rows, names=None):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    spec = GLUE_TASKS[task]
    columns = {c: [r[i] for r in rows] for i, c in enumerate(spec.text)}
    regression = not spec.classes and names is None  # stsb: a float score
    table = pa.table({**columns, "label": pa.array([r[-1] for r in rows], pa.float32() if regression else pa.int64()),
                      "idx": pa.array(range(len(rows)), pa.int32())})
    label = ({"dtype": "float32", "_type": "Value"} if regression else
             {"names": list(names or spec.classes), "_type": "ClassLabel"})
    features = {**{c: {"dtype": "string", "_type": "Value"} for c in spec.text}, "label": label,
                "idx": {"dtype": "int32", "_type": "Value"}}
    table = table.replace_schema_metadata({b"huggingface": json.dumps({"info": {"features": features}}).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


@pytest.fixture
def glue_dir(tmp_path):
    """The four paper-suite tasks, each fetched with member <task>/<split>-*.parquet into its own folder."""
    for task, rows in GLUE_ROWS.items():
        write_glue_parquet(tmp_path / task / f"{GLUE_TASKS[task].split}-00000-of-00001.parquet", task, rows)
    return tmp_path


@pytest.mark.parametrize("task", GLUE_ROWS)
def test_glue_validation_split_is_the_test_part(glue_dir, task):
    held = load_test("glue", glue_dir / task, seed=0, task=task)
    rows, spec = GLUE_ROWS[task], GLUE_TASKS[task]
    assert held.classes == list(spec.classes) and held.modality == "text"
    assert held.split == {"mnli": "validation_matched"}.get(task, "validation") and held.full_size == len(rows)
    expected = [r[0] if len(spec.text) == 1 else tuple(r[:-1]) for r in rows]  # pairs stay (first, second)
    assert held.part.x == expected and held.part.y.tolist() == [r[-1] for r in rows]
    assert held.part.y.dtype == np.int64


def test_glue_classes_are_the_datasets_class_labels():
    assert {t: list(GLUE_TASKS[t].classes) for t in GLUE_ROWS} == {
        "mnli": ["entailment", "neutral", "contradiction"], "qnli": ["entailment", "not_entailment"],
        "sst2": ["negative", "positive"], "cola": ["unacceptable", "acceptable"]}
    assert {t: GLUE_TASKS[t].text for t in GLUE_ROWS} == {
        "mnli": ("premise", "hypothesis"), "qnli": ("question", "sentence"), "sst2": ("sentence",),
        "cola": ("sentence",)}


def test_glue_reads_the_repo_layout_and_shards_in_order(tmp_path):
    """A wider member (e.g. 'mnli/') keeps the task folder; shards are read in name order."""
    rows = GLUE_ROWS["mnli"]
    write_glue_parquet(tmp_path / "mnli" / "validation_matched-00000-of-00002.parquet", "mnli", rows[:3])
    write_glue_parquet(tmp_path / "mnli" / "validation_matched-00001-of-00002.parquet", "mnli", rows[3:])
    write_glue_parquet(tmp_path / "mnli" / "validation_mismatched-00000-of-00001.parquet", "mnli", rows[:1])
    write_glue_parquet(tmp_path / "mnli" / "train-00000-of-00001.parquet", "mnli", rows[1:2])
    held = load_test("glue", tmp_path, seed=0, task="mnli")
    assert held.part.x == [tuple(r[:2]) for r in rows]
    mismatched = load_test("glue", tmp_path, seed=0, task="mnli_mismatched")
    assert mismatched.split == "validation_mismatched" and mismatched.part.x == [tuple(rows[0][:2])]


def test_glue_cap_is_a_fixed_subset(glue_dir):
    full = load_test("glue", glue_dir / "mnli", seed=0, task="mnli")
    capped = load_test("glue", glue_dir / "mnli", seed=0, task="mnli", max_eval=2)
    assert capped.full_size == 4 and len(capped.part) == 2
    assert capped.part.x == load_test("glue", glue_dir / "mnli", seed=0, task="mnli", max_eval=2).part.x
    assert all(x in full.part.x for x in capped.part.x)


@pytest.mark.parametrize("change,says", [
    ("names", "its label names ['positive', 'negative'] are not GLUE sst2's ['negative', 'positive']"),
    ("column", "missing column(s) ['sentence']"),
    ("unlabelled", "labels [-1] outside 0..1 (-1: unlabelled, as GLUE's test splits are)"),
    ("missing", "glue sst2: no validation-*.parquet in"),
])
def test_glue_refuses_what_it_cannot_trust(tmp_path, change, says):
    path = tmp_path / "validation-00000-of-00001.parquet"
    rows = GLUE_ROWS["sst2"]
    if change == "names":
        write_glue_parquet(path, "sst2", rows, names=["positive", "negative"])
    elif change == "column":
        write_glue_parquet(path, "mnli", GLUE_ROWS["mnli"])  # premise/hypothesis: no 'sentence'
    elif change == "unlabelled":
        write_glue_parquet(path, "sst2", [(t, -1) for t, _ in rows])
    else:
        write_glue_parquet(tmp_path / "sst2" / "test-00000-of-00001.parquet", "sst2", rows)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        load_test("glue", tmp_path, seed=0, task="sst2")
    assert says in str(info.value)
    if change == "missing":
        assert "sst2/test-00000-of-00001.parquet" in str(info.value)
        assert "member: sst2/validation-*.parquet" in str(info.value)


def test_glue_fetched_from_the_hub_stub_reads_back(tmp_path):
    """The paper suite's way: hf:datasets/nyu-mll/glue@main, member mnli/validation_matched-*.parquet, format glue."""
    repo = tmp_path / "repos" / "glue"
    for task, rows in GLUE_ROWS.items():
        for split in (GLUE_TASKS[task].split, "train"):
            write_glue_parquet(repo / task / f"{split}-00000-of-00001.parquet", task, rows)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    with HubStub({}, datasets={"nyu-mll/glue": repo}) as hub:
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1",
                   NO_PROXY="127.0.0.1", PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        done = subprocess.run([sys.executable, "-m", "specbasis.io.fetch", "hf:datasets/nyu-mll/glue@main",
                               str(tmp_path / "res" / "glue-mnli"), "--member", "mnli/validation_matched-*.parquet"],
                              env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    held = load_test("glue", tmp_path / "res" / "glue-mnli", seed=0, task="mnli")
    assert held.part.x == [tuple(r[:2]) for r in GLUE_ROWS["mnli"]] and held.classes == list(GLUE_TASKS["mnli"].classes)


def test_glue_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "validation-00000-of-00001.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # makes `import pyarrow.parquet` fail
    with pytest.raises(ImportError, match="needs pyarrow"):
        load_test("glue", tmp_path, seed=0, task="sst2")


def test_load_test_of_a_split_format_is_load_splits_test(rotten_dir):
    held = load_test("rotten_tomatoes", rotten_dir, seed=3, max_eval=5)
    splits = load_splits("rotten_tomatoes", rotten_dir, seed=3, max_eval=5)
    assert held.part.x == splits.test.x and held.part.y.tolist() == splits.test.y.tolist()
    assert (held.split, held.full_size, held.classes) == ("test", splits.full_sizes["test"], splits.classes)


def test_task_formats_need_a_task_and_tasks_are_checked(tmp_path, rotten_dir):
    assert TASK_FORMATS == ("glue",) and set(TASK_FORMATS) <= set(FORMATS)
    with pytest.raises(ValueError, match="format 'glue' needs a task; allowed: mnli, mnli_mismatched, qnli, sst2"):
        load_splits("glue", tmp_path, seed=0)
    with pytest.raises(ValueError, match="format 'glue' needs a task; allowed: mnli, mnli_mismatched, qnli, sst2"):
        load_test("glue", tmp_path, seed=0)
    with pytest.raises(ValueError, match="unknown GLUE task 'stsc'"):
        load_test("glue", tmp_path, seed=0, task="stsc")
    with pytest.raises(ValueError, match="format 'rotten_tomatoes' takes no task"):
        load_splits("rotten_tomatoes", rotten_dir, seed=0, task="sst2")
    with pytest.raises(ValueError, match="format 'rotten_tomatoes' takes no task"):
        load_test("rotten_tomatoes", rotten_dir, seed=0, task="sst2")
    with pytest.raises(ValueError, match="allowed: rotten_tomatoes, political_speeches, idx, mnist_csv, glue"):
        load_test("csv", tmp_path, seed=0)


def test_errors_name_what_is_allowed(tmp_path, rotten_dir):
    with pytest.raises(ValueError, match="allowed: rotten_tomatoes, political_speeches, idx, mnist_csv"):
        load_splits("csv", rotten_dir, seed=0)
    with pytest.raises(FileNotFoundError, match=r"\*\.csv\.gz"):
        load_splits("mnist_csv", tmp_path / "nowhere", seed=0)
    with pytest.raises(ValueError, match="sum < 1"):
        load_splits("rotten_tomatoes", rotten_dir, seed=0, val_frac=0.5, test_frac=0.5)
