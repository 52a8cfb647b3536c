//! [`CacheCore`]: the state one [`Cached`](super::Cached) store and its background tasks share
//! (the moka cache, fences, deferred-write queues, counters), the predicates every path asks
//! (is the cache on, does it coalesce, does it defer), and dropping entries.

use std::{
    future::ready,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use moka::ops::compute::Op;
use tokio::sync::Notify;

use crate::notify::NotifyBus;

use super::{
    config::{CacheConfig, Consistency, WriteMode},
    deferred::{DirtySet, TouchState, WriteQueue},
    entry::{Entry, Sizes},
    fence::Fences,
    shard::ShardedMap,
    stats::Stats,
    validate::Revalidate,
};
use crate::{Clock, Result, Session, SessionId, SessionStore, Timestamp};

/// Stripes of the write-behind per-session update lock.
pub(super) const UPDATE_LOCKS: usize = 64;

/// What a [`Cached`](super::Cached) store is: the wrapped store and everything the cache keeps
/// about it. Shared (behind an `Arc`) by the handle and the background tasks.
pub(super) struct CacheCore<S: SessionStore> {
    pub(super) store: S,
    pub(super) config: CacheConfig,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) entries: moka::future::Cache<SessionId, Arc<Entry>>,
    pub(super) fences: Fences,
    pub(super) enabled: AtomicBool,
    pub(super) closing: AtomicBool,
    pub(super) bus: Option<Arc<dyn NotifyBus>>,
    pub(super) validator: Option<Arc<dyn Revalidate>>,
    pub(super) touches: ShardedMap<Arc<TouchState>>,
    pub(super) dirty: DirtySet,
    pub(super) queue: WriteQueue,
    pub(super) flush_lock: tokio::sync::Mutex<()>,
    /// Flushes that took updates off the queue and have not written them yet: a read that
    /// must see every acknowledged write waits for them even when the queue looks empty.
    pub(super) flushes_in_flight: std::sync::atomic::AtomicUsize,
    pub(super) wake: Arc<Notify>,
    pub(super) stats: Arc<Stats>,
    pub(super) started: Instant,
    pub(super) sizes: Sizes,
    pub(super) ttl_ms: u64,
    pub(super) session_ttl: Duration,
    pub(super) tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Counts bus state changes; held while the state changes.
    pub(super) state: Mutex<u64>,
    /// Write-behind: one update per session at a time (striped), so an update that must go
    /// through never overtakes one being queued.
    pub(super) update_locks: Box<[tokio::sync::Mutex<()>]>,
    pub(super) lock_hasher: std::hash::RandomState,
}

impl<S: SessionStore> Drop for CacheCore<S> {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
        let lost = self.queue.len() + self.dirty.len();
        if lost > 0 {
            tracing::warn!(
                lost,
                "a Cached store was dropped without shutdown(): its unwritten deferred writes are lost"
            );
        }
    }
}

/// `d` in whole milliseconds (saturating).
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<S: SessionStore> CacheCore<S> {
    /// Whether the cache serves hits now (off while the invalidation bus is down).
    pub(super) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Now on the store's clock.
    pub(super) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Monotonic nanoseconds since the cache was built (touch intervals).
    pub(super) fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether every hit is version-checked first (`consistency = strict`).
    pub(super) fn strict(&self) -> bool {
        self.config.consistency == Consistency::Strict
    }

    /// Whether entries keep a frame tail.
    pub(super) fn tail_on(&self) -> bool {
        self.config.tail_frames > 0
    }

    /// Whether writes update the cache (write-through and write-behind, while on).
    pub(super) fn caches_writes(&self) -> bool {
        self.config.write_mode != WriteMode::ReadThrough && self.enabled()
    }

    /// Whether touches are coalesced now (not while off or shutting down).
    pub(super) fn coalescing(&self) -> bool {
        !self.config.touch_interval.is_zero()
            && self.enabled()
            && !self.closing.load(Ordering::Acquire)
    }

    /// Whether updates are queued now (write-behind, not while off or shutting down).
    pub(super) fn defers_updates(&self) -> bool {
        self.config.write_mode == WriteMode::WriteBehind
            && self.enabled()
            && !self.closing.load(Ordering::Acquire)
    }

    /// Announces a change of `id` to other instances (when there is a bus).
    pub(super) fn publish(&self, id: &SessionId) {
        if let Some(bus) = &self.bus {
            bus.publish(std::slice::from_ref(id));
        }
    }

    /// Makes every entry unservable at once (the fences) and stops coalescing on what is
    /// known. The entries themselves go later ([`CacheCore::drop_all`], the entry ttl): moka's
    /// own `invalidate_all` would also hide entries inserted right after it.
    pub(super) fn clear(&self) {
        self.fences.raise_all();
        self.touches
            .for_each(|st| st.stale.store(true, Ordering::Release));
    }

    /// Drops the entry of `id` (after raising its fence); `drop_touch` also forgets its
    /// touch state (the session is gone), otherwise the state only stops coalescing.
    pub(super) async fn evict(&self, id: &SessionId, drop_touch: bool) {
        self.fences.raise(id);
        self.entries.invalidate(id).await;
        if drop_touch {
            self.touches.remove(id);
        } else if let Some(st) = self.touches.get(id) {
            st.stale.store(true, Ordering::Release);
        }
    }

    /// Drops the entry of `id` only if it is still `e` (a newer one stays).
    pub(super) async fn remove_if_same(&self, id: &SessionId, e: &Arc<Entry>) {
        self.entries
            .entry_by_ref(id)
            .and_compute_with(|cur| {
                ready(match cur {
                    Some(c) if Arc::ptr_eq(c.value(), e) => Op::Remove,
                    _ => Op::Nop,
                })
            })
            .await;
    }

    /// `LimitExceeded` when `s`'s metadata is larger than the store allows.
    pub(super) fn check_metadata(&self, s: &Session) -> Result<()> {
        s.check_metadata(self.store.limits())
    }
}
