//! What the console shows at one moment: the fleet, each proxy, the store's operations,
//! Redis, the feed, the analytics and the incidents. Built by the collector, rendered by the
//! pages, sent to the browser as it changes.

use serde::Serialize;
use shoal_core::feed::FeedStats;
use shoal_redis::analytics::AnalyticsReport;

use crate::{redis_view::RedisView, timeline::Incident};

/// Everything the pages show.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// When it was built (Unix ms).
    pub at_ms: u64,
    /// The whole fleet.
    pub fleet: FleetView,
    /// Each proxy the console watches, in the configured order.
    pub instances: Vec<InstanceView>,
    /// The store's operations over the fleet (from the resilience wrapper's metrics).
    pub ops: Vec<OpView>,
    /// Redis, when the store is on Redis.
    pub redis: Option<RedisView>,
    /// The change feed, when the store writes one.
    pub feed: Option<FeedStats>,
    /// The analytics kept from the feed (Redis only).
    pub analytics: Option<AnalyticsReport>,
    /// Why the analytics are absent, when they are.
    pub analytics_note: Option<String>,
    /// Incidents, newest first.
    pub incidents: Vec<Incident>,
    /// The last readings of the fleet's rates, oldest first (one per scrape).
    pub history: Vec<HistoryPoint>,
}

/// The fleet's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetView {
    /// Live sessions in the store; `None` while it cannot be counted.
    pub live_sessions: Option<u64>,
    /// Why `live_sessions` is `None`.
    pub store_error: Option<String>,
    /// Sessions created per minute (all proxies, over the rate window).
    pub sessions_per_min: f64,
    /// MCP requests per second (all proxies).
    pub requests_per_sec: f64,
    /// Request latency (time to the response head), all proxies merged, in ms.
    pub request_p50_ms: Option<f64>,
    /// 99th percentile of the same.
    pub request_p99_ms: Option<f64>,
    /// Share of responses that were 5xx over the window.
    pub error_rate: f64,
    /// Store operations per second (all proxies).
    pub ops_per_sec: f64,
    /// Share of store operations that failed (not `ok`, `not_found`, `already_exists`).
    pub store_error_rate: f64,
    /// Cache hits ÷ (hits + misses) over the window; `None` without cache traffic.
    pub cache_hit_rate: Option<f64>,
    /// Proxies answering their `/metrics`.
    pub instances_up: usize,
    /// Proxies watched.
    pub instances_total: usize,
    /// Proxies whose breaker is open now.
    pub breakers_open: usize,
    /// Outage journal entries waiting to be replayed, all proxies.
    pub journal_entries: f64,
    /// How many feed entries the analytics have not applied yet.
    pub feed_lag: Option<u64>,
}

/// One proxy.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InstanceView {
    /// The URL scraped (no credentials).
    pub url: String,
    /// Its instance id (`shoal_proxy_info{instance}`), once scraped.
    pub instance: Option<String>,
    /// Its store backend (`shoal_proxy_info{store}`).
    pub store: Option<String>,
    /// Whether the last scrape worked.
    pub up: bool,
    /// Why the last scrape failed.
    pub error: Option<String>,
    /// Requests per second.
    pub requests_per_sec: f64,
    /// Request latency p50 (ms) over the window.
    pub p50_ms: Option<f64>,
    /// Request latency p99 (ms) over the window.
    pub p99_ms: Option<f64>,
    /// `closed`, `half-open`, `open`, or `none` (no resilience wrapper).
    pub breaker: String,
    /// Outage journal entries.
    pub journal_entries: f64,
    /// Cache hit rate over the window.
    pub cache_hit_rate: Option<f64>,
    /// SSE streams open to clients.
    pub open_streams: f64,
    /// Sessions created per minute.
    pub sessions_per_min: f64,
}

/// One store operation over the fleet.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpView {
    /// `get`, `append_frames`, ….
    pub op: String,
    /// Calls per second.
    pub per_sec: f64,
    /// Failed calls per second.
    pub errors_per_sec: f64,
    /// Median latency (ms).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency (ms).
    pub p99_ms: Option<f64>,
}

/// One point of the rate history.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct HistoryPoint {
    /// Unix ms.
    pub at_ms: u64,
    /// Requests per second.
    pub requests_per_sec: f64,
    /// Store operations per second.
    pub ops_per_sec: f64,
    /// Live sessions (the last count).
    pub live_sessions: Option<u64>,
}
