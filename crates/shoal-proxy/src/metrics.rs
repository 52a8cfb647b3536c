//! The proxy's metrics: registered through the `metrics` facade, exported in the Prometheus
//! text format at `/metrics` by `metrics-exporter-prometheus`.
//!
//! Each counter and gauge is also kept in process ([`Tally`], [`Level`]) so a caller (a test,
//! the demo) reads it without parsing the exposition.
//!
//! Where the handles go is the [`MetricsExport`] in [`ProxyConfig::metrics`](crate::ProxyConfig):
//! - [`MetricsExport::private`] (the default): a recorder of this proxy's own, so several
//!   proxies in one process keep separate numbers; the store's metrics (cache, breaker) are not
//!   in it.
//! - [`MetricsExport::install_global`] (what `shoal proxy` uses): the process's global
//!   recorder, so `/metrics` shows the proxy's metrics beside the store's (`shoal_cache_*`,
//!   `shoal_resilient_*`, `shoal_redis_*`).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `shoal_proxy_requests_total` | counter | `method` (`POST`, `GET`, `DELETE`, `OTHER`) |
//! | `shoal_proxy_responses_total` | counter | `class` (`2xx` … `5xx`) |
//! | `shoal_proxy_request_duration_seconds` | histogram | `method`; time to the response head |
//! | `shoal_proxy_sessions_created_total` … `_hosts_refused_total` | counter | — |
//! | `shoal_proxy_open_streams`, `_open_upstream_streams`, `_orphan_streams`, `_standalone_streams` | gauge | — |
//! | `shoal_proxy_info` | gauge (1) | `store`, `instance` |
//!
//! Labels are bounded: no session ids, principals or paths.

use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
};

use metrics::{Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Histogram bucket bounds (seconds) for every `*_seconds` histogram: 100 µs … 10 s, so p50
/// and p99 of both a loopback store call and a slow upstream are read from the buckets.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Where a proxy registers its metrics and what its `/metrics` renders.
#[derive(Clone)]
pub struct MetricsExport {
    handle: PrometheusHandle,
    /// `Some` for a private recorder (handles are registered with it); `None` means the
    /// process's global recorder.
    private: Option<Arc<PrometheusRecorder>>,
}

impl std::fmt::Debug for MetricsExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsExport")
            .field("global", &self.private.is_none())
            .finish()
    }
}

fn builder() -> PrometheusBuilder {
    // The suffix matcher cannot fail on a non-empty bucket list.
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &DURATION_BUCKETS)
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

impl MetricsExport {
    /// A recorder of this proxy's own: only its metrics, separate from any other proxy in the
    /// process.
    pub fn private() -> Self {
        let recorder = builder().build_recorder();
        MetricsExport {
            handle: recorder.handle(),
            private: Some(Arc::new(recorder)),
        }
    }

    /// Installs the Prometheus recorder as the process's global `metrics` recorder (with the
    /// bucket bounds above) and exports everything registered with it. Install it before the
    /// store is opened: the store registers its handles when it is built.
    ///
    /// Errors when another global recorder is installed already.
    pub fn install_global() -> Result<Self, metrics_exporter_prometheus::BuildError> {
        let handle = builder().install_recorder()?;
        Ok(MetricsExport {
            handle,
            private: None,
        })
    }

    /// The Prometheus text exposition of everything this export holds.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains recorded histogram samples into their buckets; run periodically so samples do
    /// not pile up between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Runs `f` with this export's recorder as the recorder the macros register with.
    fn register<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.private {
            Some(r) => metrics::with_local_recorder(r.as_ref(), f),
            None => f(),
        }
    }
}

impl Default for MetricsExport {
    fn default() -> Self {
        MetricsExport::private()
    }
}

/// A counter kept in process and exported.
#[derive(Debug)]
pub struct Tally {
    value: AtomicU64,
    metric: Counter,
}

impl Tally {
    fn new(metric: Counter) -> Self {
        Tally {
            value: AtomicU64::new(0),
            metric,
        }
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Relaxed);
        self.metric.increment(n);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }
}

/// A gauge kept in process and exported.
#[derive(Debug)]
pub struct Level {
    value: AtomicI64,
    metric: Gauge,
}

impl Level {
    fn new(metric: Gauge) -> Self {
        Level {
            value: AtomicI64::new(0),
            metric,
        }
    }

    /// Adds one; returns the new level.
    pub fn up(&self) -> i64 {
        let v = self.value.fetch_add(1, Relaxed) + 1;
        self.metric.increment(1.0);
        v
    }

    /// Takes one away.
    pub fn down(&self) {
        self.value.fetch_sub(1, Relaxed);
        self.metric.decrement(1.0);
    }

    /// The level now.
    pub fn get(&self) -> i64 {
        self.value.load(Relaxed)
    }
}

/// The HTTP methods counted apart; anything else is `OTHER`.
const METHODS: [&str; 4] = ["POST", "GET", "DELETE", "OTHER"];
/// Response status classes.
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Counters, gauges and the latency histogram of one proxy.
#[derive(Debug)]
pub struct Metrics {
    export: MetricsExport,
    /// HTTP requests on the MCP endpoint by method: POST, GET, DELETE, other.
    pub requests: [Tally; 4],
    /// Responses by status class: 2xx, 3xx, 4xx, 5xx.
    pub responses: [Tally; 4],
    /// Time to the response head by method, in seconds.
    latency: [Histogram; 4],
    /// Sessions created (initialize).
    pub sessions_created: Tally,
    /// Sessions this instance loaded from the store after another instance created them.
    pub sessions_loaded: Tally,
    /// Stdio sessions restored (process started and handshake replayed).
    pub sessions_restored: Tally,
    /// Sessions deleted by DELETE.
    pub sessions_deleted: Tally,
    /// Frames written to the store.
    pub frames_recorded: Tally,
    /// Frame writes that failed (the message was still forwarded).
    pub frame_errors: Tally,
    /// SSE events sent to clients.
    pub sse_events: Tally,
    /// SSE events replayed from the store after `Last-Event-ID`.
    pub sse_replayed: Tally,
    /// Streams taken over from an instance whose lease ran out.
    pub stream_takeovers: Tally,
    /// Cross-instance wake-ups received for a stream followed here.
    pub wakeups_received: Tally,
    /// Upstream requests that failed (connect error, timeout, 5xx).
    pub upstream_errors: Tally,
    /// Requests re-issued to a 2026 upstream whose response stream broke (bridge).
    pub bridge_reissues: Tally,
    /// Requests ended with an error because a 2026 upstream's response stream broke and they
    /// could not be re-issued safely (bridge).
    pub bridge_not_reissued: Tally,
    /// Clients detached because they did not take an event within `client_send_timeout`.
    pub clients_detached: Tally,
    /// Requests answered 504 because no response head was ready within `request_timeout`
    /// (waiting for a `max_concurrent_requests` slot included).
    pub requests_timed_out: Tally,
    /// Client streams ended because the store kept failing or could not resolve a position.
    pub streams_ended_on_error: Tally,
    /// Resumes whose `Last-Event-ID` named a frame the store rolled back (a failover or a
    /// restart lost it and its seq was given to another frame): replayed from before the
    /// reused seqs instead.
    pub resumes_rewound: Tally,
    /// Upstream streams stopped because another instance owns them now (lease lost).
    pub leases_lost: Tally,
    /// SSE keep-alive comments sent.
    pub keepalives_sent: Tally,
    /// `initialize` requests refused by a session quota (429).
    pub quota_refusals: Tally,
    /// Requests refused for their `Host` header (403).
    pub hosts_refused: Tally,
    /// Frames deleted to keep sessions within their byte budget.
    pub budget_trims: Tally,
    /// Upstream streams recorded with no client attached now (bounded by `max_orphan_streams`).
    pub orphan_streams: Level,
    /// Sessions' standalone streams this instance holds upstream now.
    pub standalone_streams: Level,
    /// SSE streams open to clients now.
    pub open_streams: Level,
    /// Upstream streams this instance is reading now.
    pub open_pumps: Level,
}

macro_rules! tally {
    ($name:literal, $help:literal) => {{
        metrics::describe_counter!($name, Unit::Count, $help);
        Tally::new(metrics::counter!($name))
    }};
}

macro_rules! level {
    ($name:literal, $help:literal) => {{
        metrics::describe_gauge!($name, Unit::Count, $help);
        Level::new(metrics::gauge!($name))
    }};
}

impl Metrics {
    /// Registers every metric of a proxy with `export`; `store` and `instance` label
    /// `shoal_proxy_info`.
    pub fn new(export: MetricsExport, store: &str, instance: &str) -> Self {
        let store = store.to_owned();
        let instance = instance.to_owned();
        let e = export.clone();
        e.register(move || {
            metrics::describe_counter!(
                "shoal_proxy_requests_total",
                Unit::Count,
                "MCP endpoint requests by HTTP method."
            );
            metrics::describe_counter!(
                "shoal_proxy_responses_total",
                Unit::Count,
                "MCP endpoint responses by status class."
            );
            metrics::describe_histogram!(
                "shoal_proxy_request_duration_seconds",
                Unit::Seconds,
                "Time from a request's arrival to its response head."
            );
            metrics::describe_gauge!(
                "shoal_proxy_info",
                "Always 1; the labels name the store backend and the instance."
            );
            metrics::gauge!("shoal_proxy_info", "store" => store, "instance" => instance)
                .set(1.0);
            Metrics {
                requests: METHODS
                    .map(|m| Tally::new(metrics::counter!("shoal_proxy_requests_total", "method" => m))),
                responses: CLASSES
                    .map(|c| Tally::new(metrics::counter!("shoal_proxy_responses_total", "class" => c))),
                latency: METHODS.map(|m| {
                    metrics::histogram!("shoal_proxy_request_duration_seconds", "method" => m)
                }),
                sessions_created: tally!(
                    "shoal_proxy_sessions_created_total",
                    "Sessions created by initialize."
                ),
                sessions_loaded: tally!(
                    "shoal_proxy_sessions_loaded_total",
                    "Sessions loaded from the store by an instance that had not seen them."
                ),
                sessions_restored: tally!(
                    "shoal_proxy_sessions_restored_total",
                    "Stdio sessions restored by replaying the initialize handshake."
                ),
                sessions_deleted: tally!(
                    "shoal_proxy_sessions_deleted_total",
                    "Sessions ended by DELETE."
                ),
                frames_recorded: tally!(
                    "shoal_proxy_frames_recorded_total",
                    "Frames written to the store."
                ),
                frame_errors: tally!(
                    "shoal_proxy_frame_errors_total",
                    "Frame writes that failed."
                ),
                sse_events: tally!("shoal_proxy_sse_events_total", "SSE events sent to clients."),
                sse_replayed: tally!(
                    "shoal_proxy_sse_replayed_total",
                    "SSE events replayed from the store."
                ),
                stream_takeovers: tally!(
                    "shoal_proxy_stream_takeovers_total",
                    "Streams taken over after the holder's lease expired."
                ),
                wakeups_received: tally!(
                    "shoal_proxy_wakeups_received_total",
                    "Pub/sub wake-ups received for followed streams."
                ),
                upstream_errors: tally!(
                    "shoal_proxy_upstream_errors_total",
                    "Upstream requests that failed."
                ),
                bridge_reissues: tally!(
                    "shoal_proxy_bridge_reissues_total",
                    "Requests re-issued after a 2026 upstream's response stream broke."
                ),
                bridge_not_reissued: tally!(
                    "shoal_proxy_bridge_not_reissued_total",
                    "Requests ended because a 2026 upstream's stream broke and they were not safe to re-issue."
                ),
                clients_detached: tally!(
                    "shoal_proxy_clients_detached_total",
                    "Clients detached for not reading their stream in time."
                ),
                requests_timed_out: tally!(
                    "shoal_proxy_requests_timed_out_total",
                    "Requests answered 504 after request_timeout."
                ),
                streams_ended_on_error: tally!(
                    "shoal_proxy_streams_ended_on_error_total",
                    "Client streams ended because the store failed past the deadline."
                ),
                resumes_rewound: tally!(
                    "shoal_proxy_resumes_rewound_total",
                    "Resumes after an event the store rolled back, replayed from before the reused seqs."
                ),
                leases_lost: tally!(
                    "shoal_proxy_leases_lost_total",
                    "Upstream streams stopped because another instance took them over."
                ),
                keepalives_sent: tally!(
                    "shoal_proxy_keepalives_sent_total",
                    "SSE keep-alive comments sent."
                ),
                quota_refusals: tally!(
                    "shoal_proxy_quota_refusals_total",
                    "initialize requests refused by a session quota (429)."
                ),
                hosts_refused: tally!(
                    "shoal_proxy_hosts_refused_total",
                    "Requests refused for a Host header not on the allowlist (403)."
                ),
                budget_trims: tally!(
                    "shoal_proxy_budget_trimmed_frames_total",
                    "Frames deleted to keep sessions within their byte budget."
                ),
                orphan_streams: level!(
                    "shoal_proxy_orphan_streams",
                    "Upstream streams recorded with no client attached."
                ),
                standalone_streams: level!(
                    "shoal_proxy_standalone_streams",
                    "Sessions' standalone streams held upstream."
                ),
                open_streams: level!("shoal_proxy_open_streams", "SSE streams open to clients."),
                open_pumps: level!(
                    "shoal_proxy_open_upstream_streams",
                    "Upstream streams being read."
                ),
                export,
            }
        })
    }

    /// Counts a request by HTTP method.
    pub(crate) fn request(&self, method: &axum::http::Method) {
        self.requests[method_index(method)].inc();
    }

    /// Counts a response by status and records its time to the response head.
    pub(crate) fn response(
        &self,
        method: &axum::http::Method,
        status: u16,
        took: std::time::Duration,
    ) {
        let i = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.responses[i].inc();
        self.latency[method_index(method)].record(took.as_secs_f64());
    }

    /// Where these metrics are exported.
    pub fn export(&self) -> &MetricsExport {
        &self.export
    }

    /// The Prometheus text exposition (`/metrics`).
    pub fn render(&self) -> String {
        self.export.render()
    }
}

fn method_index(method: &axum::http::Method) -> usize {
    match *method {
        axum::http::Method::POST => 0,
        axum::http::Method::GET => 1,
        axum::http::Method::DELETE => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn renders_prometheus_text_with_a_histogram() {
        let m = Metrics::new(MetricsExport::private(), "memory", "i1");
        m.request(&axum::http::Method::POST);
        m.response(&axum::http::Method::POST, 404, Duration::from_micros(300));
        m.sessions_created.add(2);
        m.open_streams.up();
        let text = m.render();
        assert!(
            text.contains("shoal_proxy_requests_total{method=\"POST\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shoal_proxy_responses_total{class=\"4xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shoal_proxy_sessions_created_total 2"),
            "{text}"
        );
        assert!(text.contains("shoal_proxy_open_streams 1"), "{text}");
        assert!(
            text.contains("shoal_proxy_info{store=\"memory\",instance=\"i1\"} 1"),
            "{text}"
        );
        // 300 µs falls in the 0.0005 bucket and every one above it.
        assert!(
            text.contains(
                "shoal_proxy_request_duration_seconds_bucket{method=\"POST\",le=\"0.0005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "shoal_proxy_request_duration_seconds_bucket{method=\"POST\",le=\"0.00025\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE shoal_proxy_request_duration_seconds histogram"),
            "{text}"
        );
        assert_eq!(m.sessions_created.get(), 2);
        assert_eq!(m.open_streams.get(), 1);
    }

    #[test]
    fn private_exports_are_separate() {
        let a = Metrics::new(MetricsExport::private(), "memory", "a");
        let b = Metrics::new(MetricsExport::private(), "memory", "b");
        a.sessions_created.add(5);
        assert!(a.render().contains("shoal_proxy_sessions_created_total 5"));
        assert!(b.render().contains("shoal_proxy_sessions_created_total 0"));
        assert!(!b.render().contains("instance=\"a\""));
    }
}
