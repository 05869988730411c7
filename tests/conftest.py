import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/ helpers (tiny_suite, hubstub)

import specbasis.plan  # noqa: E402, F401  (registers the checks of the sections it plans: every test validates fully)
