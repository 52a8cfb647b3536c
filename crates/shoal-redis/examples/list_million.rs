//! `list` latency with a million sessions stored: creates the sessions through `RedisStore`
//! (concurrently, bounded), then times list pages of 100.
//!
//! ```text
//! cargo run --release -p shoal-redis --example list_million                  # own redis-server
//! cargo run --release -p shoal-redis --example list_million -- 1000000 200 redis://127.0.0.1:6379/9
//! ```
//!
//! Arguments: sessions (default 1,000,000), pages to time (default 200), and optionally the
//! URL of an empty database to use instead of a server started for the run. Pages are timed
//! one at a time: 10 walks of 20 consecutive pages, each walk starting at a different index
//! bucket (cursor `NNNN:`), so the sample covers the whole keyspace. With a server started for
//! the run nothing is cleaned up (the server dies); with a URL the sessions are deleted.

use std::{
    error::Error,
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use shoal_core::{Limits, ListQuery, Session, SessionId, SessionStore, SystemClock, Transport};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::redis_server::RedisServer;

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Concurrent creating tasks.
const TASKS: usize = 64;
/// Bound on the creation phase.
const CREATE_BOUND: Duration = Duration::from_secs(20 * 60);
/// Page size.
const PAGE: usize = 100;
/// Consecutive pages per walk.
const WALK: usize = 20;

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = match args.next() {
        Some(a) => a.parse()?,
        None => 1_000_000,
    };
    let pages: usize = match args.next() {
        Some(a) => a.parse()?,
        None => 200,
    };
    if n == 0 || n > 20_000_000 || pages == 0 || pages > 100_000 {
        return Err("sessions must be 1 to 20,000,000 and pages 1 to 100,000".into());
    }
    let given = args.next();
    let (_server, url) = match &given {
        Some(url) => (None, url.clone()),
        None => {
            let s = RedisServer::start();
            let url = s.url();
            (Some(s), url)
        }
    };
    let mut limits = Limits::default();
    limits.max_sessions = n + 1_000;
    let store = RedisStore::connect(
        RedisConfig::new(url.as_str()).with_key_prefix("million"),
        limits,
        Arc::new(SystemClock),
    )
    .await?;

    // Creation: TASKS tasks, bounded by the count and by CREATE_BOUND.
    let started = Instant::now();
    let deadline = started + CREATE_BOUND;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let count = n / TASKS + usize::from(t < n % TASKS);
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(count);
            for _ in 0..count {
                if Instant::now() >= deadline {
                    break;
                }
                let mut s = Session::new(SessionId::generate(), Transport::StreamableHttp);
                s.protocol_version = Some("2025-11-25".to_owned());
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
    let created_in = started.elapsed();
    eprintln!(
        "created {} sessions in {:.1} s ({:.0}/s, {TASKS} tasks)",
        ids.len(),
        created_in.as_secs_f64(),
        ids.len() as f64 / created_in.as_secs_f64()
    );
    if ids.len() < n {
        return Err(format!(
            "creation stopped after {CREATE_BOUND:?} at {} sessions",
            ids.len()
        )
        .into());
    }
    let t = Instant::now();
    let count = store.count(&Default::default()).await?;
    let count_us = t.elapsed().as_micros();

    // Timed pages.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut listed = 0usize;
    let mut cursor: Option<String> = None;
    for i in 0..pages {
        if i % WALK == 0 {
            cursor = Some(format!(
                "{:04}:",
                (i / WALK) * 1024 / (pages / WALK).max(1) % 1024
            ));
        }
        let q = ListQuery::first(PAGE).with_cursor(cursor.take());
        let t = Instant::now();
        let page = store.list(&q).await?;
        hist.saturating_record(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        listed += page.sessions.len();
        cursor = page.next_cursor;
    }
    println!(
        "{count} sessions stored (count took {count_us} µs); {pages} list pages of {PAGE} \
         ({listed} sessions listed)"
    );
    println!(
        "list page latency: p50 {:.0} µs, p95 {:.0} µs, p99 {:.0} µs, max {:.0} µs (goal: p95 <= 5 ms)",
        pct(&hist, 0.50),
        pct(&hist, 0.95),
        pct(&hist, 0.99),
        hist.max() as f64 / 1000.0
    );

    if given.is_some() {
        eprintln!("deleting the {} sessions", ids.len());
        let ids = Arc::new(ids);
        let mut handles = Vec::new();
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
    }
    Ok(())
}
