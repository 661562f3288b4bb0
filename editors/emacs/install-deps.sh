#!/usr/bin/env bash
# Installs what tests/editors/test_emacs.py needs on a fresh Debian bookworm machine:
#   - Emacs 28.2 (emacs-nox) + eglot 1.9 (elpa-eglot) from Debian,        always;
#   - Emacs 30.1 (built-in eglot 1.17) from bookworm-backports, unpacked with `dpkg -x` into
#     /opt/fimlsp-emacs30 (the system's apt sources are not touched), unless FIMLSP_EMACS30=0.
# Idempotent and unattended: a second run does nothing but check. Needs root (or sudo) and the
# Debian package mirror; nothing else is downloaded.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

have_emacs28() {
    command -v emacs >/dev/null 2>&1 && ls -d /usr/share/emacs/site-lisp/elpa/eglot-* >/dev/null 2>&1
}

if have_emacs28; then
    echo "emacs + elpa-eglot: already installed ($(emacs --version | head -1))"
else
    $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600
    $SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 \
        emacs-nox elpa-eglot >/dev/null
    echo "emacs + elpa-eglot: installed ($(emacs --version | head -1))"
fi

# -- Emacs 30 from bookworm-backports (optional) -------------------------------------------------
PREFIX=/opt/fimlsp-emacs30
if [ -x "$PREFIX/bin/emacs30" ] && "$PREFIX/bin/emacs30" --batch -Q --eval '(princ emacs-version)' >/dev/null 2>&1; then
    echo "emacs 30: already installed ($("$PREFIX/bin/emacs30" --batch -Q --eval '(princ emacs-version)'))"
    exit 0
fi
# Emacs 30 is optional: whatever stops it is written to $PREFIX/UNAVAILABLE (the test's skip
# message) and the script still succeeds; the Emacs 28 tests run regardless.
unavailable() {
    trap - ERR
    echo "emacs 30: skipped ($1); the Emacs 28 tests still run"
    $SUDO mkdir -p "$PREFIX"
    echo "$1" | $SUDO tee "$PREFIX/UNAVAILABLE" >/dev/null
    exit 0
}
trap 'unavailable "installing it from bookworm-backports failed at line $LINENO (see the output above)"' ERR
if [ "${FIMLSP_EMACS30:-1}" = 0 ]; then
    unavailable "FIMLSP_EMACS30=0 was set when editors/emacs/install-deps.sh ran"
fi

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
$SUDO rm -rf "$STATE/debs"/*.deb "$STATE/cache" "$PREFIX/UNAVAILABLE"
"$PREFIX/bin/emacs30" --batch -Q --eval '(progn (require (quote eglot)) (princ (format "emacs 30: installed (%s, eglot built in) in %s\n" emacs-version "'"$PREFIX"'")))'
