#!/usr/bin/env bash
# The outage demo: `shoal-bench --fallback memory --verify` while Redis is stopped (SIGSTOP for
# 3 s, then SIGCONT) and later killed with SIGKILL and restarted on the same port ~5 s later.
# Bounded: about a minute. Needs redis-server and redis-cli, and a built shoal-bench:
#
#   cargo build --release -p shoal-bench && ./scripts/demo-fallback.sh
#
# Settings (environment): SHOAL_BENCH (default target/release/shoal-bench), DURATION (timed phase,
# default 30s), PORT (default: a free loopback port), BENCH_ARGS (extra bench flags; default
# `--rate 1000 --no-baseline --scaling-appends 0`: a fixed offered load of 1,000 ops/s, as a
# proxy sees it, instead of a closed loop that speeds up 30x when the open breaker answers
# from memory and fills the journal in a second; the in-process baseline and the
# append-scaling measurement say nothing about outages).
#
# Redis runs with `--save '' --appendonly yes --appendfsync always`: the server persists every
# write before acknowledging it, so a SIGKILL loses nothing it acknowledged. (With
# `--appendonly no` the restarted server is empty, and verify rightly reports every frame
# written before the kill as lost: no client-side wrapper can bring back a server's data.)
set -euo pipefail

SHOAL_BENCH=${SHOAL_BENCH:-target/release/shoal-bench}
DURATION=${DURATION:-30s}
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
BENCH_ARGS=${BENCH_ARGS:---rate 1000 --no-baseline --scaling-appends 0}
dir=$(mktemp -d -t shoal-demo-fallback.XXXXXX)
pidfile=$dir/redis.pid

start_redis() {
  redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always \
    --dir "$dir" --daemonize yes --pidfile "$pidfile" --logfile "$dir/redis.log"
  for _ in $(seq 1 50); do
    if redis-cli -p "$PORT" ping >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "redis-server did not start on port $PORT" >&2
  return 1
}

redis_pid() { cat "$pidfile"; }

cleanup() {
  if [ -f "$pidfile" ]; then kill -CONT "$(redis_pid)" 2>/dev/null || true; kill "$(redis_pid)" 2>/dev/null || true; fi
  if [ -n "${bench:-}" ]; then kill "$bench" 2>/dev/null || true; fi
  sleep 0.2
  rm -rf "$dir"
}
trap cleanup EXIT

stamp() { date -u +%H:%M:%S.%N | cut -c1-12; }

start_redis
echo "$(stamp) redis-server on 127.0.0.1:$PORT (pid $(redis_pid))"
# shellcheck disable=SC2086
"$SHOAL_BENCH" --store "redis://127.0.0.1:$PORT" --fallback memory --verify \
  --duration "$DURATION" --timeline $BENCH_ARGS >"$dir/report.txt" 2>"$dir/bench.err" &
bench=$!
echo "$(stamp) shoal-bench started (pid $bench); set-up and 1 s warm-up come first"

# Wait (bounded: 60 s) until the bench's set-up (the default 1,000 sessions' frame lists) is in Redis, so the
# faults hit the timed phase even on a loaded machine; then let the warm-up pass.
n=0
for _ in $(seq 1 1200); do
  n=$(redis-cli -p "$PORT" EVAL "return #redis.call('KEYS', ARGV[1])" 0 "*}:frames" 2>/dev/null || echo 0)
  [ "${n:-0}" -ge 1000 ] && break
  sleep 0.05
done
echo "$(stamp) set-up in redis ($n frame lists)"
sleep 1.5
kill -STOP "$(redis_pid)"; echo "$(stamp) SIGSTOP redis"
sleep 3
kill -CONT "$(redis_pid)"; echo "$(stamp) SIGCONT redis"
sleep 6
kill -9 "$(redis_pid)"; echo "$(stamp) SIGKILL redis"
rm -f "$pidfile"
sleep 5
start_redis; echo "$(stamp) redis restarted on the same port (pid $(redis_pid))"

rc=0
wait "$bench" || rc=$?
bench=
echo "$(stamp) shoal bench exited with $rc"
echo
cat "$dir/report.txt"
if [ -s "$dir/bench.err" ]; then
  echo; echo "stderr (last 20 lines):"; tail -n 20 "$dir/bench.err"
fi
exit "$rc"
