//! [`ResilienceSettings`]: the `[resilience]` section of a stack.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::MapAccess};
use shoal_core::resilient::{FallbackMode, ResilienceConfig};

use super::{
    errors::InvalidSetting,
    section_serde::{DurationText, FieldsExcept, Section, deserialize_section},
};

/// Whether and how a stack on Redis wraps the store in
/// [`Resilient`](shoal_core::Resilient) (`[resilience]` in a config file): deadlines,
/// retries, a circuit breaker and a memory fallback with an outage journal.
///
/// Off while `fallback` is absent (`None`); any mode — `none` (fail fast while the breaker
/// is open), `memory` or `read-only` — turns it on. The other keys are those of
/// [`ResilienceConfig`] (`op_timeout`, `bulk_timeout`, `[retry]`, `[breaker]`, `[health]`,
/// `[journal]`), plus `drain_timeout`.
///
/// ```
/// use shoal_core::resilient::FallbackMode;
/// use shoal_redis::stack::ResilienceSettings;
/// let s: ResilienceSettings = serde_json::from_str(
///     r#"{"fallback": "read-only", "op_timeout": "250ms", "breaker": {"cooldown": "5s"}}"#,
/// ).unwrap();
/// let config = s.wrapper_config().unwrap();
/// assert_eq!(config.fallback, FallbackMode::ReadOnly);
/// assert_eq!(config.breaker.cooldown, std::time::Duration::from_secs(5));
/// assert!(ResilienceSettings::default().wrapper_config().is_none());
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ResilienceSettings {
    /// The fallback mode; `None` (the default): no wrapper.
    pub fallback: Option<FallbackMode>,
    /// The wrapper's settings. Its own `fallback` is not read from a config file: `fallback`
    /// above replaces it.
    pub config: ResilienceConfig,
    /// How long [`Stack::close`](super::Stack::close) waits for journaled writes to be
    /// drained into Redis. Default 10 s.
    pub drain_timeout: Duration,
}

/// Every key of `[resilience]`.
const KEYS: &[&str] = &[
    "fallback",
    "op_timeout",
    "bulk_timeout",
    "retry",
    "breaker",
    "health",
    "journal",
    "drain_timeout",
];

impl Default for ResilienceSettings {
    fn default() -> Self {
        ResilienceSettings {
            fallback: None,
            config: ResilienceConfig::default(),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl ResilienceSettings {
    /// The wrapper's configuration, when the wrapper is on.
    pub fn wrapper_config(&self) -> Option<ResilienceConfig> {
        let mode = self.fallback?;
        Some(self.config.clone().with_fallback(mode))
    }

    /// Checks every setting with the wrapper's own rules (also while it is off); the error
    /// names the key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.config
            .validate()
            .map_err(|e| InvalidSetting::from_validation("resilience", e))?;
        shoal_core::setting::at_most_max("resilience.drain_timeout", self.drain_timeout)
            .map_err(|e| InvalidSetting::from_validation("resilience", e))?;
        if self.drain_timeout.is_zero() {
            return Err(InvalidSetting::new(
                "resilience.drain_timeout",
                "resilience.drain_timeout must be > 0",
            ));
        }
        Ok(())
    }
}

impl Serialize for ResilienceSettings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            fallback: Option<FallbackMode>,
            #[serde(flatten)]
            config: FieldsExcept<'a, ResilienceConfig>,
            #[serde(with = "shoal_core::serde_util::duration")]
            drain_timeout: Duration,
        }
        View {
            fallback: self.fallback,
            config: FieldsExcept {
                inner: &self.config,
                skip: &["fallback"],
            },
            drain_timeout: self.drain_timeout,
        }
        .serialize(s)
    }
}

impl Section for ResilienceSettings {
    const EXPECTING: &'static str = "the [resilience] settings";
    const KEYS: &'static [&'static str] = KEYS;
    type Library = ResilienceConfig;

    fn read_own<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "fallback" => self.fallback = Some(map.next_value()?),
            "drain_timeout" => self.drain_timeout = map.next_value::<DurationText>()?.0,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn set_library(&mut self, library: ResilienceConfig) {
        self.config = library;
    }
}

impl<'de> Deserialize<'de> for ResilienceSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_section(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_written_ones() {
        let s = ResilienceSettings {
            fallback: Some(FallbackMode::None),
            ..ResilienceSettings::default()
        };
        let json = serde_json::to_value(&s).unwrap();
        let written: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut expected = KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(written, expected);
        let off = serde_json::to_value(ResilienceSettings::default()).unwrap();
        assert!(off.get("fallback").is_none(), "{off}");
    }

    #[test]
    fn fallback_none_is_on_and_absent_is_off() {
        let s: ResilienceSettings = serde_json::from_str(r#"{"fallback": "none"}"#).unwrap();
        assert_eq!(
            s.wrapper_config().map(|c| c.fallback),
            Some(FallbackMode::None)
        );
        let s: ResilienceSettings = serde_json::from_str(r#"{"drain_timeout": "3s"}"#).unwrap();
        assert!(s.wrapper_config().is_none());
        assert_eq!(s.drain_timeout, Duration::from_secs(3));
        let back: ResilienceSettings =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn bad_settings_name_their_key() {
        let e = serde_json::from_str::<ResilienceSettings>(r#"{"fallbak": "none"}"#).unwrap_err();
        assert!(e.to_string().contains("`fallbak`"), "{e}");
        let mut s = ResilienceSettings::default();
        s.config.breaker.failure_ratio = 1.5;
        assert_eq!(
            s.validate().unwrap_err().key,
            "resilience.breaker.failure_ratio"
        );
        let s = ResilienceSettings {
            drain_timeout: Duration::ZERO,
            ..ResilienceSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().key, "resilience.drain_timeout");
    }
}
