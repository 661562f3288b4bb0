#!/usr/bin/env bash
# Creates .venv and installs fimlsp into it (editable), with the extras named in $1 (e.g. "test").
#
# torch is installed first, and only when the venv has none: a user who already put a CUDA build
# there keeps it. FIMLSP_TORCH picks what to install (default torch==2.13.0, which on our CPU
# machines comes from local disk in seconds; set e.g. FIMLSP_TORCH="torch" for the newest).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
. .venv/bin/activate
stamp=".venv/.fimlsp-installed-${extras:-base}"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
python -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install --quiet "${FIMLSP_TORCH:-torch==2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
python -m pip install --quiet -e "$spec" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import fimlsp, torch, transformers, pygls" # fail here, not in the first test
touch "$stamp"
