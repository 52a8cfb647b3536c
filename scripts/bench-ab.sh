#!/usr/bin/env bash
# Same-run A/B of two benchmark builds: alternates OLD and NEW (the order flips every round),
# ROUNDS rounds each on memory:// and on a redis-server started here on a free loopback port,
# and prints per-op median ops/s, the ratio NEW/OLD and median p95. Bounded: each run is 3 s of
# timed work plus set-up.
#
#   OLD="/path/to/old/shoal bench" NEW="target/release/shoal-bench" ./scripts/bench-ab.sh
#
# OLD and NEW are commands that take the bench's flags (a pre-split `shoal` takes `bench` first:
# OLD="/tmp/old/target/release/shoal bench"). ROUNDS defaults to 4.
set -euo pipefail
: "${OLD:?OLD=command of the old bench}" "${NEW:?NEW=command of the new bench}"
ROUNDS=${ROUNDS:-4}
out=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes >/dev/null
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
sleep 0.5
args=(--duration 3s --warmup 0.5s --no-baseline --scaling-appends 0 --json)
run() { # side store round
  local cmd=$OLD; [ "$1" = new ] && cmd=$NEW
  local store=(); [ "$2" = redis ] && store=(--store "redis://127.0.0.1:$port")
  local extra=(); [ "$2" = redis ] && extra=(--no-redis-baseline)
  # shellcheck disable=SC2086
  $cmd "${store[@]}" "${args[@]}" "${extra[@]}" >"$out/$1-$2-$3.json" 2>/dev/null
}
for store in memory redis; do
  for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 0 ]; then run new $store $r; run old $store $r; else run old $store $r; run new $store $r; fi
  done
done
python3 - "$out" <<'PY'
import json, glob, statistics, sys
d = sys.argv[1]
def load(k):
    ops = {}
    for f in sorted(glob.glob(f"{d}/{k}-*.json")):
        for x in json.load(open(f))["results"]:
            ops.setdefault(x["op"], []).append((x["ops_per_sec"], x["p95_us"]))
    return {op: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v)) for op, v in ops.items()}
for store in ["memory", "redis"]:
    o, n = load(f"old-{store}"), load(f"new-{store}")
    print(f"== {store}: op, old ops/s, new ops/s, new/old, old p95 µs, new p95 µs")
    for op in o:
        if op in n:
            print(f"{op:8} {o[op][0]:10.0f} {n[op][0]:10.0f} {n[op][0]/o[op][0]:7.2f} {o[op][1]:9.1f} {n[op][1]:9.1f}")
PY
