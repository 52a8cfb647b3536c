//! [`ResilientState`]: what one [`Resilient`](super::Resilient) store and its health monitor
//! share (the two stores, the breaker, the outage journal, provisional seqs, counters).

use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU64, AtomicUsize},
};

use super::{
    breaker::Breaker,
    config::ResilienceConfig,
    drain::DrainReport,
    durable::{DurableLog, ReadBack},
    journal::Journal,
    metrics,
    monitor::ProbeReport,
    seqmap::SeqMap,
};

/// The state behind a [`Resilient`](super::Resilient) handle (shared by its clones and its
/// health monitor).
pub(super) struct ResilientState<P, F> {
    pub(super) primary: P,
    pub(super) fallback: F,
    pub(super) config: ResilienceConfig,
    pub(super) breaker: Breaker,
    pub(super) journal: Mutex<Journal>,
    /// Mirror of `journal.marked()`, read without the lock on the hot path.
    pub(super) marked: AtomicUsize,
    pub(super) next_provisional: AtomicU64,
    pub(super) seqs: Mutex<SeqMap>,
    pub(super) probe: Mutex<Option<ProbeReport>>,
    pub(super) drain_lock: tokio::sync::Mutex<()>,
    pub(super) last_drain: Mutex<Option<DrainReport>>,
    pub(super) drain_totals: Mutex<DrainReport>,
    pub(super) journal_full: AtomicU64,
    pub(super) primary_metrics: metrics::Handles,
    pub(super) fallback_metrics: metrics::Handles,
    /// The journal file, when one is configured.
    pub(super) durable: Option<DurableLog>,
    /// What the journal file held at start, until [`recover`](super::Resilient::recover).
    pub(super) recovered: Mutex<Option<ReadBack>>,
    /// Set while `recover` replays (the replayed calls are in the file already).
    pub(super) recovering: AtomicBool,
    /// Logged writes not yet applied (the file is not emptied while any is in flight).
    pub(super) logging: AtomicUsize,
    /// Orders logging a write against emptying the file.
    pub(super) log_gate: Mutex<()>,
    /// When a lost-connection failure last counted for the breaker.
    pub(super) last_connection_lost: Mutex<Option<tokio::time::Instant>>,
}

/// Locks `m`.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; a poisoned guard carries no broken invariant.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
