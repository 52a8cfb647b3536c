//! Session analytics, computed incrementally from the change feed by a consumer group into
//! small Redis structures (no frame scans): sessions started and ended per minute, live
//! sessions by client, protocol version and transport, methods and tools with counts, error
//! rates and latency percentiles (requests paired with responses by JSON-RPC id), and session
//! durations.
//!
//! - [`worker`]: [`AnalyticsWorker`], the consumer (one lease holder at a time per store);
//! - [`apply`]: one script call applies a batch, each entry at most once;
//! - [`report`]: [`read_report`] and [`AnalyticsReport`];
//! - [`histogram`]: the ~10 %-wide latency and duration buckets.
//!
//! The structures live beside each feed shard (`<prefix>:an:{f<shard>}:…`, the shard's slot).
//! Counts are exact for the entries the feed delivered; percentiles are bucket upper bounds.

pub mod apply;
pub mod histogram;
pub mod report;
pub mod worker;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use report::{AnalyticsReport, CallStats, MinuteCounts, read_report};
pub use worker::AnalyticsWorker;

/// How the analytics consumer runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AnalyticsConfig {
    /// The consumer group (default `analytics`).
    pub group: String,
    /// Entries per read (default 512).
    pub batch: usize,
    /// The lease that lets one worker at a time read (default 10 s).
    pub lease: Duration,
    /// Entries pending this long are taken over from a worker presumed dead (default 30 s).
    pub claim_after: Duration,
    /// Most distinct methods, tools and clients counted by name; later ones count as
    /// `(other)` (default 1,000).
    pub max_names: u32,
    /// How long a request waits for its response (or the reverse) to be paired (default 1 h).
    pub unpaired_ttl: Duration,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            group: "analytics".into(),
            batch: 512,
            lease: Duration::from_secs(10),
            claim_after: Duration::from_secs(30),
            max_names: 1000,
            unpaired_ttl: Duration::from_secs(3600),
        }
    }
}
