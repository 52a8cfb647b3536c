//! The [`Cached`] handle: what a caller holds (a shared pointer to the cache's state), its
//! inherent methods (stats, local invalidation, flush, shutdown) and its `Clone`/`Debug`.

use std::{
    fmt,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use super::{
    cache_core::CacheCore,
    config::CacheConfig,
    stats::{CacheStats, FlushReport},
};
use crate::{Error, Result, SessionId, SessionStore};

/// A caching [`SessionStore`] wrapper. Cloning shares the cache.
///
/// Build it with [`Cached::builder`]; give it the same [`Clock`](crate::Clock) as the
/// wrapped store. For several instances on one backend, give it an
/// [`NotifyBus`](crate::notify::NotifyBus) (`shoal-redis` has one on Redis pub/sub) or
/// use `consistency = strict`. Call [`Cached::shutdown`] before exit when deferred writes are
/// on (write-behind, touch coalescing).
///
/// ```
/// use shoal_core::cached::{CacheConfig, Cached, WriteMode};
/// use shoal_core::{MemoryStore, Session, SessionId, SessionStore, Transport};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = Cached::builder(MemoryStore::new())
///     .config(CacheConfig::local().with_write_mode(WriteMode::WriteThrough))
///     .build()?;
/// let id = SessionId::generate();
/// store.create(Session::new(id.clone(), Transport::StreamableHttp)).await?;
/// let s = store.get(&id).await?.expect("live");          // from the cache
/// assert_eq!(s.revision, 1);
/// store.touch(&id).await?;                                 // first touch: written
/// store.touch(&id).await?;                                 // coalesced
/// assert_eq!(store.stats().hits, 1);
/// assert_eq!(store.stats().touches_coalesced, 1);
/// store.shutdown().await?;                                 // writes the coalesced touch
/// # Ok::<(), shoal_core::Error>(())
/// # }).unwrap();
/// ```
pub struct Cached<S: SessionStore> {
    pub(super) core: Arc<CacheCore<S>>,
}

impl<S: SessionStore> Clone for Cached<S> {
    fn clone(&self) -> Self {
        Cached {
            core: Arc::clone(&self.core),
        }
    }
}

impl<S: SessionStore> fmt::Debug for Cached<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("store", &self.core.store)
            .field("config", &self.core.config)
            .field("enabled", &self.core.enabled())
            .field("bus", &self.core.bus)
            .finish()
    }
}

impl<S: SessionStore> Cached<S> {
    /// The wrapped store.
    pub fn store(&self) -> &S {
        &self.core.store
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.core.config
    }

    /// Whether the cache serves hits now (false while the invalidation bus is down).
    pub fn is_enabled(&self) -> bool {
        self.core.enabled()
    }

    /// Counters since the cache was built.
    pub fn stats(&self) -> CacheStats {
        let e = &self.core.entries;
        self.core
            .stats
            .snapshot(e.entry_count(), e.weighted_size(), self.core.enabled())
    }

    /// Drops the cached copy of `id` (local only; other instances are not told).
    pub async fn invalidate(&self, id: &SessionId) {
        self.core.evict(id, false).await;
    }

    /// Drops every cached entry (local only).
    pub fn invalidate_all(&self) {
        self.core.clear();
    }

    /// Writes every deferred write now: coalesced touches and queued updates. Returns what
    /// was written; [`Error`] (after writing what it could) if the backend failed, in which
    /// case the failed writes stay queued.
    pub async fn flush(&self) -> Result<FlushReport> {
        let (report, err) = self.core.flush_everything(true).await;
        match err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Stops deferring writes and writes everything deferred, retrying failures for up to
    /// `shutdown_timeout`. After it returns `Ok`, every acknowledged write is in the backend
    /// (or was refused by it: `updates_dropped`). The store stays usable (writes then go
    /// through synchronously). [`Error::Unavailable`] names how many writes are still
    /// unwritten when the time is up.
    pub async fn shutdown(&self) -> Result<FlushReport> {
        let s = &self.core;
        s.closing.store(true, Ordering::SeqCst);
        let deadline = deadline_after(s.config.shutdown_timeout);
        let mut total = FlushReport::default();
        loop {
            let (report, err) = s.flush_everything(true).await;
            total.add(report);
            let pending = s.queue.len() + s.dirty.len();
            total.pending = pending as u64;
            if pending == 0 {
                return Ok(total);
            }
            if Instant::now() >= deadline {
                let why = err.map_or_else(|| "no error reported".to_owned(), |e| e.to_string());
                return Err(Error::unavailable(format!(
                    "cache shutdown: {pending} acknowledged writes are still unwritten after \
                     {:?}: {why}",
                    s.config.shutdown_timeout
                )));
            }
            tokio::time::sleep(s.config.flush_interval.min(Duration::from_millis(100))).await;
        }
    }
}

/// `now + after`, or a day from now when that is not representable (no setting is that long
/// once validated; this only keeps an unvalidated one from panicking).
fn deadline_after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(now)
}
