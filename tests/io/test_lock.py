"""Hub revisions locked (specbasis.io.lock): against the hub stand-in, a repo whose `main` moves between two fetches
is fetched at the locked commit; a lock and a config that disagree stop the workflow when it parses, naming the
model; the workflow's `lock` target writes the lock from what it fetched."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hubstub import HubStub
from specbasis.io.lock import (floating, lock_document, lock_path, lock_problems, locked_commit, read_lock,
                               write_lock)
from test_fetch import run_fetch, tiny_repo
from workflow_helpers import ENV, ROOT

COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


def two_versions(folder: Path) -> list[Path]:
    """The same repo before and after a push to main: the config changed (so did its blob sha1)."""
    v1 = tiny_repo(folder / "v1")
    v2 = folder / "v2"
    shutil.copytree(v1, v2)
    config = json.loads((v2 / "config.json").read_text())
    (v2 / "config.json").write_text(json.dumps({**config, "pushed": "later"}))
    return [v1, v2]


def test_floating_sources():
    assert floating("hf:org/m@main") and floating("hf:org/m") and floating("timm:vit_base") and floating("hf:x@v1.0")
    assert not floating(f"hf:org/m@{COMMIT_A}") and not floating("wheel:x==1") and not floating("local:x")


def test_lock_path_sits_beside_the_config():
    assert lock_path("config/paper.yaml") == Path("config/paper.lock.yaml")
    assert lock_path(Path("/x/mine.yml")) == Path("/x/mine.lock.yaml") and lock_path(None) is None


def test_write_and_read_back(tmp_path):
    records = {"models": {"m": {"source": "hf:org/m@main", "commit": COMMIT_A},
                          "w": {"source": "wheel:x==1", "commit": None}},
               "datasets": {"d": {"source": "hf:datasets/org/d@main", "commit": COMMIT_B}}}
    document = lock_document(records)
    assert document == {"models": {"m": {"source": "hf:org/m@main", "commit": COMMIT_A}},
                        "datasets": {"d": {"source": "hf:datasets/org/d@main", "commit": COMMIT_B}}}
    write_lock(tmp_path / "x.lock.yaml", document)
    assert (tmp_path / "x.lock.yaml").read_text().startswith("# The commits")
    lock = read_lock(tmp_path / "x.lock.yaml")
    assert lock == document and read_lock(tmp_path / "none.yaml") == {}
    assert locked_commit(lock, "models", "m", "hf:org/m@main") == COMMIT_A
    assert locked_commit(lock, "models", "m", "hf:org/other@main") is None  # another source: not this lock's
    assert locked_commit(lock, "models", "x", "hf:org/x@main") is None


def test_disagreements_name_the_model(tmp_path):
    lock = {"models": {"m": {"source": "hf:org/m@main", "commit": COMMIT_A}}}
    path = tmp_path / "s.lock.yaml"
    config = {"models": {"m": {"source": "hf:org/m2@main"}}, "datasets": {}}
    [problem] = lock_problems(lock, path, config, resources=tmp_path / "resources")
    assert problem.startswith("models.m: source hf:org/m2@main in the config, but") and COMMIT_A in problem
    config = {"models": {"m": {"source": "hf:org/m@main"}}, "datasets": {}}
    assert lock_problems(lock, path, config, resources=tmp_path / "resources") == []
    fetched = tmp_path / "resources/models/m"
    fetched.mkdir(parents=True)
    (fetched / "fetched.json").write_text(json.dumps({"commit": COMMIT_B}))
    [problem] = lock_problems(lock, path, config, resources=tmp_path / "resources")
    assert problem.startswith(f"models.m: {fetched} holds commit {COMMIT_B}") and f"delete {fetched}" in problem


def test_a_locked_fetch_gets_the_locked_commit_after_main_moved(tmp_path):
    v1, v2 = two_versions(tmp_path / "repos")

    def fetched(dest: str) -> dict:
        return json.loads((tmp_path / dest / "fetched.json").read_text())

    with HubStub({"org/tiny": [v1]}) as hub:  # the first fetch: main is v1
        assert run_fetch(hub, tmp_path, "hf:org/tiny@main", "res/first").returncode == 0
    first = fetched("res/first")
    with HubStub({"org/tiny": [v1, v2]}) as hub:  # main moved to v2
        assert run_fetch(hub, tmp_path, "hf:org/tiny@main", "res/moved").returncode == 0
        done = run_fetch(hub, tmp_path, "hf:org/tiny@main", "res/locked", "--commit", first["commit"])
        assert done.returncode == 0, done.stderr
        gone = run_fetch(hub, tmp_path, "hf:org/tiny@main", "res/gone", "--commit", COMMIT_A)
    moved, locked = fetched("res/moved"), fetched("res/locked")
    assert moved["commit"] != first["commit"]
    assert (locked["commit"], locked["revision"], locked["locked"]) == (first["commit"], "main", True)
    assert locked["files"] == first["files"] != moved["files"]
    assert json.loads((tmp_path / "res/locked/config.json").read_text()) == json.loads((v1 / "config.json").read_text())
    assert gone.returncode == 1 and f"the lock's commit '{COMMIT_A}' not found in org/tiny" in gone.stderr
    assert not (tmp_path / "res/gone").exists()


def snakemake(work: Path, hub: HubStub, *args: str) -> subprocess.CompletedProcess:
    env = {**ENV, "HF_ENDPOINT": hub.url, "HF_HOME": str(work / "hf-home"), "NO_PROXY": "127.0.0.1",
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
                           "--cores", "1", *args, f"--configfile={work / 'suite.yaml'}"], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.workflow
def test_the_workflow_writes_the_lock_and_later_fetches_follow_it(tmp_path):
    """`lock` fetches and writes suite.lock.yaml; main moves; a fresh fetch gets the locked commit, not main's; a
    config whose source no longer matches the lock stops at parse time, naming the model."""
    v1, v2 = two_versions(tmp_path / "repos")
    work = tmp_path / "work"
    work.mkdir()
    suite = {"models": {"pt": {"source": "hf:org/tiny@main", "format": "hf", "family": "bert"},
                        "ft": {"source": "hf:org/tiny@main", "format": "hf", "family": "bert"}},
             "pairs": {"p": {"pretrained": "pt", "finetuned": "ft"}}}
    (work / "suite.yaml").write_text(yaml.safe_dump(suite))
    with HubStub({"org/tiny": [v1]}) as hub:
        done = snakemake(work, hub, "lock")
        assert done.returncode == 0, done.stderr[-4000:]
        first = hub.repos["org/tiny"].commit
    lock = read_lock(work / "suite.lock.yaml")
    assert lock["models"] == {name: {"source": "hf:org/tiny@main", "commit": first} for name in ("pt", "ft")}
    shutil.rmtree(work / "resources")
    with HubStub({"org/tiny": [v1, v2]}) as hub:  # main moved; the lock holds
        assert hub.repos["org/tiny"].commit != first
        done = snakemake(work, hub, "resources/models/pt")
        assert done.returncode == 0, done.stderr[-4000:]
    record = json.loads((work / "resources/models/pt/fetched.json").read_text())
    assert (record["commit"], record["locked"]) == (first, True)
    suite["models"]["pt"]["source"] = "hf:org/other@main"
    (work / "suite.yaml").write_text(yaml.safe_dump(suite))
    with HubStub({"org/tiny": [v1, v2]}) as hub:
        done = snakemake(work, hub, "-n", "all")
    assert done.returncode != 0
    assert "models.pt: source hf:org/other@main in the config, but" in done.stdout + done.stderr
    assert os.path.exists(work / "suite.lock.yaml")
