//! [`Cached<S>`]: a hot-session cache in front of any [`SessionStore`], itself a
//! `SessionStore`, that stays correct when several instances share the backend.
//!
//! # What is cached
//! - **Sessions**, in a [`moka`] cache (TinyLFU admission, LRU eviction), bounded by entries and
//!   by estimated bytes, with a per-entry time to live on the store's clock. Concurrent misses
//!   of one id make one backend read (single flight).
//! - **A frame tail** per session (the newest `tail_frames` frames, optional): replay pages
//!   inside the tail are answered from memory.
//! - **Activity**: with touch coalescing a session's `last_activity` is written at most once per
//!   `touch_interval`; the touches in between are answered from the cache.
//!
//! `get`, `count_frames`, tail `frames` pages and coalesced `touch`es are served from memory.
//! Everything else goes to the backend; listings (`list`, `count`) are never cached.
//!
//! # Staying correct across instances
//! A cached entry is dropped when
//! - the session's own `expires_at` passes (on the store's clock), or the entry is older than
//!   `ttl`: both end with a fresh read, never with a wrong "gone";
//! - this instance writes it (write-through updates it instead, where it can compute the result);
//! - another instance announces a write on the [`InvalidationBus`] (`consistency = invalidate`);
//!   while the bus is down the cache is empty and serves nothing, and when it is back it is
//!   emptied once more before it serves again;
//! - or, with `consistency = strict`, a cheap version check ([`Revalidate`]) before every hit
//!   finds it out of date.
//!
//! Loads and writes that race with an invalidation never leave a stale entry behind: every
//! change raises the session's fence (right after a local write, or the moment an announcement
//! arrives), a hit is only served from an entry made after the fence, and a load re-checks the
//! fence after inserting (see `fence.rs`). Writes through this wrapper publish the ids they changed (create,
//! update, delete, append, delete_frames, restore, and write-behind flushes); touches do not
//! (another instance's cached `last_activity` may lag by up to `ttl`; its expiry checks always
//! end at the backend).
//!
//! # Write modes ([`WriteMode`])
//! | mode | acknowledged when | durability |
//! |---|---|---|
//! | `write_through` | the backend has the write | as the backend |
//! | `read_through` | the backend has the write | as the backend (writes drop the entry) |
//! | `write_behind` | `update`s: once applied to the cache and queued | an acknowledged update is lost if the process dies before the flush (≤ `flush_interval`), or refused at flush if another instance changed the session meanwhile; [`Cached::shutdown`] writes everything |
//!
//! Touch coalescing (every mode, `touch_interval > 0`): an acknowledged touch reaches the
//! backend within `touch_interval` (a crash loses at most that much activity); a touch is
//! written at once when the backend's expiry is closer than `touch_margin`.

mod bus;
mod config;
mod deferred;
mod entry;
mod fence;
mod shard;
mod stats;
mod validate;

use std::{
    fmt,
    future::{Future, ready},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use moka::ops::compute::Op;
use tokio::sync::{Notify, broadcast};

pub use bus::{
    BUS_CAPACITY, BusEvent, BusHook, BusHooks, Invalidation, InvalidationBus, LocalBus, unix_micros,
};
pub use config::{CacheConfig, Consistency, WriteMode};
pub use stats::{CacheStats, FlushReport};
pub use validate::{Revalidate, SessionStamp};

use crate::{
    Clock, Error, FramePage, FrameQuery, GetMany, Health, HealthStatus, ListPage, ListQuery,
    NewFrame, PendingRequest, RequestId, Result, Session, SessionFilter, SessionId, SessionRecord,
    SessionStore, SweepReport, SystemClock, Timestamp,
};

use deferred::{DirtySet, TouchState, WriteQueue};
use entry::{Entry, Sizes, Tail};
use fence::{Fences, Ticket};
use shard::ShardedMap;
use stats::Stats;

/// Concurrent backend writes of one flush.
const FLUSH_CONCURRENCY: usize = 32;
/// Stripes of the write-behind per-session update lock.
const UPDATE_LOCKS: usize = 64;

/// A caching [`SessionStore`] wrapper. Cloning shares the cache.
///
/// Build it with [`Cached::builder`]; give it the same [`Clock`] as the wrapped store. For
/// several instances on one backend, give it an [`InvalidationBus`] (`shoal-redis` has one
/// on Redis pub/sub) or use `consistency = strict`. Call [`Cached::shutdown`] before exit
/// when deferred writes are on (write-behind, touch coalescing).
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
    shared: Arc<Shared<S>>,
}

impl<S: SessionStore> Clone for Cached<S> {
    fn clone(&self) -> Self {
        Cached {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: SessionStore> fmt::Debug for Cached<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("store", &self.shared.store)
            .field("config", &self.shared.config)
            .field("enabled", &self.shared.enabled())
            .field("bus", &self.shared.bus)
            .finish()
    }
}

/// Builds a [`Cached`] store: [`Cached::builder`].
pub struct CachedBuilder<S: SessionStore> {
    store: S,
    config: CacheConfig,
    clock: Option<Arc<dyn Clock>>,
    bus: Option<Arc<dyn InvalidationBus>>,
    validator: Option<Arc<dyn Revalidate>>,
}

impl<S: SessionStore> fmt::Debug for CachedBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedBuilder")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish()
    }
}

impl<S: SessionStore> CachedBuilder<S> {
    /// Sets the configuration (default: [`CacheConfig::default`]).
    pub fn config(mut self, config: CacheConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the clock: use the wrapped store's (default: [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sets the invalidation bus (needed for `consistency = invalidate`).
    pub fn bus(mut self, bus: Arc<dyn InvalidationBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Sets the version check `strict` mode uses (without one it reads the whole session).
    pub fn validator(mut self, validator: Arc<dyn Revalidate>) -> Self {
        self.validator = Some(validator);
        self
    }

    /// Builds the store and starts its background tasks (bus listener, flusher) on the
    /// current Tokio runtime.
    ///
    /// [`Error::InvalidInput`] for an invalid configuration, for `consistency = invalidate`
    /// without a bus, or when background tasks are needed outside a Tokio runtime.
    pub fn build(self) -> Result<Cached<S>> {
        let config = self.config;
        config.validate()?;
        if config.consistency == Consistency::Invalidate && self.bus.is_none() {
            return Err(Error::invalid(
                "cache consistency `invalidate` needs an invalidation bus (e.g. \
                 shoal_redis::invalidation::RedisInvalidationBus); use `local` for a store no \
                 other instance writes, or `strict`",
            ));
        }
        let deferring =
            !config.touch_interval.is_zero() || config.write_mode == WriteMode::WriteBehind;
        let handle = if self.bus.is_some() || deferring {
            Some(tokio::runtime::Handle::try_current().map_err(|_| {
                Error::invalid("a Cached store with a bus or deferred writes must be built inside a Tokio runtime")
            })?)
        } else {
            None
        };
        let stats = Arc::new(Stats::new());
        let evict_stats = Arc::clone(&stats);
        let entries = moka::future::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_: &SessionId, e: &Arc<Entry>| e.weight)
            .time_to_live(config.ttl)
            .eviction_listener(move |_, _, cause| {
                if cause.was_evicted() {
                    evict_stats.evictions.inc();
                }
            })
            .build();
        let session_ttl = self.store.limits().session_ttl;
        let shared = Arc::new(Shared {
            sizes: Sizes {
                min_weight: config.min_weight(),
                session_ttl_ms: millis(session_ttl),
            },
            ttl_ms: millis(config.ttl),
            session_ttl,
            store: self.store,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            entries,
            fences: Fences::new(config.ttl),
            enabled: AtomicBool::new(self.bus.is_none()),
            closing: AtomicBool::new(false),
            bus: self.bus,
            validator: self.validator,
            touches: ShardedMap::default(),
            dirty: DirtySet::default(),
            queue: WriteQueue::default(),
            flush_lock: tokio::sync::Mutex::new(()),
            wake: Arc::new(Notify::new()),
            stats,
            started: Instant::now(),
            tasks: Mutex::new(Vec::new()),
            state: Mutex::new(0),
            update_locks: (0..UPDATE_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            lock_hasher: std::hash::RandomState::new(),
            config,
        });
        // The hook first (it sees every event from the state it is given), then the
        // subscription (for the asynchronous part, or everything if hooks are unsupported).
        let mut rx = None;
        let mut hooked = false;
        if let Some(bus) = &shared.bus {
            let hook: Arc<dyn BusHook> = Arc::clone(&shared) as Arc<dyn BusHook>;
            let before = *shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let up = bus.add_hook(Arc::downgrade(&hook));
            hooked = up.is_some();
            rx = Some(bus.subscribe());
            let up = up.unwrap_or_else(|| bus.is_up());
            // Unless an event already set the state, start from what the bus said.
            let changes = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if *changes == before && up {
                shared.enabled.store(true, Ordering::Release);
            }
        }
        let enabled = shared.enabled();
        shared.stats.set_enabled(enabled);
        if let Some(h) = handle {
            let mut tasks = Vec::new();
            if let Some(rx) = rx {
                tasks.push(
                    h.spawn(listen(Arc::downgrade(&shared), rx, hooked))
                        .abort_handle(),
                );
            }
            if deferring {
                let wake = Arc::clone(&shared.wake);
                tasks.push(
                    h.spawn(maintain(Arc::downgrade(&shared), wake))
                        .abort_handle(),
                );
            }
            *shared.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        }
        Ok(Cached { shared })
    }
}

impl<S: SessionStore> Cached<S> {
    /// A builder around `store`.
    pub fn builder(store: S) -> CachedBuilder<S> {
        CachedBuilder {
            store,
            config: CacheConfig::default(),
            clock: None,
            bus: None,
            validator: None,
        }
    }

    /// The wrapped store.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.shared.config
    }

    /// Whether the cache serves hits now (false while the invalidation bus is down).
    pub fn is_enabled(&self) -> bool {
        self.shared.enabled()
    }

    /// Counters since the cache was built.
    pub fn stats(&self) -> CacheStats {
        let e = &self.shared.entries;
        self.shared
            .stats
            .snapshot(e.entry_count(), e.weighted_size(), self.shared.enabled())
    }

    /// Drops the cached copy of `id` (local only; other instances are not told).
    pub async fn invalidate(&self, id: &SessionId) {
        self.shared.evict(id, false).await;
    }

    /// Drops every cached entry (local only).
    pub fn invalidate_all(&self) {
        self.shared.clear();
    }

    /// Writes every deferred write now: coalesced touches and queued updates. Returns what
    /// was written; [`Error`] (after writing what it could) if the backend failed, in which
    /// case the failed writes stay queued.
    pub async fn flush(&self) -> Result<FlushReport> {
        let (report, err) = self.shared.flush_everything(true).await;
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
        let s = &self.shared;
        s.closing.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + s.config.shutdown_timeout;
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

/// Why a load did not produce a cacheable entry (shared by every waiter of a single flight).
#[derive(Debug)]
enum LoadErr {
    /// Read, but an invalidation raced with the read: returned, not cached.
    Raced(Box<Session>),
    /// The session does not exist (never cached).
    Absent,
    /// The backend failed.
    Failed(Error),
}

struct Shared<S: SessionStore> {
    store: S,
    config: CacheConfig,
    clock: Arc<dyn Clock>,
    entries: moka::future::Cache<SessionId, Arc<Entry>>,
    fences: Fences,
    enabled: AtomicBool,
    closing: AtomicBool,
    bus: Option<Arc<dyn InvalidationBus>>,
    validator: Option<Arc<dyn Revalidate>>,
    touches: ShardedMap<Arc<TouchState>>,
    dirty: DirtySet,
    queue: WriteQueue,
    flush_lock: tokio::sync::Mutex<()>,
    wake: Arc<Notify>,
    stats: Arc<Stats>,
    started: Instant,
    sizes: Sizes,
    ttl_ms: u64,
    session_ttl: Duration,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Counts bus state changes; held while the state changes.
    state: Mutex<u64>,
    /// Write-behind: one update per session at a time (striped), so an update that must go
    /// through never overtakes one being queued.
    update_locks: Box<[tokio::sync::Mutex<()>]>,
    lock_hasher: std::hash::RandomState,
}

impl<S: SessionStore> Drop for Shared<S> {
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A copy of `e` for each waiter of a shared load (backend sources become their messages).
fn clone_error(e: &Error) -> Error {
    match e {
        Error::NotFound { what } => Error::NotFound { what: what.clone() },
        Error::AlreadyExists { what } => Error::AlreadyExists { what: what.clone() },
        Error::Conflict {
            what,
            expected,
            actual,
        } => Error::Conflict {
            what: what.clone(),
            expected: *expected,
            actual: *actual,
        },
        Error::InvalidInput { reason } => Error::InvalidInput {
            reason: reason.clone(),
        },
        Error::LimitExceeded { what, limit } => Error::LimitExceeded {
            what,
            limit: *limit,
        },
        Error::Unavailable { reason } => Error::Unavailable {
            reason: reason.clone(),
        },
        Error::Timeout { op, after } => Error::Timeout { op, after: *after },
        Error::Corrupt { what, reason } => Error::Corrupt {
            what: what.clone(),
            reason: reason.clone(),
        },
        Error::Backend(b) => Error::backend(b.to_string()),
    }
}

/// Whether `new` is at least as recent as `old` in every way a write moves a session.
fn dominates(new: &Session, old: &Session) -> bool {
    new.revision >= old.revision
        && new.last_seq >= old.last_seq
        && new.first_seq >= old.first_seq
        && new.created_at >= old.created_at
}

/// Runs `f` on every item, at most `limit` at once, on spawned tasks.
async fn run_concurrently<T, F, Fut>(items: Vec<T>, limit: usize, f: F) -> Vec<Fut::Output>
where
    F: Fn(T) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut out = Vec::with_capacity(items.len());
    let mut items = items.into_iter();
    loop {
        while set.len() < limit.max(1) {
            match items.next() {
                Some(item) => {
                    set.spawn(f(item));
                }
                None => break,
            }
        }
        match set.join_next().await {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => tracing::error!(error = %e, "cache flush task failed"),
            None => return out,
        }
    }
}

/// What one deferred touch flush did.
enum TouchFlush {
    Written,
    Kept(Option<Error>),
    Gone,
}

impl<S: SessionStore> Shared<S> {
    fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn strict(&self) -> bool {
        self.config.consistency == Consistency::Strict
    }

    fn tail_on(&self) -> bool {
        self.config.tail_frames > 0
    }

    /// Whether writes update the cache (write-through and write-behind, while on).
    fn caches_writes(&self) -> bool {
        self.config.write_mode != WriteMode::ReadThrough && self.enabled()
    }

    fn coalescing(&self) -> bool {
        !self.config.touch_interval.is_zero()
            && self.enabled()
            && !self.closing.load(Ordering::Acquire)
    }

    fn defers_updates(&self) -> bool {
        self.config.write_mode == WriteMode::WriteBehind
            && self.enabled()
            && !self.closing.load(Ordering::Acquire)
    }

    fn publish(&self, id: &SessionId) {
        if let Some(bus) = &self.bus {
            bus.publish(std::slice::from_ref(id));
        }
    }

    fn set_enabled(&self, on: bool) {
        let mut changes = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *changes += 1;
        if on {
            self.clear();
            self.enabled.store(true, Ordering::Release);
        } else {
            self.enabled.store(false, Ordering::Release);
            self.clear();
        }
        self.stats.set_enabled(on);
        tracing::info!(
            enabled = on,
            "session cache {}",
            if on { "on" } else { "off" }
        );
    }

    /// Makes every entry unservable at once (the fences) and stops coalescing on what is
    /// known. The entries themselves go later ([`Shared::drop_all`], the entry ttl): moka's
    /// own `invalidate_all` would also hide entries inserted right after it.
    fn clear(&self) {
        self.fences.raise_all();
        self.touches
            .for_each(|st| st.stale.store(true, Ordering::Release));
    }

    /// Drops the entry of `id` (after raising its fence); `drop_touch` also forgets its
    /// touch state (the session is gone), otherwise the state only stops coalescing.
    async fn evict(&self, id: &SessionId, drop_touch: bool) {
        self.fences.raise(id);
        self.entries.invalidate(id).await;
        if drop_touch {
            self.touches.remove(id);
        } else if let Some(st) = self.touches.get(id) {
            st.stale.store(true, Ordering::Release);
        }
    }

    async fn remove_if_same(&self, id: &SessionId, e: &Arc<Entry>) {
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

    /// The synchronous part of an invalidation: fences raised (hits stop at once), touch
    /// states stale, counted.
    fn invalidated(&self, inv: &Invalidation) {
        for id in inv.ids.iter() {
            self.fences.raise(id);
            if let Some(st) = self.touches.get(id) {
                st.stale.store(true, Ordering::Release);
            }
        }
        self.stats.invalidations.add(inv.ids.len() as u64);
        if let Some(sent) = inv.sent_at_us {
            self.stats
                .record_delay_us(unix_micros().saturating_sub(sent));
        }
    }

    /// Frees every entry (after [`Shared::clear`]).
    async fn drop_all(&self) {
        let keys: Vec<Arc<SessionId>> = self.entries.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.entries.invalidate(&*k).await;
        }
    }

    /// The asynchronous part: the entries themselves go (memory is freed).
    async fn drop_entries(&self, inv: &Invalidation) {
        for id in inv.ids.iter() {
            self.entries.invalidate(id).await;
        }
    }

    fn check_metadata(&self, s: &Session) -> Result<()> {
        let max = self.store.limits().max_metadata_bytes;
        if s.metadata_bytes() > max {
            return Err(Error::LimitExceeded {
                what: "session metadata bytes",
                limit: max as u64,
            });
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------------
    // Reads
    // ------------------------------------------------------------------------------------

    /// The entry of `id` if it may be served now (`strict`: after the version check).
    async fn fresh(self: &Arc<Self>, id: &SessionId) -> Result<Option<Arc<Entry>>> {
        let Some(e) = self.entries.get(id).await else {
            return Ok(None);
        };
        let now = self.now();
        if !e.usable(now, self.ttl_ms) || self.fences.crossed(id, e.ticket) {
            self.remove_if_same(id, &e).await;
            return Ok(None);
        }
        if self.strict() {
            self.flush_id(id).await?;
            let stamp = match &self.validator {
                Some(v) => v.stamp(id).await?,
                None => self.store.get(id).await?.map(|s| SessionStamp::of(&s)),
            };
            match stamp {
                Some(st)
                    if st.expires_at > now
                        && st.same_version(&e.session)
                        && (st.last_activity <= e.last_activity()
                            || st.expires_at.0
                                == st
                                    .last_activity
                                    .0
                                    .saturating_add(self.sizes.session_ttl_ms)) =>
                {
                    if st.last_activity > e.last_activity() {
                        e.touched_at(st.last_activity);
                    }
                }
                _ => {
                    self.stats.stale.inc();
                    self.remove_if_same(id, &e).await;
                    return Ok(None);
                }
            }
        }
        Ok(Some(e))
    }

    /// Reads `id` from the backend (one read for all concurrent callers) and caches it
    /// unless an invalidation raced with the read.
    async fn load(self: &Arc<Self>, id: &SessionId) -> Result<Option<Session>> {
        self.flush_id(id).await?;
        let init = async {
            let ticket = self.fences.ticket();
            match self.store.get(id).await {
                Ok(Some(s)) => {
                    if !self.enabled() || self.fences.crossed(id, ticket) {
                        return Err(LoadErr::Raced(Box::new(s)));
                    }
                    let tail = (self.tail_on() && s.frame_count == 0).then(Tail::default);
                    Ok(Arc::new(Entry::new(
                        s,
                        self.now(),
                        ticket,
                        tail,
                        self.sizes,
                    )))
                }
                Ok(None) => Err(LoadErr::Absent),
                Err(e) => Err(LoadErr::Failed(e)),
            }
        };
        match self.entries.try_get_with_by_ref(id, init).await {
            Ok(e) => {
                if self.fences.crossed(id, e.ticket)
                    || !self.enabled()
                    || !e.usable(self.now(), self.ttl_ms)
                {
                    // Changed meanwhile, or an old entry: read past the cache.
                    self.remove_if_same(id, &e).await;
                    return self.store.get(id).await;
                }
                Ok(Some(e.snapshot()))
            }
            Err(err) => match &*err {
                LoadErr::Raced(s) => Ok(Some((**s).clone())),
                LoadErr::Absent => Ok(None),
                LoadErr::Failed(e) => Err(clone_error(e)),
            },
        }
    }

    /// The hit path, kept small (its future is what every `get` allocates); anything else
    /// goes to [`Shared::get_slow`] in its own allocation.
    async fn get(self: &Arc<Self>, id: &SessionId) -> Result<Option<Session>> {
        if self.enabled()
            && !self.strict()
            && let Some(e) = self.hit(id).await
        {
            self.stats.hits_get.inc();
            return Ok(Some(e.snapshot()));
        }
        Box::pin(self.get_slow(id)).await
    }

    /// The cached entry of `id` if it may be served without asking the backend.
    async fn hit(&self, id: &SessionId) -> Option<Arc<Entry>> {
        let e = self.entries.get(id).await?;
        (e.usable(self.now(), self.ttl_ms) && !self.fences.crossed_entry(id, e.ticket)).then_some(e)
    }

    async fn get_slow(self: &Arc<Self>, id: &SessionId) -> Result<Option<Session>> {
        if !self.enabled() {
            self.stats.bypassed.inc();
            self.flush_id(id).await?;
            return self.store.get(id).await;
        }
        if let Some(e) = self.fresh(id).await? {
            self.stats.hits_get.inc();
            return Ok(Some(e.snapshot()));
        }
        self.stats.misses_get.inc();
        self.load(id).await
    }

    async fn get_many(self: &Arc<Self>, ids: &[SessionId]) -> Result<GetMany> {
        if !self.enabled() || self.strict() {
            self.stats.bypassed.add(ids.len() as u64);
            for id in ids {
                self.flush_id(id).await?;
            }
            return self.store.get_many(ids).await;
        }
        let now = self.now();
        let mut hits = std::collections::HashMap::new();
        let mut misses = Vec::new();
        for id in ids {
            match self.entries.get(id).await {
                Some(e) if e.usable(now, self.ttl_ms) && !self.fences.crossed(id, e.ticket) => {
                    hits.insert(id.clone(), e.snapshot());
                }
                _ => misses.push(id.clone()),
            }
        }
        self.stats.hits_get.add(hits.len() as u64);
        self.stats.misses_get.add(misses.len() as u64);
        let mut loaded = GetMany::default();
        if !misses.is_empty() {
            for id in &misses {
                self.flush_id(id).await?;
            }
            let ticket = self.fences.ticket();
            loaded = self.store.get_many(&misses).await?;
            for s in &loaded.found {
                self.insert_loaded(s.clone(), ticket).await;
            }
        }
        let found: std::collections::HashMap<SessionId, Session> = loaded
            .found
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        let mut out = GetMany::default();
        for id in ids {
            if let Some(s) = hits.get(id).or_else(|| found.get(id)) {
                out.found.push(s.clone());
            }
        }
        out.missing = loaded.missing;
        out.errors = loaded.errors;
        Ok(out)
    }

    /// Caches a session read outside a single flight (e.g. by `get_many`).
    async fn insert_loaded(&self, s: Session, ticket: Ticket) {
        if !self.enabled() || self.fences.crossed(&s.id, ticket) {
            return;
        }
        let id = s.id.clone();
        let tail = (self.tail_on() && s.frame_count == 0).then(Tail::default);
        let e = Arc::new(Entry::new(s, self.now(), ticket, tail, self.sizes));
        self.entries.insert(id.clone(), Arc::clone(&e)).await;
        if self.fences.crossed(&id, ticket) || !self.enabled() {
            self.remove_if_same(&id, &e).await;
        }
    }

    // ------------------------------------------------------------------------------------
    // Write-through helpers
    // ------------------------------------------------------------------------------------

    /// Caches `s`, the backend's answer to a write made under `ticket`, unless the cached
    /// entry is newer in some way (then drops it). `inherit_tail` keeps the cached frame tail
    /// when the frames did not change; otherwise `tail` is used.
    async fn put(&self, s: Session, ticket: Ticket, inherit_tail: bool, tail: Option<Tail>) {
        let id = s.id.clone();
        let now = self.now();
        let sizes = self.sizes;
        let mut put: Option<Arc<Entry>> = None;
        let fences = &self.fences;
        self.entries
            .entry_by_ref(&id)
            .and_compute_with(|cur| {
                let old = cur
                    .map(|c| c.into_value())
                    .filter(|o| !fences.crossed_except(&id, o.ticket, ticket));
                let op = match old {
                    Some(old) if !dominates(&s, &old.session) => Op::Remove,
                    old => {
                        let tail = match old {
                            Some(o)
                                if inherit_tail
                                    && o.session.last_seq == s.last_seq
                                    && o.session.first_seq == s.first_seq =>
                            {
                                o.tail.clone()
                            }
                            _ => tail,
                        };
                        let e = Arc::new(Entry::new(s, now, ticket, tail, sizes));
                        put = Some(Arc::clone(&e));
                        Op::Put(e)
                    }
                };
                ready(op)
            })
            .await;
        if let Some(e) = put
            && (self.fences.crossed(&id, ticket) || !self.enabled())
        {
            self.remove_if_same(&id, &e).await;
        }
    }

    /// Applies an append the backend made (seqs `seqs`, frames `frames` when the tail is
    /// kept, at `now` or later) to the cached entry, or drops the entry when it cannot.
    async fn apply_append(
        &self,
        id: &SessionId,
        seqs: &[u64],
        frames: Option<Vec<NewFrame>>,
        now: Timestamp,
        ticket: Ticket,
    ) {
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            self.entries.invalidate(id).await;
            return;
        };
        let keep = self.store.limits().max_frames_per_session as u64;
        let ttl = self.session_ttl;
        let (max_frames, max_bytes) = (self.config.tail_frames, self.config.tail_bytes);
        let (ttl_ms, sizes) = (self.ttl_ms, self.sizes);
        let fences = &self.fences;
        let mut put: Option<Arc<Entry>> = None;
        self.entries
            .entry_by_ref(id)
            .and_compute_with(|cur| {
                let op = match cur.map(|c| c.into_value()) {
                    None => Op::Nop,
                    Some(c)
                        if !c.usable(now, ttl_ms)
                            || fences.crossed_except(id, c.ticket, ticket)
                            || c.session.last_seq.saturating_add(1) != first
                            || last - first + 1 != seqs.len() as u64 =>
                    {
                        Op::Remove
                    }
                    Some(c) => {
                        let mut s = c.snapshot();
                        s.last_seq = last;
                        s.frame_count = (c.session.frame_count + seqs.len() as u64).min(keep);
                        s.first_seq = last + 1 - s.frame_count;
                        s.last_activity = s.last_activity.max(now);
                        s.expires_at = s.expires_at.max(now.saturating_add(ttl));
                        let tail = match (&c.tail, frames) {
                            (Some(t), Some(new)) => Some(
                                t.extended(
                                    new.into_iter()
                                        .zip(seqs)
                                        .map(|(f, seq)| f.into_frame(id.clone(), *seq)),
                                    s.first_seq,
                                    max_frames,
                                    max_bytes,
                                ),
                            ),
                            _ => None,
                        };
                        let e = Arc::new(Entry::new(s, c.loaded_at, ticket, tail, sizes));
                        put = Some(Arc::clone(&e));
                        Op::Put(e)
                    }
                };
                ready(op)
            })
            .await;
        if let Some(e) = put
            && (self.fences.crossed(id, ticket) || !self.enabled())
        {
            self.remove_if_same(id, &e).await;
        }
    }

    /// Keeps the frames of a page read from the backend as the entry's tail, when the page
    /// reaches the session's newest frame and no invalidation came in between.
    async fn fill_tail(&self, id: &SessionId, page: &FramePage, ticket: Ticket) {
        let (max_frames, max_bytes, sizes) =
            (self.config.tail_frames, self.config.tail_bytes, self.sizes);
        let fences = &self.fences;
        self.entries
            .entry_by_ref(id)
            .and_compute_with(|cur| {
                let op = match cur.map(|c| c.into_value()) {
                    Some(c)
                        if c.session.last_seq == page.last_seq
                            && c.tail.is_none()
                            && !fences.crossed(id, ticket)
                            && !fences.crossed(id, c.ticket) =>
                    {
                        let tail = Tail::default().extended(
                            page.frames.iter().cloned(),
                            c.session.first_seq,
                            max_frames,
                            max_bytes,
                        );
                        Op::Put(Arc::new(Entry::new(
                            c.snapshot(),
                            c.loaded_at,
                            c.ticket,
                            Some(tail),
                            sizes,
                        )))
                    }
                    _ => Op::Nop,
                };
                ready(op)
            })
            .await;
    }

    // ------------------------------------------------------------------------------------
    // Touch coalescing
    // ------------------------------------------------------------------------------------

    async fn touch(self: &Arc<Self>, id: &SessionId) -> Result<Timestamp> {
        if self.coalescing() {
            let now = self.now();
            if let Some(exp) = self.try_coalesce(id, now).await {
                return Ok(exp);
            }
        }
        self.touch_through(id).await
    }

    /// Answers a touch from the cache when the backend was written less than
    /// `touch_interval` ago and its expiry is further than `touch_margin` away.
    async fn try_coalesce(&self, id: &SessionId, now: Timestamp) -> Option<Timestamp> {
        let st = self.touches.get(id)?;
        if st.stale.load(Ordering::Acquire) {
            return None;
        }
        let since = self
            .now_ns()
            .saturating_sub(st.last_write_ns.load(Ordering::Acquire));
        if u128::from(since) >= self.config.touch_interval.as_nanos() {
            return None;
        }
        let remaining = st
            .backend_expires
            .load(Ordering::Acquire)
            .saturating_sub(now.0);
        if remaining <= millis(self.config.touch_margin) {
            return None;
        }
        let expires = now.saturating_add(self.session_ttl);
        if !st.dirty.swap(true, Ordering::AcqRel) {
            self.dirty.insert(id);
        }
        if let Some(e) = self.entries.get(id).await {
            e.touched_at(now);
        }
        self.stats.coalesced.inc();
        Some(expires)
    }

    /// A touch written to the backend now. Queued write-behind updates of the session need
    /// not go first: both only move activity forward.
    async fn touch_through(self: &Arc<Self>, id: &SessionId) -> Result<Timestamp> {
        let ticket = self.fences.ticket();
        match self.store.touch(id).await {
            Ok(expires) => {
                self.stats.touch_writes.inc();
                let last_activity = Timestamp(expires.0.saturating_sub(millis(self.session_ttl)));
                if let Some(e) = self.entries.get(id).await {
                    e.touched_at(last_activity);
                }
                let now_ns = self.now_ns();
                let existing = self.touches.get(id);
                match existing {
                    Some(st) if !st.stale.load(Ordering::Acquire) => st.written(now_ns, expires),
                    _ if self.coalescing() && !self.fences.crossed(id, ticket) => {
                        let st = Arc::new(TouchState::new(now_ns, expires));
                        self.touches.insert(id.clone(), Arc::clone(&st));
                        if self.fences.crossed(id, ticket) {
                            st.stale.store(true, Ordering::Release);
                        }
                    }
                    _ => {}
                }
                Ok(expires)
            }
            Err(e) => {
                if e.is_not_found() {
                    self.evict(id, true).await;
                }
                Err(e)
            }
        }
    }

    async fn flush_touch(&self, id: &SessionId, force: bool) -> TouchFlush {
        let Some(st) = self.touches.get(id) else {
            return TouchFlush::Gone;
        };
        if !st.dirty.load(Ordering::Acquire) {
            return TouchFlush::Gone;
        }
        let since = self
            .now_ns()
            .saturating_sub(st.last_write_ns.load(Ordering::Acquire));
        if !force && u128::from(since) < self.config.touch_interval.as_nanos() {
            return TouchFlush::Kept(None);
        }
        st.dirty.store(false, Ordering::Release);
        match self.store.touch(id).await {
            Ok(expires) => {
                st.written(self.now_ns(), expires);
                self.stats.touch_writes.inc();
                if let Some(e) = self.entries.get(id).await {
                    let la = Timestamp(expires.0.saturating_sub(millis(self.session_ttl)));
                    e.touched_at(la);
                }
                TouchFlush::Written
            }
            Err(e) if e.is_not_found() => {
                self.evict(id, true).await;
                TouchFlush::Gone
            }
            Err(e) => {
                st.dirty.store(true, Ordering::Release);
                TouchFlush::Kept(Some(e))
            }
        }
    }

    /// Writes deferred touches (all of them with `force`, else those whose interval has
    /// passed). On a spawned task, so a cancelled caller never loses taken touches.
    async fn flush_touches(self: &Arc<Self>, force: bool) -> (FlushReport, Option<Error>) {
        let s = Arc::clone(self);
        let job = tokio::spawn(async move {
            let ids = s.dirty.take();
            if ids.is_empty() {
                return (FlushReport::default(), None);
            }
            let results = run_concurrently(ids, FLUSH_CONCURRENCY, |id| {
                let s = Arc::clone(&s);
                async move {
                    let r = s.flush_touch(&id, force).await;
                    (id, r)
                }
            })
            .await;
            let mut report = FlushReport::default();
            let mut err = None;
            for (id, r) in results {
                match r {
                    TouchFlush::Written => report.touches_written += 1,
                    TouchFlush::Gone => {}
                    TouchFlush::Kept(e) => {
                        s.dirty.insert(&id);
                        if e.is_some() {
                            err = e;
                        }
                    }
                }
            }
            (report, err)
        });
        job.await.unwrap_or_else(|e| {
            (
                FlushReport::default(),
                Some(Error::backend(format!("cache touch flush failed: {e}"))),
            )
        })
    }

    fn prune_touches(&self) {
        let now_ns = self.now_ns();
        let keep = u64::try_from(self.config.touch_interval.as_nanos().saturating_mul(2))
            .unwrap_or(u64::MAX);
        self.touches.retain(|_, st| {
            st.dirty.load(Ordering::Acquire)
                || (!st.stale.load(Ordering::Acquire)
                    && now_ns.saturating_sub(st.last_write_ns.load(Ordering::Acquire)) < keep)
        });
    }

    // ------------------------------------------------------------------------------------
    // Write-behind
    // ------------------------------------------------------------------------------------

    /// Write-behind `update`: checks the revision against the cached entry, applies the
    /// update there and queues it. `None` when it cannot (not cached, queue full): the caller
    /// writes through.
    async fn update_behind(self: &Arc<Self>, session: &Session) -> Option<Result<Session>> {
        if let Err(e) = self.check_metadata(session) {
            return Some(Err(e));
        }
        let id = &session.id;
        match self.fresh(id).await {
            Ok(Some(_)) => {}
            Ok(None) => match self.load(id).await {
                Ok(Some(_)) => {}
                Ok(None) => return Some(Err(Error::session_not_found(id))),
                Err(e) => return Some(Err(e)),
            },
            Err(e) => return Some(Err(e)),
        }
        let now = self.now();
        let ttl = self.session_ttl;
        let (ttl_ms, sizes) = (self.ttl_ms, self.sizes);
        let max = self.config.max_queued_writes;
        let fences = &self.fences;
        let queue = &self.queue;
        let mut outcome: Option<Result<Session>> = None;
        self.entries
            .entry_by_ref(id)
            .and_compute_with(|cur| {
                let op = match cur.map(|c| c.into_value()) {
                    Some(c) if !c.usable(now, ttl_ms) || fences.crossed(id, c.ticket) => Op::Remove,
                    Some(c) if queue.len() < max => {
                        if c.session.revision != session.revision {
                            outcome = Some(Err(Error::Conflict {
                                what: format!("session {:?}", id.as_str()),
                                expected: session.revision,
                                actual: c.session.revision,
                            }));
                            Op::Nop
                        } else {
                            let mut next = c.snapshot();
                            next.apply_caller_fields(session);
                            next.revision += 1;
                            next.last_activity = next.last_activity.max(now);
                            next.expires_at = next.expires_at.max(now.saturating_add(ttl));
                            queue.push(session.clone());
                            outcome = Some(Ok(next.clone()));
                            // Loads racing with this change must not cache what they read.
                            let ticket = fences.raise(id);
                            Op::Put(Arc::new(Entry::new(
                                next,
                                c.loaded_at,
                                ticket,
                                c.tail.clone(),
                                sizes,
                            )))
                        }
                    }
                    _ => Op::Nop,
                };
                ready(op)
            })
            .await;
        if matches!(outcome, Some(Ok(_))) {
            self.stats.queued.inc();
            if self.queue.len() >= max / 2 {
                self.wake.notify_one();
            }
        }
        outcome
    }

    /// Writes the queued updates of one session in order. Transient failures put the rest
    /// back in front of the queue; refusals drop them (and the cached entry).
    async fn apply_updates(
        &self,
        id: &SessionId,
        mut ops: std::collections::VecDeque<Session>,
    ) -> (FlushReport, Option<Error>) {
        let mut report = FlushReport::default();
        let mut err = None;
        while let Some(op) = ops.pop_front() {
            match self.store.update(&op).await {
                Ok(_) => {
                    report.updates_written += 1;
                    self.stats.flushed.inc();
                }
                Err(e) if e.is_transient() => {
                    ops.push_front(op);
                    report.pending = ops.len() as u64;
                    self.queue
                        .requeue_front(id.clone(), std::mem::take(&mut ops));
                    err = Some(e);
                    break;
                }
                Err(e) => {
                    let n = 1 + ops.len() as u64;
                    report.updates_dropped += n;
                    self.stats.dropped.add(n);
                    tracing::warn!(
                        session = %id,
                        error = %e,
                        dropped = n,
                        "write-behind: the backend refused acknowledged update(s); dropped"
                    );
                    ops.clear();
                    self.evict(id, false).await;
                }
            }
        }
        if report.updates_written > 0 {
            self.publish(id);
        }
        (report, err)
    }

    /// Writes the queued updates of `id` before anything else touches it in the backend.
    async fn flush_id(self: &Arc<Self>, id: &SessionId) -> Result<()> {
        if !self.queue.contains(id) {
            return Ok(());
        }
        let s = Arc::clone(self);
        let id = id.clone();
        let job = tokio::spawn(async move {
            let _serial = s.flush_lock.lock().await;
            let ops = s.queue.take(&id);
            s.apply_updates(&id, ops).await
        });
        match job.await {
            Ok((_, None)) => Ok(()),
            Ok((_, Some(e))) => Err(e),
            Err(e) => Err(Error::backend(format!("cache flush failed: {e}"))),
        }
    }

    /// Writes every queued update (one session after another in order, sessions at once).
    async fn flush_queue(self: &Arc<Self>) -> (FlushReport, Option<Error>) {
        if self.queue.is_empty() {
            return (FlushReport::default(), None);
        }
        let s = Arc::clone(self);
        let job = tokio::spawn(async move {
            let _serial = s.flush_lock.lock().await;
            let all = s.queue.take_all();
            let results = run_concurrently(all, FLUSH_CONCURRENCY, |(id, ops)| {
                let s = Arc::clone(&s);
                async move { s.apply_updates(&id, ops).await }
            })
            .await;
            let mut report = FlushReport::default();
            let mut err = None;
            for (r, e) in results {
                report.updates_written += r.updates_written;
                report.updates_dropped += r.updates_dropped;
                report.pending += r.pending;
                if e.is_some() {
                    err = e;
                }
            }
            (report, err)
        });
        job.await.unwrap_or_else(|e| {
            (
                FlushReport::default(),
                Some(Error::backend(format!("cache flush failed: {e}"))),
            )
        })
    }

    async fn flush_everything(self: &Arc<Self>, force: bool) -> (FlushReport, Option<Error>) {
        let (mut report, e1) = self.flush_queue().await;
        let (touches, e2) = self.flush_touches(force).await;
        report.touches_written += touches.touches_written;
        report.pending = (self.queue.len() + self.dirty.len()) as u64;
        (report, e1.or(e2))
    }

    /// One tick of the background task.
    async fn tick(self: &Arc<Self>, last_flush: &mut Instant, last_prune: &mut Instant) {
        if !self.config.touch_interval.is_zero() {
            let (_, err) = self.flush_touches(false).await;
            if let Some(e) = err {
                tracing::debug!(error = %e, "deferred touches not written yet; will retry");
            }
        }
        if self.config.write_mode == WriteMode::WriteBehind
            && (last_flush.elapsed() >= self.config.flush_interval
                || self.queue.len() >= self.config.max_queued_writes / 2)
        {
            *last_flush = Instant::now();
            let (_, err) = self.flush_queue().await;
            if let Some(e) = err {
                tracing::warn!(error = %e, queued = self.queue.len(), "write-behind flush failed; will retry");
            }
        }
        if last_prune.elapsed() >= Duration::from_secs(1) {
            *last_prune = Instant::now();
            self.prune_touches();
            self.fences.prune();
        }
    }
}

impl<S: SessionStore> BusHook for Shared<S> {
    fn on_event(&self, event: &BusEvent) {
        match event {
            BusEvent::Invalidate(inv) => self.invalidated(inv),
            BusEvent::InvalidateAll => self.clear(),
            BusEvent::Down => self.set_enabled(false),
            BusEvent::Up => self.set_enabled(true),
        }
    }
}

/// Applies bus events to the cache until the cache or the bus is gone. With a hook
/// (`hooked`) the events were already applied synchronously; this only frees the entries.
async fn listen<S: SessionStore>(
    weak: Weak<Shared<S>>,
    mut rx: broadcast::Receiver<BusEvent>,
    hooked: bool,
) {
    loop {
        let event = rx.recv().await;
        let Some(shared) = weak.upgrade() else { return };
        match event {
            Ok(BusEvent::Invalidate(inv)) => {
                if !hooked {
                    shared.invalidated(&inv);
                }
                shared.drop_entries(&inv).await;
            }
            Ok(other) => {
                if !hooked {
                    shared.on_event(&other);
                }
                shared.drop_all().await;
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "cache fell behind its invalidation bus; clearing it"
                );
                shared.clear();
                shared.drop_all().await;
            }
            Err(broadcast::error::RecvError::Closed) => {
                shared.set_enabled(false);
                return;
            }
        }
    }
}

/// Writes deferred touches and queued updates in the background.
async fn maintain<S: SessionStore>(weak: Weak<Shared<S>>, wake: Arc<Notify>) {
    let period = {
        let Some(s) = weak.upgrade() else { return };
        let mut p = s.config.flush_interval;
        if !s.config.touch_interval.is_zero() {
            p = p.min(s.config.touch_interval / 4);
        }
        p.clamp(Duration::from_millis(1), Duration::from_millis(250))
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_flush = Instant::now();
    let mut last_prune = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = wake.notified() => {}
        }
        let Some(s) = weak.upgrade() else { return };
        s.tick(&mut last_flush, &mut last_prune).await;
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for Cached<S> {
    fn backend_name(&self) -> &'static str {
        self.shared.store.backend_name()
    }

    fn limits(&self) -> &crate::Limits {
        self.shared.store.limits()
    }

    async fn create(&self, session: Session) -> Result<Session> {
        let s = &self.shared;
        let id = session.id.clone();
        s.flush_id(&id).await?;
        let created = s.store.create(session).await?;
        let ticket = s.fences.raise(&id);
        if s.caches_writes() {
            let tail = s.tail_on().then(Tail::default);
            s.put(created.clone(), ticket, false, tail).await;
        }
        s.publish(&id);
        Ok(created)
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        self.shared.get(id).await
    }

    async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
        self.shared.get_many(ids).await
    }

    async fn update(&self, session: &Session) -> Result<Session> {
        let s = &self.shared;
        let _serial = if s.config.write_mode == WriteMode::WriteBehind {
            use std::hash::BuildHasher;
            let i = (s.lock_hasher.hash_one(&session.id) as usize) % UPDATE_LOCKS;
            Some(s.update_locks[i].lock().await)
        } else {
            None
        };
        if s.defers_updates()
            && let Some(r) = s.update_behind(session).await
        {
            return r;
        }
        let id = &session.id;
        s.flush_id(id).await?;
        match s.store.update(session).await {
            Ok(stored) => {
                let ticket = s.fences.raise(id);
                if s.caches_writes() {
                    s.put(stored.clone(), ticket, true, None).await;
                } else {
                    s.entries.invalidate(id).await;
                }
                s.publish(id);
                Ok(stored)
            }
            Err(e) => {
                if matches!(e, Error::NotFound { .. } | Error::Conflict { .. }) {
                    s.evict(id, e.is_not_found()).await;
                }
                Err(e)
            }
        }
    }

    async fn touch(&self, id: &SessionId) -> Result<Timestamp> {
        self.shared.touch(id).await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let s = &self.shared;
        s.flush_id(id).await?;
        s.evict(id, true).await;
        let r = s.store.delete(id).await;
        s.evict(id, true).await;
        if let Ok(true) = r {
            s.publish(id);
        }
        r
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        let s = &self.shared;
        if let (_, Some(e)) = s.flush_queue().await {
            return Err(e);
        }
        s.store.list(query).await
    }

    async fn count(&self, filter: &SessionFilter) -> Result<u64> {
        let s = &self.shared;
        if let (_, Some(e)) = s.flush_queue().await {
            return Err(e);
        }
        s.store.count(filter).await
    }

    async fn append_frames(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
        let s = &self.shared;
        s.flush_id(id).await?;
        let keep = (s.tail_on() && s.caches_writes()).then(|| frames.clone());
        let now = s.now();
        let seqs = match s.store.append_frames(id, frames).await {
            Ok(seqs) => seqs,
            Err(e) => {
                if e.is_not_found() {
                    s.evict(id, true).await;
                }
                return Err(e);
            }
        };
        let ticket = s.fences.raise(id);
        if seqs.is_empty() || !s.caches_writes() {
            s.entries.invalidate(id).await;
        } else {
            s.apply_append(id, &seqs, keep, now, ticket).await;
        }
        s.publish(id);
        Ok(seqs)
    }

    async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage> {
        query.validate()?;
        let s = &self.shared;
        let on = s.enabled();
        if s.tail_on() && on {
            if let Some(e) = s.fresh(id).await?
                && let Some(page) = e.tail.as_ref().and_then(|t| t.page(&e.session, query))
            {
                s.stats.hits_frames.inc();
                return Ok(page);
            }
            s.stats.misses_frames.inc();
        } else if !on {
            s.stats.bypassed.inc();
        }
        s.flush_id(id).await?;
        let ticket = s.fences.ticket();
        match s.store.frames(id, query).await {
            Ok(page) => {
                if s.tail_on()
                    && s.enabled()
                    && query.stream_id.is_none()
                    && !page.has_more
                    && page.frames.last().is_some_and(|f| f.seq == page.last_seq)
                {
                    s.fill_tail(id, &page, ticket).await;
                }
                Ok(page)
            }
            Err(e) => {
                if e.is_not_found() {
                    s.evict(id, true).await;
                }
                Err(e)
            }
        }
    }

    async fn count_frames(&self, id: &SessionId) -> Result<u64> {
        let s = &self.shared;
        if s.enabled() {
            if let Some(e) = s.fresh(id).await? {
                s.stats.hits_count.inc();
                return Ok(e.session.frame_count);
            }
            s.stats.misses_count.inc();
        } else {
            s.stats.bypassed.inc();
        }
        s.flush_id(id).await?;
        let r = s.store.count_frames(id).await;
        if matches!(&r, Err(e) if e.is_not_found()) {
            s.evict(id, true).await;
        }
        r
    }

    async fn delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64> {
        let s = &self.shared;
        s.flush_id(id).await?;
        s.fences.raise(id);
        let r = s.store.delete_frames(id, through_seq).await;
        let gone = matches!(&r, Err(e) if e.is_not_found());
        s.evict(id, gone).await;
        if let Ok(n) = r
            && n > 0
        {
            s.publish(id);
        }
        r
    }

    async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()> {
        let s = &self.shared;
        s.flush_id(id).await?;
        let r = s.store.add_pending(id, request).await;
        if matches!(&r, Err(e) if e.is_not_found()) {
            s.evict(id, true).await;
        }
        r
    }

    async fn take_pending(
        &self,
        id: &SessionId,
        request_id: &RequestId,
    ) -> Result<Option<PendingRequest>> {
        let s = &self.shared;
        s.flush_id(id).await?;
        let r = s.store.take_pending(id, request_id).await;
        if matches!(&r, Err(e) if e.is_not_found()) {
            s.evict(id, true).await;
        }
        r
    }

    async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>> {
        let s = &self.shared;
        s.flush_id(id).await?;
        let r = s.store.list_pending(id).await;
        if matches!(&r, Err(e) if e.is_not_found()) {
            s.evict(id, true).await;
        }
        r
    }

    async fn sweep_expired(&self) -> Result<SweepReport> {
        let s = &self.shared;
        let (_, err) = s.flush_everything(true).await;
        if let Some(e) = err {
            return Err(e);
        }
        s.store.sweep_expired().await
    }

    async fn health(&self) -> Result<Health> {
        let s = &self.shared;
        let mut h = s.store.health().await?;
        let on = s.enabled();
        h = h
            .with_detail("cache", if on { "on" } else { "off" })
            .with_detail("cache_entries", s.entries.entry_count())
            .with_detail("cache_consistency", s.config.consistency.as_str())
            .with_detail("cache_write_mode", s.config.write_mode.as_str());
        if !s.queue.is_empty() {
            h = h.with_detail("cache_queued_writes", s.queue.len());
        }
        if !on && h.status == HealthStatus::Healthy {
            h.status = HealthStatus::Degraded;
            h = h.with_detail("cache_reason", "invalidation bus down");
        }
        Ok(h)
    }

    async fn restore(&self, record: SessionRecord) -> Result<()> {
        let s = &self.shared;
        let id = record.session.id.clone();
        s.flush_id(&id).await?;
        s.fences.raise(&id);
        let r = s.store.restore(record).await;
        s.evict(&id, false).await;
        if r.is_ok() {
            s.publish(&id);
        }
        r
    }
}
