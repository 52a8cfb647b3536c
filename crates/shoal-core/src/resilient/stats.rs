//! [`ResilienceStats`]: the wrapper's counters and state, for tests, `shoal health` and
//! dashboards.

use std::{sync::atomic::Ordering, time::Duration};

use super::{
    breaker::BreakerState, drain::DrainReport, monitor::ProbeReport, state::lock,
    wrapper::Resilient,
};
use crate::SessionStore;

/// Counters and state for tests, `shoal health` and dashboards.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ResilienceStats {
    /// The breaker's state now.
    pub breaker: BreakerState,
    /// How long it has been in that state.
    pub breaker_for: Duration,
    /// How many times it has opened since the wrapper was built.
    pub breaker_opened: u64,
    /// Journal entries not yet drained.
    pub journal_entries: usize,
    /// Journal bytes not yet drained.
    pub journal_bytes: usize,
    /// Sessions with journaled writes (local or held by the primary).
    pub marked_sessions: usize,
    /// Sessions created during an outage and not yet copied to the primary.
    pub local_sessions: usize,
    /// Writes refused because the journal was full.
    pub journal_full_rejections: u64,
    /// Provisional seq mappings kept.
    pub seq_mappings: usize,
    /// The last health probe.
    pub last_probe: Option<ProbeReport>,
    /// The last drain that did any work.
    pub last_drain: Option<DrainReport>,
    /// Every drain so far, summed (durations too).
    pub drain_totals: DrainReport,
}

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    /// A snapshot of the counters and state.
    pub fn stats(&self) -> ResilienceStats {
        let (since, opened) = self.state.breaker.since();
        let (entries, bytes, marked, local) = {
            let j = self.journal();
            (j.len(), j.bytes(), j.marked(), j.local())
        };
        ResilienceStats {
            breaker: self.state.breaker.state(),
            breaker_for: since.elapsed(),
            breaker_opened: opened,
            journal_entries: entries,
            journal_bytes: bytes,
            marked_sessions: marked,
            local_sessions: local,
            journal_full_rejections: self.state.journal_full.load(Ordering::Relaxed),
            seq_mappings: lock(&self.state.seqs).len(),
            last_probe: lock(&self.state.probe).clone(),
            last_drain: lock(&self.state.last_drain).clone(),
            drain_totals: lock(&self.state.drain_totals).clone(),
        }
    }
}
