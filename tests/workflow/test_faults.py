"""Faults, end to end on the tiny suite: a run killed mid-SVD, a download that is not the pinned
file, a checkpoint that lacks a tensor or has one of the wrong shape. Each leaves no output behind,
says what broke, and (where that makes sense) a rerun recovers."""
from __future__ import annotations

import hashlib
import os
import signal
import tarfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import tiny_suite
from workflow_helpers import job_stats, snakemake, start_snakemake, started_jobs, stray_temporaries

pytestmark = pytest.mark.workflow

WRONG_SHA256 = hashlib.sha256(b"the file that was pinned, not the one that came").hexdigest()


def edit_config(path: Path, edit):
    """Apply `edit` to the config file's contents in place; return what it returns."""
    config = yaml.safe_load(path.read_text())
    result = edit(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return result


# -- a run killed during the SVD -----------------------------------------------------------------

def wide_bert(folder: Path) -> None:
    """A BERT wide enough that its SVD takes about a second on one core: 12 matrices, 512 and 2048
    wide, a store of 38 MB written in three bursts (one per shape)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=64, hidden_size=512, num_hidden_layers=2, num_attention_heads=8,
                         intermediate_size=2048, max_position_embeddings=64)).save_pretrained(folder)


def living_members(pgid: int) -> list[int]:
    """Processes of a process group that are still alive (zombies are dead)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def kill_when_partly_written(proc, folder: Path, name: str, min_bytes: int) -> Path | None:
    """SIGKILL the process group of `proc` as soon as a temporary `.{name}.*.tmp` (store.atomic_path)
    in `folder` holds min_bytes; return that temporary, or None if the run ended first."""
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            for tmp in folder.glob(f".{name}.*.tmp") if folder.is_dir() else ():
                try:
                    big = tmp.stat().st_size >= min_bytes
                except FileNotFoundError:  # renamed onto the output just now
                    continue
                if big:
                    os.killpg(proc.pid, signal.SIGKILL)
                    return tmp
            time.sleep(0.005)
        return None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while living_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not living_members(proc.pid), "a job of the killed run is still alive"


def svd_store(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {"attrs": dict(f.attrs), **{k: {d: f[k][d][:] for d in ("U", "S", "Vh")} for k in f}}


def assert_same_store(got: Path, expected: Path) -> None:
    a, b = svd_store(got), svd_store(expected)
    assert a.keys() == b.keys() and a["attrs"].keys() == b["attrs"].keys()
    for key in b:
        if key == "attrs":
            for name, value in b["attrs"].items():
                assert a["attrs"][name] == value, name
            continue
        for d in ("U", "S", "Vh"):  # same machine, same threads: the same bits
            np.testing.assert_array_equal(a[key][d], b[key][d], err_msg=f"{key}/{d}")


def rerun(workdir: Path, *args: str) -> list[str]:
    """Run Snakemake again after a killed run, doing what it asks for; return what it asked for."""
    asked = []
    for _ in range(3):
        out = snakemake(workdir, *args, cores=1, check=False)
        text = out.stdout + out.stderr
        if out.returncode == 0:
            return asked
        if "cannot be locked" in text and "--unlock" not in asked:
            asked.append("--unlock")
            snakemake(workdir, "--unlock", *args)
        elif "--rerun-incomplete" in text and "--rerun-incomplete" not in asked:
            asked.append("--rerun-incomplete")
            args = ("--rerun-incomplete", *args)
        else:
            raise AssertionError(f"rerun failed ({out.returncode}), asking for nothing known:\n{text[-6000:]}")
    raise AssertionError(f"rerun still failing after {asked}")


def test_svd_killed_mid_write_leaves_no_output_and_reruns_to_the_same_store(tmp_path):
    config = tiny_suite.build(tmp_path)
    wide_bert(tmp_path / "fixtures/wide-bert")
    edit_config(config, lambda c: c["models"].update(
        wide={"source": "local:fixtures/wide-bert", "format": "hf", "family": "bert", "task": "none"}))
    target, svd_dir, log = "results/svd/wide.h5", tmp_path / "results/svd", tmp_path / "logs/svd/wide.log"
    args = (target, "--configfile", str(config))
    snakemake(tmp_path, "results/weights/wide.h5", "--configfile", str(config))
    snakemake(tmp_path, *args, cores=1)  # uninterrupted: the reference
    reference = tmp_path / "reference.h5"
    (tmp_path / target).rename(reference)
    assert "SVD of 12 matrices" in log.read_text()

    asked, landed_after_rename = [], 0
    for attempt in range(3):
        output = tmp_path / f"killed-{attempt}.txt"
        proc = start_snakemake(tmp_path, *args, cores=1, log=output)
        partial = kill_when_partly_written(proc, svd_dir, "wide.h5", reference.stat().st_size // 4)
        assert partial is not None, f"the run ended before it was caught writing:\n{output.read_text()[-4000:]}"
        if not (tmp_path / target).exists():
            break
        # the rename beat the kill: the output must then be whole; take it away and try again
        landed_after_rename += 1
        assert_same_store(tmp_path / target, reference)
        (tmp_path / target).unlink()
        snakemake(tmp_path, "--unlock", *args)  # the killed run left its lock
    else:
        pytest.fail(f"the kill landed after the rename {landed_after_rename} times in a row")

    # killed while the temporary held at least a quarter of the store: the output was never made
    assert not (tmp_path / target).exists()
    assert "SVD of 12 matrices" not in log.read_text()  # the job started and never finished
    strays = stray_temporaries(tmp_path / "results")
    assert strays == [f"svd/{partial.name}"], strays  # SIGKILL skips atomic_path's clean-up

    asked += rerun(tmp_path, *args)
    assert_same_store(tmp_path / target, reference)
    # the next write of the store removed the killed writer's leftover; it was never taken as the store
    assert stray_temporaries(tmp_path / "results") == []
    out = snakemake(tmp_path, "-n", *args)
    assert "Nothing to be done" in out.stdout + out.stderr
    print(f"after the kill, Snakemake asked for: {asked or 'nothing'}; "
          f"kills that landed after the rename: {landed_after_rename}")


# -- Ctrl-C: to Snakemake alone, or to the whole terminal ------------------------------------------

def wait_until_partly_written(proc, folder: Path, name: str, min_bytes: int) -> Path | None:
    """The temporary `.{name}.*.tmp` in `folder` once it holds min_bytes (None if the run ended first)."""
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        for tmp in folder.glob(f".{name}.*.tmp") if folder.is_dir() else ():
            try:
                if tmp.stat().st_size >= min_bytes:
                    return tmp
            except FileNotFoundError:
                continue
        time.sleep(0.005)
    return None


@pytest.mark.parametrize("to", ["snakemake", "group"])
def test_ctrl_c_leaves_nothing_to_clean_up_and_a_plain_rerun_recovers(tmp_path, to):
    """SIGINT to Snakemake alone (it lets the running job finish and marks its output incomplete) or to its whole
    process group (Ctrl-C in a terminal: the job stops too and removes its temporary file): no partial output
    survives, and the next plain run, with no flag added, rebuilds the same store (profiles/default's
    rerun-incomplete)."""
    config = tiny_suite.build(tmp_path)
    wide_bert(tmp_path / "fixtures/wide-bert")
    edit_config(config, lambda c: c["models"].update(
        wide={"source": "local:fixtures/wide-bert", "format": "hf", "family": "bert"}))
    target, svd_dir = "results/svd/wide.h5", tmp_path / "results/svd"
    args = (target, "--configfile", str(config))
    snakemake(tmp_path, "results/weights/wide.h5", "--configfile", str(config))
    snakemake(tmp_path, *args, cores=1)
    reference = tmp_path / "reference.h5"
    (tmp_path / target).rename(reference)

    for attempt in range(3):
        proc = start_snakemake(tmp_path, *args, cores=1, log=tmp_path / f"interrupted-{attempt}.txt")
        partial = wait_until_partly_written(proc, svd_dir, "wide.h5", reference.stat().st_size // 4)
        assert partial is not None, "the run ended before it was caught writing"
        if to == "snakemake":
            os.kill(proc.pid, signal.SIGINT)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=300)
        assert not living_members(proc.pid), "a job of the interrupted run is still alive"
        if to == "snakemake" or not (tmp_path / target).exists():
            break
        (tmp_path / target).unlink()  # the store was renamed into place before the signal landed: try again
    else:
        pytest.fail("the signal landed after the rename three times in a row")
    text = (tmp_path / f"interrupted-{attempt}.txt").read_text()
    if to == "group":
        assert not (tmp_path / target).exists()
    assert stray_temporaries(tmp_path / "results") == [], text[-3000:]

    out = snakemake(tmp_path, *args, cores=1)  # plain: no --rerun-incomplete, no --unlock
    assert "IncompleteFilesException" not in out.stdout + out.stderr
    assert_same_store(tmp_path / target, reference)
    assert stray_temporaries(tmp_path / "results") == []


# -- a download that is not the pinned file ------------------------------------------------------

def bad_dataset(root: Path, config: dict) -> str:
    """A local dataset file pinned to another file's sha256."""
    config["datasets"]["reviews"]["sha256"] = WRONG_SHA256
    return "resources/datasets/reviews"


def bad_model_url(root: Path, config: dict) -> str:
    """The tiny BERT as a tar behind a file:// address, pinned to another file's sha256."""
    archive = root / "fixtures/tiny-bert.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root / "fixtures/tiny-bert", arcname="tiny-bert")
    config["models"]["bert"].update(source=f"url:{archive.as_uri()}", sha256=WRONG_SHA256, member="tiny-bert/")
    return "resources/models/bert"


# what depends on each bad fetch: names that no job's wildcards may carry, outputs and logs that must not exist
# (a local file pinned to another sha256 is found when the workflow is parsed: the next test)
DOWNSTREAM = {
    "model-url": (bad_model_url, "tiny-bert.tar", {"bert", "bert-rt", "bert-self"},
                  ["results/models/bert", "results/models/bert-rt", "logs/models/bert.log",
                   "logs/models/bert-rt.log", "logs/weights/bert.log"]),
}


@pytest.mark.parametrize("case", DOWNSTREAM)
def test_bad_checksum_stops_the_fetch_and_everything_after_it(tmp_path, case):
    make_bad, artifact, downstream, absent = DOWNSTREAM[case]
    config = tiny_suite.build(tmp_path)
    dest = edit_config(config, lambda c: make_bad(tmp_path, c))
    name = Path(dest).name

    out = snakemake(tmp_path, "all", "--configfile", str(config), check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    actual = hashlib.sha256((tmp_path / ("fixtures/" + artifact)).read_bytes()).hexdigest()
    said = f"sha256 mismatch for {artifact}: expected {WRONG_SHA256}, got {actual}"
    assert said in text, text[-6000:]
    kind = "models" if dest.startswith("resources/models") else "datasets"
    assert said in (tmp_path / f"logs/fetch/{kind}/{name}.log").read_text()

    assert not (tmp_path / dest).exists()
    assert stray_temporaries(tmp_path / "resources") == []
    planned, started = job_stats(text), started_jobs(text)
    assert planned.get("finetune", 0) >= 1 and planned.get("svd", 0) >= 1, planned  # there was more to do
    assert (f"fetch_{kind[:-1]}", {("fetched" if kind == "models" else "dataset"): name}) in started
    after = [(rule, wc) for rule, wc in started if not rule.startswith("fetch_") and set(wc.values()) & downstream]
    assert after == [], f"jobs that depend on the bad fetch started: {after}"
    assert [p for p in absent if (tmp_path / p).exists()] == []


def missing_local(root: Path, config: dict) -> tuple[str, str]:
    config["models"]["bert"]["source"] = "local:fixtures/not-there/tiny-bert"
    return "models.bert.source: local:fixtures/not-there/tiny-bert: ", f"{root}/fixtures/not-there/tiny-bert does not exist"


def wrong_local_sha256(root: Path, config: dict) -> tuple[str, str]:
    bad_dataset(root, config)
    actual = hashlib.sha256((root / "fixtures/reviews.csv.bz2").read_bytes()).hexdigest()
    return ("datasets.reviews.source: local:fixtures/reviews.csv.bz2: ",
            f"sha256 mismatch for reviews.csv.bz2: expected {WRONG_SHA256}, got {actual}")


@pytest.mark.parametrize("make_bad", [missing_local, wrong_local_sha256], ids=["missing", "sha256"])
def test_a_bad_local_source_stops_the_workflow_when_it_is_parsed(tmp_path, make_bad):
    """A local: path that does not exist, or a local file that is not its sha256: said when the config is read,
    naming the key and the file, before any job (a dry run finds it; nothing is fetched or logged)."""
    config = tiny_suite.build(tmp_path)
    key, said = edit_config(config, lambda c: make_bad(tmp_path, c))
    for args in (("-n", "all"), ("all",)):
        out = snakemake(tmp_path, *args, "--configfile", str(config), check=False)
        text = out.stdout + out.stderr
        assert out.returncode != 0 and key in text and said in text, text[-4000:]
        assert started_jobs(text) == []
    assert not (tmp_path / "resources").exists() and not (tmp_path / "logs").exists()


# -- a checkpoint without a tensor the name map needs, or with one of the wrong shape -------------

def drop_key(state):
    del state["encoder.layer.1.attention.self.key.weight"]
    return "no attn_k: expected 'encoder.layer.1.attention.self.key.weight', missing from the checkpoint"


def misshape_ffn(state):
    import torch

    state["encoder.layer.1.intermediate.dense.weight"] = torch.zeros(37, 32)  # (out, in) is (64, 32)
    return "encoder.layer.1.intermediate.dense.weight has shape (37, 32)"


@pytest.mark.parametrize("edit", [drop_key, misshape_ffn], ids=["missing", "misshapen"])
def test_bad_checkpoint_fails_extraction_naming_the_tensor(tmp_path, edit):
    from safetensors.torch import load_file, save_file

    config = tiny_suite.build(tmp_path)
    weights = tmp_path / "fixtures/tiny-bert/model.safetensors"
    state = load_file(weights)
    says = edit(state)
    save_file(state, str(weights), metadata={"format": "pt"})

    out = snakemake(tmp_path, "results/weights/bert.h5", "--configfile", str(config), check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    # prepare_model links the checkpoint as it is (it loads nothing), so the fault surfaces in extraction
    assert (tmp_path / "results/models/bert/model.safetensors").is_file()
    assert [rule for rule, _ in started_jobs(text)] == ["fetch_model", "prepare_model", "extract_weights"]
    assert "Error in rule extract_weights" in text and says in text
    assert not (tmp_path / "results/weights/bert.h5").exists()
    assert stray_temporaries(tmp_path / "results") == []
    assert says in (tmp_path / "logs/weights/bert.log").read_text()  # Snakemake: "check log file(s) for error details"


# -- a target written after --configfile ------------------------------------------------------------

@pytest.mark.parametrize("target", ["fig2.pdf", "table1.csv", "fig3.png"], ids=["binary", "text", "missing"])
def test_a_target_read_as_a_config_file_is_said_plainly(tmp_path, target):
    """`snakemake --configfile mine.yaml results/fig2.pdf` reads the PDF as a config (the README warns of it): a
    file that is not a YAML mapping, or not there, is named with the fix, not a raw UnicodeDecodeError."""
    config = tiny_suite.build(tmp_path)
    if target.endswith(".pdf"):
        (tmp_path / target).write_bytes(b"%PDF-1.4\n\x80\x81\xff\xfe\x00 binary")
    elif target.endswith(".csv"):
        (tmp_path / target).write_text("pair,score\nmine,0.9\n")
    out = snakemake(tmp_path, "-n", "--configfile", str(config), str(tmp_path / target), check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "UnicodeDecodeError" not in text
    assert f"{tmp_path / target}" in text and "Write the targets first" in text, text[-3000:]
    assert "--configfile=mine.yaml" in text
