#!/usr/bin/env bash
# Installs Autobahn|Testsuite (the WebSocket conformance suite) at the versions pinned in
# requirements.txt into DIR (default: target/autobahn), isolated from every other Python:
# packages go to DIR/lib, which only run.sh puts on the path. Needs Python 2.7 (the suite
# runs nowhere else); found as $PYTHON2, `python2.7` on the PATH, or pyenv's 2.7.x. Prints the
# interpreter's path last. Exits 3 when there is no Python 2.7.
#
#   tests/autobahn/install.sh [DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-$here/../../target/autobahn}"

find_python2() {
  local candidates=("${PYTHON2:-}" "$(command -v python2.7 || true)")
  candidates+=("${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python)
  for p in "${candidates[@]}"; do
    if [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

if ! python2="$(find_python2)"; then
  echo "install.sh: no Python 2.7 found (set PYTHON2, or: pyenv install 2.7.18)" >&2
  exit 3
fi
stamp="$dir/installed-$(sha256sum "$here/requirements.txt" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  rm -rf "$dir/lib"
  mkdir -p "$dir"
  echo "install.sh: installing Autobahn|Testsuite into $dir/lib with $python2" >&2
  "$python2" -m pip install --disable-pip-version-check --no-warn-script-location \
    --no-deps --target "$dir/lib" -r "$here/requirements.txt" >"$dir/install.log" 2>&1 || {
    tail -20 "$dir/install.log" >&2
    exit 1
  }
  touch "$stamp"
fi
echo "$python2"
