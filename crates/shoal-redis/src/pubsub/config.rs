//! How a bus keeps its subscription alive and batches what it publishes.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_core::{Error, Result};

/// How the bus keeps its subscription alive (`[cache.bus]` in a config file).
///
/// Deserializes with unknown keys refused and durations as humantime strings.
///
/// ```
/// use shoal_redis::pubsub::BusConfig;
/// let c: BusConfig = serde_json::from_str(r#"{"ping_interval": "500ms"}"#).unwrap();
/// assert_eq!(c.ping_interval, std::time::Duration::from_millis(500));
/// assert!(c.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BusConfig {
    /// How often the subscription is pinged (on a Cluster: every master); no answer within
    /// the store's `response_timeout` counts as a lost connection. Default 1 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub ping_interval: Duration,
    /// First delay before reconnecting (doubles up to `reconnect_max`). Default 50 ms.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub reconnect_min: Duration,
    /// Longest delay between reconnection attempts. Default 2 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub reconnect_max: Duration,
    /// Most session ids in one invalidation message. Default 256.
    pub max_ids_per_message: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            ping_interval: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            max_ids_per_message: 256,
        }
    }
}

impl BusConfig {
    /// Checks that intervals are non-zero and the batch size is at least 1. The message of a
    /// bad setting starts with its key (`cache.bus.ping_interval must be …`).
    pub fn validate(&self) -> Result<()> {
        shoal_core::setting::all_at_most_max([
            ("cache.bus.ping_interval", self.ping_interval),
            ("cache.bus.reconnect_min", self.reconnect_min),
            ("cache.bus.reconnect_max", self.reconnect_max),
        ])?;
        if self.ping_interval.is_zero() {
            return Err(Error::invalid(
                "cache.bus.ping_interval must be greater than zero",
            ));
        }
        if self.reconnect_min.is_zero() {
            return Err(Error::invalid(
                "cache.bus.reconnect_min must be greater than zero",
            ));
        }
        if self.reconnect_max < self.reconnect_min {
            return Err(Error::invalid(
                "cache.bus.reconnect_max must be at least cache.bus.reconnect_min",
            ));
        }
        if self.max_ids_per_message == 0 {
            return Err(Error::invalid(
                "cache.bus.max_ids_per_message must be at least 1",
            ));
        }
        Ok(())
    }

    /// The delay before reconnection attempt `attempt` (0-based).
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        self.reconnect_min
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.reconnect_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_back_off() {
        let c = BusConfig::default();
        c.validate().unwrap();
        assert_eq!(c.backoff(0), Duration::from_millis(50));
        assert_eq!(c.backoff(3), Duration::from_millis(400));
        assert_eq!(c.backoff(30), Duration::from_secs(2));
        assert!(serde_json::from_str::<BusConfig>(r#"{"nope": 1}"#).is_err());
        let mut bad = c.clone();
        bad.max_ids_per_message = 0;
        assert!(bad.validate().is_err());
    }
}
