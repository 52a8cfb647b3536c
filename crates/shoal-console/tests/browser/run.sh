#!/usr/bin/env bash
# The live console in a real headless Chromium (Debian's `chromium`, driven by playwright-core
# from npm) against two `shoal proxy` instances on one real Redis, with live traffic from the
# official TypeScript SDK client through the reference MCP server (server-everything).
# Screenshots of every page land in target/console-screenshots/.
#
# Installs npm packages into target/e2e-cache/console. Needs /usr/bin/chromium (scripts/test.sh
# installs Debian's package). Every step is bounded by `timeout`.
set -uo pipefail
if [ "${SHOAL_SKIP_E2E:-0}" = "1" ]; then
  echo "console browser test: skipped on request (SHOAL_SKIP_E2E=1)"
  exit 0
fi
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../../.." && pwd)
# shellcheck source=../../../../scripts/e2e-lib.sh
. "$ROOT/scripts/e2e-lib.sh"
CON="$CACHE/console"
SHOTS="$ROOT/target/console-screenshots"
mkdir -p "$CON" "$SHOTS"

command -v node >/dev/null || { skip "node is not installed"; summary; }
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROMIUM" ] || { fail "chromium is not installed (scripts/test.sh installs Debian's package)"; summary; }
if [ ! -f "$CON/.done-v1" ]; then
  note "npm install playwright-core, the MCP SDK and server-everything (into target/e2e-cache/console)"
  ( cd "$CON" && { [ -f package.json ] || echo '{"private":true,"type":"module"}' > package.json; } &&
    timeout 300 npm install --prefix "$CON" --no-audit --no-fund --loglevel=error \
      playwright-core@1.64.1 @modelcontextprotocol/sdk@1.32.2 @modelcontextprotocol/server-everything@2026.8.31 ) \
    > "$LOG/console-npm.log" 2>&1 && touch "$CON/.done-v1" || { fail "npm install (see $LOG/console-npm.log)"; summary; }
fi

# SHOAL_PROFILE=release measures the console's cost on release binaries (default: debug).
PROFILE=${SHOAL_PROFILE:-debug}
note "building shoal ($PROFILE)"
flag=""; [ "$PROFILE" = release ] && flag="--release"
(cd "$ROOT" && timeout 900 cargo build -q $flag -p shoal-cli --bin shoal) > "$LOG/console-build.log" 2>&1 || { fail "cargo build (see $LOG/console-build.log)"; summary; }
SHOAL="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/shoal"

RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no > "$LOG/console-redis.log" 2>&1 &
REDIS_PID=$!; pids+=($REDIS_PID)
wait_port "$RP" || { fail "redis-server did not start"; summary; }
STORE="redis://127.0.0.1:$RP"

SP=$(free_port)
PORT=$SP node --require "$ROOT/crates/shoal-proxy/tests/e2e/loopback.cjs" "$CON/node_modules/@modelcontextprotocol/server-everything/dist/index.js" streamableHttp > "$LOG/console-everything.log" 2>&1 &
pids+=($!)
wait_port "$SP" || { fail "server-everything did not start"; summary; }

# Short store deadlines so a stopped Redis opens the breakers quickly; principals from a header.
export SHOAL_RESILIENCE__OP_TIMEOUT=300ms SHOAL_RESILIENCE__BREAKER__COOLDOWN=2s
export SHOAL_PROXY__PRINCIPAL_HEADER=x-shoal-principal
PA=$(free_port); PB=$(free_port)
for p in "$PA" "$PB"; do
  "$SHOAL" --store "$STORE" --fallback memory proxy --listen "127.0.0.1:$p" --upstream "http://127.0.0.1:$SP/mcp" > "$LOG/console-proxy-$p.log" 2>&1 &
  pids+=($!)
  wait_port "$p" || { fail "shoal proxy on $p did not start (see $LOG/console-proxy-$p.log)"; summary; }
done
CP=$(free_port)
"$SHOAL" --store "$STORE" console --listen "127.0.0.1:$CP" --proxy "http://127.0.0.1:$PA" --proxy "http://127.0.0.1:$PB" > "$LOG/console.log" 2>&1 &
CONSOLE_PID=$!; pids+=($CONSOLE_PID)
wait_port "$CP" || { fail "shoal console did not start (see $LOG/console.log)"; summary; }

cp "$HERE"/*.mjs "$CON/"
IDS="$CON/ids.json"; rm -f "$IDS"
(cd "$CON" && URL_A="http://127.0.0.1:$PA/mcp" URL_B="http://127.0.0.1:$PB/mcp" N=8 IDS_FILE="$IDS" DURATION_S=240 timeout 260 node traffic.mjs) > "$LOG/console-traffic.out" 2>&1 &
TRAFFIC_PID=$!; pids+=($TRAFFIC_PID)
for _ in $(seq 1 300); do [ -s "$IDS" ] && break; sleep 0.1; done
[ -s "$IDS" ] || { fail "traffic did not open its sessions (see $LOG/console-traffic.out)"; summary; }

note "browser checks"
(cd "$CON" && CONSOLE="http://127.0.0.1:$CP" PROXY_A="http://127.0.0.1:$PA" PROXY_B="http://127.0.0.1:$PB" \
  STORE="$STORE" SHOAL_BIN="$SHOAL" REDIS_PID=$REDIS_PID CONSOLE_PID=$CONSOLE_PID IDS_FILE="$IDS" \
  SHOTS="$SHOTS" CHROMIUM="$CHROMIUM" COST_ROUNDS="${COST_ROUNDS:-2}" TRAFFIC_PID=$TRAFFIC_PID \
  timeout 300 node console_test.mjs) > "$LOG/console-browser.out" 2>&1
rc=$?
grep '^figure ' "$LOG/console-browser.out" | sed 's/^/console: /'
tally "$LOG/console-browser.out" $rc "console"
summary
