//! Serde helpers shared by the configuration types of every Shoal crate.
//!
//! [`duration`] reads and writes a [`Duration`](std::time::Duration) as humantime text, the
//! form config files use:
//!
//! ```
//! use std::time::Duration;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Config {
//!     #[serde(with = "shoal_core::serde_util::duration")]
//!     timeout: Duration,
//! }
//!
//! let c: Config = serde_json::from_str(r#"{ "timeout": "1m 30s" }"#).unwrap();
//! assert_eq!(c.timeout, Duration::from_secs(90));
//! assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"timeout":"1m 30s"}"#);
//! ```

/// A [`Duration`](std::time::Duration) as humantime text: `#[serde(with =
/// "shoal_core::serde_util::duration")]`.
///
/// Writes [`humantime::format_duration`]'s form (`"1s"`, `"1m 30s"`, `"500ms"`); reads
/// whatever [`humantime::parse_duration`] accepts (`"90s"`, `"15m"`, `"1h 30m"`, `"7days"`). A
/// value it cannot read, or one longer than [`MAX`](duration::MAX) (no setting means more;
/// longer ones would overflow the clock arithmetic of timers and deadlines), is an error naming
/// the value and the expected form.
pub mod duration {
    use std::time::Duration;

    /// The longest duration any setting accepts: 10 years.
    pub const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `d` as humantime text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads humantime text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        let parsed = humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration ({e}); write it like \"30s\", \"15m\" or \"1h 30m\""
            ))
        })?;
        if parsed > MAX {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is longer than 10 years, the longest duration a setting takes"
            )));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "super::duration")]
        d: Duration,
    }

    fn read(text: &str) -> Result<Duration, serde_json::Error> {
        serde_json::from_str::<Holder>(&format!(r#"{{"d":{text}}}"#)).map(|h| h.d)
    }

    #[test]
    fn writes_humantime_text() {
        let cases = [
            (Duration::from_secs(1), "1s"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::ZERO, "0s"),
        ];
        for (d, text) in cases {
            let json = serde_json::to_string(&Holder { d }).unwrap_or_default();
            assert_eq!(json, format!(r#"{{"d":"{text}"}}"#));
        }
    }

    #[test]
    fn absurd_durations_are_refused_with_a_reason() {
        for text in [r#""1000000y""#, r#""11y""#, r#""18446744073709551615s""#] {
            let e = read(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                e.contains("longer than 10 years") || e.contains("not a duration"),
                "{text}: {e}"
            );
        }
        assert_eq!(read(r#""9y""#).ok().map(|d| d > Duration::ZERO), Some(true));
    }

    #[test]
    fn reads_what_humantime_reads_and_round_trips() {
        assert_eq!(read(r#""90s""#).ok(), Some(Duration::from_secs(90)));
        assert_eq!(read(r#""1h 30m""#).ok(), Some(Duration::from_secs(5400)));
        assert_eq!(
            read(r#""7days""#).ok(),
            Some(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(read(r#""250ms""#).ok(), Some(Duration::from_millis(250)));
        let d = Duration::from_millis(93_250);
        let json = serde_json::to_string(&Holder { d }).unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<Holder>(&json).ok(),
            Some(Holder { d })
        );
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        let e = read(r#""soon""#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(r#""soon" is not a duration"#), "{e}");
        assert!(read("5").is_err(), "a bare number is not humantime text");
    }
}
