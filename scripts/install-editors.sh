#!/usr/bin/env bash
# Installs the real editors the editor tests drive (CI runs this before `make test`).
# Each editors/<name>/install-deps.sh is independent; one failing is reported, the others go on,
# and this script then exits non-zero (CI stops there instead of skipping that editor's tests).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for script in editors/*/install-deps.sh; do
  [ -f "$script" ] || continue
  echo "== $script"
  if ! bash "$script"; then
    echo "!! $script failed" >&2
    status=1
  fi
done
exit $status
