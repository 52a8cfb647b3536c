//! The tested production composition of Shoal's stores, as one value: [`Stack`].
//!
//! Outermost first:
//!
//! 1. **the cache** ([`Cached`](shoal_core::Cached), `[cache]`, off unless `enabled`): hot
//!    sessions in memory, kept consistent across instances by a Redis pub/sub bus
//!    ([`RedisPubSub`](crate::RedisPubSub), `consistency = invalidate`) or a version check
//!    per hit (`strict`; behind the breaker, the check itself is guarded by it);
//! 2. **the resilience wrapper** ([`Resilient`](shoal_core::Resilient), `[resilience]`, Redis
//!    only, off unless a `fallback` is set): deadlines, retries, a circuit breaker, a memory
//!    fallback whose outage journal a health monitor drains into Redis when it is back;
//! 3. **the backend**: [`RedisStore`](crate::RedisStore) for every Redis URL form (standalone,
//!    TLS, Sentinel, Cluster), or a [`MemoryStore`](shoal_core::MemoryStore) for `memory://`
//!    (or one the caller loaded, [`Stack::over_memory`]), with its background expiry sweeper.
//!
//! One pub/sub connection serves the whole instance: the cache's invalidations and the
//! proxy's stream wake-ups ([`Stack::notify_bus`]). [`Stack::close`] writes what the stack
//! deferred (cache write-behind, the outage journal, pending bus messages) and says exactly
//! what could not be written.
//!
//! [`StackConfig`] holds the store's sections of a Shoal config file — `[limits]`,
//! `[memory]`, `[redis]`, `[resilience]`, `[cache]` — with the same keys, values and defaults
//! as the `shoal` command, and checks them with [`StackConfig::validate`], which names the key
//! of a bad value.
//!
//! ```no_run
//! use shoal_core::{Session, SessionId, Transport};
//! use shoal_redis::stack::{Stack, StackConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config: StackConfig = serde_json::from_str(
//!     r#"{"resilience": {"fallback": "memory"},
//!         "cache": {"enabled": true, "consistency": "invalidate"}}"#,
//! )?;
//! let stack = Stack::open("redis://127.0.0.1:6379", &config).await?;
//! let store = stack.store();
//! store
//!     .create(Session::new(SessionId::generate(), Transport::StreamableHttp))
//!     .await?;
//! stack.close().await?;
//! # Ok(()) }
//! ```

mod cache_control;
mod cache_settings;
mod close;
mod config;
mod errors;
mod guarded_stamp;
mod handle;
mod open;
mod redis_settings;
mod resilience_settings;
mod section_serde;
mod sweeper;

pub use cache_control::{CacheControl, CacheFuture};
pub use cache_settings::CacheSettings;
pub use config::{MemorySettings, StackConfig};
pub use errors::{CloseError, InvalidSetting, StackError, UndrainedJournal};
pub use handle::Stack;
pub use open::REDIS_SCHEMES;
pub use redis_settings::RedisSettings;
pub use resilience_settings::ResilienceSettings;

/// A Redis store behind the resilience wrapper, with a memory fallback.
pub type ResilientRedis = shoal_core::Resilient<crate::RedisStore, shoal_core::MemoryStore>;
