//! Proxy overhead: the same MCP request straight to an in-process upstream and through the
//! proxy, interleaved one by one in the same run, sequential, on loopback.
//!
//! ```text
//! cargo run --release -p shoal-proxy --example overhead -- \
//!     [--requests N] [--runs R] [--redis URL] [--cache invalidate|strict] [--profile]
//! ```
//! Three paths are timed request by request, interleaved: straight to the upstream, through
//! Shoal, and through a *floor* proxy — the least a reverse proxy on the same stack (axum
//! server, pooled reqwest client) can do: copy the body and four headers to the upstream and
//! the reply back, with no parsing, no session and no store. What the floor adds is the price
//! of one more HTTP hop on this machine; what Shoal adds beyond it is Shoal's own work.
//! Prints p50/p95/p99 of each path and the added p50 per run (the goals: ≤ 0.15 ms on Redis,
//! ≤ 0.08 ms on Redis with the cache),
//! then the medians of the runs and the load average before and after.
//!
//! - `--redis URL`: the proxy records into Redis instead of the in-memory store.
//! - `--cache MODE`: with `--redis`, the store is `Cached<RedisStore>` with the Redis
//!   invalidation bus (`invalidate`) or the one-`HMGET` version check (`strict`), as
//!   `shoal proxy` opens it with a `[cache]` section.
//! - `--profile`: every store call the proxy makes is timed; per call kind it prints how many
//!   a proxied request makes, their p50, and how many finished while the client was still
//!   waiting for its response (the calls on or beside the critical path) versus after it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use async_trait::async_trait;
use common::*;
use serde_json::json;
use shoal_core::{
    Error, MemoryStore, Result, SessionStore,
    cached::{CacheConfig, Consistency},
};
use shoal_proxy::UpstreamConfig;
use shoal_testkit::forwarding::{self, ForwardingStore, Hooks, Op, Outcome};

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1_000_000.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The floor proxy: forwards a POST's body and its `content-type`, `accept`,
/// `mcp-session-id` and `mcp-protocol-version` headers to `upstream` over a pooled reqwest
/// client (built as Shoal builds its own), and the status, `content-type` and body back.
/// Returns its URL.
async fn floor_proxy(upstream: String) -> String {
    use axum::{
        body::Bytes,
        extract::State,
        http::{HeaderMap, StatusCode},
        response::IntoResponse,
    };
    const PASSED: [&str; 4] = [
        "content-type",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
    ];
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    async fn forward(
        State((client, upstream)): State<(reqwest::Client, String)>,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        let mut req = client.post(&upstream).body(body);
        for name in PASSED {
            if let Some(v) = headers.get(name) {
                req = req.header(name, v);
            }
        }
        match req.send().await {
            Ok(r) => {
                let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
                let back: Vec<_> = ["content-type", "mcp-session-id"]
                    .into_iter()
                    .filter_map(|n| Some((n, r.headers().get(n)?.clone())))
                    .collect();
                let body = r.bytes().await.unwrap_or_default();
                let mut out = (status, body).into_response();
                for (n, v) in back {
                    out.headers_mut().insert(n, v);
                }
                out
            }
            Err(_) => StatusCode::BAD_GATEWAY.into_response(),
        }
    }
    let app = axum::Router::new()
        .route("/mcp", axum::routing::post(forward))
        .with_state((client, upstream));
    let addr = serve_on_loopback(app).await;
    format!("http://{addr}/mcp")
}

/// The paths timed, interleaved.
#[derive(Clone, Copy)]
enum Path {
    Direct,
    Shoal,
    Floor,
}

/// One timed store call.
#[derive(Clone, Copy, Debug)]
struct Call {
    op: &'static str,
    start: Instant,
    end: Instant,
}

/// A store wrapper that times every call while its [`Timer`] is on.
type Timed = ForwardingStore<Arc<dyn SessionStore>, Timer>;

/// Times every store call while `on`.
#[derive(Debug, Default)]
struct Timer {
    on: AtomicBool,
    log: Mutex<Vec<Call>>,
}

#[async_trait]
impl Hooks for Timer {
    /// The call's label and when it was forwarded.
    type Ticket = (&'static str, Instant);

    async fn before(&self, call: forwarding::Call<'_>) -> Result<Self::Ticket> {
        let op = match call {
            forwarding::Call::AppendFrames(_, frames) if frames.len() == 1 => "append_frames(1)",
            forwarding::Call::AppendFrames(..) => "append_frames(n>1)",
            other => other.op().name(),
        };
        Ok((op, Instant::now()))
    }

    async fn after(&self, _: Op, (op, start): Self::Ticket, _: Outcome<'_>) -> Option<Error> {
        if self.on.load(Ordering::Relaxed) {
            let end = Instant::now();
            self.log.lock().unwrap().push(Call { op, start, end });
        }
        None
    }
}

/// Per call kind: calls, latencies, and whether each finished before the response.
#[derive(Default)]
struct OpStats {
    lat_ns: Vec<u64>,
    before: u64,
    after: u64,
}

fn profile(windows: &[(Instant, Instant)], calls: &[Call]) {
    let mut by_op: BTreeMap<&'static str, OpStats> = BTreeMap::new();
    // Each call belongs to the request window it started in.
    let mut w = 0usize;
    let mut calls = calls.to_vec();
    calls.sort_by_key(|c| c.start);
    let mut unattributed = 0u64;
    // Sequential waves per request: calls on the response path that did not overlap.
    let mut waves_total = 0u64;
    let mut waves_req = 0u64;
    let mut i = 0usize;
    while w < windows.len() {
        let (t0, t1) = windows[w];
        let next = windows.get(w + 1).map(|x| x.0);
        let mut wave_end: Option<Instant> = None;
        let mut waves = 0u64;
        while i < calls.len() && calls[i].start < t0 {
            unattributed += 1;
            i += 1;
        }
        while i < calls.len() && next.is_none_or(|n| calls[i].start < n) {
            let c = calls[i];
            let st = by_op.entry(c.op).or_default();
            st.lat_ns
                .push(u64::try_from((c.end - c.start).as_nanos()).unwrap_or(u64::MAX));
            if c.start < t1 && c.end <= t1 {
                st.before += 1;
                if wave_end.is_none_or(|e| c.start >= e) {
                    waves += 1;
                }
                wave_end = Some(wave_end.map_or(c.end, |e| e.max(c.end)));
            } else {
                st.after += 1;
            }
            i += 1;
        }
        waves_total += waves;
        waves_req += 1;
        w += 1;
    }
    let n = windows.len().max(1) as f64;
    println!("  store calls per proxied request (--profile):");
    println!(
        "  {:<20} {:>8} {:>9} {:>15} {:>15}",
        "call", "per req", "p50 ms", "done before rsp", "done after rsp"
    );
    for (op, mut st) in by_op {
        st.lat_ns.sort_unstable();
        let calls = (st.before + st.after) as f64;
        println!(
            "  {:<20} {:>8.2} {:>9.3} {:>14.0}% {:>14.0}%",
            op,
            calls / n,
            pct(&st.lat_ns, 0.5),
            100.0 * st.before as f64 / calls,
            100.0 * st.after as f64 / calls
        );
    }
    println!(
        "  sequential waves of store calls finished before the response: {:.2} per request{}",
        waves_total as f64 / waves_req.max(1) as f64,
        if unattributed > 0 {
            format!(" ({unattributed} calls outside any window)")
        } else {
            String::new()
        }
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut requests = 3000usize;
    let mut runs = 1usize;
    let mut redis: Option<String> = None;
    let mut cache: Option<Consistency> = None;
    let mut profiling = false;
    let mut args = std::env::args().skip(1);
    let usage = || -> ! {
        eprintln!(
            "usage: overhead [--requests N] [--runs R] [--redis URL] [--cache invalidate|strict] [--profile]"
        );
        std::process::exit(2)
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--requests" => requests = args.next().and_then(|v| v.parse().ok()).unwrap_or(3000),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(1).max(1),
            "--redis" => redis = args.next(),
            "--cache" => {
                cache = match args.next().as_deref() {
                    Some("invalidate") => Some(Consistency::Invalidate),
                    Some("strict") => Some(Consistency::Strict),
                    _ => usage(),
                }
            }
            "--profile" => profiling = true,
            _ => usage(),
        }
    }
    if cache.is_some() && redis.is_none() {
        usage();
    }
    let load_before = loadavg();
    let mut bus = None;
    let base: Arc<dyn SessionStore> = match &redis {
        Some(url) => {
            let cfg = shoal_redis::RedisConfig::new(url);
            let store = shoal_redis::RedisStore::connect_default(cfg.clone())
                .await
                .expect("redis");
            match cache {
                None => Arc::new(store),
                Some(consistency) => {
                    let b = match consistency {
                        Consistency::Invalidate => Some(
                            shoal_redis::RedisPubSub::connect(
                                &cfg,
                                shoal_redis::BusConfig::default(),
                            )
                            .await
                            .expect("bus"),
                        ),
                        _ => None,
                    };
                    bus.clone_from(&b);
                    let cached = shoal_redis::cache_builder(store, b)
                        .config(CacheConfig::default().with_consistency(consistency))
                        .build()
                        .expect("cache");
                    // Wait (bounded) until the bus has subscribed and the cache serves.
                    let t = Instant::now();
                    while !cached.is_enabled() && t.elapsed().as_secs() < 10 {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    assert!(cached.is_enabled(), "the cache did not turn on");
                    Arc::new(cached)
                }
            }
        }
        None => Arc::new(MemoryStore::new()),
    };
    let timed: Arc<Timed> = Arc::new(ForwardingStore::new(base, Timer::default()));
    let store: Arc<dyn SessionStore> = if profiling {
        timed.clone()
    } else {
        timed.inner().clone()
    };
    let f = fake_upstream().await;
    let p = start_proxy(
        config(UpstreamConfig::Http { url: f.url() }, "bench"),
        store,
    )
    .await;
    let c = Client::new("2025-06-18");
    let floor_url = floor_proxy(f.url()).await;
    let direct_sid = c.initialize(&f.url()).await;
    // The floor keeps no session: it passes the upstream's session id through.
    let floor_sid = c.initialize(&floor_url).await;
    let proxy_sid = c.initialize(&p.url()).await;
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}});
    let warmup = (requests / 10).max(50);
    let store_name = match (&redis, cache) {
        (None, _) => "memory".to_string(),
        (Some(_), None) => "redis".to_string(),
        (Some(_), Some(c)) => format!("redis, cached ({})", c.as_str()),
    };
    println!(
        "tools/list, {requests} sequential requests per path after {warmup} warm-up, interleaved; proxy store: {store_name}"
    );
    println!("load average before: {load_before}");
    let goal = match (&redis, cache) {
        (None, _) => None,
        (Some(_), None) => Some(0.15),
        (Some(_), Some(_)) => Some(0.08),
    };
    let mut added_runs = Vec::new();
    let mut floor_runs = Vec::new();
    for run in 1..=runs {
        let mut direct = Vec::with_capacity(requests);
        let mut proxied = Vec::with_capacity(requests);
        let mut floored = Vec::with_capacity(requests);
        let mut windows = Vec::with_capacity(requests);
        timed.hooks().log.lock().unwrap().clear();
        for i in 0..warmup + requests {
            if i == warmup {
                timed.hooks().on.store(profiling, Ordering::Relaxed);
            }
            for (path, url, sid) in [
                (Path::Direct, f.url(), &direct_sid),
                (Path::Shoal, p.url(), &proxy_sid),
                (Path::Floor, floor_url.clone(), &floor_sid),
            ] {
                let t = Instant::now();
                let r = c.post_req(&url, Some(sid), &body).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.unwrap();
                let end = Instant::now();
                if i >= warmup {
                    let ns = u64::try_from((end - t).as_nanos()).unwrap_or(u64::MAX);
                    match path {
                        Path::Shoal => {
                            proxied.push(ns);
                            windows.push((t, end));
                        }
                        Path::Direct => direct.push(ns),
                        Path::Floor => floored.push(ns),
                    }
                }
            }
        }
        timed.hooks().on.store(false, Ordering::Relaxed);
        direct.sort_unstable();
        proxied.sort_unstable();
        floored.sort_unstable();
        println!("run {run}:");
        println!(
            "  {:<8} {:>9} {:>9} {:>9}",
            "path", "p50 ms", "p95 ms", "p99 ms"
        );
        for (name, v) in [
            ("direct", &direct),
            ("shoal", &proxied),
            ("floor", &floored),
        ] {
            println!(
                "  {:<8} {:>9.3} {:>9.3} {:>9.3}",
                name,
                pct(v, 0.5),
                pct(v, 0.95),
                pct(v, 0.99)
            );
        }
        let added = pct(&proxied, 0.5) - pct(&direct, 0.5);
        println!(
            "  added p50: {added:.3} ms; proxied/direct p50 ratio {:.2}",
            pct(&proxied, 0.5) / pct(&direct, 0.5)
        );
        let floor_added = pct(&floored, 0.5) - pct(&direct, 0.5);
        println!(
            "  floor proxy added p50: {floor_added:.3} ms; Shoal beyond the floor: {:.3} ms",
            added - floor_added
        );
        added_runs.push(added);
        floor_runs.push(floor_added);
        if profiling {
            // Let off-path work of the last request finish before reading the log.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let calls = timed.hooks().log.lock().unwrap().clone();
            profile(&windows, &calls);
        }
    }
    added_runs.sort_by(f64::total_cmp);
    let median = added_runs[added_runs.len() / 2];
    println!(
        "added p50, median of {runs} run(s): {median:.3} ms ({}); runs: {}",
        match goal {
            Some(g) if median <= g => format!("goal ≤ {g:.3} ms: met"),
            Some(g) => format!("goal ≤ {g:.3} ms: NOT met"),
            None => "no goal for this store".to_string(),
        },
        added_runs
            .iter()
            .map(|a| format!("{a:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    floor_runs.sort_by(f64::total_cmp);
    let floor_median = floor_runs[floor_runs.len() / 2];
    println!(
        "floor proxy added p50, median of {runs} run(s): {floor_median:.3} ms; Shoal beyond the floor: {:.3} ms",
        median - floor_median
    );
    println!("load average after: {}", loadavg());
    if let Some(b) = bus {
        b.close().await;
    }
}
