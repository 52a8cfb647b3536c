//! The [`Resilient`] handle: construction, its `Clone`/`Debug`, and what a caller may ask it
//! directly (the stores, the breaker's state, provisional seqs).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicU64, AtomicUsize},
};

use super::{
    breaker::{Breaker, BreakerState},
    config::ResilienceConfig,
    drain::DrainReport,
    durable::DurableLog,
    journal::{Journal, MarkKind},
    metrics,
    seqmap::{PROVISIONAL_SEQ_BASE, SeqMap, is_provisional},
    state::{ResilientState, lock},
};
use crate::{Error, Result, SessionId, SessionStore};

/// A [`SessionStore`] that bounds, retries and breaks calls to a primary store and falls back
/// to a second store while the primary is out. See the [module docs](super) for the exact
/// guarantees. Cloning shares the same state.
///
/// ```
/// use shoal_core::resilient::{BreakerState, ResilienceConfig, Resilient};
/// use shoal_core::{MemoryStore, Session, SessionId, SessionStore, Transport};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = Resilient::new(MemoryStore::new(), MemoryStore::new(), ResilienceConfig::default())?;
/// let s = store.create(Session::new(SessionId::generate(), Transport::Stdio)).await?;
/// assert_eq!(store.get(&s.id).await?.map(|s| s.revision), Some(1));
/// assert_eq!(store.breaker_state(), BreakerState::Closed);
/// assert_eq!(store.stats().journal_entries, 0);
/// # Ok::<(), shoal_core::Error>(())
/// # }).unwrap();
/// ```
pub struct Resilient<P, F> {
    pub(super) state: Arc<ResilientState<P, F>>,
}

impl<P, F> Clone for Resilient<P, F> {
    fn clone(&self) -> Self {
        Resilient {
            state: Arc::clone(&self.state),
        }
    }
}

impl<P: SessionStore, F: SessionStore> std::fmt::Debug for Resilient<P, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resilient")
            .field("primary", &self.state.primary)
            .field("fallback", &self.state.fallback)
            .field("mode", &self.state.config.fallback)
            .field("breaker", &self.state.breaker.state())
            .finish_non_exhaustive()
    }
}

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    /// Wraps `primary` with `fallback` behind it. Fails with `InvalidInput` for an invalid
    /// `config`. Needs no runtime; start the health monitor with [`Resilient::spawn_monitor`].
    pub fn new(primary: P, fallback: F, config: ResilienceConfig) -> Result<Self> {
        config.validate()?;
        let breaker = Breaker::new(config.breaker.clone());
        let journal = Journal::new(config.journal.max_entries, config.journal.max_bytes);
        let seqs = SeqMap::new(config.journal.seq_map_capacity);
        let primary_metrics = metrics::Handles::new(primary.backend_name());
        let fallback_metrics = metrics::Handles::new(fallback.backend_name());
        ::metrics::gauge!(metrics::BREAKER_STATE, "backend" => primary.backend_name())
            .set(BreakerState::Closed.gauge_value());
        let (durable, recovered) = match &config.journal.path {
            Some(path) => {
                let (log, found) =
                    DurableLog::open(path, config.journal.fsync, config.journal.max_file_bytes)
                        .map_err(|e| {
                            Error::invalid(format!("the journal file {}: {e}", path.display()))
                        })?;
                (Some(log), Some(found))
            }
            None => (None, None),
        };
        Ok(Resilient {
            state: Arc::new(ResilientState {
                primary,
                fallback,
                config,
                breaker,
                journal: Mutex::new(journal),
                marked: AtomicUsize::new(0),
                next_provisional: AtomicU64::new(PROVISIONAL_SEQ_BASE),
                seqs: Mutex::new(seqs),
                probe: Mutex::new(None),
                drain_lock: tokio::sync::Mutex::new(()),
                last_drain: Mutex::new(None),
                drain_totals: Mutex::new(DrainReport::default()),
                journal_full: AtomicU64::new(0),
                primary_metrics,
                fallback_metrics,
                durable,
                recovered: Mutex::new(recovered),
                recovering: AtomicBool::new(false),
                logging: AtomicUsize::new(0),
                log_gate: Mutex::new(()),
                last_connection_lost: Mutex::new(None),
            }),
        })
    }

    /// The primary store.
    pub fn primary(&self) -> &P {
        &self.state.primary
    }

    /// The fallback store.
    pub fn fallback(&self) -> &F {
        &self.state.fallback
    }

    /// The configuration.
    pub fn config(&self) -> &ResilienceConfig {
        &self.state.config
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.state.breaker.state()
    }

    /// Whether `id` is a session created during an outage that is not yet in the primary.
    pub fn is_local(&self, id: &SessionId) -> bool {
        matches!(self.journal().kind(id), Some(MarkKind::Local { .. }))
    }

    /// The final seq of a provisional seq handed out for `id` during an outage, once the
    /// journal has been drained (and while the mapping is kept). A seq that is not
    /// provisional is returned as it is.
    pub fn resolve_seq(&self, id: &SessionId, seq: u64) -> Option<u64> {
        if !is_provisional(seq) {
            return Some(seq);
        }
        lock(&self.state.seqs).get(id, seq)
    }
}
