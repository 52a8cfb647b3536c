//! Opening a [`Stack`]: the backend from the URL, then the resilience wrapper and the cache
//! around it, as configured.

use std::sync::Arc;

use shoal_core::{
    Cached, CachedBuilder, Clock, MemoryStore, SessionStore, SystemClock,
    cached::{Consistency, Revalidate},
    notify::NotifyBus,
    resilient::Resilient,
};

use super::{
    StackConfig,
    cache_control::CacheControl,
    errors::{InvalidSetting, StackError},
    guarded_stamp::GuardedStamp,
    handle::{Backend, Stack},
    sweeper::Sweeper,
};
use crate::{RedisPubSub, RedisStore, redact_url};

/// The URL schemes of the Redis backend.
pub const REDIS_SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "redis+cluster",
    "rediss+cluster",
    "redis+sentinel",
    "rediss+sentinel",
];

impl Stack {
    /// Opens the store at `url` — `memory://` or any Redis URL (`redis://`, `rediss://`,
    /// `redis+cluster://`, `redis+sentinel://`, and their `rediss+` forms; the scheme in any
    /// case) — with `config`, on the system clock.
    ///
    /// A background sweeper runs until the stack is dropped or closed (its first pass comes
    /// one `sweep_interval` after opening). A Redis server that cannot be reached fails
    /// within `redis.connect_timeout` ([`StackError::Store`]); a bad URL or setting, or the
    /// breaker asked for on `memory://`, is a configuration error
    /// ([`StackError::is_invalid_configuration`]).
    pub async fn open(url: &str, config: &StackConfig) -> Result<Stack, StackError> {
        Stack::open_with_clock(url, config, Arc::new(SystemClock)).await
    }

    /// [`Stack::open`] with `clock` for "now" (every part reads it: the backend, its
    /// fallback and the cache).
    pub async fn open_with_clock(
        url: &str,
        config: &StackConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Stack, StackError> {
        config.validate()?;
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            StackError::Url(format!(
                "{:?} is not a store URL (expected memory:// or redis://…)",
                redact_url(url)
            ))
        })?;
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "memory" if rest.is_empty() => {
                let memory = MemoryStore::builder()
                    .limits(config.limits.clone())
                    .clock(Arc::clone(&clock))
                    .feed(config.feed.clone())
                    .build();
                Stack::over_memory_with_clock(memory, config, clock).await
            }
            "memory" => Err(StackError::Url(format!(
                "memory:// takes no host or path (got {:?})",
                redact_url(url)
            ))),
            s if REDIS_SCHEMES.contains(&s) => {
                let url = format!("{scheme}://{rest}");
                Stack::open_redis(&url, config, clock).await
            }
            _ => Err(StackError::Url(format!(
                "unsupported store URL scheme {scheme:?} (expected memory:// or one of {})",
                REDIS_SCHEMES
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The stack over a memory store the caller built (and perhaps loaded, e.g. from an
    /// export file): its sweeper and, when enabled, the cache with `consistency` `local`
    /// (nothing else writes an in-process store). The resilience wrapper guards a remote
    /// server only: a fallback in `config` is refused.
    pub async fn over_memory(
        memory: MemoryStore,
        config: &StackConfig,
    ) -> Result<Stack, StackError> {
        config.validate()?;
        Stack::over_memory_with_clock(memory, config, Arc::new(SystemClock)).await
    }

    async fn over_memory_with_clock(
        memory: MemoryStore,
        config: &StackConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Stack, StackError> {
        if let Some(mode) = config.resilience.fallback {
            return Err(InvalidSetting::new(
                "resilience.fallback",
                format!(
                    "resilience.fallback = {:?} needs a Redis store (the circuit breaker \
                     guards a remote server); an in-process store has none: drop the setting",
                    mode.as_str()
                ),
            )
            .into());
        }
        let sweeper = Sweeper::Memory(memory.spawn_sweeper(config.memory.sweep_interval));
        let store: Arc<dyn SessionStore> = Arc::new(memory.clone());
        let mut stack = Stack::unwrapped(store, Backend::Memory(memory.clone()), sweeper, config);
        if config.cache.enabled {
            let mut cache = config.cache.config.clone();
            if cache.consistency == Consistency::Invalidate {
                // Nothing else can write an in-process store: no announcements to wait for.
                tracing::debug!("cache: consistency `local` for an in-process store");
                cache = cache.with_consistency(Consistency::Local);
            }
            let cached = build_cache(Cached::builder(memory).config(cache), &clock, None)?;
            stack.set_cache(cached);
        }
        Ok(stack)
    }

    async fn open_redis(
        url: &str,
        config: &StackConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Stack, StackError> {
        let mut redis_config = config.redis.connection_for(url);
        redis_config.feed = config.feed.clone();
        let redis = RedisStore::connect(
            redis_config.clone(),
            config.limits.clone(),
            Arc::clone(&clock),
        )
        .await
        .map_err(|e| match e {
            shoal_core::Error::InvalidInput { reason } => StackError::Redis(reason),
            other => StackError::Store(other),
        })?;
        // The fallback and the cache decide expiry too: by the store's server-corrected clock.
        let clock = redis.clock();
        let sweeper = Sweeper::Redis(redis.spawn_sweeper(config.redis.sweep_interval));
        let backend = Backend::Redis {
            store: redis.clone(),
            config: Box::new(redis_config.clone()),
        };
        let mut stack = Stack::unwrapped(Arc::new(redis.clone()), backend, sweeper, config);
        if let Some(rc) = config.resilience.wrapper_config() {
            let fallback = MemoryStore::builder()
                .limits(config.limits.clone())
                .clock(Arc::clone(&clock))
                .build();
            let resilient = Resilient::new(redis.clone(), fallback, rc)
                .map_err(|e| InvalidSetting::from_validation("resilience", e))?;
            // What this instance acknowledged during an outage before it last stopped.
            let recovered = resilient.recover().await.map_err(StackError::Store)?;
            if recovered.replayed > 0 || recovered.torn_bytes > 0 {
                tracing::warn!(
                    replayed = recovered.replayed,
                    refused = recovered.refused,
                    in_doubt = recovered.in_doubt,
                    torn_bytes = recovered.torn_bytes,
                    "outage journal recovered from the journal file; it drains once Redis is \
                     healthy"
                );
            }
            stack.monitor = Some(resilient.spawn_monitor());
            stack.store = Arc::new(resilient.clone());
            stack.uncached = Arc::clone(&stack.store);
            stack.resilient = Some(resilient);
        }
        if !config.cache.enabled {
            return Ok(stack);
        }
        let cache = config.cache.config.clone();
        let bus = match cache.consistency {
            Consistency::Invalidate | Consistency::Strict => Some(
                RedisPubSub::connect(&redis_config, config.cache.bus.clone())
                    .await
                    .map_err(StackError::Bus)?,
            ),
            _ => None,
        };
        match &stack.resilient {
            Some(resilient) => {
                let check: Arc<dyn Revalidate> = Arc::new(GuardedStamp {
                    redis,
                    resilient: resilient.clone(),
                });
                let builder = Cached::builder(resilient.clone())
                    .config(cache)
                    .validator(check);
                stack.set_cache(build_cache(builder, &clock, bus.as_ref())?);
            }
            None => {
                let check: Arc<dyn Revalidate> = Arc::new(redis.clone());
                let builder = Cached::builder(redis).config(cache).validator(check);
                stack.set_cache(build_cache(builder, &clock, bus.as_ref())?);
            }
        }
        stack.cache_publishes = bus.is_some();
        *stack.bus.get_mut() = bus;
        Ok(stack)
    }

    /// The backend alone, with its sweeper.
    fn unwrapped(
        store: Arc<dyn SessionStore>,
        backend: Backend,
        sweeper: Sweeper,
        config: &StackConfig,
    ) -> Stack {
        Stack {
            uncached: Arc::clone(&store),
            store,
            backend,
            sweeper: Some(sweeper),
            resilient: None,
            monitor: None,
            drain_timeout: config.resilience.drain_timeout,
            cache: None,
            bus: tokio::sync::Mutex::new(None),
            cache_publishes: false,
            bus_config: config.cache.bus.clone(),
            analytics: None,
            analytics_wanted: config.feed.enabled && config.feed.analytics,
        }
    }

    /// Puts `cached` in front of the store.
    fn set_cache<S: SessionStore>(&mut self, cached: Cached<S>) {
        self.store = Arc::new(cached.clone());
        self.cache = Some(Arc::new(cached) as Arc<dyn CacheControl>);
    }
}

/// Builds a cache on the stack's clock, with `bus` when there is one.
fn build_cache<S: SessionStore>(
    builder: CachedBuilder<S>,
    clock: &Arc<dyn Clock>,
    bus: Option<&RedisPubSub>,
) -> Result<Cached<S>, StackError> {
    let mut builder = builder.clock(Arc::clone(clock));
    if let Some(bus) = bus {
        builder = builder.bus(Arc::new(bus.clone()) as Arc<dyn NotifyBus>);
    }
    builder
        .build()
        .map_err(|e| InvalidSetting::from_validation("cache", e).into())
}

#[cfg(test)]
mod tests {
    use shoal_core::{Session, SessionId, Transport};

    use super::*;

    #[tokio::test]
    async fn memory_opens_with_the_cache_local() {
        let mut config = StackConfig::default();
        config.cache.enabled = true;
        let stack = Stack::open("MEMORY://", &config).await.unwrap();
        let cache = stack.cache().unwrap();
        assert_eq!(cache.config().consistency, Consistency::Local);
        assert!(stack.memory().is_some() && stack.redis().is_none());
        let id = SessionId::new("a").unwrap();
        stack
            .store()
            .create(Session::new(id.clone(), Transport::Http))
            .await
            .unwrap();
        assert!(stack.uncached_store().get(&id).await.unwrap().is_some());
        assert!(stack.bus().await.unwrap().is_none());
        stack.close().await.unwrap();
    }

    #[tokio::test]
    async fn bad_urls_and_settings_are_configuration_errors() {
        let config = StackConfig::default();
        for url in [
            "memory",
            "memory://x",
            "postgres://db",
            "redis+sentinel://s1:1",
        ] {
            let e = Stack::open(url, &config).await.unwrap_err();
            assert!(e.is_invalid_configuration(), "{url}: {e}");
        }
        let mut config = StackConfig::default();
        config.resilience.fallback = Some(shoal_core::FallbackMode::Memory);
        let e = Stack::open("memory://", &config).await.unwrap_err();
        assert!(e.to_string().contains("needs a Redis store"), "{e}");
        let mut config = StackConfig::default();
        config.cache.config.ttl = std::time::Duration::ZERO;
        match Stack::open("memory://", &config).await {
            Err(StackError::Setting(s)) => assert_eq!(s.key, "cache.ttl"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_fast_without_the_password() {
        let mut config = StackConfig::default();
        config.redis.connection.connect_timeout = std::time::Duration::from_millis(500);
        let e = Stack::open("redis://:hunter2@127.0.0.1:1", &config)
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StackError::Store(_)), "{msg}");
        assert!(
            msg.contains("127.0.0.1:1") && !msg.contains("hunter2"),
            "{msg}"
        );
    }
}
