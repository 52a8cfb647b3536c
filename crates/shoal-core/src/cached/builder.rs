//! [`CachedBuilder`]: checks the configuration, builds the cache's state and starts its
//! background tasks (bus listener, flusher).

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use tokio::sync::Notify;

use crate::notify::{BusHook, NotifyBus};

use super::{
    cache_core::{CacheCore, UPDATE_LOCKS, millis},
    config::{CacheConfig, Consistency, WriteMode},
    deferred::{DirtySet, WriteQueue},
    entry::{Entry, Sizes},
    fence::Fences,
    flush::maintain,
    listen::listen,
    shard::ShardedMap,
    stats::Stats,
    validate::Revalidate,
    wrapper::Cached,
};
use crate::{Clock, Error, Result, SessionId, SessionStore, SystemClock};

/// Builds a [`Cached`] store: [`Cached::builder`].
pub struct CachedBuilder<S: SessionStore> {
    store: S,
    config: CacheConfig,
    clock: Option<Arc<dyn Clock>>,
    bus: Option<Arc<dyn NotifyBus>>,
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
    pub fn bus(mut self, bus: Arc<dyn NotifyBus>) -> Self {
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
                "cache consistency `invalidate` needs a notify bus (e.g. \
                 shoal_redis::RedisPubSub); use `local` for a store no other instance writes, \
                 or `strict`",
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
        let core = Arc::new(CacheCore {
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
            flushes_in_flight: std::sync::atomic::AtomicUsize::new(0),
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
        if let Some(bus) = &core.bus {
            let hook: Arc<dyn BusHook> = Arc::clone(&core) as Arc<dyn BusHook>;
            let before = *core.state.lock().unwrap_or_else(|e| e.into_inner());
            let up = bus.add_hook(Arc::downgrade(&hook));
            hooked = up.is_some();
            rx = Some(bus.subscribe());
            let up = up.unwrap_or_else(|| bus.is_up());
            // Unless an event already set the state, start from what the bus said.
            let changes = core.state.lock().unwrap_or_else(|e| e.into_inner());
            if *changes == before && up {
                core.enabled.store(true, Ordering::Release);
            }
        }
        let enabled = core.enabled();
        core.stats.set_enabled(enabled);
        if let Some(h) = handle {
            let mut tasks = Vec::new();
            if let Some(rx) = rx {
                tasks.push(
                    h.spawn(listen(Arc::downgrade(&core), rx, hooked))
                        .abort_handle(),
                );
            }
            if deferring {
                let wake = Arc::clone(&core.wake);
                tasks.push(
                    h.spawn(maintain(Arc::downgrade(&core), wake))
                        .abort_handle(),
                );
            }
            *core.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        }
        Ok(Cached { core })
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
}
