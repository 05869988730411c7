import sys
from pathlib import Path

# Test modules import helpers (tiny_suite, hubstub) and each other's fixtures by bare name (pytest's default
# prepend import mode, no __init__.py), across the folders that mirror the packages: put each on the path.
HERE = Path(__file__).resolve().parent
for folder in [HERE, *sorted(p for p in HERE.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))]:
    sys.path.insert(0, str(folder))

import specbasis.plan  # noqa: E402, F401  (registers the checks of the sections it plans: every test validates fully)
