//! [`RedisSettings`]: the `[redis]` section of a stack.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::MapAccess};

use super::{
    errors::InvalidSetting,
    section_serde::{DurationText, FieldsExcept, Section, deserialize_section},
};
use crate::RedisConfig;

/// How a stack on Redis connects and sweeps (`[redis]` in a config file): every setting of
/// [`RedisConfig`] but its URL — which is the argument of [`Stack::open`](super::Stack::open)
/// — and the interval of the background sweeper.
///
/// The keys are `RedisConfig`'s (`key_prefix`, `connect_timeout`, `response_timeout`,
/// `connections`, `tls_ca_file`, `expiry_grace`, `sweep_lease`, `reconnect_retries`,
/// `max_clock_skew`, `clock_resync`, `evicting_policy`, `wait_replicas`, `wait_timeout`,
/// `frame_epochs`) and `sweep_interval`; `url` is refused.
///
/// ```
/// use shoal_redis::stack::RedisSettings;
/// let s: RedisSettings = serde_json::from_str(
///     r#"{"key_prefix": "app", "connect_timeout": "750ms", "sweep_interval": "5s"}"#,
/// ).unwrap();
/// assert_eq!(s.connection.key_prefix, "app");
/// assert_eq!(s.sweep_interval, std::time::Duration::from_secs(5));
/// assert!(serde_json::from_str::<RedisSettings>(r#"{"url": "redis://h"}"#).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisSettings {
    /// The connection and store settings. Its `url` is not read from a config file and not
    /// used: [`RedisSettings::connection_for`] puts the store URL in.
    pub connection: RedisConfig,
    /// How often the background sweeper removes expired sessions (one instance at a time,
    /// under the sweep lease). At least 10 ms. Default 30 s.
    pub sweep_interval: Duration,
}

/// Every key of `[redis]`.
const KEYS: &[&str] = &[
    "key_prefix",
    "connect_timeout",
    "response_timeout",
    "connections",
    "tls_ca_file",
    "expiry_grace",
    "sweep_lease",
    "reconnect_retries",
    "max_clock_skew",
    "clock_resync",
    "evicting_policy",
    "wait_replicas",
    "wait_timeout",
    "frame_epochs",
    "sweep_interval",
];

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            connection: RedisConfig::default(),
            sweep_interval: Duration::from_secs(30),
        }
    }
}

impl RedisSettings {
    /// The backend's configuration for the store at `url`.
    pub fn connection_for(&self, url: &str) -> RedisConfig {
        RedisConfig {
            url: url.to_owned(),
            ..self.connection.clone()
        }
    }

    /// Checks every setting with the backend's own rules; the error names the key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.connection_for(&RedisConfig::default().url)
            .validate()
            .map_err(|e| InvalidSetting::from_validation("redis", e))?;
        shoal_core::setting::at_most_max("redis.sweep_interval", self.sweep_interval)
            .map_err(|e| InvalidSetting::from_validation("redis", e))?;
        if self.sweep_interval < Duration::from_millis(10) {
            return Err(InvalidSetting::new(
                "redis.sweep_interval",
                "redis.sweep_interval must be at least 10ms",
            ));
        }
        Ok(())
    }
}

impl Serialize for RedisSettings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            #[serde(flatten)]
            connection: FieldsExcept<'a, RedisConfig>,
            #[serde(with = "shoal_core::serde_util::duration")]
            sweep_interval: Duration,
        }
        View {
            connection: FieldsExcept {
                inner: &self.connection,
                skip: &["url"],
            },
            sweep_interval: self.sweep_interval,
        }
        .serialize(s)
    }
}

impl Section for RedisSettings {
    const EXPECTING: &'static str = "the [redis] settings";
    const KEYS: &'static [&'static str] = KEYS;
    type Library = RedisConfig;

    fn read_own<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "sweep_interval" => self.sweep_interval = map.next_value::<DurationText>()?.0,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn set_library(&mut self, library: RedisConfig) {
        self.connection = library;
    }
}

impl<'de> Deserialize<'de> for RedisSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_section(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_written_ones() {
        let mut s = RedisSettings::default();
        s.connection.tls_ca_file = Some("/ca.pem".into());
        let json = serde_json::to_value(&s).unwrap();
        let written: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut expected = KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(written, expected, "serde_json sorts its keys");
    }

    #[test]
    fn reads_back_what_it_writes_and_names_bad_keys() {
        let mut s = RedisSettings::default();
        s.connection.key_prefix = "app".into();
        s.sweep_interval = Duration::from_secs(5);
        let back: RedisSettings =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let e = serde_json::from_str::<RedisSettings>(r#"{"url": "redis://x"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `url`"), "{e}");
        s.connection.connections = 0;
        assert_eq!(s.validate().unwrap_err().key, "redis.connections");
        let s = RedisSettings {
            sweep_interval: Duration::from_millis(1),
            ..RedisSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().key, "redis.sweep_interval");
    }
}
