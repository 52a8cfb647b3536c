#!/usr/bin/env bash
# Chaos soak: the verified bench (shoal-bench --verify, fallback memory, a durable journal)
# against a Sentinel-managed pair and a 6-node Cluster while random faults fire, then the
# figures: faults fired, acknowledged appends, lost, duplicated, out of order, the longest
# stall. The bench's JSON reports are kept in target/chaos-soak/. Loopback only, bounded in time (default 10 minutes in all, half per topology).
#
#   scripts/chaos-soak.sh [--minutes N] [--only sentinel|cluster] [--rate OPS] [--wait N]
#                         [--appendfsync everysec|always] [--wait-cost SECONDS]
#
# --wait N        run the bench with redis.wait_replicas = N (synchronous replication)
# --appendfsync   the servers' AOF fsync policy (default everysec)
# --wait-cost S   instead of the soak: S seconds of the bench on the Sentinel pair without
#                 faults with wait_replicas 0, then 1, same run; prints both and the ratio
#
# Faults (one every 4-10 s, at random): SIGSTOP 2-3 s; kill -9 and restart with its AOF;
# CLIENT KILL of every client; CLIENT PAUSE WRITE 2 s; a failover (SENTINEL FAILOVER, or
# CLUSTER FAILOVER on a replica); memory pressure (maxmemory just above what is used, policy
# noeviction, for 3 s). Needs redis-server, redis-cli, python3 and cargo.
set -euo pipefail

MINUTES=10
ONLY=""
RATE=3000
WAIT=0
WAIT_COST=0
APPENDFSYNC=everysec
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --wait) WAIT="$2"; shift 2 ;;
    --wait-cost) WAIT_COST="$2"; shift 2 ;;
    --appendfsync) APPENDFSYNC="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case "$MINUTES" in ''|*[!0-9]*) echo "--minutes takes a whole number" >&2; exit 2 ;; esac
case "$APPENDFSYNC" in everysec|always) ;; *) echo "--appendfsync takes everysec or always" >&2; exit 2 ;; esac
if [ "$MINUTES" -lt 1 ] || [ "$MINUTES" -gt 120 ]; then
  echo "--minutes must be 1 to 120" >&2; exit 2
fi

cd "$(dirname "$0")/.."
for tool in redis-server redis-cli python3 cargo; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
cargo build --release --locked -q -p shoal-bench
BENCH="$PWD/target/release/shoal-bench"

WORK="$(mktemp -d /tmp/shoal-chaos.XXXXXX)"
RESULTS="$PWD/target/chaos-soak"
mkdir -p "$RESULTS"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    # Only our own servers (a pid of a node killed earlier may have been reused).
    if [ -n "$p" ] && { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -q "redis-server"; then
      kill -CONT "$p" 2>/dev/null || true
      kill -9 "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A free loopback port whose +10000 (a Cluster node's bus port) is free too.
free_port() {
  python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randint(20000, 45000)
    ok = True
    for q in (p, p + 10000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", q))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(p)
        break
PY
}

# start_node NAME PORT ARGS... : a redis-server in $WORK/NAME, its command line remembered.
declare -A NODE_CMD NODE_PID NODE_PORT
start_node() {
  local name="$1" port="$2"; shift 2
  mkdir -p "$WORK/$name"
  NODE_CMD[$name]="redis-server --bind 127.0.0.1 --port $port --dir $WORK/$name --save '' --appendonly yes --appendfsync $APPENDFSYNC $*"
  NODE_PORT[$name]="$port"
  (cd "$WORK/$name" && eval "exec ${NODE_CMD[$name]}" >"$WORK/$name/log" 2>&1) &
  NODE_PID[$name]=$!
  PIDS+=("$!")
  disown "$!"
  for _ in $(seq 1 100); do
    redis-cli -p "$port" PING >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "redis $name did not start" >&2; exit 1
}

restart_node() {
  local name="$1"
  (cd "$WORK/$name" && eval "exec ${NODE_CMD[$name]}" >>"$WORK/$name/log" 2>&1) &
  NODE_PID[$name]=$!
  PIDS+=("$!")
  disown "$!"
}

# Waits (bounded) until the replica on port $1 has its link to the master up (a fresh replica
# starts its full sync only after repl-diskless-sync-delay, 5 s by default).
wait_synced() {
  for _ in $(seq 1 150); do
    redis-cli -p "$1" INFO replication 2>/dev/null | grep -q 'master_link_status:up' && return 0
    sleep 0.1
  done
  echo "the replica on port $1 did not sync" >&2; exit 1
}

declare -A FIRED
fire() { FIRED[$1]=$(( ${FIRED[$1]:-0} + 1 )); echo "  $(date +%T) fault: $1 on $2"; }

# One random fault on node $1 (a data node); $2 = sentinel|cluster.
random_fault() {
  local name="$1" topo="$2" port="${NODE_PORT[$1]}" pid="${NODE_PID[$1]}"
  case $(( RANDOM % 6 )) in
    0) fire "sigstop" "$name"; kill -STOP "$pid" 2>/dev/null || true
       sleep "$(( 2 + RANDOM % 2 ))"; kill -CONT "$pid" 2>/dev/null || true ;;
    1) fire "kill-9+restart(AOF)" "$name"; kill -9 "$pid" 2>/dev/null || true
       sleep 2; restart_node "$name" ;;
    2) fire "client-kill" "$name"; redis-cli -p "$port" CLIENT KILL TYPE normal >/dev/null 2>&1 || true ;;
    3) fire "client-pause-write-2s" "$name"; redis-cli -p "$port" CLIENT PAUSE 2000 WRITE >/dev/null 2>&1 || true ;;
    4) if [ "$topo" = sentinel ]; then
         fire "sentinel-failover" "mymaster"
         redis-cli -p "${NODE_PORT[s0]}" SENTINEL FAILOVER mymaster >/dev/null 2>&1 || true
       else
         local replica
         replica=$(cluster_replica)
         fire "cluster-failover" "$replica"
         redis-cli -p "${NODE_PORT[$replica]}" CLUSTER FAILOVER >/dev/null 2>&1 || true
       fi ;;
    5) fire "memory-pressure-noeviction-3s" "$name"
       local used
       used=$(redis-cli -p "$port" INFO memory 2>/dev/null | tr -d '\r' | sed -n 's/^used_memory://p')
       if [ -n "$used" ]; then
         redis-cli -p "$port" CONFIG SET maxmemory-policy noeviction >/dev/null 2>&1 || true
         redis-cli -p "$port" CONFIG SET maxmemory $(( used + 1048576 )) >/dev/null 2>&1 || true
         sleep 3
         redis-cli -p "$port" CONFIG SET maxmemory 0 >/dev/null 2>&1 || true
       fi ;;
  esac
}

cluster_replica() {
  local n
  for n in c0 c1 c2 c3 c4 c5; do
    if redis-cli -p "${NODE_PORT[$n]}" INFO replication 2>/dev/null | grep -q '^role:slave'; then
      echo "$n"; return
    fi
  done
  echo c3
}

# bench URL SECONDS OUT [WAIT_REPLICAS]: the verified bench with the durable journal.
bench() {
  local url="$1" secs="$2" out="$3" wait="${4:-$WAIT}"
  cat >"$WORK/bench.toml" <<EOF
[redis]
connect_timeout = "500ms"
response_timeout = "500ms"
wait_replicas = $wait
wait_timeout = "200ms"
[resilience]
fallback = "memory"
op_timeout = "500ms"
[resilience.journal]
path = "$WORK/journal-$(basename "$out")"
EOF
  "$BENCH" --store "$url" --config "$WORK/bench.toml" --fallback memory --verify --json \
    --timeline --duration "${secs}s" --rate "$RATE" --no-baseline --scaling-appends 0 \
    --sessions 500 --frames 5 --concurrency 16 --warmup 0s >"$out" 2>"$out.log" || true
}

# report NAME OUT: the figures of one soak.
report() {
  python3 - "$1" "$2" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
try:
    d = json.load(open(path))
except Exception as e:
    print(f"{name}: the bench gave no report ({e}); see {path}.log"); sys.exit(0)
v = d.get("verify") or {}
appends = next((r for r in d.get("results", []) if r.get("op") == "append"), {})
acked = appends.get("count", 0) - appends.get("errors", 0)
rows = (d.get("timeline") or {}).get("rows", [])
stall, longest = 0, 0
for r in rows:
    stall = stall + 1 if r.get("ok_per_s", 0) == 0 else 0
    longest = max(longest, stall)
max_op = max((r.get("max_us", 0) for r in rows), default=0) / 1e6
tr = (d.get("timeline") or {}).get("transitions", [])
t = d.get("total", {})
res = d.get("resilience") or {}
settle = res.get("settle") or {}
print(f"{name}: {t.get('count', 0)} ops ({t.get('errors', 0)} errors), {acked} appends acknowledged; "
      f"verify: lost {v.get('lost')}, duplicated {v.get('duplicated')}, out of order "
      f"{v.get('out_of_order')}, unexpected {v.get('unexpected')}; longest op {max_op:.2f} s, "
      f"longest run of seconds with no successful op {longest}; breaker transitions {len(tr)}; "
      f"provisional seqs resolved {settle.get('resolved_seqs')}, unresolved "
      f"{settle.get('unresolved_seqs')} (an unresolved one reads as out of order); journal "
      f"full rejections {res.get('journal_full_rejections')}")
PY
}

soak_sentinel() {
  local secs="$1"
  echo "== Sentinel pair (master + replica, 3 Sentinels), ${secs}s"
  local m r
  m=$(free_port); start_node m "$m"
  r=$(free_port); start_node r "$r" --replicaof 127.0.0.1 "$m"
  local sentinels=()
  for i in 0 1 2; do
    local p; p=$(free_port)
    mkdir -p "$WORK/s$i"
    printf 'port %s\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 %s 2\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n' "$p" "$m" >"$WORK/s$i/sentinel.conf"
    (cd "$WORK/s$i" && exec redis-server "$WORK/s$i/sentinel.conf" --sentinel >"$WORK/s$i/log" 2>&1) &
    PIDS+=("$!"); disown "$!"; NODE_PORT[s$i]="$p"; sentinels+=("127.0.0.1:$p")
  done
  wait_synced "$r"
  local url="redis+sentinel://$(IFS=,; echo "${sentinels[*]}")/mymaster"
  bench "$url" "$secs" "$RESULTS/sentinel.json" &
  local bench_pid=$!
  local end=$(( $(date +%s) + secs ))
  sleep 5
  while [ "$(date +%s)" -lt "$end" ] && kill -0 "$bench_pid" 2>/dev/null; do
    local target=m
    [ $(( RANDOM % 3 )) -eq 0 ] && target=r
    random_fault "$target" sentinel
    sleep "$(( 4 + RANDOM % 7 ))"
  done
  wait "$bench_pid" || true
  # Anything still stopped continues, so the verify could read.
  report "sentinel" "$RESULTS/sentinel.json"
}

soak_cluster() {
  local secs="$1"
  echo "== Cluster (6 nodes: 3 masters, 3 replicas), ${secs}s"
  local nodes=()
  for i in 0 1 2 3 4 5; do
    local p; p=$(free_port)
    start_node "c$i" "$p" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
    nodes+=("127.0.0.1:$p")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$WORK/cluster-create.log" 2>&1
  for _ in $(seq 1 100); do
    redis-cli -p "${NODE_PORT[c0]}" CLUSTER INFO 2>/dev/null | grep -q 'cluster_state:ok' && break
    sleep 0.2
  done
  local n
  for n in c0 c1 c2 c3 c4 c5; do
    if redis-cli -p "${NODE_PORT[$n]}" INFO replication 2>/dev/null | grep -q '^role:slave'; then
      wait_synced "${NODE_PORT[$n]}"
    fi
  done
  local url="redis+cluster://$(IFS=,; echo "${nodes[*]}")"
  bench "$url" "$secs" "$RESULTS/cluster.json" &
  local bench_pid=$!
  local end=$(( $(date +%s) + secs ))
  sleep 5
  while [ "$(date +%s)" -lt "$end" ] && kill -0 "$bench_pid" 2>/dev/null; do
    random_fault "c$(( RANDOM % 6 ))" cluster
    sleep "$(( 4 + RANDOM % 7 ))"
  done
  wait "$bench_pid" || true
  report "cluster" "$RESULTS/cluster.json"
}

if [ "$WAIT_COST" -gt 0 ]; then
  echo "== WAIT cost on a Sentinel pair, ${WAIT_COST}s per side, no faults"
  m=$(free_port); start_node m "$m"
  r=$(free_port); start_node r "$r" --replicaof 127.0.0.1 "$m"
  p=$(free_port); mkdir -p "$WORK/s0"
  printf 'port %s\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 %s 1\n' "$p" "$m" >"$WORK/s0/sentinel.conf"
  (cd "$WORK/s0" && exec redis-server "$WORK/s0/sentinel.conf" --sentinel >"$WORK/s0/log" 2>&1) &
  PIDS+=("$!"); disown "$!"
  wait_synced "$r"
  sleep 2
  RATE=10000000
  for w in 0 1 0 1; do
    bench "redis+sentinel://127.0.0.1:$p/mymaster" "$WAIT_COST" "$WORK/wait$w.json" "$w"
    python3 - "$w" "$WORK/wait$w.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))
rows = {r["op"]: r for r in d["results"]}
print(f"wait_replicas {sys.argv[1]}: " + ", ".join(
    f"{op} {rows[op]['ops_per_sec']:.0f}/s p99 {rows[op]['p99_us']:.0f} us"
    for op in ("append", "touch", "get") if op in rows))
PY
  done
  exit 0
fi

TOTAL=$(( MINUTES * 60 ))
case "$ONLY" in
  sentinel) soak_sentinel "$TOTAL" ;;
  cluster) soak_cluster "$TOTAL" ;;
  "") soak_sentinel $(( TOTAL / 2 )); soak_cluster $(( TOTAL / 2 )) ;;
  *) echo "--only takes sentinel or cluster" >&2; exit 2 ;;
esac
echo "== faults fired"
for k in "${!FIRED[@]}"; do echo "  $k: ${FIRED[$k]}"; done
