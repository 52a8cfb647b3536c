#!/usr/bin/env bash
# The official conformance suite across each bridge, against what it scores directly, same run.
#
#   2025-to-2026: the suite as a 2025-11-25 client through `bridge = "2025-to-2026"` to the
#                 fixture serving 2026-07-28 only, vs the suite as a 2026-07-28 client directly.
#   2026-to-2025: the suite as a 2026-07-28 client through `bridge = "2026-to-2025"` to the
#                 fixture serving 2025 sessions, vs the suite as a 2025-11-25 client directly.
#
# The fixture is conformance_fixture.py (the Python SDK's MCPServer; ERA=2026|2025). A scenario
# run both ways must score at least as well through the bridge; scenarios of only one era are
# listed with their scores. Every step is bounded by `timeout`.
# Usage: bridge_conformance.sh PYTHON SHOAL_BIN STORE KEY_FILE CACHE_DIR LOG_DIR
# Exit: 0 ok, 1 worse through a bridge or the suite failed to run, 3 suite not installable.
set -uo pipefail
PY=$1 SHOAL_BIN=$2 STORE=$3 KEY=$4 CACHE=$5 LOG=$6
E2E=$(cd "$(dirname "$0")" && pwd)
DIR="$CACHE/conformance-next"
mkdir -p "$DIR"
if [ ! -f "$DIR/.done-v1" ]; then
  echo '{"private":true}' > "$DIR/package.json"
  # The 2026-07-28 scenarios are in the 0.2 line; the suite needs node 22 (the `node` package).
  if timeout 300 npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error \
      @modelcontextprotocol/conformance@0.2.0-alpha.12 node@22 > "$LOG/conformance-next-npm.log" 2>&1; then
    touch "$DIR/.done-v1"
  else
    echo "npm install of the conformance suite failed (see $LOG/conformance-next-npm.log)"
    exit 3
  fi
fi
NODE="$DIR/node_modules/node/bin/node"
SUITE="$DIR/node_modules/.bin/conformance"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

fixture() { # era -> FIXTURE_URL
  local port; port=$(free_port)
  ERA=$1 PORT=$port "$PY" "$E2E/conformance_fixture.py" > "$LOG/conformance-fixture-$1.log" 2>&1 &
  pids+=($!)
  wait_port "$port" || { echo "the $1 fixture did not start (see $LOG/conformance-fixture-$1.log)"; exit 1; }
  FIXTURE_URL="http://127.0.0.1:$port/mcp"
}
bridge() { # mode upstream -> BRIDGE_URL
  local port; port=$(free_port)
  SHOAL_PROXY__BRIDGE=$1 "$SHOAL_BIN" --store "$STORE" proxy --listen "127.0.0.1:$port" \
    --upstream "$2" --event-id-key-file "$KEY" > "$LOG/conformance-bridge-$1.log" 2>&1 &
  pids+=($!)
  wait_port "$port" || { echo "the $1 bridge did not start (see $LOG/conformance-bridge-$1.log)"; exit 1; }
  BRIDGE_URL="http://127.0.0.1:$port/mcp"
}
run() { # url spec-version out
  timeout 900 "$NODE" "$SUITE" server --url "$1" --spec-version "$2" --suite all 2>&1 | grep -E '^(✓|✗|Total:)' > "$3"
  grep -q '^Total:' "$3" || { echo "the suite did not finish against $1 ($2)"; exit 1; }
}
# One direction: the direct and bridged result files; prints the comparison, sets WORSE. The
# two runs speak different eras, so a scenario's check count may differ (the 2026 suite checks
# cache hints, for one): a scenario is worse through the bridge when it fails more checks.
WORSE=0
failed_of() { sed -E 's/.* ([0-9]+) failed.*/\1/'; }
compare() { # name direct bridged
  local name=$1 direct=$2 bridged=$3 line scen d p
  echo "$name: direct $(grep '^Total:' "$direct")"
  echo "$name: bridged $(grep '^Total:' "$bridged")"
  while IFS= read -r line; do
    scen=${line#* }; scen=${scen%%:*}
    d=$(echo "$line" | failed_of)
    p=$(grep -E "^(✓|✗) $scen:" "$bridged" | failed_of)
    if [ -z "$p" ]; then
      echo "$name: only direct (the other era has no such scenario): $line"
    elif [ "$p" -gt "$d" ]; then
      echo "FAIL $name: scenario $scen: $d checks failed directly, $p through the bridge"
      WORSE=1
    else
      echo "$name: same or better through the bridge: ${line#* } | $(grep -E "^(✓|✗) $scen:" "$bridged" | sed -E 's/^[^ ]+ [^:]+: //')"
    fi
  done < <(grep -E '^(✓|✗) ' "$direct")
  while IFS= read -r line; do
    scen=${line#* }; scen=${scen%%:*}
    grep -qE "^(✓|✗) $scen:" "$direct" || echo "$name: only through the bridge (its client era's own scenario): $line"
  done < <(grep -E '^(✓|✗) ' "$bridged")
}

fixture 2026; MODERN=$FIXTURE_URL
fixture 2025; LEGACY=$FIXTURE_URL
bridge 2025-to-2026 "$MODERN"; TO_MODERN=$BRIDGE_URL
bridge 2026-to-2025 "$LEGACY"; TO_LEGACY=$BRIDGE_URL

run "$MODERN" 2026-07-28 "$LOG/conf-2026-direct.txt"
run "$TO_MODERN" 2025-11-25 "$LOG/conf-2025-to-2026.txt"
compare "2025-to-2026" "$LOG/conf-2026-direct.txt" "$LOG/conf-2025-to-2026.txt"
run "$LEGACY" 2025-11-25 "$LOG/conf-2025-direct.txt"
run "$TO_LEGACY" 2026-07-28 "$LOG/conf-2026-to-2025.txt"
compare "2026-to-2025" "$LOG/conf-2025-direct.txt" "$LOG/conf-2026-to-2025.txt"
exit $WORSE
