//! Cached vs uncached `get` on Redis, and Redis commands per `touch` with coalescing.
//!
//! Starts its own `redis-server` on a free loopback port (shoal-testkit's spawner), so it
//! needs nothing running. Bounded: about 40 s in all.
//!
//! ```text
//! cargo run --release -p shoal-redis --example cache_bench
//! ```
//!
//! 1. `get` ops/s at concurrency 16 over 1,000 sessions, uncached (`RedisStore`) and cached
//!    (`Cached<RedisStore>` with the pub/sub bus, every get a hit after warm-up): three runs
//!    of each, median reported, and the ratio.
//! 2. A touch-heavy workload (16 tasks touching 100 sessions as fast as they can) with touch
//!    coalescing at the default 1 s: Redis commands per touch from `INFO commandstats`
//!    deltas (every command the server ran — the bus's PUBLISH/PING included — except the
//!    `INFO` calls themselves), next to the uncached store's.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use shoal_core::{
    Result, Session, SessionId, SessionStore, Transport,
    cached::{CacheConfig, Cached},
};
use shoal_redis::{BusConfig, RedisConfig, RedisPubSub, RedisStore, cache_builder};
use shoal_testkit::redis_server::RedisServer;

const CONCURRENCY: usize = 16;
const SESSIONS: usize = 1_000;
const TOUCH_SESSIONS: usize = 100;
const RUN: Duration = Duration::from_secs(3);
const RUNS: usize = 3;

fn session(i: usize) -> Session {
    let id = SessionId::new(format!("bench-{i:05}")).unwrap_or_else(|e| panic!("{e}"));
    let mut s = Session::new(id, Transport::StreamableHttp);
    s.protocol_version = Some("2025-11-25".into());
    s.principal = Some(format!("user-{}", i % 50));
    s.upstream_session_id = Some(format!("up-{i}"));
    s.client_info = Some(serde_json::json!({"name": "bench-client", "version": "1.0.0"}));
    s.tags.insert("bench".into());
    s.metadata.insert("region".into(), "eu-west".into());
    s
}

/// What the tasks of one run do.
#[derive(Clone, Copy, Debug)]
enum Op {
    Get,
    Touch,
}

/// Runs `op` from `CONCURRENCY` tasks for `RUN`; returns (ops, ops/s).
async fn drive<S: SessionStore>(store: Arc<S>, ids: Arc<Vec<SessionId>>, op: Op) -> (u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..CONCURRENCY {
        let (store, ids, stop, count) = (
            Arc::clone(&store),
            Arc::clone(&ids),
            Arc::clone(&stop),
            Arc::clone(&count),
        );
        tasks.push(tokio::spawn(async move {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let id = &ids[(x % ids.len() as u64) as usize];
                    let r = match op {
                        Op::Get => store.get(id).await.map(|s| s.is_some()),
                        Op::Touch => store.touch(id).await.map(|_| true),
                    };
                    match r {
                        Ok(true) => {}
                        Ok(false) => panic!("session {id} is missing"),
                        Err(e) => panic!("{op:?} failed: {e}"),
                    }
                    n += 1;
                }
                tokio::task::yield_now().await;
            }
            count.fetch_add(n, Ordering::Relaxed);
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("task: {e}"));
    }
    let elapsed = started.elapsed();
    let n = count.load(Ordering::Relaxed);
    (n, n as f64 / elapsed.as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Total commands the server ran, minus `INFO` (the measurement itself).
fn commands(server: &RedisServer) -> u64 {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| {
            l.split_once("calls=")
                .and_then(|(_, rest)| rest.split(',').next())
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let server = RedisServer::start();
    println!("load average at start: {}", loadavg());
    let config = RedisConfig::new(server.url()).with_key_prefix("bench");
    let plain = Arc::new(RedisStore::connect_default(config.clone()).await?);
    let mut ids = Vec::new();
    for i in 0..SESSIONS {
        ids.push(plain.create(session(i)).await?.id);
    }
    let ids = Arc::new(ids);
    let bus = RedisPubSub::connect(&config, BusConfig::default()).await?;
    let cached = Arc::new(
        cache_builder((*plain).clone(), Some(bus.clone()))
            .config(CacheConfig::default())
            .build()?,
    );
    for id in ids.iter() {
        cached.get(id).await?;
    }

    println!(
        "get, concurrency {CONCURRENCY}, {SESSIONS} sessions, {RUNS} runs of {RUN:?} each (ops/s):"
    );
    let mut uncached_runs = Vec::new();
    let mut cached_runs = Vec::new();
    for run in 1..=RUNS {
        let (_, u) = drive(Arc::clone(&plain), Arc::clone(&ids), Op::Get).await;
        let (_, c) = drive(Arc::clone(&cached), Arc::clone(&ids), Op::Get).await;
        println!("  run {run}: uncached {u:>12.0}   cached {c:>12.0}");
        uncached_runs.push(u);
        cached_runs.push(c);
    }
    let (u, c) = (median(uncached_runs), median(cached_runs));
    let st = cached.stats();
    println!(
        "  median: uncached {u:.0} ops/s, cached {c:.0} ops/s, ratio {:.1}x (cache: {} hits, {} misses)",
        c / u,
        st.hits,
        st.misses
    );

    // Touch-heavy workload.
    let hot: Arc<Vec<SessionId>> = Arc::new(ids[..TOUCH_SESSIONS].to_vec());
    let before = commands(&server);
    let (touches_plain, rate_plain) = drive(Arc::clone(&plain), Arc::clone(&hot), Op::Touch).await;
    let plain_cmds = commands(&server) - before;

    let coalescing: Arc<Cached<RedisStore>> = Arc::clone(&cached);
    let writes_before = coalescing.stats().touch_writes;
    let before = commands(&server);
    let (touches, rate) = drive(Arc::clone(&coalescing), Arc::clone(&hot), Op::Touch).await;
    coalescing.flush().await?;
    let cmds = commands(&server) - before;
    let writes = coalescing.stats().touch_writes - writes_before;
    println!(
        "touch, concurrency {CONCURRENCY}, {TOUCH_SESSIONS} sessions, {RUN:?}, touch_interval {:?}:",
        coalescing.config().touch_interval
    );
    println!(
        "  uncached:   {touches_plain} touches ({rate_plain:.0}/s), {plain_cmds} redis commands, {:.3} per touch",
        plain_cmds as f64 / touches_plain as f64
    );
    println!(
        "  coalescing: {touches} touches ({rate:.0}/s), {writes} touch writes, {cmds} redis commands, {:.5} per touch",
        cmds as f64 / touches as f64
    );
    cached.shutdown().await?;
    bus.close().await;
    println!("load average at end: {}", loadavg());
    Ok(())
}

/// `/proc/loadavg` (this box's other work skews every figure; report it with them).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
