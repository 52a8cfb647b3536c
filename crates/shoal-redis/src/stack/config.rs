//! [`StackConfig`]: everything a [`Stack`](super::Stack) is opened with, and its
//! `[memory]` section.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_core::{FeedConfig, Limits};

use super::{
    cache_settings::CacheSettings, errors::InvalidSetting, redis_settings::RedisSettings,
    resilience_settings::ResilienceSettings,
};

/// The configuration of a [`Stack`](super::Stack): the sections of a Shoal config file that
/// are about the store (`[limits]`, `[memory]`, `[redis]`, `[resilience]`, `[cache]`), with
/// the same keys, values and defaults. Unknown keys are refused; durations are humantime
/// text (`"30s"`, `"1h 30m"`).
///
/// ```
/// use shoal_redis::stack::StackConfig;
/// let config: StackConfig = serde_json::from_str(
///     r#"{"limits": {"max_sessions": 1000}, "cache": {"enabled": true, "ttl": "2s"}}"#,
/// ).unwrap();
/// assert_eq!(config.limits.max_sessions, 1000);
/// assert!(config.cache.enabled);
/// assert!(config.resilience.fallback.is_none(), "off unless a fallback is set");
/// assert!(config.validate().is_ok());
/// assert!(serde_json::from_str::<StackConfig>(r#"{"limit": {}}"#).is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StackConfig {
    /// Limits every backend enforces.
    pub limits: Limits,
    /// The in-memory backend (also under a store the caller loaded, such as a file).
    pub memory: MemorySettings,
    /// The Redis backend.
    pub redis: RedisSettings,
    /// The resilience wrapper around a Redis store (off unless a fallback is set).
    pub resilience: ResilienceSettings,
    /// The hot-session cache (off unless enabled).
    pub cache: CacheSettings,
    /// The change feed (`[feed]`; on by default) of the memory or Redis store.
    pub feed: FeedConfig,
}

impl StackConfig {
    /// Checks every setting (also of the parts that are off); the error names the key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.limits
            .validate()
            .map_err(|e| InvalidSetting::from_validation("limits", e))?;
        self.memory.validate()?;
        self.feed
            .check()
            .map_err(|e| InvalidSetting::from_validation("feed", e))?;
        self.redis.validate()?;
        self.resilience.validate()?;
        let wait = &self.redis.connection;
        if self.resilience.fallback.is_some()
            && wait.wait_replicas > 0
            && wait.wait_timeout >= self.resilience.config.op_timeout
        {
            return Err(InvalidSetting::new(
                "redis.wait_timeout",
                format!(
                    "redis.wait_timeout ({:?}) must be shorter than resilience.op_timeout ({:?}): \
                     a write waiting for its replicas would time out first",
                    wait.wait_timeout, self.resilience.config.op_timeout
                ),
            ));
        }
        self.cache.validate()
    }
}

/// The in-memory backend of a stack (`[memory]` in a config file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemorySettings {
    /// How often the background sweeper removes expired sessions. At least 10 ms.
    /// Default 30 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub sweep_interval: Duration,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            sweep_interval: Duration::from_secs(30),
        }
    }
}

impl MemorySettings {
    /// Checks the sweep interval (10 ms to 10 years); the error names the key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        shoal_core::setting::at_most_max("memory.sweep_interval", self.sweep_interval)
            .map_err(|e| InvalidSetting::from_validation("memory", e))?;
        if self.sweep_interval < Duration::from_millis(10) {
            return Err(InvalidSetting::new(
                "memory.sweep_interval",
                "memory.sweep_interval must be at least 10ms",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = StackConfig::default();
        assert!(c.validate().is_ok());
        let back: StackConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn the_first_bad_setting_is_named() {
        let mut c = StackConfig::default();
        c.limits.max_sessions = 0;
        assert_eq!(c.validate().unwrap_err().key, "limits.max_sessions");
        let mut c = StackConfig::default();
        c.memory.sweep_interval = Duration::from_millis(1);
        assert_eq!(c.validate().unwrap_err().key, "memory.sweep_interval");
        let e = serde_json::from_str::<StackConfig>(r#"{"memory": {"sweep_interval": "often"}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("\"often\" is not a duration"), "{e}");
    }

    /// A configuration built in code gets the bound a file gets: every duration setting past
    /// 10 years is refused, naming its key (timers would overflow on it).
    #[test]
    fn every_duration_set_in_code_is_bounded() {
        type Set = fn(&mut StackConfig);
        let huge = Duration::MAX;
        let cases: &[(&str, Set)] = &[
            ("memory.sweep_interval", |c| {
                c.memory.sweep_interval = Duration::MAX
            }),
            ("redis.sweep_interval", |c| {
                c.redis.sweep_interval = Duration::MAX
            }),
            ("redis.connect_timeout", |c| {
                c.redis.connection.connect_timeout = Duration::MAX
            }),
            ("redis.response_timeout", |c| {
                c.redis.connection.response_timeout = Duration::MAX
            }),
            ("redis.expiry_grace", |c| {
                c.redis.connection.expiry_grace = Duration::MAX
            }),
            ("redis.sweep_lease", |c| {
                c.redis.connection.sweep_lease = Duration::MAX
            }),
            ("resilience.drain_timeout", |c| {
                c.resilience.drain_timeout = Duration::MAX
            }),
            ("resilience.op_timeout", |c| {
                c.resilience.config.op_timeout = Duration::MAX
            }),
            ("resilience.bulk_timeout", |c| {
                c.resilience.config.bulk_timeout = Duration::MAX
            }),
            ("resilience.retry.max_delay", |c| {
                c.resilience.config.retry.max_delay = Duration::MAX
            }),
            ("resilience.breaker.window", |c| {
                c.resilience.config.breaker.window = Duration::MAX
            }),
            ("resilience.breaker.cooldown", |c| {
                c.resilience.config.breaker.cooldown = Duration::MAX
            }),
            ("resilience.health.interval", |c| {
                c.resilience.config.health.interval = Duration::MAX
            }),
            ("resilience.health.timeout", |c| {
                c.resilience.config.health.timeout = Duration::MAX
            }),
            ("cache.ttl", |c| c.cache.config.ttl = Duration::MAX),
            ("cache.touch_interval", |c| {
                c.cache.config.touch_interval = Duration::MAX
            }),
            ("cache.touch_margin", |c| {
                c.cache.config.touch_margin = Duration::MAX
            }),
            ("cache.flush_interval", |c| {
                c.cache.config.flush_interval = Duration::MAX
            }),
            ("cache.shutdown_timeout", |c| {
                c.cache.config.shutdown_timeout = Duration::MAX
            }),
            ("cache.bus.ping_interval", |c| {
                c.cache.bus.ping_interval = Duration::MAX
            }),
            ("cache.bus.reconnect_max", |c| {
                c.cache.bus.reconnect_max = Duration::MAX
            }),
        ];
        assert!(huge > shoal_core::setting::MAX_DURATION);
        for (key, set) in cases {
            let mut c = StackConfig::default();
            set(&mut c);
            let e = c.validate().expect_err(key);
            assert_eq!(&e.key, key, "{e:?}");
            assert!(e.reason.contains("at most 10 years"), "{e:?}");
        }
    }
}
