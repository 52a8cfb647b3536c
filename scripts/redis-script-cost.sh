#!/usr/bin/env bash
# Server time per call of Shoal's hot Lua scripts (touch, append of one frame, create), as
# Redis itself counts it: `INFO commandstats` usec_per_call of EVALSHA while `redis-benchmark`
# runs the script (16 clients, pipeline 16, N calls), median of 3. Client-independent, so it
# shows what a script change costs the server. Bounded: a few seconds per script.
#
#   ./scripts/redis-script-cost.sh [PORT]      # default: a redis-server started for the run
#
# SCRIPTS=<dir> measures the scripts in <dir> instead (e.g. another version's, from
# `git worktree add`), for a before/after ratio from one run: the arguments are this
# version's, so it fits scripts that take the same ones.
#
# Needs redis-server, redis-cli and redis-benchmark. With PORT, uses (and writes keys
# `shoal:{lc-*}` and `shoal:{<random>}` into) that server's db 0 and resets its
# commandstats: point it at a scratch server only.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${SCRIPTS:-crates/shoal-redis/src/scripts}
N=${N:-60000}
PORT=${1:-}
DIR=""
if [[ -z "$PORT" ]]; then
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  DIR=$(mktemp -d)
  redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$DIR" --logfile "$DIR/log" --pidfile "$DIR/pid"
  trap 'redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
  for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
cli() { redis-cli -p "$PORT" "$@"; }
S='{lc-s1}'
K="shoal:$S:meta shoal:$S:frames shoal:$S:requests"
NOW=$(date +%s%3N)
EXP=$((NOW + 86400000))
MS=$((86400000 + 60000)) # time left + the default 60 s grace, as the store sends it
load() { cli script load "$(cat "$D/common.lua"; echo; cat "$D/$1.lua")"; }
cost() { # name, then the EVALSHA command; median of 3 runs
  local name=$1 out="" r
  shift
  for r in 1 2 3; do
    cli config resetstat >/dev/null
    redis-benchmark -p "$PORT" -n "$N" -c 16 -P 16 -q -r 100000000000 "$@" >/dev/null 2>&1
    out="$out $(cli info commandstats | grep cmdstat_evalsha | sed 's/.*usec_per_call=\([0-9.]*\).*/\1/')"
  done
  printf "%-8s %6s µs per call   (runs:%s)\n" "$name" \
    "$(echo $out | tr ' ' '\n' | sort -n | sed -n 2p)" "$out"
}
# shellcheck disable=SC2086
cli del $K >/dev/null
C=$(load create)
T=$(load touch)
A=$(load append)
# shellcheck disable=SC2086
cli evalsha "$C" 3 $K "$NOW" "$MS" a "$NOW:$EXP:$NOW:0:1:0:1:0" d "$(printf 'x%.0s' $(seq 60))" \
  d1 "$(printf 'y%.0s' $(seq 40))" >/dev/null
FRAME=$(printf 'f%.0s' $(seq 200))
echo "redis $(cli info server | grep redis_version | tr -d '\r'), $N calls per run"
# shellcheck disable=SC2086
cost touch evalsha "$T" 3 $K "$NOW" "$EXP" "$MS"
# shellcheck disable=SC2086
# ARGV: now, expires_at, PEXPIRE ms, max frames, byte budget (64 MiB), metadata allowance,
# frame epochs (1; EPOCHS=0 measures an append without them),
# the frame prefix, one frame's bytes (the list stays at 1,000 frames: trimmed every call).
cost append1 evalsha "$A" 3 $K "$NOW" "$EXP" "$MS" 1000 67108864 135168 "${EPOCHS:-1}" PREFIX "$FRAME"
cost create evalsha "$C" 3 'shoal:{__rand_int__}:meta' 'shoal:{__rand_int__}:frames' \
  'shoal:{__rand_int__}:requests' "$NOW" "$MS" a "$NOW:$EXP:$NOW:0:1:0:1:0" d xx
