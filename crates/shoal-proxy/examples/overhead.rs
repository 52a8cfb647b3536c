//! Proxy overhead: the same MCP request straight to an in-process upstream and through the
//! proxy, interleaved one by one in the same run, sequential, on loopback.
//!
//! ```text
//! cargo run --release -p shoal-proxy --example overhead -- [--requests N] [--redis URL]
//! ```
//! Prints p50/p95/p99 of each path and the added p50 (the issue's goal: ≤ 0.3 ms). With
//! `--redis URL` the proxy records into Redis instead of the in-memory store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::{sync::Arc, time::Instant};

use common::*;
use serde_json::json;
use shoal_core::{MemoryStore, SessionStore};
use shoal_proxy::UpstreamConfig;

fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1_000_000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut requests = 3000usize;
    let mut redis: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--requests" => requests = args.next().and_then(|v| v.parse().ok()).unwrap_or(3000),
            "--redis" => redis = args.next(),
            _ => {
                eprintln!("usage: overhead [--requests N] [--redis URL]");
                std::process::exit(2)
            }
        }
    }
    let store: Arc<dyn SessionStore> = match &redis {
        Some(url) => Arc::new(
            shoal_redis::RedisStore::connect_default(shoal_redis::RedisConfig::new(url))
                .await
                .expect("redis"),
        ),
        None => Arc::new(MemoryStore::new()),
    };
    let f = fake_upstream().await;
    let p = start_proxy(
        config(UpstreamConfig::Http { url: f.url() }, "bench"),
        store,
    )
    .await;
    let c = Client::new("2025-06-18");
    let direct_sid = c.initialize(&f.url()).await;
    let proxy_sid = c.initialize(&p.url()).await;
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}});
    let warmup = (requests / 10).max(50);
    let mut direct = Vec::with_capacity(requests);
    let mut proxied = Vec::with_capacity(requests);
    for i in 0..warmup + requests {
        for (url, sid, out) in [
            (f.url(), &direct_sid, &mut direct),
            (p.url(), &proxy_sid, &mut proxied),
        ] {
            let t = Instant::now();
            let r = c.post_req(&url, Some(sid), &body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await.unwrap();
            if i >= warmup {
                out.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
            }
        }
    }
    direct.sort_unstable();
    proxied.sort_unstable();
    let store_name = if redis.is_some() { "redis" } else { "memory" };
    println!(
        "tools/list, {requests} sequential requests per path after {warmup} warm-up, interleaved; proxy store: {store_name}"
    );
    println!(
        "{:<8} {:>9} {:>9} {:>9}",
        "path", "p50 ms", "p95 ms", "p99 ms"
    );
    for (name, v) in [("direct", &direct), ("proxy", &proxied)] {
        println!(
            "{:<8} {:>9.3} {:>9.3} {:>9.3}",
            name,
            pct(v, 0.5),
            pct(v, 0.95),
            pct(v, 0.99)
        );
    }
    let added = pct(&proxied, 0.5) - pct(&direct, 0.5);
    println!(
        "added p50: {added:.3} ms (goal ≤ 0.300 ms: {})",
        if added <= 0.3 { "met" } else { "NOT met" }
    );
}
