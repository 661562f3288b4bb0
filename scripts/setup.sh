#!/usr/bin/env bash
# Creates .venv and installs fimlsp into it (editable), with the extras named in $1 (e.g. "test").
#
# torch is installed first, and only when the venv has none: a user who already put a CUDA build
# there keeps it. FIMLSP_TORCH picks what to install (default: torch). A wheel already on this
# machine (pip's find-links) is taken first, offline; else, without an NVIDIA GPU, PyTorch's
# CPU-only wheel (a fraction of the size of the CUDA build PyPI serves), else PyPI's.
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
  torch_spec="${FIMLSP_TORCH:-torch}"
  if python -m pip install --quiet --no-index --no-deps "$torch_spec" >/dev/null 2>&1; then
    # A torch wheel on this machine (find-links): its dependencies from the usual index.
    python -m pip install --quiet "$torch_spec" 2>&1 | grep -v "^WARNING: Location" || true
  elif command -v nvidia-smi >/dev/null; then
    python -m pip install --quiet "$torch_spec"
  else
    echo "setup: no NVIDIA GPU seen; installing PyTorch's CPU-only wheel" >&2
    python -m pip install --quiet "$torch_spec" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
python -m pip install --quiet -e "$spec" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import fimlsp, torch, transformers, pygls" # fail here, not in the first test
touch "$stamp"
