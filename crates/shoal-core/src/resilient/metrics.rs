//! Metric names and small recording helpers (`metrics` facade; free without a recorder).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `shoal_resilient_ops_total` | counter | `backend` (the primary's or fallback's name), `op`, `result` (`ok`, `not_found`, `timeout`, `unavailable`, `rejected` = refused by the open breaker, `journal_full`, …) |
//! | `shoal_resilient_op_duration_seconds` | histogram | `backend`, `op` |
//! | `shoal_resilient_retries_total` | counter | `op` |
//! | `shoal_resilient_breaker_state` | gauge | `backend` (the primary's name); 0 closed, 1 half-open, 2 open |
//! | `shoal_resilient_breaker_transitions_total` | counter | `backend`, `to` |
//! | `shoal_resilient_fallback_ops_total` | counter | `mode`, `op` |
//! | `shoal_resilient_journal_entries` / `_journal_bytes` / `_marked_sessions` | gauge | `backend` |
//! | `shoal_resilient_journal_full_total` | counter | |
//! | `shoal_resilient_health_probe_seconds` | histogram | |
//! | `shoal_resilient_health_probes_total` | counter | `result` (`ok`, `failed`) |
//! | `shoal_resilient_replayed_total` | counter | `kind` (`session`, `frames`, `touch`, `delete`) |
//! | `shoal_resilient_replay_dropped_total` | counter | `reason` (`session_gone`, `conflict`, `expired`, `refused`), counted in frames for appends and sessions for local sessions |
//! | `shoal_resilient_replay_ambiguous_total` | counter | `outcome` (`already_applied`, `not_applied`) |
//!
//! The hot path (a successful operation) uses handles registered at the operation's first
//! use, so install the metrics recorder before the first call through the wrapper.

use std::{sync::OnceLock, time::Duration};

use crate::Error;

pub(crate) const OPS_TOTAL: &str = "shoal_resilient_ops_total";
pub(crate) const OP_DURATION: &str = "shoal_resilient_op_duration_seconds";
pub(crate) const RETRIES: &str = "shoal_resilient_retries_total";
pub(crate) const BREAKER_STATE: &str = "shoal_resilient_breaker_state";
pub(crate) const BREAKER_TRANSITIONS: &str = "shoal_resilient_breaker_transitions_total";
pub(crate) const FALLBACK_OPS: &str = "shoal_resilient_fallback_ops_total";
pub(crate) const JOURNAL_ENTRIES: &str = "shoal_resilient_journal_entries";
pub(crate) const JOURNAL_BYTES: &str = "shoal_resilient_journal_bytes";
pub(crate) const MARKED_SESSIONS: &str = "shoal_resilient_marked_sessions";
pub(crate) const JOURNAL_FULL: &str = "shoal_resilient_journal_full_total";
pub(crate) const HEALTH_LATENCY: &str = "shoal_resilient_health_probe_seconds";
pub(crate) const HEALTH_PROBES: &str = "shoal_resilient_health_probes_total";
pub(crate) const DRAINED: &str = "shoal_resilient_replayed_total";
pub(crate) const DRAIN_DROPPED: &str = "shoal_resilient_replay_dropped_total";
pub(crate) const DRAIN_AMBIGUOUS: &str = "shoal_resilient_replay_ambiguous_total";

/// The `result` label of an outcome.
pub(crate) fn result_label<T>(r: &crate::Result<T>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => error_label(e),
    }
}

/// The `result` label of an error.
pub(crate) fn error_label(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "not_found",
        Error::AlreadyExists { .. } => "already_exists",
        Error::Conflict { .. } => "conflict",
        Error::InvalidInput { .. } => "invalid_input",
        Error::LimitExceeded { .. } => "limit_exceeded",
        Error::Unavailable { .. } => "unavailable",
        Error::Timeout { .. } => "timeout",
        Error::Corrupt { .. } => "corrupt",
        _ => "backend",
    }
}

pub(crate) fn op(backend: &'static str, op: &'static str, result: &'static str, took: Duration) {
    metrics::counter!(OPS_TOTAL, "backend" => backend, "op" => op, "result" => result).increment(1);
    metrics::histogram!(OP_DURATION, "backend" => backend, "op" => op).record(took.as_secs_f64());
}

pub(crate) fn rejected(backend: &'static str, op: &'static str) {
    metrics::counter!(OPS_TOTAL, "backend" => backend, "op" => op, "result" => "rejected")
        .increment(1);
}

/// Every operation name the wrapper reports on its hot path.
const HOT_OPS: [&str; 17] = [
    "create",
    "get",
    "get_many",
    "update",
    "touch",
    "delete",
    "list",
    "count",
    "append_frames",
    "frames",
    "count_frames",
    "delete_frames",
    "add_pending",
    "take_pending",
    "list_pending",
    "sweep_expired",
    "restore",
];

#[derive(Debug)]
struct OpHandles {
    ok: metrics::Counter,
    duration: metrics::Histogram,
}

/// Per-backend handles for successful operations, registered once (a metrics macro with
/// runtime labels allocates its key on every call).
#[derive(Debug)]
pub(crate) struct Handles {
    backend: &'static str,
    ops: [OnceLock<OpHandles>; HOT_OPS.len()],
}

impl Handles {
    pub(crate) fn new(backend: &'static str) -> Self {
        Handles {
            backend,
            ops: Default::default(),
        }
    }

    /// Records one finished call: `ops_total` and the duration histogram.
    pub(crate) fn record<T>(&self, op: &'static str, r: &crate::Result<T>, took: Duration) {
        let hot = r
            .is_ok()
            .then(|| HOT_OPS.iter().position(|o| *o == op))
            .flatten();
        match hot {
            Some(i) => {
                let h = self.ops[i].get_or_init(|| OpHandles {
                    ok: metrics::counter!(
                        OPS_TOTAL,
                        "backend" => self.backend,
                        "op" => op,
                        "result" => "ok"
                    ),
                    duration: metrics::histogram!(
                        OP_DURATION,
                        "backend" => self.backend,
                        "op" => op
                    ),
                });
                h.ok.increment(1);
                h.duration.record(took.as_secs_f64());
            }
            None => self::op(self.backend, op, result_label(r), took),
        }
    }
}
