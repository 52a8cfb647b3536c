//! Counters kept in Redis ([`RedisMetrics`]): increments are added up in the process and
//! written by one background task at a time, so an operation never waits for a metrics write.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use redis::Cmd;
use shoal_core::Result;

use super::{
    exec::u64_of,
    handle::{RedisStore, StoreState},
};

/// Counters kept in Redis under `<prefix>:metrics:*`, summed over every instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisMetrics {
    /// Sessions created (and restored).
    pub created: u64,
    /// Updates that moved a session to `completed`.
    pub completed: u64,
    /// Updates that moved a session to `failed`.
    pub failed: u64,
    /// Sessions deleted by `delete`.
    pub deleted: u64,
    /// Frames appended.
    pub frames: u64,
    /// Sessions removed because Redis evicted one of their keys (found by a read or write
    /// that met the hole; see `maxmemory-policy`).
    pub evicted: u64,
}

/// The counters' key names, indexed by the `M_*` constants.
const METRIC_NAMES: [&str; 6] = [
    "created",
    "completed",
    "failed",
    "deleted",
    "frames",
    "evicted",
];
pub(super) const M_CREATED: usize = 0;
pub(super) const M_COMPLETED: usize = 1;
pub(super) const M_FAILED: usize = 2;
pub(super) const M_DELETED: usize = 3;
pub(super) const M_FRAMES: usize = 4;
pub(super) const M_EVICTED: usize = 5;

/// Counter increments not yet written to Redis. They are flushed by one background task at a
/// time (so an operation never waits for a metrics write) and by [`RedisStore::metrics`].
#[derive(Default)]
pub(super) struct PendingMetrics {
    counts: [AtomicU64; 6],
    flushing: AtomicBool,
    /// Held from taking the counts until Redis has them, so [`RedisStore::metrics`] (and so a
    /// CLI command's final report) waits for a background flush already under way instead of
    /// finding nothing to flush and reading counters that miss its increments — which the
    /// process exiting could then drop.
    sending: tokio::sync::Mutex<()>,
}

impl RedisStore {
    /// Writes pending counter increments and reads the counters.
    pub async fn metrics(&self) -> Result<RedisMetrics> {
        let state = &self.state;
        state.flush_metrics().await?;
        let cmds: Vec<(String, Cmd)> = METRIC_NAMES
            .iter()
            .map(|n| {
                let key = state.keys.metric(n);
                let mut c = redis::cmd("GET");
                c.arg(&key);
                (key, c)
            })
            .collect();
        let values = state.multi("metrics", cmds).await?;
        let get = |i: usize| values.get(i).and_then(u64_of).unwrap_or(0);
        Ok(RedisMetrics {
            created: get(M_CREATED),
            completed: get(M_COMPLETED),
            failed: get(M_FAILED),
            deleted: get(M_DELETED),
            frames: get(M_FRAMES),
            evicted: get(M_EVICTED),
        })
    }
}

impl StoreState {
    /// Adds `n` to counter `metric` without starting a flush (the next [`bump`] or
    /// [`RedisStore::metrics`] writes it); for paths that only hold `&self`.
    ///
    /// [`bump`]: StoreState::bump
    pub(super) fn add_uncommitted(&self, metric: usize, n: u64) {
        self.metrics.counts[metric].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds `n` to counter `metric` and starts a background flush unless one is running.
    pub(super) fn bump(self: &Arc<Self>, metric: usize, n: u64) {
        if n == 0 {
            return;
        }
        self.metrics.counts[metric].fetch_add(n, Ordering::Relaxed);
        if self.metrics.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.metrics.flushing.store(false, Ordering::Release);
            return;
        };
        let state = Arc::clone(self);
        handle.spawn(async move {
            if let Err(e) = state.flush_metrics().await {
                tracing::debug!(error = %e, "redis metrics flush failed; will retry later");
            }
            state.metrics.flushing.store(false, Ordering::Release);
        });
    }

    /// Writes the pending increments (`INCRBY`); on failure they are kept for the next flush.
    async fn flush_metrics(&self) -> Result<()> {
        let _sending = self.metrics.sending.lock().await;
        let taken: Vec<u64> = self
            .metrics
            .counts
            .iter()
            .map(|c| c.swap(0, Ordering::AcqRel))
            .collect();
        let cmds: Vec<(String, Cmd)> = METRIC_NAMES
            .iter()
            .zip(&taken)
            .filter(|(_, n)| **n > 0)
            .map(|(name, n)| {
                let key = self.keys.metric(name);
                let mut c = redis::cmd("INCRBY");
                c.arg(&key).arg(*n);
                (key, c)
            })
            .collect();
        if cmds.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.multi("metrics", cmds).await {
            for (c, n) in self.metrics.counts.iter().zip(taken) {
                c.fetch_add(n, Ordering::AcqRel);
            }
            return Err(e);
        }
        Ok(())
    }
}
