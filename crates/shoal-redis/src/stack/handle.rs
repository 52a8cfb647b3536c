//! [`Stack`]: the opened composition, what it is made of, and the bus between instances.

use std::{sync::Arc, time::Duration};

use shoal_core::{MemoryStore, NotifyBus, SessionId, SessionStore, resilient::MonitorHandle};

use super::{ResilientRedis, cache_control::CacheControl, sweeper::Sweeper};
use crate::{
    BusConfig, BusStats, RedisConfig, RedisPubSub, RedisStore,
    analytics::{AnalyticsConfig, AnalyticsWorker},
};

/// The tested production composition of Shoal's stores, opened from a URL and a
/// [`StackConfig`](super::StackConfig) (see the [module docs](super) for what it is made of).
///
/// The health monitor, the pub/sub bus and the sweeper live as long as this value;
/// [`Stack::close`] ends them after writing what is deferred.
#[derive(Debug)]
pub struct Stack {
    /// The outermost store: what callers use.
    pub(super) store: Arc<dyn SessionStore>,
    /// The store without the cache (the same as `store` when there is none).
    pub(super) uncached: Arc<dyn SessionStore>,
    pub(super) backend: Backend,
    pub(super) sweeper: Option<Sweeper>,
    pub(super) resilient: Option<ResilientRedis>,
    pub(super) monitor: Option<MonitorHandle>,
    pub(super) drain_timeout: Duration,
    pub(super) cache: Option<Arc<dyn CacheControl>>,
    /// The pub/sub bus: the cache's, or one opened on demand ([`Stack::bus`]).
    pub(super) bus: tokio::sync::Mutex<Option<RedisPubSub>>,
    /// Whether the cache publishes its own writes on `bus`.
    pub(super) cache_publishes: bool,
    /// How to open a bus.
    pub(super) bus_config: BusConfig,
    /// The analytics consumer, once started ([`Stack::start_analytics`]).
    pub(super) analytics: Option<AnalyticsWorker>,
    /// `[feed] enabled` and `analytics`.
    pub(super) analytics_wanted: bool,
}

/// The backend under the wrappers.
#[derive(Debug)]
pub(super) enum Backend {
    /// An in-process store.
    Memory(MemoryStore),
    /// Redis, with the configuration it was opened with.
    Redis {
        /// The store.
        store: RedisStore,
        /// Its configuration (URL included: never print it unredacted).
        config: Box<RedisConfig>,
    },
}

impl Stack {
    /// The store to use: the cache (when on) over the resilience wrapper (when on) over the
    /// backend.
    pub fn store(&self) -> Arc<dyn SessionStore> {
        Arc::clone(&self.store)
    }

    /// The store without the cache (the same as [`Stack::store`] when the cache is off).
    pub fn uncached_store(&self) -> Arc<dyn SessionStore> {
        Arc::clone(&self.uncached)
    }

    /// The resilience wrapper, when on.
    pub fn resilient(&self) -> Option<&ResilientRedis> {
        self.resilient.as_ref()
    }

    /// The cache, when on.
    pub fn cache(&self) -> Option<&Arc<dyn CacheControl>> {
        self.cache.as_ref()
    }

    /// The Redis backend, for what the trait does not offer (counters, topology).
    pub fn redis(&self) -> Option<&RedisStore> {
        match &self.backend {
            Backend::Redis { store, .. } => Some(store),
            Backend::Memory(_) => None,
        }
    }

    /// The configuration the Redis backend was opened with (URL included: print it only
    /// through [`redact_url`](crate::redact_url)).
    pub fn redis_config(&self) -> Option<&RedisConfig> {
        match &self.backend {
            Backend::Redis { config, .. } => Some(config),
            Backend::Memory(_) => None,
        }
    }

    /// The in-memory backend (`memory://`, or the store given to [`Stack::over_memory`]).
    pub fn memory(&self) -> Option<&MemoryStore> {
        match &self.backend {
            Backend::Memory(m) => Some(m),
            Backend::Redis { .. } => None,
        }
    }

    /// The pub/sub bus between instances (Redis stores, any topology): the cache's, or one
    /// opened now and kept until [`Stack::close`]. It carries cache invalidations and the
    /// proxy's stream wake-ups on one subscription. `Ok(None)` for an in-process store,
    /// which no other instance shares.
    pub async fn bus(&self) -> shoal_core::Result<Option<RedisPubSub>> {
        let Some(config) = self.redis_config() else {
            return Ok(None);
        };
        let mut bus = self.bus.lock().await;
        if bus.is_none() {
            *bus = Some(RedisPubSub::connect(config, self.bus_config.clone()).await?);
        }
        Ok(bus.clone())
    }

    /// [`Stack::bus`] as a [`NotifyBus`], e.g. for the proxy's wake-ups.
    pub async fn notify_bus(&self) -> shoal_core::Result<Option<Arc<dyn NotifyBus>>> {
        Ok(self
            .bus()
            .await?
            .map(|bus| Arc::new(bus) as Arc<dyn NotifyBus>))
    }

    /// The bus's counters, when one is open.
    pub async fn bus_stats(&self) -> Option<BusStats> {
        self.bus.lock().await.as_ref().map(RedisPubSub::stats)
    }

    /// Tells other instances' caches that `ids` changed by writes through
    /// [`Stack::store`] (Redis stores only). A cache with a bus has published them already;
    /// otherwise a bus is opened for it (best effort: if it cannot be, a warning says that
    /// other caches may serve the old copy for up to their entry ttl).
    pub async fn announce(&self, ids: &[SessionId]) {
        if self.cache_publishes {
            return;
        }
        self.publish(Some(ids)).await;
    }

    /// Tells other instances' caches that any session may have changed (after an import).
    pub async fn announce_all(&self) {
        self.publish(None).await;
    }

    async fn publish(&self, ids: Option<&[SessionId]>) {
        let bus = match self.bus().await {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "could not announce the change to other instances' caches; they may \
                     serve their copy until its entry ttl passes"
                );
                return;
            }
        };
        match ids {
            Some(ids) => bus.publish(ids),
            None => bus.publish_all(),
        }
    }

    /// Starts keeping the session analytics up to date from the change feed (see
    /// [`crate::analytics`]) — for a long-running instance; one instance of a fleet applies
    /// entries at a time. Returns whether it runs: only on Redis, with `[feed] enabled` and
    /// `analytics` on.
    pub fn start_analytics(&mut self, config: AnalyticsConfig) -> bool {
        if self.analytics.is_none()
            && self.analytics_wanted
            && let Backend::Redis { store, .. } = &self.backend
        {
            self.analytics = AnalyticsWorker::spawn(store.clone(), config);
        }
        self.analytics.is_some()
    }

    /// Stops the background sweeper (so an explicit sweep reports everything it removes).
    pub async fn stop_sweeper(&mut self) {
        if let Some(s) = self.sweeper.take() {
            s.stop().await;
        }
    }
}
