import sys
from pathlib import Path

# Test modules import helpers (tiny_suite, hubstub) and each other's fixtures by bare name (pytest's default
# prepend import mode, no __init__.py), across the folders that mirror the packages: put each on the path.
HERE = Path(__file__).resolve().parent
for folder in [HERE, *sorted(p for p in HERE.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))]:
    sys.path.insert(0, str(folder))

import specbasis.plan  # noqa: E402, F401  (registers the checks of the sections it plans: every test validates fully)


import hashlib  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402

# the specbasis commit as specbasis.io.provenance records it
COMMIT = re.compile(r"([0-9a-f]{40}(\+dirty)?|unknown \(not a git checkout\))")


@pytest.fixture
def suite(tmp_path):
    """A suite's record as the workflow's PROVENANCE holds it (specbasis.plan.outputs.Suite.provenance)."""
    config = tmp_path / "mine.yaml"
    config.write_text("models: {}\n")
    return {"suite": "mine", "config": str(config), "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest()}
