//! [`AnalyticsReport`]: the analytics as they stand, read from every shard's structures and
//! merged (a few `HGETALL`s per shard; no frame is read).

use std::{collections::BTreeMap, time::Duration};

use redis::Value;
use serde::{Deserialize, Serialize};
use shoal_core::{ChangeFeed, Result, Timestamp, feed::FeedStats};

use super::histogram::{Histogram, Percentiles};
use crate::RedisStore;

/// How long the per-minute counts are kept (the apply script's `EXPIRE` of each hour's hash).
pub const PER_MINUTE_KEPT: Duration = Duration::from_secs(49 * 3600);

/// Calls of one method or tool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    /// The method or tool (`(other)` past the distinct-name bound).
    pub name: String,
    /// Frames with this method (requests and notifications), or calls of this tool.
    pub count: u64,
    /// Responses that reported a failure (a JSON-RPC error or a tool's `isError`).
    pub errors: u64,
    /// `errors / answered` (0 when none was answered).
    pub error_rate: f64,
    /// Request → response latency (pairs by JSON-RPC id), when any was answered.
    pub latency: Option<Percentiles>,
}

/// Sessions started and ended in one minute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCounts {
    /// The minute's start.
    pub minute: Timestamp,
    /// Sessions created.
    pub started: u64,
    /// Sessions deleted, expired or evicted.
    pub ended: u64,
}

/// What the analytics say.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsReport {
    /// When it was read.
    pub at: Timestamp,
    /// Counters since the analytics began: `created`, `ended`, `deleted`, `expired`,
    /// `evicted`, `frames`, `bytes`.
    pub totals: BTreeMap<String, u64>,
    /// Live sessions (created and not ended since the analytics began).
    pub live_sessions: u64,
    /// Live sessions by `clientInfo` name/version.
    pub live_by_client: BTreeMap<String, u64>,
    /// Live sessions by protocol version.
    pub live_by_protocol: BTreeMap<String, u64>,
    /// Live sessions by transport.
    pub live_by_transport: BTreeMap<String, u64>,
    /// Sessions started and ended per minute over the window asked for, oldest first
    /// (minutes without any are left out).
    pub per_minute: Vec<MinuteCounts>,
    /// Methods, most frequent first.
    pub methods: Vec<CallStats>,
    /// Tools (`tools/call`, `prompts/get` names), most frequent first.
    pub tools: Vec<CallStats>,
    /// How long ended sessions lived.
    pub durations: Option<Percentiles>,
    /// The feed and its consumer groups (the analytics group's lag says how far behind the
    /// figures are).
    pub feed: FeedStats,
}

/// A hash reply as (field, value) pairs.
fn pairs(v: &Value) -> Vec<(String, String)> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    };
    match v {
        Value::Array(a) => a
            .chunks(2)
            .filter_map(|p| Some((text(p.first()?)?, text(p.get(1)?)?)))
            .collect(),
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        _ => Vec::new(),
    }
}

async fn hash(store: &RedisStore, key: String) -> Result<Vec<(String, String)>> {
    let mut c = redis::cmd("HGETALL");
    c.arg(key);
    Ok(pairs(&store.command("analytics report", c).await?))
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: Vec<(String, String)>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v.parse::<i64>().unwrap_or(0).max(0) as u64;
    }
}

fn add_histogram(into: &mut Histogram, from: Vec<(String, String)>) {
    for (b, n) in from {
        if let (Ok(b), Ok(n)) = (b.parse::<u32>(), n.parse::<u64>()) {
            into.add_bucket(b, n);
        }
    }
}

/// Reads the analytics of `store`'s feed: the per-minute series over the last `window` (at
/// most [`PER_MINUTE_KEPT`]), and
/// the `top` most frequent methods and tools with their latency.
pub async fn read_report(
    store: &RedisStore,
    window: Duration,
    top: usize,
) -> Result<AnalyticsReport> {
    let shards = store.feed_shard_count();
    let now = store.now();
    let mut r = AnalyticsReport {
        at: now,
        ..AnalyticsReport::default()
    };
    let mut counts: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    let names = [
        "totals",
        "clients",
        "protocols",
        "transports",
        "methods",
        "methods_err",
        "tools",
        "tools_err",
    ];
    let mut durations = Histogram::default();
    let mut minutes: BTreeMap<u64, MinuteCounts> = BTreeMap::new();
    // Per-minute counts are kept 49 h: a longer window reads nothing more.
    let window = window.min(PER_MINUTE_KEPT);
    let first_minute = now.as_millis().saturating_sub(window.as_millis() as u64) / 60_000;
    let last_minute = now.as_millis() / 60_000;
    for shard in 0..shards {
        for name in names {
            let got = hash(store, store.keys().analytics(shard, name)).await?;
            add_counts(counts.entry(name).or_default(), got);
        }
        add_histogram(
            &mut durations,
            hash(store, store.keys().analytics(shard, "durations")).await?,
        );
        for hour in first_minute / 60..=last_minute / 60 {
            let got = hash(store, store.keys().analytics(shard, &format!("m:{hour}"))).await?;
            for (field, n) in got {
                let Some((m, what)) = field.split_once(':') else {
                    continue;
                };
                let (Ok(m), Ok(n)) = (m.parse::<u64>(), n.parse::<u64>()) else {
                    continue;
                };
                if m < first_minute || m > last_minute {
                    continue;
                }
                let e = minutes.entry(m).or_insert(MinuteCounts {
                    minute: Timestamp(m * 60_000),
                    ..MinuteCounts::default()
                });
                match what {
                    "s" => e.started += n,
                    "e" => e.ended += n,
                    _ => {}
                }
            }
        }
    }
    let mut take = |name: &str| counts.remove(name).unwrap_or_default();
    r.totals = take("totals");
    r.live_by_client = take("clients");
    r.live_by_protocol = take("protocols");
    r.live_by_transport = take("transports");
    r.live_sessions = r.live_by_transport.values().sum();
    r.per_minute = minutes.into_values().collect();
    r.durations = durations.percentiles();
    for (kind, count_name, err_name, out) in [
        ("method", "methods", "methods_err", &mut r.methods),
        ("tool", "tools", "tools_err", &mut r.tools),
    ] {
        let calls = take(count_name);
        let errors = take(err_name);
        let mut ranked: Vec<(String, u64)> = calls.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (name, count) in ranked.into_iter().take(top) {
            let mut latency = Histogram::default();
            for shard in 0..shards {
                let key = store.keys().analytics(shard, &format!("lat:{kind}:{name}"));
                add_histogram(&mut latency, hash(store, key).await?);
            }
            let errs = errors.get(&name).copied().unwrap_or(0);
            let answered = latency.samples();
            out.push(CallStats {
                error_rate: if answered > 0 {
                    errs as f64 / answered as f64
                } else {
                    0.0
                },
                latency: latency.percentiles(),
                errors: errs,
                count,
                name,
            });
        }
    }
    if let Some(feed) = store.feed() {
        r.feed = feed.stats().await?;
    }
    Ok(r)
}
