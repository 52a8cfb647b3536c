#!/usr/bin/env bash
# End-to-end tests of shoal-rmcp with real MCP clients from the package registries (the
# official TypeScript SDK client, the Python `mcp` client) against two replicas of the example
# rmcp server (crates/shoal-rmcp/examples/server.rs) sharing one real Redis: initialize on one
# replica and every later request on the other, a progress stream cut on one and resumed with
# Last-Event-ID on the other, elicitation answered to the other replica, DELETE on one and 404
# on the other, a replica killed mid-session.
#
# Installs into target/e2e-cache (shared with the proxy's end-to-end tests). A registry that
# cannot be reached SKIPS its part; a run in which everything was skipped exits 1
# (SHOAL_SKIP_E2E=1 skips on purpose: exit 0). Every step is bounded by `timeout`.
set -uo pipefail
if [ "${SHOAL_SKIP_E2E:-0}" = "1" ]; then
  echo "e2e (rmcp): skipped on request (SHOAL_SKIP_E2E=1)"
  exit 0
fi
E2E=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$E2E/../../../.." && pwd)
# shellcheck source=../../../../scripts/e2e-lib.sh
. "$ROOT/scripts/e2e-lib.sh"

note "building the rmcp example server"
if ! (cd "$ROOT" && timeout 900 cargo build -q -p shoal-rmcp --example server) > "$LOG/rmcp-build.log" 2>&1; then
  fail "cargo build (see $LOG/rmcp-build.log)"; summary
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/server"

command -v redis-server >/dev/null || { skip "redis-server is not installed"; summary; }
RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no > "$LOG/rmcp-redis.log" 2>&1 &
pids+=($!)
wait_port "$RP" || { fail "redis-server did not start"; summary; }

start_replica() { # name -> sets REPLICA_PID, REPLICA_URL
  local name=$1 port
  port=$(free_port)
  "$BIN" --listen "127.0.0.1:$port" --store "redis://127.0.0.1:$RP" --name "$name" \
    > "$LOG/rmcp-$name.log" 2>&1 &
  REPLICA_PID=$!
  pids+=($REPLICA_PID)
  wait_port "$port" || fail "replica $name did not start (see $LOG/rmcp-$name.log)"
  REPLICA_URL="http://127.0.0.1:$port/mcp"
}

# ---- TypeScript SDK client
if ! command -v node >/dev/null; then
  skip "node is not installed: TypeScript client not run"
elif ! install_npm; then
  skip "npm registry unreachable or install failed (see $LOG/npm.log): TypeScript client not run"
else
  start_replica a; PID_A=$REPLICA_PID; URL_A=$REPLICA_URL
  start_replica b; URL_B=$REPLICA_URL
  cp "$E2E/rmcp_ts_client.mjs" "$ROOT/scripts/e2e/cut_stream.mjs" "$CACHE/npm/"
  note "TypeScript SDK client against two rmcp replicas"
  (cd "$CACHE/npm" && URL_A=$URL_A URL_B=$URL_B PID_A=$PID_A timeout 180 node rmcp_ts_client.mjs) > "$LOG/rmcp_ts_client.out" 2>&1
  tally "$LOG/rmcp_ts_client.out" $? "rmcp-ts-sdk"
fi

# ---- Python client (a fresh pair: the TypeScript client killed replica a)
if install_py; then
  start_replica c; URL_C=$REPLICA_URL
  start_replica d; PID_D=$REPLICA_PID; URL_D=$REPLICA_URL
  note "Python SDK client against two rmcp replicas"
  URL_A=$URL_C URL_B=$URL_D PID_B=$PID_D timeout 180 "$PY" "$E2E/py_client.py" > "$LOG/rmcp_py_client.out" 2>&1
  tally "$LOG/rmcp_py_client.out" $? "rmcp-python-sdk"
else
  skip "PyPI unreachable or pip failed (see $LOG/pip.log): Python client not run"
fi
summary
