//! The proxy's own counters, rendered in the Prometheus text format at `/metrics`.
//!
//! Plain atomics, so nothing global is installed and several proxies in one process (tests)
//! keep separate numbers.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
};

/// Counters and gauges of one proxy.
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP requests on the MCP endpoint by method: POST, GET, DELETE, other.
    pub requests: [AtomicU64; 4],
    /// Responses by status class: 2xx, 3xx, 4xx, 5xx.
    pub responses: [AtomicU64; 4],
    /// Sessions created (initialize).
    pub sessions_created: AtomicU64,
    /// Sessions this instance loaded from the store after another instance created them.
    pub sessions_loaded: AtomicU64,
    /// Stdio sessions restored (process started and handshake replayed).
    pub sessions_restored: AtomicU64,
    /// Sessions deleted by DELETE.
    pub sessions_deleted: AtomicU64,
    /// Frames written to the store.
    pub frames_recorded: AtomicU64,
    /// Frame writes that failed (the message was still forwarded).
    pub frame_errors: AtomicU64,
    /// SSE events sent to clients.
    pub sse_events: AtomicU64,
    /// SSE events replayed from the store after `Last-Event-ID`.
    pub sse_replayed: AtomicU64,
    /// Streams taken over from an instance whose lease ran out.
    pub stream_takeovers: AtomicU64,
    /// Cross-instance wake-ups received for a stream followed here.
    pub wakeups_received: AtomicU64,
    /// Upstream requests that failed (connect error, timeout, 5xx).
    pub upstream_errors: AtomicU64,
    /// Clients detached because they did not take an event within `client_send_timeout`.
    pub clients_detached: AtomicU64,
    /// Requests answered 504 because no response head was ready within `request_timeout`
    /// (waiting for a `max_concurrent_requests` slot included).
    pub requests_timed_out: AtomicU64,
    /// Client streams ended because the store kept failing or could not resolve a position.
    pub streams_ended_on_error: AtomicU64,
    /// Resumes whose `Last-Event-ID` named a frame the store rolled back (a failover or a
    /// restart lost it and its seq was given to another frame): replayed from before the
    /// reused seqs instead.
    pub resumes_rewound: AtomicU64,
    /// Upstream streams stopped because another instance owns them now (lease lost).
    pub leases_lost: AtomicU64,
    /// SSE keep-alive comments sent.
    pub keepalives_sent: AtomicU64,
    /// `initialize` requests refused by a session quota (429).
    pub quota_refusals: AtomicU64,
    /// Requests refused for their `Host` header (403).
    pub hosts_refused: AtomicU64,
    /// Frames deleted to keep sessions within their byte budget.
    pub budget_trims: AtomicU64,
    /// Upstream streams recorded with no client attached now (bounded by `max_orphan_streams`).
    pub orphan_streams: AtomicI64,
    /// Sessions' standalone streams this instance holds upstream now.
    pub standalone_streams: AtomicI64,
    /// SSE streams open to clients now.
    pub open_streams: AtomicI64,
    /// Upstream streams this instance is reading now.
    pub open_pumps: AtomicI64,
    /// Sum of request handling time (µs) and count, for a mean.
    pub latency_us_sum: AtomicU64,
    /// Number of timed requests.
    pub latency_count: AtomicU64,
}

impl Metrics {
    /// Counts a request by HTTP method.
    pub(crate) fn request(&self, method: &axum::http::Method) {
        let i = match *method {
            axum::http::Method::POST => 0,
            axum::http::Method::GET => 1,
            axum::http::Method::DELETE => 2,
            _ => 3,
        };
        self.requests[i].fetch_add(1, Relaxed);
    }

    /// Counts a response by status.
    pub(crate) fn response(&self, status: u16, micros: u64) {
        let i = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.responses[i].fetch_add(1, Relaxed);
        self.latency_us_sum.fetch_add(micros, Relaxed);
        self.latency_count.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, backend: &str) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP shoal_proxy_{name} {help}\n# TYPE shoal_proxy_{name} counter\nshoal_proxy_{name} {v}"
            );
        };
        counter(
            "sessions_created_total",
            "Sessions created by initialize.",
            self.sessions_created.load(Relaxed),
        );
        counter(
            "sessions_loaded_total",
            "Sessions loaded from the store by an instance that had not seen them.",
            self.sessions_loaded.load(Relaxed),
        );
        counter(
            "sessions_restored_total",
            "Stdio sessions restored by replaying the initialize handshake.",
            self.sessions_restored.load(Relaxed),
        );
        counter(
            "sessions_deleted_total",
            "Sessions ended by DELETE.",
            self.sessions_deleted.load(Relaxed),
        );
        counter(
            "frames_recorded_total",
            "Frames written to the store.",
            self.frames_recorded.load(Relaxed),
        );
        counter(
            "frame_errors_total",
            "Frame writes that failed.",
            self.frame_errors.load(Relaxed),
        );
        counter(
            "sse_events_total",
            "SSE events sent to clients.",
            self.sse_events.load(Relaxed),
        );
        counter(
            "sse_replayed_total",
            "SSE events replayed from the store.",
            self.sse_replayed.load(Relaxed),
        );
        counter(
            "stream_takeovers_total",
            "Streams taken over after the holder's lease expired.",
            self.stream_takeovers.load(Relaxed),
        );
        counter(
            "wakeups_received_total",
            "Pub/sub wake-ups received for followed streams.",
            self.wakeups_received.load(Relaxed),
        );
        counter(
            "upstream_errors_total",
            "Upstream requests that failed.",
            self.upstream_errors.load(Relaxed),
        );
        counter(
            "requests_timed_out_total",
            "Requests answered 504 after request_timeout.",
            self.requests_timed_out.load(Relaxed),
        );
        counter(
            "clients_detached_total",
            "Clients detached for not reading their stream in time.",
            self.clients_detached.load(Relaxed),
        );
        counter(
            "streams_ended_on_error_total",
            "Client streams ended because the store failed past the deadline.",
            self.streams_ended_on_error.load(Relaxed),
        );
        counter(
            "resumes_rewound_total",
            "Resumes after an event the store rolled back, replayed from before the reused seqs.",
            self.resumes_rewound.load(Relaxed),
        );
        counter(
            "leases_lost_total",
            "Upstream streams stopped because another instance took them over.",
            self.leases_lost.load(Relaxed),
        );
        counter(
            "keepalives_sent_total",
            "SSE keep-alive comments sent.",
            self.keepalives_sent.load(Relaxed),
        );
        counter(
            "quota_refusals_total",
            "initialize requests refused by a session quota (429).",
            self.quota_refusals.load(Relaxed),
        );
        counter(
            "budget_trimmed_frames_total",
            "Frames deleted to keep sessions within their byte budget.",
            self.budget_trims.load(Relaxed),
        );
        counter(
            "hosts_refused_total",
            "Requests refused for a Host header not on the allowlist (403).",
            self.hosts_refused.load(Relaxed),
        );
        counter(
            "request_duration_microseconds_sum",
            "Total time to the response head, in microseconds.",
            self.latency_us_sum.load(Relaxed),
        );
        counter(
            "request_duration_microseconds_count",
            "Requests timed.",
            self.latency_count.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP shoal_proxy_requests_total MCP endpoint requests by method.\n# TYPE shoal_proxy_requests_total counter"
        );
        for (i, m) in ["POST", "GET", "DELETE", "OTHER"].iter().enumerate() {
            let _ = writeln!(
                out,
                "shoal_proxy_requests_total{{method=\"{m}\"}} {}",
                self.requests[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP shoal_proxy_responses_total MCP endpoint responses by status class.\n# TYPE shoal_proxy_responses_total counter"
        );
        for (i, c) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            let _ = writeln!(
                out,
                "shoal_proxy_responses_total{{class=\"{c}\"}} {}",
                self.responses[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP shoal_proxy_open_streams SSE streams open to clients.\n# TYPE shoal_proxy_open_streams gauge\nshoal_proxy_open_streams {}",
            self.open_streams.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP shoal_proxy_open_upstream_streams Upstream streams being read.\n# TYPE shoal_proxy_open_upstream_streams gauge\nshoal_proxy_open_upstream_streams {}",
            self.open_pumps.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP shoal_proxy_orphan_streams Upstream streams recorded with no client attached.\n# TYPE shoal_proxy_orphan_streams gauge\nshoal_proxy_orphan_streams {}",
            self.orphan_streams.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP shoal_proxy_standalone_streams Sessions' standalone streams held upstream.\n# TYPE shoal_proxy_standalone_streams gauge\nshoal_proxy_standalone_streams {}",
            self.standalone_streams.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP shoal_proxy_info Static facts.\n# TYPE shoal_proxy_info gauge\nshoal_proxy_info{{store=\"{backend}\"}} 1"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.request(&axum::http::Method::POST);
        m.response(404, 10);
        m.sessions_created.fetch_add(2, Relaxed);
        let text = m.render("memory");
        assert!(text.contains("shoal_proxy_requests_total{method=\"POST\"} 1"));
        assert!(text.contains("shoal_proxy_responses_total{class=\"4xx\"} 1"));
        assert!(text.contains("shoal_proxy_sessions_created_total 2"));
        assert!(text.contains("shoal_proxy_info{store=\"memory\"} 1"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split(' ').count(), 2, "{line}");
        }
    }
}
