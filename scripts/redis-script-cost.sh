#!/usr/bin/env bash
# Server time per call of Shoal's hot Lua scripts (touch, append of one frame, create), as
# Redis itself counts it: `INFO commandstats` usec_per_call of EVALSHA while `redis-benchmark`
# runs the script (16 clients, pipeline 16, N calls), median of 3. Client-independent, so it
# shows what a script change costs the server. Bounded: a few seconds per script.
#
#   ./scripts/redis-script-cost.sh [PORT]      # default: a redis-server started for the run
#
# FEED=1 runs them as a single server with the change feed on does: ARGV[1] carries the feed
# header and the entry's detail, the feed stream is a fourth key (each call adds an entry).
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
TAB=$'\t'
if [[ "${FEED:-0}" == "1" ]]; then
  FK='shoal:feed:{f0}'
  NK=4
  T_NOW="$NOW 100000 60000 lc-s1"
  T_WINDOW=$((NOW / 60000 * 60000))
  A_NOW="$NOW 100000 60000 lc-s1"$'\n'"c${TAB}post-1${TAB}tools/call${TAB}17${TAB}add${TAB}${TAB}200${TAB}$NOW"
  C_NOW="$NOW 100000 60000 lc-new"$'\n'"streamable_http${TAB}2025-11-25${TAB}claude-code${TAB}2.1${TAB}"
else
  FK=''
  NK=3
  T_NOW=$NOW
  T_WINDOW=''
  A_NOW=$NOW
  C_NOW=$NOW
fi
echo "redis $(cli info server | grep redis_version | tr -d '\r'), $N calls per run"
# shellcheck disable=SC2086
# shellcheck disable=SC2086
cost touch evalsha "$T" $NK $K $FK "$T_NOW" "$EXP" "$MS" $T_WINDOW
# shellcheck disable=SC2086
# ARGV: now, expires_at, PEXPIRE ms, max frames, byte budget (64 MiB), metadata allowance,
# frame epochs (1; EPOCHS=0 measures an append without them),
# the frame prefix, one frame's bytes (the list stays at 1,000 frames: trimmed every call).
cost append1 evalsha "$A" $NK $K $FK "$A_NOW" "$EXP" "$MS" 1000 67108864 135168 "${EPOCHS:-1}" PREFIX "$FRAME"
cost create evalsha "$C" $NK 'shoal:{__rand_int__}:meta' 'shoal:{__rand_int__}:frames' \
  'shoal:{__rand_int__}:requests' $FK "$C_NOW" "$MS" a "$NOW:$EXP:$NOW:0:1:0:1:0" d xx
