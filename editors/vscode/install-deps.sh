#!/usr/bin/env bash
# Installs everything the VS Code end-to-end test (tests/editors/test_vscode.py) needs on a fresh
# Debian bookworm machine with Node 20, unattended (no stdin), idempotently:
#   1. apt: headers code-server's native modules build against, ripgrep, chromium
#   2. the extension's own npm dependencies (npm ci from package-lock.json)
#   3. code-server 4.100.3 (= VS Code 1.100.3, the last one on Node 20) and playwright-core, into
#      editors/vscode/.test-deps/ (gitignored)
# Re-running skips what is already there. Needs root (or sudo) for apt only.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DEPS="$HERE/.test-deps"
CODE_SERVER_VERSION=4.100.3
PLAYWRIGHT_VERSION=1.56.1

export CI=true DEBIAN_FRONTEND=noninteractive
# ~/.npmrc may say yes=false, which cancels node-pty's `npx node-gyp` during code-server's
# postinstall. unsafe-perm is set for code-server's install alone (below): npm 7+ no longer knows
# it and warns once, but code-server's postinstall.sh refuses to run as root without it.
export npm_config_yes=true npm_config_fund=false \
  npm_config_audit=false npm_config_update_notifier=false npm_config_progress=false

# node-gyp (node-pty, kerberos, argon2 fall back to building) would download Node's headers from
# nodejs.org, which is unreachable here: use the installed ones.
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$(dirname "$(dirname "$(command -v node)")")/include/node/common.gypi" ]; then
  export npm_config_nodedir="$(dirname "$(dirname "$(command -v node)")")"
fi

say() { echo "[vscode install-deps] $*"; }
started=$SECONDS

# -- Node ------------------------------------------------------------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  say "node and npm are required (Node 20: code-server $CODE_SERVER_VERSION needs exactly 20)" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" != 20 ]; then
  say "warning: Node $(node -v); code-server $CODE_SERVER_VERSION is built for Node 20" >&2
fi

# -- apt -------------------------------------------------------------------------------------------
APT_PACKAGES=(libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev pkg-config ripgrep chromium
  build-essential python3 ca-certificates)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { say "need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
    SUDO="sudo -n"
  fi
  say "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null |
    sed -e '/^(Reading database/d' -e '/^Preparing to unpack/d' -e '/^Selecting previously/d'
else
  say "apt packages present: ${APT_PACKAGES[*]}"
fi

# -- ripgrep cache ---------------------------------------------------------------------------------
# @vscode/ripgrep's postinstall downloads rg from GitHub, which is unreachable here; it first looks
# in $TMPDIR/vscode-ripgrep-cache-<its version>/. Put Debian's rg there under the names it expects.
case "$(uname -m)" in
  x86_64) rg_target=x86_64-unknown-linux-musl ;;
  aarch64 | arm64) rg_target=aarch64-unknown-linux-musl ;;
  *) rg_target="" ;;
esac
if [ -n "$rg_target" ]; then
  tmp="$(node -p 'require("os").tmpdir()')"
  pack="$(mktemp -d)"
  cp "$(command -v rg)" "$pack/rg"
  # code-server 4.100.3 ships @vscode/ripgrep 1.15.11, which fetches rg release v13.0.0-10.
  for pair in 1.15.11:v13.0.0-10; do
    cache="$tmp/vscode-ripgrep-cache-${pair%%:*}"
    file="$cache/ripgrep-${pair#*:}-$rg_target.tar.gz"
    if [ ! -s "$file" ]; then
      mkdir -p "$cache"
      tar -czf "$file" -C "$pack" rg
      say "ripgrep cache: $file (Debian's rg)"
    fi
  done
  rm -rf "$pack"
fi

# -- the extension's dependencies ------------------------------------------------------------------
cd "$HERE"
if [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  say "extension node_modules up to date"
else
  say "npm ci (extension: vscode-languageclient, typescript, vsce)"
  npm ci --no-audit --no-fund </dev/null
fi

# -- code-server and playwright-core ---------------------------------------------------------------
have_version() { # package expected-version
  [ -f "$DEPS/node_modules/$1/package.json" ] &&
    [ "$(node -p "require('$DEPS/node_modules/$1/package.json').version")" = "$2" ]
}
if have_version code-server "$CODE_SERVER_VERSION" && have_version playwright-core "$PLAYWRIGHT_VERSION" &&
  [ -x "$DEPS/node_modules/.bin/code-server" ] && [ -f "$DEPS/.complete" ]; then
  say "code-server $CODE_SERVER_VERSION and playwright-core $PLAYWRIGHT_VERSION present in $DEPS"
else
  say "npm install code-server@$CODE_SERVER_VERSION playwright-core@$PLAYWRIGHT_VERSION into $DEPS (~300 MB, a few minutes)"
  mkdir -p "$DEPS"
  rm -f "$DEPS/.complete"
  [ -f "$DEPS/package.json" ] || echo '{"name": "fimlsp-vscode-test-deps", "private": true}' >"$DEPS/package.json"
  (cd "$DEPS" && npm_config_unsafe_perm=true npm install --no-audit --no-fund --no-package-lock \
    "code-server@$CODE_SERVER_VERSION" "playwright-core@$PLAYWRIGHT_VERSION" </dev/null)
  touch "$DEPS/.complete"
fi

say "code-server $(node -p "require('$DEPS/node_modules/code-server/package.json').version"), playwright-core $(node -p "require('$DEPS/node_modules/playwright-core/package.json').version")"
say "chromium: $(chromium --version 2>/dev/null || echo missing)"
say "done in $((SECONDS - started)) s"
