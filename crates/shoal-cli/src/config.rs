//! Configuration: built-in defaults < TOML file (`--config`) < `SHOAL_*` environment variables <
//! command-line flags, merged with figment and checked strictly.
//!
//! # File format
//! ```toml
//! store = "memory://"            # or "file:///var/lib/shoal/sessions.jsonl", "redis://…"
//!
//! [limits]
//! max_frame_bytes = 4194304
//! max_frames_per_session = 10000
//! max_sessions = 100000
//! session_ttl = "24h"            # humantime: "90s", "15m", "1h 30m", "7days"
//! max_metadata_bytes = 65536
//! max_pending_per_session = 10000
//!
//! [memory]
//! sweep_interval = "30s"
//!
//! [redis]                        # only used by redis://, rediss://, redis+cluster://, redis+sentinel://
//! key_prefix = "shoal"           # first part of every key (alias: prefix)
//! connect_timeout = "5s"         # bounds connecting (an unreachable server fails within it)
//! response_timeout = "2s"        # bounds one round trip
//! connections = 1                # multiplexed connections, round robin
//! # tls_ca_file = "/etc/shoal/redis-ca.pem"   # PEM CA of a rediss:// server's private CA
//! expiry_grace = "1m"            # server-side TTL beyond the logical expiry
//! sweep_lease = "30s"            # how long one instance may hold the sweep lease
//! reconnect_retries = 2
//! sweep_interval = "30s"         # background expiry sweeps while a command runs
//!
//! [log]
//! level = "warn"                 # a tracing EnvFilter directive, e.g. "info,shoal_core=debug"
//! format = "text"                # or "json"
//!
//! [resilience]                   # off unless `fallback` is set (or --fallback is given)
//! fallback = "memory"            # none | memory | read-only (Redis stores only)
//! op_timeout = "1s"              # deadline of one point operation on Redis
//! bulk_timeout = "10s"           # deadline of list, count, frames, sweeps
//! drain_timeout = "10s"          # at exit, how long to wait for the outage journal to replay
//! [resilience.retry]             # max_retries, min_delay, max_delay
//! [resilience.breaker]           # failure_threshold, failure_ratio, min_calls, window,
//!                                # cooldown, half_open_probes, close_after
//! [resilience.health]            # interval, timeout (the health monitor's probe)
//! [resilience.journal]           # max_entries, max_bytes, seq_map_capacity,
//!                                # replay_concurrency (sessions replayed at once)
//!
//! [cache]                        # off unless enabled (or --cache is given)
//! enabled = true
//! max_entries = 100000
//! max_bytes = 268435456
//! ttl = "5s"
//! consistency = "invalidate"     # local | invalidate | strict
//! write_mode = "write_through"   # write_through | write_behind | read_through
//! touch_interval = "1s"          # touch coalescing ("0s": every touch is written)
//! [cache.bus]                    # Redis pub/sub invalidation: ping_interval, reconnect_min,
//!                                # reconnect_max, max_ids_per_message
//! ```
//!
//! # Environment
//! `SHOAL_<KEY>` with `__` between levels: `SHOAL_STORE`, `SHOAL_LIMITS__MAX_SESSIONS`,
//! `SHOAL_MEMORY__SWEEP_INTERVAL`, `SHOAL_REDIS__PREFIX`, `SHOAL_LOG__LEVEL`. Only variables
//! whose first part names a section (known or reserved) are read, so unrelated `SHOAL_*`
//! variables (`SHOAL_CONFIG`, a test harness's `SHOAL_REDIS_URL`) are left alone.
//!
//! # Adding a section
//! Add a field to [`Config`] (a `#[serde(default, deny_unknown_fields)]` struct with a
//! `Default`), its name to [`SECTIONS`] (and out of [`RESERVED_SECTIONS`]), its humantime keys
//! to [`DURATION_KEYS`], its table to [`to_toml`], and its checks to `validate`.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Format, Serialized, Toml},
    value::{Dict, Map, Value},
};
use serde::{Deserialize, Serialize};
use shoal_core::{
    Limits,
    cached::{CacheConfig, Consistency, WriteMode},
    resilient::{
        BreakerConfig, FallbackMode, HealthConfig, JournalConfig, ResilienceConfig, RetryConfig,
    },
};
use shoal_redis::{BusConfig, RedisConfig};

use crate::{
    error::UsageError,
    store::{StoreUrl, redact},
};

/// Top-level keys this build understands.
pub(crate) const SECTIONS: &[&str] = &[
    "store",
    "limits",
    "memory",
    "redis",
    "log",
    "proxy",
    "resilience",
    "cache",
];

/// Top-level sections reserved for later releases (refused today, with a hint).
pub(crate) const RESERVED_SECTIONS: &[&str] = &[];

/// The prefix of configuration environment variables.
pub(crate) const ENV_PREFIX: &str = "SHOAL_";

/// Short environment names for long keys: `SHOAL_REDIS__PREFIX` sets `redis.key_prefix`.
/// (Only in the environment: a key spelled two ways in one layer would be ambiguous.)
pub(crate) const ENV_ALIASES: &[(&[&str], &[&str])] =
    &[(&["redis", "prefix"], &["redis", "key_prefix"])];

/// The effective configuration of one `shoal` run.
///
/// `Debug` and [`Config::redacted`] hide any password in the store URL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// The store URL (`memory://`, `file://PATH`, `redis://…`).
    pub(crate) store: String,
    /// Limits every backend enforces.
    pub(crate) limits: Limits,
    /// Settings of the in-memory backend.
    pub(crate) memory: MemoryConfig,
    /// Settings of the Redis backend.
    pub(crate) redis: RedisSection,
    /// Logging.
    pub(crate) log: LogConfig,
    /// `shoal proxy`.
    pub(crate) proxy: ProxySection,
    /// The resilience wrapper (breaker and fallback) around a Redis store.
    pub(crate) resilience: ResilienceSection,
    /// The hot-session cache.
    pub(crate) cache: CacheSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: "memory://".into(),
            limits: Limits::default(),
            memory: MemoryConfig::default(),
            redis: RedisSection::default(),
            log: LogConfig::default(),
            proxy: ProxySection::default(),
            resilience: ResilienceSection::default(),
            cache: CacheSection::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("store", &redact(&self.store))
            .field("limits", &self.limits)
            .field("memory", &self.memory)
            .field("redis", &self.redis)
            .field("log", &self.log)
            .field("proxy", &self.proxy)
            .field("resilience", &self.resilience)
            .field("cache", &self.cache)
            .finish()
    }
}

impl Config {
    /// A copy safe to print: the store URL's password replaced by `***`.
    pub(crate) fn redacted(&self) -> Config {
        Config {
            store: redact(&self.store),
            ..self.clone()
        }
    }
}

/// `[resilience]`: wraps a Redis store in [`shoal_core::Resilient`] (deadlines, retries, a
/// circuit breaker, a memory fallback with an outage journal). Off unless `fallback` is set
/// (or `--fallback` is given). Every key but `fallback` and `drain_timeout` is a field of
/// [`ResilienceConfig`] (whose defaults these are).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ResilienceSection {
    /// `none`, `memory` or `read-only`; absent: no wrapper.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fallback: Option<FallbackMode>,
    /// Deadline of one attempt of a point operation. Default 1 s.
    #[serde(with = "humantime_duration")]
    pub(crate) op_timeout: Duration,
    /// Deadline of one attempt of a bulk operation. Default 10 s.
    #[serde(with = "humantime_duration")]
    pub(crate) bulk_timeout: Duration,
    /// How long a command waits at exit for journaled writes to be replayed into Redis
    /// (the CLI's own key). Default 10 s.
    #[serde(with = "humantime_duration")]
    pub(crate) drain_timeout: Duration,
    /// Retries of idempotent operations.
    pub(crate) retry: RetryConfig,
    /// The circuit breaker.
    pub(crate) breaker: BreakerConfig,
    /// The health monitor's probe.
    pub(crate) health: HealthConfig,
    /// Bounds of the outage journal.
    pub(crate) journal: JournalConfig,
}

impl Default for ResilienceSection {
    fn default() -> Self {
        let d = ResilienceConfig::default();
        ResilienceSection {
            fallback: None,
            op_timeout: d.op_timeout,
            bulk_timeout: d.bulk_timeout,
            drain_timeout: Duration::from_secs(10),
            retry: d.retry,
            breaker: d.breaker,
            health: d.health,
            journal: d.journal,
        }
    }
}

impl ResilienceSection {
    /// The wrapper's configuration, when the wrapper is on.
    pub(crate) fn to_resilience_config(&self) -> Option<ResilienceConfig> {
        let mode = self.fallback?;
        let mut c = ResilienceConfig::default().with_fallback(mode);
        c.op_timeout = self.op_timeout;
        c.bulk_timeout = self.bulk_timeout;
        c.retry = self.retry.clone();
        c.breaker = self.breaker.clone();
        c.health = self.health.clone();
        c.journal = self.journal.clone();
        Some(c)
    }

    /// Checks every key with the wrapper's own rules: `(key, reason)` of the first bad one.
    fn check(&self) -> Result<(), (String, String)> {
        let probe = ResilienceSection {
            fallback: Some(self.fallback.unwrap_or_default()),
            ..self.clone()
        };
        if let Some(c) = probe.to_resilience_config()
            && let Err(e) = c.validate()
        {
            let why = reason_of(e);
            return Err((key_in(&why, "resilience"), why));
        }
        if self.drain_timeout.is_zero() {
            return Err(("resilience.drain_timeout".into(), "must be > 0".into()));
        }
        Ok(())
    }
}

/// `[cache]`: the hot-session cache ([`shoal_core::Cached`]) in front of the store. Off unless
/// `enabled` (or `--cache`). Every key but `enabled` and `bus` is a field of [`CacheConfig`]
/// (whose defaults these are); `[cache.bus]` is the Redis invalidation bus's [`BusConfig`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CacheSection {
    /// Whether the cache is on. Default false.
    pub(crate) enabled: bool,
    /// Most sessions cached. Default 100,000.
    pub(crate) max_entries: u64,
    /// Most bytes cached (estimated). Default 256 MiB.
    pub(crate) max_bytes: u64,
    /// Per-entry time to live: bounds staleness when an invalidation is lost. Default 5 s.
    #[serde(with = "humantime_duration")]
    pub(crate) ttl: Duration,
    /// `local`, `invalidate` (Redis pub/sub) or `strict` (a version check per hit).
    /// Default `invalidate`; on `memory://` and `file://` stores `local` is used instead.
    pub(crate) consistency: Consistency,
    /// `write_through`, `write_behind` or `read_through`. Default `write_through`.
    pub(crate) write_mode: WriteMode,
    /// Touch coalescing interval (`"0s"`: every touch is written). Default 1 s.
    #[serde(with = "humantime_duration")]
    pub(crate) touch_interval: Duration,
    /// A touch is written at once when the backend's expiry is closer than this. Default 30 s.
    #[serde(with = "humantime_duration")]
    pub(crate) touch_margin: Duration,
    /// Write-behind flush interval. Default 100 ms.
    #[serde(with = "humantime_duration")]
    pub(crate) flush_interval: Duration,
    /// Write-behind queue bound. Default 10,000.
    pub(crate) max_queued_writes: usize,
    /// Frames kept per cached session (0: no tail cache). Default 64.
    pub(crate) tail_frames: usize,
    /// Frame bytes kept per session tail. Default 256 KiB.
    pub(crate) tail_bytes: usize,
    /// How long the exit flush retries deferred writes. Default 10 s.
    #[serde(with = "humantime_duration")]
    pub(crate) shutdown_timeout: Duration,
    /// The Redis invalidation bus (`consistency` `invalidate` or `strict` on Redis).
    pub(crate) bus: BusConfig,
}

impl Default for CacheSection {
    fn default() -> Self {
        let d = CacheConfig::default();
        CacheSection {
            enabled: false,
            max_entries: d.max_entries,
            max_bytes: d.max_bytes,
            ttl: d.ttl,
            consistency: d.consistency,
            write_mode: d.write_mode,
            touch_interval: d.touch_interval,
            touch_margin: d.touch_margin,
            flush_interval: d.flush_interval,
            max_queued_writes: d.max_queued_writes,
            tail_frames: d.tail_frames,
            tail_bytes: d.tail_bytes,
            shutdown_timeout: d.shutdown_timeout,
            bus: BusConfig::default(),
        }
    }
}

impl CacheSection {
    /// The cache's configuration (whether or not it is enabled).
    pub(crate) fn to_cache_config(&self) -> CacheConfig {
        let mut c = CacheConfig::default()
            .with_max_entries(self.max_entries)
            .with_max_bytes(self.max_bytes)
            .with_ttl(self.ttl)
            .with_consistency(self.consistency)
            .with_write_mode(self.write_mode)
            .with_touch_interval(self.touch_interval)
            .with_touch_margin(self.touch_margin)
            .with_flush_interval(self.flush_interval)
            .with_max_queued_writes(self.max_queued_writes)
            .with_tail_frames(self.tail_frames);
        c.tail_bytes = self.tail_bytes;
        c.shutdown_timeout = self.shutdown_timeout;
        c
    }

    /// Checks every key with the cache's and the bus's own rules.
    fn check(&self) -> Result<(), (String, String)> {
        if let Err(e) = self.to_cache_config().validate() {
            let why = reason_of(e);
            return Err((key_in(&why, "cache"), why));
        }
        if let Err(e) = self.bus.validate() {
            let why = reason_of(e);
            let key = [
                "ping_interval",
                "reconnect_min",
                "reconnect_max",
                "max_ids_per_message",
            ]
            .iter()
            .find(|k| why.contains(*k))
            .map_or_else(|| "cache.bus".to_owned(), |k| format!("cache.bus.{k}"));
            return Err((key, why));
        }
        Ok(())
    }
}

/// The first `section.key…` word of a validation message (`"cache.ttl must be …"` →
/// `cache.ttl`), or the section.
fn key_in(msg: &str, section: &str) -> String {
    msg.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .find(|w| w.starts_with(&format!("{section}.")))
        .map_or_else(
            || section.to_owned(),
            |w| w.trim_end_matches('.').to_owned(),
        )
}

/// `[proxy]`: `shoal proxy` (its flags override these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ProxySection {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub(crate) listen: String,
    /// `http(s)://…/mcp` or `stdio:CMD ARGS`. No default.
    pub(crate) upstream: String,
    /// The MCP endpoint path. Default `/mcp`.
    pub(crate) path: String,
    /// Extra allowed `Origin`s, comma-separated (`*`: any); loopback origins always pass.
    pub(crate) allowed_origins: String,
    /// File holding the event-id MAC key (≥ 16 bytes), the same on every instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) event_id_key_file: Option<PathBuf>,
    /// Largest request body. Default 4 MiB.
    pub(crate) max_body_bytes: usize,
    /// Open SSE streams per session and instance. Default 16.
    pub(crate) max_streams_per_session: usize,
    /// How often a follower polls the store for another instance's stream. Default 50 ms.
    #[serde(with = "humantime_duration")]
    pub(crate) poll_interval: Duration,
    /// Stream holder lease. Default 6 s.
    #[serde(with = "humantime_duration")]
    pub(crate) stream_lease: Duration,
    /// SSE `retry` sent to 2025-11-25 clients. Default 1 s.
    #[serde(with = "humantime_duration")]
    pub(crate) sse_retry: Duration,
    /// Longest wait for the upstream to start answering. Default 60 s.
    #[serde(with = "humantime_duration")]
    pub(crate) upstream_timeout: Duration,
    /// Header carrying the authenticated principal (set by a trusted gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) principal_header: Option<String>,
    /// A request answered within this time is recorded with its reply in one store write and
    /// never listed as pending; `0s` records every request as pending at once. Default 50 ms.
    #[serde(with = "humantime_duration")]
    pub(crate) pending_after: Duration,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            listen: "127.0.0.1:8080".into(),
            upstream: String::new(),
            path: "/mcp".into(),
            allowed_origins: String::new(),
            event_id_key_file: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_streams_per_session: 16,
            poll_interval: Duration::from_millis(50),
            stream_lease: Duration::from_secs(6),
            sse_retry: Duration::from_secs(1),
            upstream_timeout: Duration::from_secs(60),
            principal_header: None,
            pending_after: Duration::from_millis(50),
        }
    }
}

/// `[memory]`: the in-memory backend (also behind `file://` stores).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MemoryConfig {
    /// How often the background sweeper removes expired sessions. Default 30 s.
    #[serde(with = "humantime_duration")]
    pub(crate) sweep_interval: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            sweep_interval: Duration::from_secs(30),
        }
    }
}

/// `[redis]`: the Redis backend. Every key but `sweep_interval` is a field of
/// [`shoal_redis::RedisConfig`] (whose defaults these are); the URL is the `store` key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RedisSection {
    /// First part of every key (`<prefix>:{<sid>}:meta`). Default `shoal`. In the environment
    /// also `SHOAL_REDIS__PREFIX` (see [`ENV_ALIASES`]).
    #[serde(deserialize_with = "lenient_string")]
    pub(crate) key_prefix: String,
    /// Bound on connecting; an unreachable server fails within it. Default 5 s.
    #[serde(with = "humantime_duration")]
    pub(crate) connect_timeout: Duration,
    /// Bound on one round trip. Default 2 s.
    #[serde(with = "humantime_duration")]
    pub(crate) response_timeout: Duration,
    /// Multiplexed connections, used round robin. Default 1.
    pub(crate) connections: usize,
    /// PEM CA certificate(s) for a `rediss://` server with a private CA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls_ca_file: Option<PathBuf>,
    /// Server-side TTL beyond a session's logical expiry. Default 60 s.
    #[serde(with = "humantime_duration")]
    pub(crate) expiry_grace: Duration,
    /// How long one instance may hold the sweep lease. Default 30 s.
    #[serde(with = "humantime_duration")]
    pub(crate) sweep_lease: Duration,
    /// Reconnection attempts before a command fails. Default 2.
    pub(crate) reconnect_retries: usize,
    /// How often the background sweeper runs while a command runs (the CLI's own key).
    /// Default 30 s.
    #[serde(with = "humantime_duration")]
    pub(crate) sweep_interval: Duration,
}

impl Default for RedisSection {
    fn default() -> Self {
        let d = RedisConfig::default();
        RedisSection {
            key_prefix: d.key_prefix,
            connect_timeout: d.connect_timeout,
            response_timeout: d.response_timeout,
            connections: d.connections,
            tls_ca_file: d.tls_ca_file,
            expiry_grace: d.expiry_grace,
            sweep_lease: d.sweep_lease,
            reconnect_retries: d.reconnect_retries,
            sweep_interval: Duration::from_secs(30),
        }
    }
}

impl RedisSection {
    /// The backend's configuration for the store URL `url`.
    pub(crate) fn to_redis_config(&self, url: &str) -> RedisConfig {
        let mut c = RedisConfig::new(url);
        c.key_prefix.clone_from(&self.key_prefix);
        c.connect_timeout = self.connect_timeout;
        c.response_timeout = self.response_timeout;
        c.connections = self.connections;
        c.tls_ca_file.clone_from(&self.tls_ca_file);
        c.expiry_grace = self.expiry_grace;
        c.sweep_lease = self.sweep_lease;
        c.reconnect_retries = self.reconnect_retries;
        c
    }

    /// Checks each key with the backend's own rules: `(key, reason)` of the first bad one.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let base = RedisSection::default();
        let probes: [(&'static str, RedisSection); 5] = [
            (
                "redis.key_prefix",
                RedisSection {
                    key_prefix: self.key_prefix.clone(),
                    ..base.clone()
                },
            ),
            (
                "redis.connect_timeout",
                RedisSection {
                    connect_timeout: self.connect_timeout,
                    ..base.clone()
                },
            ),
            (
                "redis.response_timeout",
                RedisSection {
                    response_timeout: self.response_timeout,
                    ..base.clone()
                },
            ),
            (
                "redis.connections",
                RedisSection {
                    connections: self.connections,
                    ..base.clone()
                },
            ),
            (
                "redis.sweep_lease",
                RedisSection {
                    sweep_lease: self.sweep_lease,
                    ..base.clone()
                },
            ),
        ];
        for (key, probe) in probes {
            if let Err(e) = probe.to_redis_config("redis://127.0.0.1").validate() {
                return Err((key, reason_of(e)));
            }
        }
        if self.sweep_interval < Duration::from_millis(10) {
            return Err(("redis.sweep_interval", "must be at least 10ms".into()));
        }
        Ok(())
    }
}

/// The message of a store error without its kind prefix.
fn reason_of(e: shoal_core::Error) -> String {
    match e {
        shoal_core::Error::InvalidInput { reason } => reason,
        other => other.to_string(),
    }
}

/// A string, also when the environment layer parsed the value as a number or boolean
/// (`SHOAL_REDIS__PREFIX=2024`).
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        U(u64),
        I(i64),
        F(f64),
        B(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::S(s) => s,
        Scalar::U(n) => n.to_string(),
        Scalar::I(n) => n.to_string(),
        Scalar::F(n) => n.to_string(),
        Scalar::B(b) => b.to_string(),
    })
}

/// `[log]`: diagnostics on stderr.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LogConfig {
    /// A `tracing` filter directive (`warn`, `info,shoal_core=debug`). Default `warn`.
    /// `RUST_LOG` replaces it when set; `-v`/`-vv` replace both.
    pub(crate) level: String,
    /// `text` or `json`. Default `text`.
    pub(crate) format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "warn".into(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Values given as command-line flags: the highest layer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overrides {
    /// `--store` (only when typed on the command line, not taken from `SHOAL_STORE`).
    pub(crate) store: Option<String>,
    /// The level implied by `-v` (`debug`) or `-vv` (`trace`).
    pub(crate) log_level: Option<String>,
    /// `--log-format`.
    pub(crate) log_format: Option<LogFormat>,
    /// `--fallback`: turns the resilience wrapper on with this mode.
    pub(crate) fallback: Option<FallbackMode>,
    /// `--cache`: turns the cache on.
    pub(crate) cache: bool,
    /// `--cache-consistency`.
    pub(crate) cache_consistency: Option<Consistency>,
    /// `--cache-write-mode`.
    pub(crate) cache_write_mode: Option<WriteMode>,
}

/// Everything configuration is read from.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sources {
    /// The TOML file (`--config` / `SHOAL_CONFIG`), which must exist when given.
    pub(crate) file: Option<PathBuf>,
    /// The environment variables (all of them; only `SHOAL_<section>…` ones are used).
    pub(crate) env: Vec<(String, String)>,
    /// Command-line flags.
    pub(crate) flags: Overrides,
}

impl Sources {
    /// Sources with the process environment.
    pub(crate) fn from_process(file: Option<PathBuf>, flags: Overrides) -> Self {
        Sources {
            file,
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            flags,
        }
    }
}

/// Why the configuration could not be loaded; always a usage-class error (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError(pub(crate) String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for UsageError {
    fn from(e: ConfigError) -> Self {
        UsageError(e.to_string())
    }
}

/// A provider with a fixed, readable name in error messages.
struct Named<P> {
    name: &'static str,
    inner: P,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        self.inner.data()
    }
}

/// The `SHOAL_*` environment layer, from an explicit list of variables (testable, no global
/// state). `SHOAL_LIMITS__MAX_SESSIONS=5` becomes `limits.max_sessions = 5`; values are parsed
/// like figment's own `Env` provider (numbers, booleans, else strings).
#[derive(Clone, Debug)]
struct EnvLayer {
    vars: Vec<(Vec<String>, String)>,
}

impl EnvLayer {
    fn new(env: &[(String, String)]) -> Self {
        let mut vars: Vec<(Vec<String>, String)> = env
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(ENV_PREFIX)?;
                let mut path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
                if let Some((_, to)) = ENV_ALIASES.iter().find(|(from, _)| *from == path) {
                    path = to.iter().map(|p| (*p).to_owned()).collect();
                }
                let first = path.first()?.as_str();
                let wanted = SECTIONS.contains(&first) || RESERVED_SECTIONS.contains(&first);
                (wanted && path.iter().all(|p| !p.is_empty())).then(|| (path, v.clone()))
            })
            .collect();
        vars.sort();
        EnvLayer { vars }
    }

    /// The variable name for a key path, e.g. `SHOAL_LIMITS__MAX_SESSIONS`.
    fn var_name<S: AsRef<str>>(path: &[S]) -> String {
        let joined: Vec<String> = path
            .iter()
            .map(|p| p.as_ref().to_ascii_uppercase())
            .collect();
        format!("{ENV_PREFIX}{}", joined.join("__"))
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_: &Profile, keys: &[&str]| EnvLayer::var_name(keys))
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        let mut dict = Dict::new();
        for (path, raw) in &self.vars {
            let value: Value = raw
                .parse()
                .unwrap_or_else(|e: std::convert::Infallible| match e {});
            insert_path(&mut dict, path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// The command-line layer.
#[derive(Serialize)]
struct FlagValues {
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<String>,
    #[serde(skip_serializing_if = "FlagLog::is_empty")]
    log: FlagLog,
    #[serde(skip_serializing_if = "FlagResilience::is_empty")]
    resilience: FlagResilience,
    #[serde(skip_serializing_if = "FlagCache::is_empty")]
    cache: FlagCache,
}

#[derive(Serialize)]
struct FlagResilience {
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<FallbackMode>,
}

impl FlagResilience {
    fn is_empty(&self) -> bool {
        self.fallback.is_none()
    }
}

#[derive(Serialize)]
struct FlagCache {
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consistency: Option<Consistency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    write_mode: Option<WriteMode>,
}

impl FlagCache {
    fn is_empty(&self) -> bool {
        self.enabled.is_none() && self.consistency.is_none() && self.write_mode.is_none()
    }
}

#[derive(Serialize)]
struct FlagLog {
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<LogFormat>,
}

impl FlagLog {
    fn is_empty(&self) -> bool {
        self.level.is_none() && self.format.is_none()
    }
}

/// Where each layer came from, for error messages.
struct Layers {
    file: Option<(PathBuf, Figment)>,
    env: EnvLayer,
    flags: Figment,
}

/// Loads, merges and checks the configuration.
pub(crate) fn load(sources: &Sources) -> Result<Config, ConfigError> {
    check_env_names(&sources.env)?;
    let defaults = Named {
        name: "built-in defaults",
        inner: Serialized::defaults(Config::default()),
    };
    let mut figment = Figment::from(defaults);
    let mut file_layer = None;
    if let Some(path) = &sources.file {
        check_file(path)?;
        let toml = Figment::from(Toml::file_exact(path));
        figment = figment.merge(toml.clone());
        file_layer = Some((path.clone(), toml));
    }
    let env = EnvLayer::new(&sources.env);
    figment = figment.merge(env.clone());
    let flags = Figment::from(Named {
        name: "command-line flag",
        inner: Serialized::defaults(FlagValues {
            store: sources.flags.store.clone(),
            log: FlagLog {
                level: sources.flags.log_level.clone(),
                format: sources.flags.log_format,
            },
            resilience: FlagResilience {
                fallback: sources.flags.fallback,
            },
            cache: FlagCache {
                enabled: sources.flags.cache.then_some(true),
                consistency: sources.flags.cache_consistency,
                write_mode: sources.flags.cache_write_mode,
            },
        }),
    });
    figment = figment.merge(flags.clone());
    let layers = Layers {
        file: file_layer,
        env,
        flags,
    };

    let config: Config = figment
        .extract()
        .map_err(|e| ConfigError(describe_figment_error(e, &figment, &layers)))?;
    validate(&config, &figment)?;
    Ok(config)
}

/// `SHOAL_LOG_LEVEL` (one underscore) is a likely typo for `SHOAL_LOG__LEVEL`: say so instead of
/// ignoring it silently. Only for keys that exist in an implemented section, so that unrelated
/// variables such as a test harness's `SHOAL_REDIS_URL` never break the CLI.
fn check_env_names(env: &[(String, String)]) -> Result<(), ConfigError> {
    let known = known_keys();
    for (k, _) in env {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        for section in SECTIONS.iter().filter(|s| **s != "store") {
            if let Some(key) = lower.strip_prefix(&format!("{section}_"))
                && !key.starts_with('_')
                && known.iter().any(|(s, k)| s == section && k.as_str() == key)
            {
                return Err(ConfigError(format!(
                    "environment variable {k} is not a configuration key; nested keys \
                     use a double underscore: {}",
                    EnvLayer::var_name(&[*section, key])
                )));
            }
        }
    }
    Ok(())
}

/// `(section, key)` of every key of every section (from the defaults), plus aliases.
fn known_keys() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ENV_ALIASES
        .iter()
        .filter_map(|(from, _)| match from {
            [section, key] => Some(((*section).to_owned(), (*key).to_owned())),
            _ => None,
        })
        .collect();
    if let Ok(serde_json::Value::Object(top)) = serde_json::to_value(Config::default()) {
        for (section, value) in top {
            if let serde_json::Value::Object(keys) = value {
                out.extend(keys.keys().map(|k| (section.clone(), k.clone())));
            }
        }
    }
    // Keys absent from the defaults (optional ones).
    out.push(("redis".to_owned(), "tls_ca_file".to_owned()));
    out.push(("proxy".to_owned(), "event_id_key_file".to_owned()));
    out.push(("proxy".to_owned(), "principal_header".to_owned()));
    out.push(("resilience".to_owned(), "fallback".to_owned()));
    out
}

fn check_file(path: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(ConfigError(format!(
            "config file {} is not a regular file",
            path.display()
        ))),
        Err(e) => Err(ConfigError(format!(
            "cannot read config file {}: {e}",
            path.display()
        ))),
    }
}

/// Turns a figment error into one line per problem that names the key and where it came from.
fn describe_figment_error(err: figment::Error, figment: &Figment, layers: &Layers) -> String {
    let mut out = Vec::new();
    for e in err {
        out.push(describe_one(&e, figment, layers));
    }
    out.join("\n")
}

/// Keys whose values are humantime durations.
const DURATION_KEYS: &[&str] = &[
    "limits.session_ttl",
    "memory.sweep_interval",
    "redis.connect_timeout",
    "redis.response_timeout",
    "redis.expiry_grace",
    "redis.sweep_lease",
    "redis.sweep_interval",
    "proxy.poll_interval",
    "proxy.stream_lease",
    "proxy.sse_retry",
    "proxy.upstream_timeout",
    "proxy.pending_after",
    "resilience.op_timeout",
    "resilience.bulk_timeout",
    "resilience.drain_timeout",
    "resilience.retry.min_delay",
    "resilience.retry.max_delay",
    "resilience.breaker.window",
    "resilience.breaker.cooldown",
    "resilience.health.interval",
    "resilience.health.timeout",
    "cache.ttl",
    "cache.touch_interval",
    "cache.touch_margin",
    "cache.flush_interval",
    "cache.shutdown_timeout",
    "cache.bus.ping_interval",
    "cache.bus.reconnect_min",
    "cache.bus.reconnect_max",
];

fn describe_one(e: &figment::Error, figment: &Figment, layers: &Layers) -> String {
    use figment::error::Kind;
    let key = e.path.join(".");
    match &e.kind {
        Kind::UnknownField(field, expected) => {
            let mut path = e.path.clone();
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            let key = path.join(".");
            let source = locate(&key, &path, layers);
            let top = path.first().map(String::as_str).unwrap_or_default();
            if path.len() == 1 && RESERVED_SECTIONS.contains(&top) {
                format!(
                    "unknown key `{key}` in {source}: the [{top}] section is reserved for a later \
                     release and not supported by this build (supported: {})",
                    SECTIONS.join(", ")
                )
            } else {
                format!(
                    "unknown key `{key}` in {source} (expected one of: {})",
                    expected.join(", ")
                )
            }
        }
        kind if key.is_empty() => match &layers.file {
            // A file that does not parse has no key.
            Some((path, _)) => format!("config file {}: {kind}", path.display()),
            None => kind.to_string(),
        },
        kind => {
            let source = e
                .metadata
                .as_ref()
                .map_or_else(|| origin(figment, &key), |md| describe_metadata(md, &key));
            if DURATION_KEYS.contains(&key.as_str()) {
                let value = figment
                    .find_value(&key)
                    .ok()
                    .and_then(|v| v.into_string())
                    .map_or_else(String::new, |v| format!(" {v:?}"));
                format!(
                    "invalid duration{value} for key `{key}` in {source}: {kind} (write durations \
                     like \"30s\", \"15m\", \"1h 30m\", \"7days\")"
                )
            } else {
                format!("invalid value for key `{key}` in {source}: {kind}")
            }
        }
    }
}

/// Which layer supplied `key` (highest first): the flags, the environment or the file.
fn locate(key: &str, path: &[String], layers: &Layers) -> String {
    if layers.flags.contains(key) {
        return "command-line flags".into();
    }
    if layers.env.vars.iter().any(|(p, _)| p.starts_with(path)) {
        return format!("environment variable {}", EnvLayer::var_name(path));
    }
    match &layers.file {
        Some((file, _)) => format!("config file {}", file.display()),
        None => "the configuration".into(),
    }
}

/// A provider's metadata as a phrase: `config file PATH`, `environment variable SHOAL_X`.
fn describe_metadata(md: &Metadata, key: &str) -> String {
    let keys: Vec<&str> = key.split('.').collect();
    match &md.source {
        Some(figment::Source::File(p)) => format!("config file {}", p.display()),
        _ if md.name == "environment variable" => format!(
            "environment variable {}",
            md.interpolate(&Profile::Default, &keys)
        ),
        _ => md.name.to_string(),
    }
}

/// Where the value of `key` came from, for messages about values that parse but are wrong.
fn origin(figment: &Figment, key: &str) -> String {
    figment.find_metadata(key).map_or_else(
        || "the configuration".into(),
        |md| describe_metadata(md, key),
    )
}

fn validate(config: &Config, figment: &Figment) -> Result<(), ConfigError> {
    let bad = |key: &str, why: String| {
        Err(ConfigError(format!(
            "invalid value for key `{key}` in {}: {why}",
            origin(figment, key)
        )))
    };
    if let Err(why) = StoreUrl::parse(&config.store) {
        return bad("store", why);
    }
    let l = &config.limits;
    for (key, value) in [
        ("limits.max_frame_bytes", l.max_frame_bytes),
        ("limits.max_frames_per_session", l.max_frames_per_session),
        ("limits.max_sessions", l.max_sessions),
        ("limits.max_pending_per_session", l.max_pending_per_session),
    ] {
        if value == 0 {
            return bad(key, "must be at least 1".into());
        }
    }
    if l.session_ttl < Duration::from_secs(1) {
        return bad("limits.session_ttl", "must be at least 1s".into());
    }
    if config.memory.sweep_interval < Duration::from_millis(10) {
        return bad("memory.sweep_interval", "must be at least 10ms".into());
    }
    if let Err((key, why)) = config.redis.check() {
        return bad(key, why);
    }
    if let Err((key, why)) = config.resilience.check() {
        return bad(&key, why);
    }
    if let Err((key, why)) = config.cache.check() {
        return bad(&key, why);
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&config.log.level) {
        return bad(
            "log.level",
            format!("{:?} is not a log filter directive ({e})", config.log.level),
        );
    }
    Ok(())
}

/// The configuration as a TOML document (the format of the config file), sections in the
/// order of the documentation.
pub(crate) fn to_toml(config: &Config) -> anyhow::Result<String> {
    let mut out = format!(
        "store = {}\n",
        toml_scalar(&serde_json::to_value(&config.store)?)?
    );
    let sections = [
        ("limits", serde_json::to_value(&config.limits)?),
        ("memory", serde_json::to_value(&config.memory)?),
        ("redis", serde_json::to_value(&config.redis)?),
        ("log", serde_json::to_value(&config.log)?),
        ("proxy", serde_json::to_value(&config.proxy)?),
        ("resilience", serde_json::to_value(&config.resilience)?),
        ("cache", serde_json::to_value(&config.cache)?),
    ];
    for (name, value) in sections {
        write_table(&mut out, name, &value)?;
    }
    Ok(out)
}

/// Writes `[name]` with its scalar keys, then its sub-tables as `[name.sub]`.
fn write_table(out: &mut String, name: &str, value: &serde_json::Value) -> anyhow::Result<()> {
    let serde_json::Value::Object(table) = value else {
        anyhow::bail!("[{name}] did not serialize to a table");
    };
    out.push_str(&format!("\n[{name}]\n"));
    for (k, v) in table.iter().filter(|(_, v)| !v.is_null() && !v.is_object()) {
        out.push_str(&format!("{k} = {}\n", toml_scalar(v)?));
    }
    for (k, v) in table.iter().filter(|(_, v)| v.is_object()) {
        write_table(out, &format!("{name}.{k}"), v)?;
    }
    Ok(())
}

fn toml_scalar(v: &serde_json::Value) -> anyhow::Result<String> {
    Ok(match v {
        // JSON string escapes (\" \\ \n \t \uXXXX …) are valid TOML basic-string escapes.
        serde_json::Value::String(_)
        | serde_json::Value::Number(_)
        | serde_json::Value::Bool(_) => v.to_string(),
        other => anyhow::bail!("cannot write {other} as a TOML scalar"),
    })
}

/// Durations as humantime strings (`"30s"`, `"1h 30m"`).
mod humantime_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "{s:?} is not a duration ({e}); write it like \"30s\", \"15m\" or \"1h 30m\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        f.write_all(contents.as_bytes()).expect("write");
        f
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load_err(sources: &Sources) -> String {
        load(sources).expect_err("should fail").to_string()
    }

    /// Loading `toml` as the config file fails with an error naming `key`, containing
    /// `needle`, and naming the file.
    fn assert_file_error(toml: &str, key: &str, needle: &str) {
        let f = file(toml);
        let err = load_err(&Sources {
            file: Some(f.path().to_owned()),
            ..Sources::default()
        });
        assert!(err.contains(key), "{toml}: {err}");
        assert!(err.contains(needle), "{toml}: {err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn defaults_apply_without_any_source() {
        let c = load(&Sources::default()).expect("defaults");
        assert_eq!(c, Config::default());
        assert_eq!(c.store, "memory://");
        assert_eq!(c.limits.session_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(c.memory.sweep_interval, Duration::from_secs(30));
        assert_eq!(c.log.level, "warn");
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let f = file(
            "store = \"file:///tmp/from-file.jsonl\"\n[limits]\nmax_sessions = 10\n\
             max_frame_bytes = 1000\nsession_ttl = \"2h\"\n[memory]\nsweep_interval = \"5s\"\n\
             [log]\nlevel = \"info\"\nformat = \"json\"\n",
        );
        // File alone beats defaults.
        let c = load(&Sources {
            file: Some(f.path().to_owned()),
            ..Sources::default()
        })
        .expect("file");
        assert_eq!(c.store, "file:///tmp/from-file.jsonl");
        assert_eq!(c.limits.max_sessions, 10);
        assert_eq!(c.limits.session_ttl, Duration::from_secs(7200));
        assert_eq!(c.limits.max_frames_per_session, 10_000, "untouched default");
        assert_eq!(c.memory.sweep_interval, Duration::from_secs(5));
        assert_eq!(c.log.format, LogFormat::Json);

        // Env beats the file, key by key.
        let e = env(&[
            ("SHOAL_STORE", "file:///tmp/from-env.jsonl"),
            ("SHOAL_LIMITS__MAX_SESSIONS", "20"),
            ("SHOAL_LOG__LEVEL", "debug"),
            ("SHOAL_CONFIG", "/ignored.toml"),
            ("SHOAL_REDIS_URL", "redis://harness-only"),
            ("SHOAL_TEST_THREADS", "4"),
            ("UNRELATED", "x"),
        ]);
        let c = load(&Sources {
            file: Some(f.path().to_owned()),
            env: e.clone(),
            ..Sources::default()
        })
        .expect("file+env");
        assert_eq!(c.store, "file:///tmp/from-env.jsonl");
        assert_eq!(c.limits.max_sessions, 20);
        assert_eq!(c.limits.max_frame_bytes, 1000, "from the file");
        assert_eq!(c.log.level, "debug");

        // Flags beat everything.
        let c = load(&Sources {
            file: Some(f.path().to_owned()),
            env: e,
            flags: Overrides {
                store: Some("memory://".into()),
                log_level: Some("trace".into()),
                log_format: Some(LogFormat::Text),
                ..Overrides::default()
            },
        })
        .expect("all");
        assert_eq!(c.store, "memory://");
        assert_eq!(c.log.level, "trace");
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.limits.max_sessions, 20, "still from env");
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let f = file("[limits]\nmax_sesions = 5\n");
        let err = load_err(&Sources {
            file: Some(f.path().to_owned()),
            ..Sources::default()
        });
        assert!(err.contains("limits.max_sesions"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
        assert!(
            err.contains("max_sessions"),
            "lists the expected keys: {err}"
        );

        let f = file("stor = \"memory://\"\n");
        let err = load_err(&Sources {
            file: Some(f.path().to_owned()),
            ..Sources::default()
        });
        assert!(err.contains("`stor`"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn the_resilience_section_maps_layers_and_round_trips() {
        let c = load(&Sources::default()).expect("defaults");
        assert_eq!(c.resilience.fallback, None, "off by default");
        assert!(c.resilience.to_resilience_config().is_none());
        assert!(!c.cache.enabled, "off by default");

        let f = file(
            "store = \"redis://127.0.0.1:6379\"\n[resilience]\nfallback = \"read-only\"\n\
             op_timeout = \"250ms\"\ndrain_timeout = \"3s\"\n[resilience.breaker]\n\
             failure_threshold = 3\ncooldown = \"5s\"\nfailure_ratio = 0.25\n\
             [resilience.journal]\nmax_entries = 50\n[resilience.health]\ninterval = \"100ms\"\n\
             [resilience.retry]\nmax_retries = 0\n",
        );
        let sources = |env: &[(&str, &str)], flags: Overrides| Sources {
            file: Some(f.path().to_owned()),
            env: self::env(env),
            flags,
        };
        let c = load(&sources(&[], Overrides::default())).expect("file");
        let rc = c.resilience.to_resilience_config().expect("on");
        assert_eq!(rc.fallback, FallbackMode::ReadOnly);
        assert_eq!(rc.op_timeout, Duration::from_millis(250));
        assert_eq!(rc.breaker.failure_threshold, 3);
        assert_eq!(rc.breaker.cooldown, Duration::from_secs(5));
        assert_eq!(rc.breaker.failure_ratio, 0.25);
        assert_eq!(rc.breaker.close_after, 3, "untouched default");
        assert_eq!(rc.journal.max_entries, 50);
        assert_eq!(rc.health.interval, Duration::from_millis(100));
        assert_eq!(rc.retry.max_retries, 0);
        assert_eq!(c.resilience.drain_timeout, Duration::from_secs(3));

        // Env beats the file; the flag beats both.
        let env = [
            ("SHOAL_RESILIENCE__FALLBACK", "none"),
            ("SHOAL_RESILIENCE__BREAKER__COOLDOWN", "7s"),
            ("SHOAL_RESILIENCE__BREAKER__FAILURE_RATIO", "1"),
        ];
        let c = load(&sources(&env, Overrides::default())).expect("env");
        let rc = c.resilience.to_resilience_config().expect("on");
        assert_eq!(rc.fallback, FallbackMode::None);
        assert_eq!(rc.breaker.cooldown, Duration::from_secs(7));
        assert_eq!(rc.breaker.failure_ratio, 1.0);
        let c = load(&sources(
            &env,
            Overrides {
                fallback: Some(FallbackMode::Memory),
                ..Overrides::default()
            },
        ))
        .expect("flag");
        assert_eq!(c.resilience.fallback, Some(FallbackMode::Memory));
        assert_eq!(c.resilience.breaker.cooldown, Duration::from_secs(7));

        // Printed back, it loads to the same configuration.
        let text = to_toml(&c).expect("toml");
        assert!(text.contains("[resilience.breaker]"), "{text}");
        let again = file(&text);
        let back = load(&Sources {
            file: Some(again.path().to_owned()),
            ..Sources::default()
        })
        .expect("reload");
        assert_eq!(back, c);
    }

    #[test]
    fn the_cache_section_maps_layers_and_round_trips() {
        let f = file(
            "[cache]\nenabled = true\nmax_entries = 500\nttl = \"2s\"\nconsistency = \"strict\"\n\
             write_mode = \"write_behind\"\ntouch_interval = \"250ms\"\ntail_frames = 0\n\
             [cache.bus]\nping_interval = \"300ms\"\n",
        );
        let c = load(&Sources {
            file: Some(f.path().to_owned()),
            ..Sources::default()
        })
        .expect("file");
        assert!(c.cache.enabled);
        let cc = c.cache.to_cache_config();
        assert_eq!(cc.max_entries, 500);
        assert_eq!(cc.ttl, Duration::from_secs(2));
        assert_eq!(cc.consistency, Consistency::Strict);
        assert_eq!(cc.write_mode, WriteMode::WriteBehind);
        assert_eq!(cc.touch_interval, Duration::from_millis(250));
        assert_eq!(cc.tail_frames, 0);
        assert_eq!(cc.max_bytes, CacheConfig::default().max_bytes);
        assert_eq!(c.cache.bus.ping_interval, Duration::from_millis(300));

        let c = load(&Sources {
            file: Some(f.path().to_owned()),
            env: env(&[
                ("SHOAL_CACHE__TTL", "9s"),
                ("SHOAL_CACHE__CONSISTENCY", "invalidate"),
                ("SHOAL_CACHE__BUS__MAX_IDS_PER_MESSAGE", "16"),
            ]),
            flags: Overrides {
                cache_write_mode: Some(WriteMode::ReadThrough),
                ..Overrides::default()
            },
        })
        .expect("env + flags");
        assert_eq!(c.cache.ttl, Duration::from_secs(9));
        assert_eq!(c.cache.consistency, Consistency::Invalidate);
        assert_eq!(c.cache.write_mode, WriteMode::ReadThrough);
        assert_eq!(c.cache.bus.max_ids_per_message, 16);

        let on = load(&Sources {
            flags: Overrides {
                cache: true,
                ..Overrides::default()
            },
            ..Sources::default()
        })
        .expect("--cache");
        assert!(on.cache.enabled);

        let text = to_toml(&c).expect("toml");
        assert!(text.contains("[cache.bus]"), "{text}");
        let again = file(&text);
        let back = load(&Sources {
            file: Some(again.path().to_owned()),
            ..Sources::default()
        })
        .expect("reload");
        assert_eq!(back, c);
    }

    #[test]
    fn bad_resilience_and_cache_keys_are_located() {
        for (toml, key, needle) in [
            (
                "[resilience]\nfallbak = \"memory\"\n",
                "resilience.fallbak",
                "expected one of",
            ),
            (
                "[resilience.breaker]\nthreshold = 1\n",
                "resilience.breaker.threshold",
                "failure_threshold",
            ),
            (
                "[resilience]\nfallback = \"disk\"\n",
                "resilience.fallback",
                "disk",
            ),
            (
                "[resilience.breaker]\nfailure_ratio = 1.5\n",
                "resilience.breaker.failure_ratio",
                "(0, 1]",
            ),
            (
                "[resilience.breaker]\ncooldown = \"soon\"\n",
                "resilience.breaker.cooldown",
                "soon",
            ),
            (
                "[resilience.journal]\nmax_entries = 0\n",
                "resilience.journal.max_entries",
                ">= 1",
            ),
            ("[cache]\nttl_ms = 5\n", "cache.ttl_ms", "expected one of"),
            ("[cache]\nttl = \"0s\"\n", "cache.ttl", "greater than zero"),
            (
                "[cache]\nconsistency = \"eventual\"\n",
                "cache.consistency",
                "eventual",
            ),
            (
                "[cache]\nmax_entries = 0\n",
                "cache.max_entries",
                "at least 1",
            ),
            (
                "[cache.bus]\nmax_ids_per_message = 0\n",
                "cache.bus.max_ids_per_message",
                "at least 1",
            ),
            (
                "[cache.bus]\nping = \"1s\"\n",
                "cache.bus.ping",
                "ping_interval",
            ),
        ] {
            assert_file_error(toml, key, needle);
        }
        let err = load_err(&Sources {
            env: env(&[("SHOAL_RESILIENCE__BREAKER__COOLDOWN", "0s")]),
            ..Sources::default()
        });
        assert!(err.contains("resilience.breaker.cooldown"), "{err}");
        assert!(err.contains("SHOAL_RESILIENCE__BREAKER__COOLDOWN"), "{err}");
        let err = load_err(&Sources {
            env: env(&[("SHOAL_CACHE__TTL", "0s")]),
            ..Sources::default()
        });
        assert!(err.contains("SHOAL_CACHE__TTL"), "{err}");
        let err = load_err(&Sources {
            env: env(&[("SHOAL_CACHE_TTL", "1s")]),
            ..Sources::default()
        });
        assert!(err.contains("SHOAL_CACHE__TTL"), "{err}");
    }

    #[test]
    fn the_redis_section_maps_to_the_backend_config() {
        let c = load(&Sources::default()).expect("defaults");
        let d = RedisConfig::default();
        let rc = c.redis.to_redis_config("redis://h:1/2");
        assert_eq!(rc.url, "redis://h:1/2");
        assert_eq!(
            (rc.key_prefix.as_str(), rc.connect_timeout, rc.connections),
            (d.key_prefix.as_str(), d.connect_timeout, d.connections)
        );
        assert_eq!(c.redis.sweep_interval, Duration::from_secs(30));

        let f = file(
            "store = \"redis://127.0.0.1:6379/3\"\n[redis]\nkey_prefix = \"app\"\n\
             connect_timeout = \"750ms\"\nresponse_timeout = \"1s\"\nconnections = 3\n\
             tls_ca_file = \"/etc/ca.pem\"\nexpiry_grace = \"2m\"\nsweep_lease = \"10s\"\n\
             reconnect_retries = 5\nsweep_interval = \"5s\"\n",
        );
        let c = load(&Sources {
            file: Some(f.path().to_owned()),
            env: env(&[
                ("SHOAL_REDIS__PREFIX", "2024"),
                ("SHOAL_REDIS__CONNECTIONS", "2"),
                ("SHOAL_REDIS_URL", "redis://harness-only"),
            ]),
            ..Sources::default()
        })
        .expect("file + env");
        let rc = c.redis.to_redis_config(&c.store);
        assert_eq!(
            rc.key_prefix, "2024",
            "env beats the file, numbers kept as text"
        );
        assert_eq!(rc.connections, 2);
        assert_eq!(rc.connect_timeout, Duration::from_millis(750));
        assert_eq!(rc.response_timeout, Duration::from_secs(1));
        assert_eq!(rc.tls_ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(rc.expiry_grace, Duration::from_secs(120));
        assert_eq!(rc.sweep_lease, Duration::from_secs(10));
        assert_eq!(rc.reconnect_retries, 5);
        assert_eq!(c.redis.sweep_interval, Duration::from_secs(5));
        assert!(rc.validate().is_ok());

        // Printed back, it loads to the same configuration.
        let text = to_toml(&c).expect("toml");
        assert!(
            text.contains("[redis]") && text.contains("key_prefix = \"2024\""),
            "{text}"
        );
        let again = file(&text);
        let back = load(&Sources {
            file: Some(again.path().to_owned()),
            ..Sources::default()
        })
        .expect("reload");
        assert_eq!(back, c);
    }

    #[test]
    fn bad_redis_keys_are_named() {
        for (toml, key, needle) in [
            (
                "[redis]\nurl = \"redis://x\"\n",
                "redis.url",
                "expected one of",
            ),
            (
                "[redis]\nkey_prefix = \"a{b\"\n",
                "redis.key_prefix",
                "reserved",
            ),
            ("[redis]\nconnections = 0\n", "redis.connections", "1 to 64"),
            (
                "[redis]\nconnect_timeout = \"0s\"\n",
                "redis.connect_timeout",
                "zero",
            ),
            (
                "[redis]\nresponse_timeout = \"soon\"\n",
                "redis.response_timeout",
                "soon",
            ),
            (
                "[redis]\nsweep_interval = \"1ms\"\n",
                "redis.sweep_interval",
                "10ms",
            ),
        ] {
            assert_file_error(toml, key, needle);
        }
        let err = load_err(&Sources {
            env: env(&[("SHOAL_REDIS_KEY_PREFIX", "x")]),
            ..Sources::default()
        });
        assert!(err.contains("SHOAL_REDIS__KEY_PREFIX"), "{err}");
        let err = load_err(&Sources {
            env: env(&[("SHOAL_REDIS__CONNECTIONS", "100")]),
            ..Sources::default()
        });
        assert!(err.contains("SHOAL_REDIS__CONNECTIONS"), "{err}");
        let err = load_err(&Sources {
            flags: Overrides {
                store: Some("redis+sentinel://s1:26379".into()),
                ..Overrides::default()
            },
            ..Sources::default()
        });
        assert!(err.contains("master"), "{err}");
    }

    #[test]
    fn passwords_never_show_in_debug_or_redacted_output() {
        let c = Config {
            store: "redis://user:hunter2@127.0.0.1:6379/0".into(),
            ..Config::default()
        };
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("hunter2") && dbg.contains("user:***@"),
            "{dbg}"
        );
        let text = to_toml(&c.redacted()).expect("toml");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn unknown_env_keys_name_the_variable() {
        let err = load_err(&Sources {
            env: env(&[("SHOAL_LIMITS__MAX_SESIONS", "5")]),
            ..Sources::default()
        });
        assert!(err.contains("limits.max_sesions"), "{err}");
        assert!(err.contains("SHOAL_LIMITS__MAX_SESIONS"), "{err}");

        let err = load_err(&Sources {
            env: env(&[("SHOAL_LIMITS_MAX_SESSIONS", "5")]),
            ..Sources::default()
        });
        assert!(err.contains("SHOAL_LIMITS__MAX_SESSIONS"), "{err}");
    }

    #[test]
    fn bad_values_are_clear() {
        let f = file("[limits]\nsession_ttl = \"soon\"\n");
        let err = load_err(&Sources {
            file: Some(f.path().to_owned()),
            ..Sources::default()
        });
        assert!(err.contains("soon"), "{err}");
        assert!(err.contains("limits.session_ttl"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");

        let f = file("[limits]\nmax_sessions = \"many\"\n");
        let err = load_err(&Sources {
            file: Some(f.path().to_owned()),
            ..Sources::default()
        });
        assert!(err.contains("limits.max_sessions"), "{err}");

        let err = load_err(&Sources {
            env: env(&[("SHOAL_LIMITS__MAX_SESSIONS", "0")]),
            ..Sources::default()
        });
        assert!(err.contains("limits.max_sessions"), "{err}");
        assert!(err.contains("SHOAL_LIMITS__MAX_SESSIONS"), "{err}");

        let f = file("store = \"ftp://x\"\n");
        let err = load_err(&Sources {
            file: Some(f.path().to_owned()),
            ..Sources::default()
        });
        assert!(err.contains("ftp"), "{err}");
        assert!(err.contains("memory://"), "lists supported schemes: {err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");

        let err = load_err(&Sources {
            flags: Overrides {
                log_level: Some("[[[".into()),
                ..Overrides::default()
            },
            ..Sources::default()
        });
        assert!(err.contains("log.level"), "{err}");
    }

    #[test]
    fn syntax_errors_and_missing_files_are_reported() {
        let f = file("[limits\nmax_sessions = 1\n");
        let err = load_err(&Sources {
            file: Some(f.path().to_owned()),
            ..Sources::default()
        });
        assert!(err.contains(&f.path().display().to_string()), "{err}");

        let err = load_err(&Sources {
            file: Some("/definitely/not/here.toml".into()),
            ..Sources::default()
        });
        assert!(err.contains("/definitely/not/here.toml"), "{err}");
    }

    #[test]
    fn effective_config_round_trips_through_toml() {
        let mut c = Config {
            store: "file:///tmp/a \"quoted\".jsonl".into(),
            ..Config::default()
        };
        c.limits.session_ttl = Duration::from_secs(90);
        let text = to_toml(&c).expect("toml");
        assert!(text.starts_with("store = "), "{text}");
        assert!(text.contains("[limits]"), "{text}");
        assert!(text.contains("session_ttl = \"1m 30s\""), "{text}");
        let f = file(&text);
        let back = load(&Sources {
            file: Some(f.path().to_owned()),
            ..Sources::default()
        })
        .expect("reload");
        assert_eq!(back, c);
    }
}
