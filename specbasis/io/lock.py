"""Hub revisions locked: a suite's `hf:<repo>@main` (or any branch or tag: a moving target) fetched at the commit that
its lock file names, so that a rerun next year, or on another machine, gets the same weights.

    path = lock_path("config/paper.yaml")      # config/paper.lock.yaml, beside the config
    lock = read_lock(path)                      # {"models": {name: {source, commit}}, "datasets": {...}}; {} if none
    problems = lock_problems(lock, path, sections)  # the config and the lock disagree, or resources/ holds another
                                                # commit: each names the model (the workflow stops when it parses)
    commit = locked_commit(lock, "models", name, source)   # the commit to fetch `source` at, or None
    document = lock_document(records)           # the lock of fetched.json records (floating hub sources only)
    write_lock(path, document)                  # atomically, with a header saying what it is

The workflow's target `lock` (workflow/rules/fetch.smk) writes the lock from what was fetched: run it once after the
first fetch (`snakemake --configfile=config/paper.yaml lock`) and commit the file. From then on every fetch of a
locked source asks the Hub for the locked commit, whatever `main` has become. Only floating hub sources are locked:
an `hf:` or `timm:` source pinned to a 40-hex commit is its own lock, and wheel, deb, url and local sources carry
a sha256. Torch-free: the workflow reads it while it parses the config.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from specbasis.io.fetch import RECORD
from specbasis.io.store import atomic_path

LOCK_SUFFIX = ".lock.yaml"
SECTIONS = ("models", "datasets")
HEADER = ("# The commits this suite's hub sources were fetched at (specbasis.io.lock), written by the workflow's\n"
          "# `lock` target. Commit it beside the config: later runs fetch these commits instead of the moving\n"
          "# revision the config names. Delete an entry (or the file) and run the target again to move on.\n")


def lock_path(configfile: str | Path | None) -> Path | None:
    """The lock beside a config file: config/paper.yaml -> config/paper.lock.yaml (None without a config file)."""
    if configfile is None:
        return None
    path = Path(configfile)
    return path.with_name(path.name.removesuffix(".yaml").removesuffix(".yml") + LOCK_SUFFIX)


def floating(source: str) -> bool:
    """Whether a source is a hub repo at a revision that can move (a branch or tag; `hf:x` is `hf:x@main`)."""
    scheme, _, rest = source.partition(":")
    if scheme not in ("hf", "timm"):
        return False
    _, at, revision = rest.partition("@")
    return not (at and re.fullmatch(r"[0-9a-f]{40}", revision))


def read_lock(path: str | Path | None) -> dict:
    if path is None or not Path(path).exists():
        return {}
    lock = yaml.safe_load(Path(path).read_text()) or {}
    bad = [k for k in lock if k not in SECTIONS]
    if bad or not all(isinstance(v, dict) for v in lock.values()):
        raise ValueError(f"{path}: not a specbasis lock (sections {', '.join(SECTIONS)}, each name -> source, commit)")
    return lock


def locked_commit(lock: dict, section: str, name: str, source: str) -> str | None:
    """The commit to fetch `source` at: the lock's, where it locks this very source; else None (fetch as written)."""
    entry = lock.get(section, {}).get(name)
    if entry is None or not floating(source) or entry.get("source") != source:
        return None
    return entry["commit"]


def lock_problems(lock: dict, path: Path | None, sections: dict[str, dict[str, dict]],
                  resources: Path = Path("resources")) -> list[str]:
    """Where the config and its lock disagree, each naming the key: a locked name whose source in the config is not
    the locked one (the config changed since: update the lock or the config), and a fetched folder in resources/
    that holds another commit than the lock names (fetched before the lock, or by another suite). `sections`:
    {"models": {name: entry}, "datasets": {name: entry}} of the suite's fetched entries."""
    problems = []
    for section, entries in sections.items():
        for name, entry in entries.items():
            locked = lock.get(section, {}).get(name)
            if locked is None or not floating(entry["source"]):
                continue
            if locked.get("source") != entry["source"]:
                problems.append(f"{section}.{name}: source {entry['source']} in the config, but {path} locks "
                                f"{locked.get('source')} at {locked.get('commit')}: make them agree (delete the "
                                f"lock's entry and run the `lock` target again to lock the new source)")
                continue
            record = resources / section / name / RECORD
            if record.exists():
                fetched = json.loads(record.read_text()).get("commit")
                if fetched != locked["commit"]:
                    problems.append(f"{section}.{name}: {record.parent} holds commit {fetched} of {entry['source']}, "
                                    f"but {path} locks commit {locked['commit']}: delete {record.parent} to fetch "
                                    f"the locked one")
    return problems


def lock_document(records: dict[str, dict[str, dict]]) -> dict:
    """The lock of fetched.json records ({section: {name: record}}): each floating hub source and its commit."""
    return {section: {name: {"source": r["source"], "commit": r["commit"]} for name, r in sorted(entries.items())
                      if floating(r["source"])}
            for section, entries in records.items()}


def write_lock(path: str | Path, document: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(HEADER + yaml.safe_dump({k: v for k, v in document.items() if v}, sort_keys=False))
