//! [`CacheConfig`]: how a [`Cached`](super::Cached) store caches, stays consistent and writes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How a cache stays consistent with other instances sharing the same backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Consistency {
    /// No cross-instance coordination: only for a backend no other instance writes (the memory
    /// store, or a single proxy on Redis). Entries still honour their own `expires_at` and the
    /// entry `ttl`.
    Local,
    /// Other instances announce their writes on an [`NotifyBus`](crate::notify::NotifyBus)
    /// (Redis pub/sub in `shoal-redis`); a hit is dropped as soon as the announcement arrives.
    /// While the bus is down the cache is empty and off. Needs a bus. The default.
    #[default]
    Invalidate,
    /// Every hit is checked against the backend with a cheap version read (a
    /// [`Revalidate`](super::Revalidate), e.g. one `HMGET` on Redis) before it is served; the
    /// cache then saves decoding, not the round trip. Works with or without a bus.
    Strict,
}

impl Consistency {
    /// `local`, `invalidate` or `strict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Local => "local",
            Consistency::Invalidate => "invalidate",
            Consistency::Strict => "strict",
        }
    }
}

impl std::str::FromStr for Consistency {
    type Err = String;

    /// `local`, `invalidate` or `strict`; the error names the accepted values.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [
            Consistency::Local,
            Consistency::Invalidate,
            Consistency::Strict,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| format!("{s:?} is not a consistency (local, invalidate, strict)"))
    }
}

/// When writes reach the backend, and whether they update the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WriteMode {
    /// Every write goes to the backend before it is acknowledged, and the cache is updated
    /// with the result (creates, updates, appends, touches). The default.
    #[default]
    WriteThrough,
    /// `update`s are acknowledged once checked against and applied to the cached session
    /// and queued; a background task writes them in order (every `flush_interval`, when the
    /// queue is half full, and on [`Cached::shutdown`](super::Cached::shutdown)). Before any
    /// other backend call on a session its queued updates are written, and all of them before
    /// `list`, `count`, `get_many` and `sweep_expired`. Every other write is synchronous;
    /// touches are coalesced as in every mode (`touch_interval`). An acknowledged update is
    /// lost if the process dies before the flush, or refused at flush time (counted in
    /// `writes_dropped`) if another instance changed the session meanwhile.
    WriteBehind,
    /// Only reads fill the cache: every write goes to the backend and drops the cached entry,
    /// which the next read loads again.
    ReadThrough,
}

impl WriteMode {
    /// `write_through`, `write_behind` or `read_through`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMode::WriteThrough => "write_through",
            WriteMode::WriteBehind => "write_behind",
            WriteMode::ReadThrough => "read_through",
        }
    }
}

impl std::str::FromStr for WriteMode {
    type Err = String;

    /// `write_through`, `write_behind` or `read_through`; the error names the accepted values.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [
            WriteMode::WriteThrough,
            WriteMode::WriteBehind,
            WriteMode::ReadThrough,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
        .ok_or_else(|| {
            format!("{s:?} is not a write mode (write_through, write_behind, read_through)")
        })
    }
}

/// The configuration of a [`Cached`](super::Cached) store (`[cache]` in a config file).
///
/// Deserializes with unknown keys refused and durations as humantime strings (`"5s"`,
/// `"250ms"`, `"1m 30s"`; `"0s"` switches a feature off where that is allowed).
///
/// ```
/// use shoal_core::cached::{CacheConfig, Consistency, WriteMode};
/// use std::time::Duration;
///
/// let c: CacheConfig = serde_json::from_str(r#"{
///     "max_entries": 50000,
///     "ttl": "2s",
///     "consistency": "strict",
///     "write_mode": "write_behind",
///     "touch_interval": "500ms"
/// }"#).unwrap();
/// assert_eq!(c.ttl, Duration::from_secs(2));
/// assert_eq!(c.consistency, Consistency::Strict);
/// assert_eq!(c.write_mode, WriteMode::WriteBehind);
/// assert!(c.validate().is_ok());
/// assert!(serde_json::from_str::<CacheConfig>(r#"{"bogus": 1}"#).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Most sessions cached. Default 100,000.
    pub max_entries: u64,
    /// Most bytes cached (sessions and frame tails, estimated). Every entry weighs at least
    /// `max_bytes / max_entries`, so both bounds hold. Default 256 MiB.
    pub max_bytes: u64,
    /// Per-entry time to live, on the store's clock: an entry older than this is loaded
    /// again. It bounds staleness when an invalidation is lost or late (bus down, publish
    /// failed). Default 5 s.
    #[serde(with = "crate::serde_util::duration")]
    pub ttl: Duration,
    /// Cross-instance consistency. Default `invalidate`.
    pub consistency: Consistency,
    /// Write strategy. Default `write_through`.
    pub write_mode: WriteMode,
    /// Touch coalescing: a session's `last_activity` is written to the backend at most once
    /// per this interval; touches in between are answered from the cache, and the last one
    /// is written when the interval has passed. `"0s"` writes every touch. Default 1 s.
    #[serde(with = "crate::serde_util::duration")]
    pub touch_interval: Duration,
    /// A touch is written at once, whatever the interval, when the backend's expiry of the
    /// session is closer than this, so a session in use never lapses. Default 30 s.
    #[serde(with = "crate::serde_util::duration")]
    pub touch_margin: Duration,
    /// Write-behind: how often queued updates are written. Default 100 ms.
    #[serde(with = "crate::serde_util::duration")]
    pub flush_interval: Duration,
    /// Write-behind: most queued updates; beyond it writes go through synchronously.
    /// Default 10,000.
    pub max_queued_writes: usize,
    /// Frames kept per cached session for replay (the newest ones; `frames` pages inside the
    /// tail are served from memory). 0 switches the tail cache off. Default 64.
    pub tail_frames: usize,
    /// Most frame bytes kept per session tail. Default 256 KiB.
    pub tail_bytes: usize,
    /// How long [`Cached::shutdown`](super::Cached::shutdown) keeps retrying queued writes
    /// while the backend fails. Default 10 s.
    #[serde(with = "crate::serde_util::duration")]
    pub shutdown_timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 100_000,
            max_bytes: 256 * 1024 * 1024,
            ttl: Duration::from_secs(5),
            consistency: Consistency::Invalidate,
            write_mode: WriteMode::WriteThrough,
            touch_interval: Duration::from_secs(1),
            touch_margin: Duration::from_secs(30),
            flush_interval: Duration::from_millis(100),
            max_queued_writes: 10_000,
            tail_frames: 64,
            tail_bytes: 256 * 1024,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl CacheConfig {
    /// The defaults with `consistency = local`: for a backend no other instance writes.
    pub fn local() -> Self {
        CacheConfig {
            consistency: Consistency::Local,
            ..CacheConfig::default()
        }
    }

    /// Sets the consistency mode.
    pub fn with_consistency(mut self, c: Consistency) -> Self {
        self.consistency = c;
        self
    }

    /// Sets the write mode.
    pub fn with_write_mode(mut self, m: WriteMode) -> Self {
        self.write_mode = m;
        self
    }

    /// Sets the entry time to live.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the touch coalescing interval (zero: every touch is written).
    pub fn with_touch_interval(mut self, d: Duration) -> Self {
        self.touch_interval = d;
        self
    }

    /// Sets the touch safety margin.
    pub fn with_touch_margin(mut self, d: Duration) -> Self {
        self.touch_margin = d;
        self
    }

    /// Sets the write-behind flush interval.
    pub fn with_flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }

    /// Sets the bound on queued write-behind updates.
    pub fn with_max_queued_writes(mut self, n: usize) -> Self {
        self.max_queued_writes = n;
        self
    }

    /// Sets the entry bound.
    pub fn with_max_entries(mut self, n: u64) -> Self {
        self.max_entries = n;
        self
    }

    /// Sets the byte bound.
    pub fn with_max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n;
        self
    }

    /// Sets the frame tail size (0: off).
    pub fn with_tail_frames(mut self, n: usize) -> Self {
        self.tail_frames = n;
        self
    }

    /// Checks the bounds: entries, bytes, ttl, intervals and the queue must be non-zero
    /// where zero makes no sense. The message of a bad setting starts with its key
    /// (`cache.ttl must be …`).
    pub fn validate(&self) -> Result<()> {
        crate::setting::all_at_most_max([
            ("cache.ttl", self.ttl),
            ("cache.touch_interval", self.touch_interval),
            ("cache.touch_margin", self.touch_margin),
            ("cache.flush_interval", self.flush_interval),
            ("cache.shutdown_timeout", self.shutdown_timeout),
        ])?;
        if self.max_entries == 0 {
            return Err(Error::invalid("cache.max_entries must be at least 1"));
        }
        if self.max_bytes < 1024 {
            return Err(Error::invalid(format!(
                "cache.max_bytes must be at least 1024, got {}",
                self.max_bytes
            )));
        }
        if self.ttl.is_zero() {
            return Err(Error::invalid("cache.ttl must be greater than zero"));
        }
        if self.flush_interval.is_zero() {
            return Err(Error::invalid(
                "cache.flush_interval must be greater than zero",
            ));
        }
        if self.max_queued_writes == 0 {
            return Err(Error::invalid("cache.max_queued_writes must be at least 1"));
        }
        if self.shutdown_timeout.is_zero() {
            return Err(Error::invalid(
                "cache.shutdown_timeout must be greater than zero",
            ));
        }
        Ok(())
    }

    /// The least weight of an entry, so that `max_entries` holds under the byte bound.
    pub(crate) fn min_weight(&self) -> u32 {
        u32::try_from(self.max_bytes / self.max_entries.max(1))
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_from_their_names() {
        for c in [
            Consistency::Local,
            Consistency::Invalidate,
            Consistency::Strict,
        ] {
            assert_eq!(c.as_str().parse::<Consistency>(), Ok(c));
        }
        for m in [
            WriteMode::WriteThrough,
            WriteMode::WriteBehind,
            WriteMode::ReadThrough,
        ] {
            assert_eq!(m.as_str().parse::<WriteMode>(), Ok(m));
        }
        assert!(
            "Strict"
                .parse::<Consistency>()
                .unwrap_err()
                .contains("local, invalidate")
        );
        assert!("behind".parse::<WriteMode>().is_err());
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = CacheConfig::default();
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: CacheConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert!(json.contains("\"ttl\":\"5s\""), "{json}");
        assert!(json.contains("\"write_mode\":\"write_through\""), "{json}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(serde_json::from_str::<CacheConfig>(r#"{"ttl_ms": 5}"#).is_err());
        assert!(serde_json::from_str::<CacheConfig>(r#"{"ttl": "soon"}"#).is_err());
        assert!(serde_json::from_str::<CacheConfig>(r#"{"write_mode": "later"}"#).is_err());
        let zero: CacheConfig = serde_json::from_str(r#"{"ttl": "0s"}"#).unwrap();
        assert!(zero.validate().is_err());
        let off: CacheConfig = serde_json::from_str(r#"{"touch_interval": "0s"}"#).unwrap();
        assert!(off.validate().is_ok());
        assert!(
            CacheConfig::default()
                .with_max_entries(0)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn min_weight_keeps_the_entry_bound() {
        let c = CacheConfig::default()
            .with_max_entries(10)
            .with_max_bytes(10_000);
        assert_eq!(c.min_weight(), 1_000);
    }
}
