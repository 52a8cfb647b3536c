//! `shoal stats`: how many sessions the store holds and, for Redis, the store's counters.

use serde::Serialize;
use shoal_core::SessionFilter;

use super::Ctx;
use crate::{
    error::Outcome,
    output::{key_values, print_json, print_text},
};

/// The counters kept in Redis (`<prefix>:metrics:*`), summed over every instance that ever
/// wrote to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct Counters {
    /// Sessions created (and restored, e.g. by `import`).
    created: u64,
    /// Updates that moved a session to `completed`.
    completed: u64,
    /// Updates that moved a session to `failed`.
    failed: u64,
    /// Sessions deleted by `delete`.
    deleted: u64,
    /// Frames appended.
    frames: u64,
    /// Sessions removed because Redis evicted one of their keys.
    evicted: u64,
}

/// What `stats` prints.
#[derive(Debug, Serialize)]
struct Stats {
    /// The store URL, password redacted.
    store: String,
    /// `memory` or `redis`.
    backend: &'static str,
    /// Live sessions now.
    sessions: u64,
    /// The Redis counters; `null` for other backends.
    counters: Option<Counters>,
    /// Why `counters` is `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'static str>,
    /// The change feed: entries held, cap, shards, bytes, consumer groups; `null` when the
    /// store writes none.
    feed: Option<shoal_core::feed::FeedStats>,
}

/// `stats`.
pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let opened = ctx.open().await?;
    let store = opened.store();
    let sessions = store.count(&SessionFilter::default()).await?;
    let counters = match opened.redis() {
        Some(r) => {
            let m = r.store.metrics().await?;
            Some(Counters {
                created: m.created,
                completed: m.completed,
                failed: m.failed,
                deleted: m.deleted,
                frames: m.frames,
                evicted: m.evicted,
            })
        }
        None => None,
    };
    let feed = match store.change_feed() {
        Some(f) => Some(f.stats().await?),
        None => None,
    };
    let stats = Stats {
        feed,
        store: opened.url().to_owned(),
        backend: store.backend_name(),
        sessions,
        note: counters
            .is_none()
            .then_some("counters are kept by the Redis backend only"),
        counters,
    };
    if ctx.json {
        print_json(&stats)?;
    } else {
        let mut pairs = vec![
            ("store", stats.store.clone()),
            ("backend", stats.backend.to_owned()),
            ("sessions", stats.sessions.to_string()),
        ];
        match &stats.counters {
            Some(c) => pairs.extend([
                ("created", c.created.to_string()),
                ("completed", c.completed.to_string()),
                ("failed", c.failed.to_string()),
                ("deleted", c.deleted.to_string()),
                ("frames", c.frames.to_string()),
                ("evicted", c.evicted.to_string()),
            ]),
            None => pairs.push(("counters", "- (kept by the Redis backend only)".to_owned())),
        }
        match &stats.feed {
            Some(f) => {
                let mut line = format!(
                    "{} entries (cap {} per shard, {} shard",
                    f.length, f.cap, f.shards
                );
                if f.shards != 1 {
                    line.push('s');
                }
                if let Some(b) = f.bytes {
                    line.push_str(&format!(", {b} bytes"));
                }
                line.push(')');
                for g in &f.groups {
                    let lag = g.lag.map_or("?".to_owned(), |l| l.to_string());
                    line.push_str(&format!(
                        "; group {}: {} pending, {lag} behind",
                        g.name, g.pending
                    ));
                }
                pairs.push(("feed", line));
            }
            None => pairs.push(("feed", "- (off)".to_owned())),
        }
        print_text(&key_values(&pairs))?;
    }
    Ok(Outcome::Success)
}
