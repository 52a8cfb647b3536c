//! [`CacheSettings`]: the `[cache]` section of a stack.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::MapAccess};
use shoal_core::cached::CacheConfig;

use super::{
    errors::InvalidSetting,
    section_serde::{Section, deserialize_section},
};
use crate::BusConfig;

/// Whether and how a stack caches hot sessions in front of the store (`[cache]` in a config
/// file): [`Cached`](shoal_core::Cached) with the keys of [`CacheConfig`], plus `enabled`
/// and the pub/sub bus (`[cache.bus]`, a [`BusConfig`]) that carries invalidations between
/// instances on Redis.
///
/// ```
/// use shoal_core::cached::Consistency;
/// use shoal_redis::stack::CacheSettings;
/// let s: CacheSettings = serde_json::from_str(
///     r#"{"enabled": true, "ttl": "2s", "consistency": "strict",
///         "bus": {"ping_interval": "300ms"}}"#,
/// ).unwrap();
/// assert!(s.enabled);
/// assert_eq!(s.config.consistency, Consistency::Strict);
/// assert_eq!(s.bus.ping_interval, std::time::Duration::from_millis(300));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheSettings {
    /// Whether the cache is on. Default false.
    pub enabled: bool,
    /// The cache. Its `consistency` `invalidate` (the default) becomes `local` on a
    /// `memory://` store, which no other instance writes.
    pub config: CacheConfig,
    /// The bus between instances (Redis stores; `consistency` `invalidate` or `strict`, and
    /// the proxy's wake-ups).
    pub bus: BusConfig,
}

/// Every key of `[cache]`.
const KEYS: &[&str] = &[
    "enabled",
    "max_entries",
    "max_bytes",
    "ttl",
    "consistency",
    "write_mode",
    "touch_interval",
    "touch_margin",
    "flush_interval",
    "max_queued_writes",
    "tail_frames",
    "tail_bytes",
    "shutdown_timeout",
    "bus",
];

impl CacheSettings {
    /// Checks every setting with the cache's and the bus's own rules (also while the cache
    /// is off); the error names the key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.config
            .validate()
            .map_err(|e| InvalidSetting::from_validation("cache", e))?;
        self.bus
            .validate()
            .map_err(|e| InvalidSetting::from_validation("cache.bus", e))
    }
}

impl Serialize for CacheSettings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            enabled: bool,
            #[serde(flatten)]
            config: &'a CacheConfig,
            bus: &'a BusConfig,
        }
        View {
            enabled: self.enabled,
            config: &self.config,
            bus: &self.bus,
        }
        .serialize(s)
    }
}

impl Section for CacheSettings {
    const EXPECTING: &'static str = "the [cache] settings";
    const KEYS: &'static [&'static str] = KEYS;
    type Library = CacheConfig;

    fn read_own<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "enabled" => self.enabled = map.next_value()?,
            "bus" => self.bus = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn set_library(&mut self, library: CacheConfig) {
        self.config = library;
    }
}

impl<'de> Deserialize<'de> for CacheSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_section(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_written_ones() {
        let json = serde_json::to_value(CacheSettings::default()).unwrap();
        let written: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut expected = KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(written, expected);
    }

    #[test]
    fn reads_back_what_it_writes_and_names_bad_keys() {
        let mut s = CacheSettings {
            enabled: true,
            ..CacheSettings::default()
        };
        s.bus.max_ids_per_message = 16;
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            text.starts_with(r#"{"enabled":true,"max_entries":"#),
            "{text}"
        );
        let back: CacheSettings = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        let e = serde_json::from_str::<CacheSettings>(r#"{"ttl_ms": 5}"#).unwrap_err();
        assert!(e.to_string().contains("`ttl_ms`"), "{e}");
        let e = serde_json::from_str::<CacheSettings>(r#"{"bus": {"ping": "1s"}}"#).unwrap_err();
        assert!(e.to_string().contains("ping_interval"), "{e}");
        s.bus.max_ids_per_message = 0;
        assert_eq!(
            s.validate().unwrap_err().key,
            "cache.bus.max_ids_per_message"
        );
        let mut s = CacheSettings::default();
        s.config.ttl = std::time::Duration::ZERO;
        assert_eq!(s.validate().unwrap_err().key, "cache.ttl");
    }
}
