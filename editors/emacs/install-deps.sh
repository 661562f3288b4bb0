#!/usr/bin/env bash
# Installs what tests/editors/test_emacs.py needs on a fresh Debian bookworm machine:
#   - Emacs 28.2 (emacs-nox) + eglot 1.9 (elpa-eglot) + package-lint (elpa-package-lint) from Debian;
#   - python-lsp-server (pylsp) from PyPI into editors/emacs/.deps/venv (gitignored): the "user's
#     own" language server that eglot runs beside fimlsp in the test;
#   - Emacs 30.1 (built-in eglot 1.17) from bookworm-backports, unpacked with `dpkg -x` into
#     /opt/fimlsp-emacs30 (or $FIMLSP_EMACS30_PREFIX; the system's apt sources are not touched).
# Idempotent and unattended: a second run does nothing but check. Needs root (or sudo), the Debian
# package mirror and PyPI; nothing else is downloaded. Any part that cannot be installed makes the
# script fail (CI must not go green by skipping an Emacs); FIMLSP_EMACS30=0 leaves Emacs 30 out on
# purpose, and then the Emacs 30 tests skip only if FIMLSP_EMACS30=0 is set for them too.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

have_emacs28() {
    command -v emacs >/dev/null 2>&1 && ls -d /usr/share/emacs/site-lisp/elpa/eglot-* >/dev/null 2>&1 \
        && ls -d /usr/share/emacs/site-lisp/elpa/package-lint-[0-9]* >/dev/null 2>&1
}

if have_emacs28; then
    echo "emacs + elpa-eglot + elpa-package-lint: already installed ($(emacs --version | head -1))"
else
    $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600
    $SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 \
        emacs-nox elpa-eglot elpa-package-lint >/dev/null
    echo "emacs + elpa-eglot + elpa-package-lint: installed ($(emacs --version | head -1))"
fi

# -- pylsp, the language server the user keeps beside fimlsp --------------------------------------
VENV="$HERE/.deps/venv"
if [ -x "$VENV/bin/pylsp" ] && "$VENV/bin/pylsp" --version >/dev/null 2>&1; then
    echo "pylsp: already installed ($("$VENV/bin/pylsp" --version 2>&1 | tail -1)) in $VENV"
else
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        'python-lsp-server>=1.7,<2' </dev/null
    echo "pylsp: installed ($("$VENV/bin/pylsp" --version 2>&1 | tail -1)) in $VENV"
fi

# -- Emacs 30 from bookworm-backports ------------------------------------------------------------
PREFIX="${FIMLSP_EMACS30_PREFIX:-/opt/fimlsp-emacs30}"
if [ -x "$PREFIX/bin/emacs30" ] && "$PREFIX/bin/emacs30" --batch -Q --eval '(princ emacs-version)' >/dev/null 2>&1; then
    echo "emacs 30: already installed ($("$PREFIX/bin/emacs30" --batch -Q --eval '(princ emacs-version)'))"
    exit 0
fi
if [ "${FIMLSP_EMACS30:-1}" = 0 ]; then
    echo "emacs 30: left out (FIMLSP_EMACS30=0); set FIMLSP_EMACS30=0 for the tests too to skip them"
    exit 0
fi
# Whatever stops it fails the script, with the reason: CI must not go on without Emacs 30.
unavailable() {
    trap - ERR
    echo "emacs 30: NOT installed: $1" >&2
    echo "  (FIMLSP_EMACS30=0 leaves Emacs 30 out on purpose; FIMLSP_DEBIAN_MIRROR=URL picks a mirror)" >&2
    exit 1
}
trap 'unavailable "installing it from bookworm-backports failed at line $LINENO (see the output above)"' ERR

# The .debs come from bookworm-backports through a private apt state under $PREFIX/apt, so the
# machine's sources stay as they are; `dpkg -x` unpacks them into $PREFIX/root (no dpkg database
# entry, no conflict with Emacs 28) and a wrapper points Emacs at its own files.
VERSION_GLOB='1:30.*'
STATE="$PREFIX/apt"
$SUDO mkdir -p "$STATE/lists/partial" "$STATE/cache/archives/partial" "$STATE/debs"
# The machine's Debian mirror (deb822 or one-line sources), or FIMLSP_DEBIAN_MIRROR.
debian_mirror() {
    { sed -n 's/^URIs: *\(http[^ ]*debian\)\/* *$/\1/p' /etc/apt/sources.list.d/*.sources
      sed -n 's/^deb  *\(http[^ ]*debian\)\/*  *bookworm .*/\1/p' /etc/apt/sources.list
    } 2>/dev/null | head -1 || true
}
MIRROR="${FIMLSP_DEBIAN_MIRROR:-$(debian_mirror)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
echo "deb $MIRROR bookworm-backports main" | $SUDO tee "$STATE/sources.list" >/dev/null
APT_OPTS=(-o "Dir::Etc::SourceList=$STATE/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$STATE/lists" -o "Dir::Cache=$STATE/cache"
          -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root)
if ! $SUDO apt-get "${APT_OPTS[@]}" update -qq; then
    unavailable "bookworm-backports was not reachable from $MIRROR"
fi
version="$(apt-cache "${APT_OPTS[@]}" madison emacs-nox | awk -F'|' '{gsub(/ /,"",$2); print $2}' \
           | grep -E "^${VERSION_GLOB%\*}" | head -1 || true)"
if [ -z "$version" ]; then
    unavailable "no emacs-nox 30 found in bookworm-backports at $MIRROR (unreachable?)"
fi
# Runtime libraries Emacs 30 links against (all in bookworm main; most come with Emacs 28).
$SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 \
    libtree-sitter0 libsqlite3-0 libgccjit0 libgpm2 liblcms2-2 libxml2 libasound2 >/dev/null
(
    cd "$STATE/debs"
    $SUDO rm -f ./*.deb
    for pkg in emacs-nox emacs-bin-common emacs-common; do
        $SUDO apt-get "${APT_OPTS[@]}" download -qq "$pkg=$version"
    done
)
$SUDO rm -rf "$PREFIX/root"
$SUDO mkdir -p "$PREFIX/root" "$PREFIX/bin"
for deb in "$STATE"/debs/*.deb; do $SUDO dpkg -x "$deb" "$PREFIX/root"; done
upstream="$(ls "$PREFIX/root/usr/share/emacs" | grep -E '^[0-9]+\.[0-9]+$' | head -1)"
arch_dir="$(ls -d "$PREFIX/root/usr/libexec/emacs/$upstream"/*/ | head -1)"
pdmp="$(ls "$arch_dir"*.pdmp | head -1)"
$SUDO tee "$PREFIX/bin/emacs30" >/dev/null <<WRAPPER
#!/bin/sh
# Emacs $upstream from bookworm-backports, unpacked by editors/emacs/install-deps.sh.
R="$PREFIX/root/usr"
export EMACSLOADPATH="\$R/share/emacs/$upstream/lisp" EMACSDATA="\$R/share/emacs/$upstream/etc"
export EMACSDOC="\$R/share/emacs/$upstream/etc" EMACSPATH="$arch_dir"
exec "\$R/bin/emacs-nox" --dump-file="$pdmp" "\$@"
WRAPPER
$SUDO chmod +x "$PREFIX/bin/emacs30"
$SUDO rm -rf "$STATE/debs"/*.deb "$STATE/cache" "$PREFIX/UNAVAILABLE"  # (marker of older versions)
"$PREFIX/bin/emacs30" --batch -Q --eval '(progn (require (quote eglot)) (princ (format "emacs 30: installed (%s, eglot built in) in %s\n" emacs-version "'"$PREFIX"'")))'
