#!/usr/bin/env bash
# Create .venv with every pinned dependency, and leave `import timm` and `import transformers`
# working on a CPU-only torch. Usage: bash setup.sh [PYTHON]   (default python3, needs >= 3.11)
# Idempotent: a complete .venv (its stamp matches the files that define it) is left as it is; delete
# .venv/.setup-stamp to redo the set-up anyway.
set -euo pipefail
cd "$(dirname "$0")"
PY=${1:-python3}
STAMP=.venv/.setup-stamp
KEY=$(cat requirements.txt constraints.txt pyproject.toml setup.sh | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$KEY" ]; then
  echo "specbasis environment up to date (.venv, $STAMP)"
  exit 0
fi
rm -f "$STAMP"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# torch first and alone: with 2.13.0 installed, nothing below can pull another torch build.
$PIP install -q torch==2.13.0
$PIP install -q -r requirements.txt -c constraints.txt
$PIP install -q --no-deps braindecode -c constraints.txt  # its torchaudio is CUDA-only here: see requirements.txt
$PIP install -q --no-deps --no-build-isolation -e .
# Activate the guarded torchvision fix at interpreter start-up (a no-op where torchvision's
# compiled ops load). The hook imports nothing until torchvision itself is imported.
SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "import specbasis._torchvision_guard as g; g.install()" > "$SITE/zz_specbasis_torchvision_guard.pth"
# And Snakemake's reading of a config file that is not one (a target after --configfile): said plainly.
echo "import specbasis._snakemake_guard as g; g.install()" > "$SITE/zz_specbasis_snakemake_guard.pth"
.venv/bin/python - <<'PY'
import timm, transformers, torch
from transformers import BertModel  # noqa: F401  (fails without the guard on CPU torch)
print(f"specbasis environment ready: torch {torch.__version__}, timm {timm.__version__}, "
      f"transformers {transformers.__version__}")
PY
echo "$KEY" > "$STAMP"  # last: only a set-up that got this far counts as complete
