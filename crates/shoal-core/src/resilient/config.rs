//! [`ResilienceConfig`]: how [`Resilient`](super::Resilient) bounds, retries, breaks and falls
//! back. Every type here is `serde`-deserializable with `deny_unknown_fields`; durations are
//! humantime strings (`"500ms"`, `"2s"`, `"1m 30s"`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What the wrapper does with a call while the circuit breaker keeps the primary out.
///
/// In configuration files: `"none"`, `"memory"` or `"read-only"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FallbackMode {
    /// Fail fast: every call is [`Error::Unavailable`] while the breaker is open.
    None,
    /// Writes go to the fallback store and to a bounded journal that is drained into the
    /// primary when it recovers; reads are served for sessions the fallback holds.
    #[default]
    Memory,
    /// Reads are served from the fallback store when it holds the session (e.g. a replica);
    /// every write is [`Error::Unavailable`].
    ReadOnly,
}

impl FallbackMode {
    /// `none`, `memory` or `read-only`.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackMode::None => "none",
            FallbackMode::Memory => "memory",
            FallbackMode::ReadOnly => "read-only",
        }
    }
}

impl std::fmt::Display for FallbackMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FallbackMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(FallbackMode::None),
            "memory" => Ok(FallbackMode::Memory),
            "read-only" | "readonly" | "read_only" => Ok(FallbackMode::ReadOnly),
            other => Err(Error::invalid(format!(
                "unknown fallback mode {other:?}; expected one of: none, memory, read-only"
            ))),
        }
    }
}

/// Everything [`Resilient`](super::Resilient) can be told. The defaults suit a Redis primary on
/// a local network.
///
/// ```
/// use shoal_core::resilient::{FallbackMode, ResilienceConfig};
///
/// let config: ResilienceConfig = serde_json::from_str(
///     r#"{"fallback": "read-only", "op_timeout": "250ms", "breaker": {"cooldown": "5s"}}"#,
/// ).unwrap();
/// assert_eq!(config.fallback, FallbackMode::ReadOnly);
/// assert_eq!(config.op_timeout, std::time::Duration::from_millis(250));
/// assert_eq!(config.breaker.failure_threshold, 5); // the rest keeps its default
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ResilienceConfig {
    /// What happens while the breaker is open. Default `memory`.
    pub fallback: FallbackMode,
    /// Deadline of one attempt of a point operation on the primary (get, create, update,
    /// touch, delete, append, count_frames, delete_frames, pending). Default 1 s.
    #[serde(with = "crate::serde_util::duration")]
    pub op_timeout: Duration,
    /// Deadline of one attempt of an operation whose size depends on the data (get_many,
    /// list, count, frames, sweep_expired, restore). Default 10 s.
    #[serde(with = "crate::serde_util::duration")]
    pub bulk_timeout: Duration,
    /// Retries of idempotent operations.
    pub retry: RetryConfig,
    /// When the breaker opens and closes.
    pub breaker: BreakerConfig,
    /// The health monitor's probe.
    pub health: HealthConfig,
    /// Bounds of the outage journal and width of its drain (fallback mode `memory`).
    pub journal: JournalConfig,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            fallback: FallbackMode::Memory,
            op_timeout: Duration::from_secs(1),
            bulk_timeout: Duration::from_secs(10),
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            health: HealthConfig::default(),
            journal: JournalConfig::default(),
        }
    }
}

impl ResilienceConfig {
    /// The defaults with fallback `mode`.
    pub fn with_fallback(mut self, mode: FallbackMode) -> Self {
        self.fallback = mode;
        self
    }

    /// Sets the point-operation deadline.
    pub fn with_op_timeout(mut self, d: Duration) -> Self {
        self.op_timeout = d;
        self
    }

    /// Checks every field. The message of a bad setting starts with its key
    /// (`resilience.breaker.cooldown must be …`).
    pub fn validate(&self) -> Result<()> {
        fn positive(name: &str, d: Duration) -> Result<()> {
            if d.is_zero() {
                return Err(Error::invalid(format!("resilience.{name} must be > 0")));
            }
            Ok(())
        }
        fn at_least_one(name: &str, n: usize) -> Result<()> {
            if n == 0 {
                return Err(Error::invalid(format!("resilience.{name} must be >= 1")));
            }
            Ok(())
        }
        crate::setting::all_at_most_max([
            ("resilience.op_timeout", self.op_timeout),
            ("resilience.bulk_timeout", self.bulk_timeout),
            ("resilience.retry.min_delay", self.retry.min_delay),
            ("resilience.retry.max_delay", self.retry.max_delay),
            ("resilience.breaker.window", self.breaker.window),
            ("resilience.breaker.cooldown", self.breaker.cooldown),
            ("resilience.health.interval", self.health.interval),
            ("resilience.health.timeout", self.health.timeout),
        ])?;
        positive("op_timeout", self.op_timeout)?;
        positive("bulk_timeout", self.bulk_timeout)?;
        if self.retry.min_delay > self.retry.max_delay {
            return Err(Error::invalid(
                "resilience.retry.min_delay must be <= resilience.retry.max_delay",
            ));
        }
        let b = &self.breaker;
        at_least_one("breaker.failure_threshold", b.failure_threshold as usize)?;
        if !(b.failure_ratio > 0.0 && b.failure_ratio <= 1.0) {
            return Err(Error::invalid(format!(
                "resilience.breaker.failure_ratio must be in (0, 1], got {}",
                b.failure_ratio
            )));
        }
        at_least_one("breaker.min_calls", b.min_calls as usize)?;
        positive("breaker.window", b.window)?;
        positive("breaker.cooldown", b.cooldown)?;
        at_least_one("breaker.half_open_probes", b.half_open_probes as usize)?;
        at_least_one("breaker.close_after", b.close_after as usize)?;
        positive("health.interval", self.health.interval)?;
        positive("health.timeout", self.health.timeout)?;
        at_least_one("journal.max_entries", self.journal.max_entries)?;
        at_least_one("journal.max_bytes", self.journal.max_bytes)?;
        at_least_one(
            "journal.replay_concurrency",
            self.journal.replay_concurrency,
        )?;
        if self.journal.max_file_bytes < 4096 {
            return Err(Error::invalid(format!(
                "resilience.journal.max_file_bytes must be at least 4096, got {}",
                self.journal.max_file_bytes
            )));
        }
        if let Some(p) = &self.journal.path
            && (p.as_os_str().is_empty() || p.is_dir())
        {
            return Err(Error::invalid(format!(
                "resilience.journal.path must name a file, got {:?}",
                p.display().to_string()
            )));
        }
        Ok(())
    }
}

/// Retries of idempotent operations (reads, `touch`, `sweep_expired`, the health probe) after
/// `Unavailable` or `Timeout`, with exponential backoff and jitter, only while the breaker
/// lets calls through. Writes that are not idempotent are never retried.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Retries after the first attempt (0 disables retrying). Default 2.
    pub max_retries: usize,
    /// First backoff delay. Default 10 ms.
    #[serde(with = "crate::serde_util::duration")]
    pub min_delay: Duration,
    /// Largest backoff delay. Default 100 ms.
    #[serde(with = "crate::serde_util::duration")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 2,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        }
    }
}

/// The circuit breaker: Closed → Open after `failure_threshold` consecutive failures, or when
/// at least `min_calls` calls in the last `window` failed at a ratio of `failure_ratio` or
/// more (timeouts and `Unavailable` count as failures; answers such as `NotFound` are
/// successes); Open → HalfOpen after `cooldown`; in HalfOpen at most `half_open_probes` live
/// calls at a time reach the primary, and `close_after` consecutive successful probes (live
/// calls or the health monitor's) close it; any failed probe opens it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker. Default 5.
    pub failure_threshold: u32,
    /// Failure ratio over the window that opens the breaker. Default 0.5.
    pub failure_ratio: f64,
    /// Calls the window needs before the ratio is considered. Default 20.
    pub min_calls: u32,
    /// Length of the sliding window (ten buckets). Default 10 s.
    #[serde(with = "crate::serde_util::duration")]
    pub window: Duration,
    /// How long the breaker stays open before probing. Default 2 s.
    #[serde(with = "crate::serde_util::duration")]
    pub cooldown: Duration,
    /// Live calls let through at a time while half-open. Default 2.
    pub half_open_probes: u32,
    /// Consecutive successful probes that close the breaker. Default 3.
    pub close_after: u32,
    /// Failures from a lost connection ([`Error::is_connection_lost`]) within this long of
    /// the last one that counted count once: one dropped connection fails every call in
    /// flight at once, and is one event. Zero counts each. Default 250 ms.
    #[serde(with = "crate::serde_util::duration")]
    pub failure_burst: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            failure_ratio: 0.5,
            min_calls: 20,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(2),
            half_open_probes: 2,
            close_after: 3,
            failure_burst: Duration::from_millis(250),
        }
    }
}

/// The health monitor ([`Resilient::spawn_monitor`](super::Resilient::spawn_monitor)): every
/// `interval` it calls the primary's `health()` (for Redis: `PING` and two small reads) under
/// `timeout`. Its results count as breaker probes, and once the breaker is closed it drains
/// the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthConfig {
    /// Time between probes. Default 500 ms.
    #[serde(with = "crate::serde_util::duration")]
    pub interval: Duration,
    /// Deadline of one probe. Default 1 s.
    #[serde(with = "crate::serde_util::duration")]
    pub timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(1),
        }
    }
}

/// Bounds of the outage journal, and how many sessions its drain works on at once. Every
/// write accepted while the primary is out is one entry; a write that would exceed either
/// bound is refused with [`Error::Unavailable`] ("journal full") and counted in
/// `shoal_resilient_journal_full_total`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct JournalConfig {
    /// Most journal entries. Default 100,000.
    pub max_entries: usize,
    /// Most bytes of frame content (and other payload) held by the journal, including the
    /// frames of sessions created during the outage. Default 64 MiB.
    pub max_bytes: usize,
    /// Provisional-to-final seq mappings kept after the drain, so event ids issued during an
    /// outage can still be resumed from (see [`Resilient::resolve_seq`](super::Resilient::resolve_seq)).
    /// Default 100,000.
    pub seq_map_capacity: usize,
    /// Sessions a drain works on at once. Each session's writes are still drained one
    /// after another, in order, under its lock; this bounds how many sessions do that
    /// concurrently (each in flight holds one primary call at a time; a local session in
    /// flight is held in memory as one snapshot while it is copied). 1 drains one session
    /// at a time. Default 16.
    pub replay_concurrency: usize,
    /// A file that keeps the journal across a restart: every write acknowledged during an
    /// outage is appended to it first, and [`Resilient::recover`](super::Resilient::recover)
    /// replays it when the instance starts again. One file per instance (it is locked).
    /// `None` (the default): the journal lives in process memory only, and an instance that
    /// dies during an outage loses what it acknowledged.
    pub path: Option<std::path::PathBuf>,
    /// When a journal file write counts as done. Default [`FsyncPolicy::Always`].
    pub fsync: FsyncPolicy,
    /// Most bytes of the journal file; a write that would pass it is refused like a full
    /// journal. The file is emptied whenever a drain leaves the journal empty. Default 256 MiB.
    pub max_file_bytes: u64,
}

/// When a write to the journal file is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// After `fsync` (records arriving together share one): survives a power loss. Costs a
    /// disk flush per group of writes, during outages only.
    #[default]
    Always,
    /// After the write reaches the kernel: survives the process being killed, not a power
    /// loss or a kernel crash.
    Never,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
            seq_map_capacity: 100_000,
            replay_concurrency: 16,
            path: None,
            fsync: FsyncPolicy::Always,
            max_file_bytes: 256 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let c = ResilienceConfig::default();
        assert!(c.validate().is_ok());
        let json = serde_json::to_string(&c).expect("serialize");
        let back: ResilienceConfig = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = serde_json::from_str::<ResilienceConfig>(r#"{"fallbak": "none"}"#);
        assert!(e.is_err());
        let e = serde_json::from_str::<ResilienceConfig>(r#"{"breaker": {"threshold": 1}}"#);
        assert!(e.is_err());
    }

    #[test]
    fn modes_parse() {
        for m in [
            FallbackMode::None,
            FallbackMode::Memory,
            FallbackMode::ReadOnly,
        ] {
            assert_eq!(m.as_str().parse::<FallbackMode>().ok(), Some(m));
            let json = serde_json::to_string(&m).expect("serialize");
            assert_eq!(json, format!("\"{}\"", m.as_str()));
        }
        assert!("bogus".parse::<FallbackMode>().is_err());
    }

    #[test]
    fn invalid_values_name_the_field() {
        let mut c = ResilienceConfig::default();
        c.breaker.failure_ratio = 1.5;
        let e = c.validate().expect_err("ratio");
        assert!(e.to_string().contains("failure_ratio"), "{e}");
        let mut c = ResilienceConfig::default();
        c.journal.max_entries = 0;
        assert!(
            c.validate()
                .expect_err("entries")
                .to_string()
                .contains("journal.max_entries")
        );
        let mut c = ResilienceConfig::default();
        c.journal.replay_concurrency = 0;
        assert!(
            c.validate()
                .expect_err("concurrency")
                .to_string()
                .contains("journal.replay_concurrency")
        );
    }
}
