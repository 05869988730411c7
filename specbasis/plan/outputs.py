"""Where a suite writes, and what it records of itself: its results and logs folders, and its provenance.

    suite = Suite.of(config, workflow.configfiles)
    suite.results      # "results" for the default suite, "results/<name>" for every other
    suite.logs         # "logs", "logs/<name>"
    suite.provenance   # {"suite", "config", "config_sha256"}: what each figure and table records of the suite

A suite's name is its config's `name:`, else its config file's name without the extension (`--configfile=mine.yaml`:
results/mine/). A config file called config.yaml is a folder's own suite, the default one among them: it writes to
results/ itself, as the repository's config.yaml does (and the tests' suites, each in its own folder). So suites run
in one folder never overwrite each other, while the resources they fetch stay shared (resources/ is keyed by model
and dataset names and their sources). Torch-free: the workflow calls it while it parses the config.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from specbasis.config import ConfigError

DEFAULT_CONFIG_NAME = "config.yaml"  # a folder's own suite: results/, logs/
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
# The folders a results tree holds: a suite's own folder (results/<name>/) may not be one of them, so that no
# suite's outputs mix with the default suite's.
RESULTS_FOLDERS = ("models", "weights", "svd", "delta", "alignment", "spectra", "energy", "cumgrad", "swap", "mask",
                   "peft", "dynamics")


@dataclass(frozen=True)
class Suite:
    name: str | None  # None: a folder's own suite (config.yaml), written to results/ itself
    config: str | None  # the config file read last (the one that names the suite), None when none was
    config_sha256: str | None

    @classmethod
    def of(cls, config: dict, configfiles: list) -> "Suite":
        """The suite of a validated `config` read from `configfiles` (Snakemake's workflow.configfiles, in the order
        read: the last one names the suite). Raises ConfigError when the name would not make a folder of its own."""
        path = Path(configfiles[-1]) if configfiles else None
        name = config.get("name")
        key = "name"
        if name is None and path is not None and path.name != DEFAULT_CONFIG_NAME:
            name, key = path.name.removesuffix(".yaml").removesuffix(".yml"), f"the config file's name ({path})"
        if name is not None:
            if not re.fullmatch(NAME_PATTERN, name):
                raise ConfigError(f"invalid configuration:\n  - {key}: {name!r} is not a folder name results/<name> can "
                                  f"take (letters, digits, '_', '.', '-'; not first '_', '.' or '-'): give the suite a "
                                  f"`name:`")
            if name in RESULTS_FOLDERS:
                raise ConfigError(f"invalid configuration:\n  - {key}: {name!r} is a folder of the default suite's "
                                  f"results/ ({', '.join(RESULTS_FOLDERS)}): give the suite another `name:`")
        sha = hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.is_file() else None
        return cls(name=name, config=str(path) if path is not None else None, config_sha256=sha)

    @property
    def results(self) -> str:
        return "results" if self.name is None else f"results/{self.name}"

    @property
    def logs(self) -> str:
        return "logs" if self.name is None else f"logs/{self.name}"

    @property
    def provenance(self) -> dict:
        """What a figure or table records of the suite that made it (with the commit: specbasis.io.provenance)."""
        return {"suite": self.name or "(the folder's config.yaml)", "config": self.config,
                "config_sha256": self.config_sha256}
