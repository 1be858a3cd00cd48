#!/usr/bin/env bash
# Runs Autobahn|Testsuite's fuzzingclient against a WebSocket echo URL and compares the
# results with expected-results.json (case -> behaviour). Exits 0 when they match, 1 when
# they do not, 3 when Python 2.7 is missing (install.sh).
#
#   DUET_DEBUG_ECHO_ROUTE=1 target/debug/duet-server --memory --listen 127.0.0.1:9001 \
#       --max-messages-per-sec 1000000 --max-bytes-per-sec 1000000000 &
#   tests/autobahn/run.sh ws://127.0.0.1:9001/~echo [OUTDIR]
#
# Cases 1-10, all 301 of them (the 9.* performance cases included: ~16 s of the ~55 s a run
# takes on a 2-core machine). 11-13 need permessage-deflate, which the server does not
# offer. The end-to-end test tests/tests/autobahn.rs starts a debug server and runs this.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
url="$1"
dir="${AUTOBAHN_DIR:-$here/../../target/autobahn}"
out="${2:-$dir/reports}"
python2="$("$here/install.sh" "$dir")"
rm -rf "$out"
mkdir -p "$out"
cat >"$out/fuzzingclient.json" <<JSON
{
  "outdir": "$out",
  "servers": [{ "agent": "duet-server", "url": "$url" }],
  "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
cd "$out"
"$python2" -E -s -c "
import site, sys
site.addsitedir(sys.argv[1])
sys.argv = ['wstest', '-m', 'fuzzingclient', '-s', sys.argv[2]]
from autobahntestsuite.wstest import run
run()
" "$dir/lib" "$out/fuzzingclient.json" >"$out/wstest.log" 2>&1 || {
  tail -30 "$out/wstest.log" >&2
  exit 1
}
"$python2" "$here/compare.py" "$here/expected-results.json" "$out/index.json"
