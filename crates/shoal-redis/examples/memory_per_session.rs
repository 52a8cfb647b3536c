//! Redis memory per idle session: metadata hash, TTLs and index entries, measured as the
//! `INFO memory` `used_memory` delta over many sessions created through `RedisStore`.
//!
//! ```text
//! cargo run --release -p shoal-redis --example memory_per_session            # own redis-server
//! cargo run --release -p shoal-redis --example memory_per_session -- 100000 redis://127.0.0.1:6379/9
//! ```
//!
//! Arguments: the number of sessions per shape (default 100,000) and, optionally, the URL of an
//! **empty, otherwise idle** database to use instead of a server started for the run (the
//! keys it writes are deleted at the end). Two shapes are measured, each under its own key
//! prefix: `minimal` (a `Session::new`, nothing else) and `proxy` (what a proxy stores after
//! `initialize`: protocol version, upstream session id and a small `client_info`). The
//! breakdown samples `MEMORY USAGE` of meta hashes and sums it over the index keys; the rest
//! of the delta is keyspace overhead (dictionary entries, the TTL in the expires dictionary).

use std::{error::Error, sync::Arc, time::Instant};

use redis::aio::ConnectionManager;
use shoal_core::{Limits, Session, SessionId, SessionStore, SystemClock, Transport};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::redis_server::RedisServer;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Concurrent creating tasks.
const TASKS: usize = 32;

/// `used_memory` from `INFO memory`.
async fn used_memory(conn: &mut ConnectionManager) -> Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "INFO memory has no used_memory".into())
}

/// A session of the given shape.
fn session(shape: &str) -> Session {
    let mut s = Session::new(SessionId::generate(), Transport::StreamableHttp);
    if shape == "proxy" {
        s.protocol_version = Some("2025-11-25".to_owned());
        s.upstream_session_id = Some(SessionId::generate().as_str().to_owned());
        s.client_info = Some(serde_json::json!({"name": "claude-code", "version": "1.0.71"}));
    }
    s
}

/// What one shape cost.
struct Measured {
    shape: &'static str,
    per_session: f64,
    meta: f64,
    index: f64,
    hash_encoding: String,
}

async fn measure(url: &str, shape: &'static str, n: usize) -> Result<Measured> {
    let prefix = format!("mem-{shape}");
    let mut limits = Limits::default();
    limits.max_sessions = n + 10;
    let store = RedisStore::connect(
        RedisConfig::new(url).with_key_prefix(&prefix),
        limits,
        Arc::new(SystemClock),
    )
    .await?;
    let mut conn = redis::Client::open(url)?.get_connection_manager().await?;
    // Load the scripts and create the counter keys first, so the delta is sessions only.
    let warm = session(shape);
    let warm_id = warm.id.clone();
    store.create(warm).await?;
    store.delete(&warm_id).await?;
    store.metrics().await?;
    let before = used_memory(&mut conn).await?;

    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let count = n / TASKS + usize::from(t < n % TASKS);
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                let s = session(shape);
                ids.push(s.id.clone());
                store.create(s).await?;
            }
            Ok::<_, shoal_core::Error>(ids)
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for h in handles {
        ids.extend(h.await??);
    }
    store.metrics().await?;
    let created_in = started.elapsed();
    let after = used_memory(&mut conn).await?;
    let per_session = after.saturating_sub(before) as f64 / n as f64;

    // Breakdown: sampled meta hashes, and every index key.
    let sample: Vec<SessionId> = ids.iter().step_by((n / 1000).max(1)).cloned().collect();
    let mut meta_total = 0u64;
    let mut encoding = String::new();
    for id in &sample {
        let key = format!("{prefix}:{{{}}}:meta", id.as_str());
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await?;
        meta_total += bytes.unwrap_or(0);
        if encoding.is_empty() {
            encoding = redis::cmd("OBJECT")
                .arg("ENCODING")
                .arg(&key)
                .query_async(&mut conn)
                .await?;
        }
    }
    // Schema 2: the capacity set (also the expiry index) and 1,024 listing buckets.
    let mut index_keys = vec![format!("{prefix}:idx:{{cap}}:live")];
    for b in 0..1024 {
        index_keys.push(format!("{prefix}:idx:{{b{b:04}}}:all"));
    }
    let mut index_total = 0u64;
    for key in &index_keys {
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await?;
        index_total += bytes.unwrap_or(0);
    }
    eprintln!(
        "{shape}: {n} sessions created in {:.1} s ({:.0}/s)",
        created_in.as_secs_f64(),
        n as f64 / created_in.as_secs_f64()
    );

    // Clean up this shape's keys (deleting through the store keeps the indices consistent).
    let mut handles = Vec::new();
    let ids = Arc::new(ids);
    for t in 0..TASKS {
        let store = store.clone();
        let ids = Arc::clone(&ids);
        handles.push(tokio::spawn(async move {
            for id in ids.iter().skip(t).step_by(TASKS) {
                store.delete(id).await?;
            }
            Ok::<_, shoal_core::Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(Measured {
        shape,
        per_session,
        meta: meta_total as f64 / sample.len().max(1) as f64,
        index: index_total as f64 / n as f64,
        hash_encoding: encoding,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = match args.next() {
        Some(a) => a.parse()?,
        None => 100_000,
    };
    if n == 0 || n > 10_000_000 {
        return Err("the session count must be 1 to 10,000,000".into());
    }
    let (_server, url) = match args.next() {
        Some(url) => (None, url),
        None => {
            let s = RedisServer::start();
            let url = s.url();
            (Some(s), url)
        }
    };
    let mut conn = redis::Client::open(url.as_str())?
        .get_connection_manager()
        .await?;
    let size: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await?;
    if size > 0 {
        eprintln!(
            "warning: the database already holds {size} keys; other writers distort the delta"
        );
    }
    let version: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await?;
    let version = version
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    println!("redis {version}, {n} idle sessions per shape (used_memory delta / sessions)");
    println!(
        "{:<8} {:>12} {:>12} {:>14} {:>12}  meta encoding",
        "shape", "B/session", "meta hash", "index entries", "keyspace+TTL"
    );
    for shape in ["minimal", "proxy"] {
        let m = measure(&url, shape, n).await?;
        println!(
            "{:<8} {:>12.1} {:>12.1} {:>14.1} {:>12.1}  {}",
            m.shape,
            m.per_session,
            m.meta,
            m.index,
            m.per_session - m.meta - m.index,
            m.hash_encoding
        );
    }
    println!("goal: <= 600 B per idle session");
    Ok(())
}
