//! [`Config`]: the effective configuration of one `shoal` run, and the command's own sections
//! (`[log]`, `[proxy]`).

use std::{fmt, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use shoal_core::{FeedConfig, Limits};
use shoal_redis::{
    StackConfig, redact_url,
    stack::{CacheSettings, MemorySettings, RedisSettings, ResilienceSettings},
};

/// Top-level keys, in the order `config show` prints them.
pub(crate) const SECTIONS: &[&str] = &[
    "store",
    "limits",
    "memory",
    "redis",
    "log",
    "proxy",
    "resilience",
    "cache",
    "feed",
];

/// The effective configuration of one `shoal` run.
///
/// `Debug` and [`Config::redacted`] hide the credentials in the store URL and in the proxy's
/// upstream.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// The store URL (`memory://`, `file://PATH`, `redis://…`).
    pub(crate) store: String,
    /// Limits every backend enforces.
    pub(crate) limits: Limits,
    /// Settings of the in-memory backend.
    pub(crate) memory: MemorySettings,
    /// Settings of the Redis backend.
    pub(crate) redis: RedisSettings,
    /// Logging.
    pub(crate) log: LogConfig,
    /// `shoal proxy`.
    pub(crate) proxy: ProxySection,
    /// The resilience wrapper (breaker and fallback) around a Redis store.
    pub(crate) resilience: ResilienceSettings,
    /// The hot-session cache.
    pub(crate) cache: CacheSettings,
    /// The change feed.
    pub(crate) feed: FeedConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: "memory://".into(),
            limits: Limits::default(),
            memory: MemorySettings::default(),
            redis: RedisSettings::default(),
            log: LogConfig::default(),
            proxy: ProxySection::default(),
            resilience: ResilienceSettings::default(),
            cache: CacheSettings::default(),
            feed: FeedConfig::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.redacted();
        f.debug_struct("Config")
            .field("store", &shown.store)
            .field("limits", &shown.limits)
            .field("memory", &shown.memory)
            .field("redis", &shown.redis)
            .field("log", &shown.log)
            .field("proxy", &shown.proxy)
            .field("resilience", &shown.resilience)
            .field("cache", &shown.cache)
            .field("feed", &shown.feed)
            .finish()
    }
}

impl Config {
    /// A copy safe to print: the credentials in the store URL and in the proxy's upstream (a
    /// URL, or URLs inside a stdio command line) replaced by `***`.
    pub(crate) fn redacted(&self) -> Config {
        let mut shown = self.clone();
        shown.store = redact_url(&self.store);
        shown.proxy.upstream = shoal_core::redact::redact_text(&self.proxy.upstream);
        shown
    }

    /// The store's sections, as the library opens a [`shoal_redis::Stack`] with them.
    pub(crate) fn stack(&self) -> StackConfig {
        let mut stack = StackConfig::default();
        stack.limits.clone_from(&self.limits);
        stack.memory.clone_from(&self.memory);
        stack.redis.clone_from(&self.redis);
        stack.resilience.clone_from(&self.resilience);
        stack.cache.clone_from(&self.cache);
        stack.feed.clone_from(&self.feed);
        stack
    }
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
    /// Allowed `Host` values, comma-separated (`name` or `name:port`; `*`: any). Empty: the
    /// loopback names when listening on loopback; required when listening elsewhere.
    pub(crate) allowed_hosts: String,
    /// Request headers forwarded upstream besides the ones MCP needs, comma-separated.
    pub(crate) forward_headers: String,
    /// Forward the client's `Authorization` header upstream. Default true.
    pub(crate) forward_authorization: bool,
    /// `[proxy.quota]`: sessions per client address and per principal.
    pub(crate) quota: shoal_proxy::QuotaConfig,
    /// File holding the event-id MAC key (≥ 16 bytes), the same on every instance. Unset: the
    /// instances agree on a key through the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) event_id_key_file: Option<PathBuf>,
    /// File holding the previous event-id key after a rotation: ids it signed stay valid for as
    /// long as it is set (the grace period).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) event_id_previous_key_file: Option<PathBuf>,
    /// Largest request body. Default 4 MiB.
    pub(crate) max_body_bytes: usize,
    /// Open SSE streams per session and instance. Default 16.
    pub(crate) max_streams_per_session: usize,
    /// How often a follower polls the store for another instance's stream. Default 50 ms.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub(crate) poll_interval: Duration,
    /// Stream holder lease. Default 6 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub(crate) stream_lease: Duration,
    /// SSE `retry` sent to 2025-11-25 clients. Default 1 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub(crate) sse_retry: Duration,
    /// Longest wait for the upstream to start answering. Default 60 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub(crate) upstream_timeout: Duration,
    /// Header carrying the authenticated principal (set by a trusted gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) principal_header: Option<String>,
    /// Protocol eras bridged: `off` (default), `2026-to-2025` (2026-07-28 clients in front of a
    /// 2025-revision upstream) or `2025-to-2026` (2025 clients in front of a 2026-07-28
    /// upstream); see "Across protocol eras" in the README.
    pub(crate) bridge: shoal_proxy::BridgeMode,
    /// A request answered within this time is recorded with its reply in one store write and
    /// never listed as pending; `0s` records every request as pending at once. Default 50 ms.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub(crate) pending_after: Duration,
    /// Longest a stream keeps recording with no client attached. Default 5 min.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub(crate) orphan_stream_timeout: Duration,
    /// Most streams recorded with no client attached at once. Default 1024.
    pub(crate) max_orphan_streams: usize,
    /// Longest wait for a client to take one event before it is detached. Default 2 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub(crate) client_send_timeout: Duration,
    /// SSE keep-alive comment after this much quiet; `0s` turns them off. Default 15 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub(crate) sse_keepalive: Duration,
    /// A POST stream whose upstream is silent this long is ended. Default 10 min.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub(crate) upstream_idle_timeout: Duration,
    /// How long a follower retries a failing store before ending its client's stream.
    /// Default 30 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub(crate) stream_error_deadline: Duration,
    /// Open each session's standalone stream upstream at `notifications/initialized` and
    /// record it. Default true.
    pub(crate) open_standalone_stream: bool,
    /// A request with no response head after this long is answered 504 (waiting for a slot
    /// included). Default 90 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub(crate) request_timeout: Duration,
    /// Most requests handled at once (until their response head); more wait. Default 4096.
    pub(crate) max_concurrent_requests: usize,
}

impl ProxySection {
    /// Sets every setting of this section on `cfg` (the upstream and the key files are the
    /// command's). Also how the loader checks the section: `cfg.check()` after it.
    pub(crate) fn apply_to(&self, cfg: &mut shoal_proxy::ProxyConfig) {
        let p = self;
        cfg.path.clone_from(&p.path);
        cfg.allowed_origins = comma_list(&p.allowed_origins);
        cfg.allowed_hosts = comma_list(&p.allowed_hosts);
        cfg.forward_headers = comma_list(&p.forward_headers);
        cfg.forward_authorization = p.forward_authorization;
        cfg.quota = p.quota.clone();
        cfg.max_body_bytes = p.max_body_bytes;
        cfg.max_streams_per_session = p.max_streams_per_session;
        cfg.poll_interval = p.poll_interval;
        cfg.pending_after = p.pending_after;
        cfg.stream_lease = p.stream_lease;
        cfg.sse_retry = p.sse_retry;
        cfg.upstream_timeout = p.upstream_timeout;
        cfg.orphan_stream_timeout = p.orphan_stream_timeout;
        cfg.max_orphan_streams = p.max_orphan_streams;
        cfg.client_send_timeout = p.client_send_timeout;
        cfg.sse_keepalive = p.sse_keepalive;
        cfg.upstream_idle_timeout = p.upstream_idle_timeout;
        cfg.stream_error_deadline = p.stream_error_deadline;
        cfg.open_standalone_stream = p.open_standalone_stream;
        cfg.request_timeout = p.request_timeout;
        cfg.max_concurrent_requests = p.max_concurrent_requests;
        cfg.principal_header.clone_from(&p.principal_header);
        cfg.bridge = p.bridge;
    }
}

/// A comma-separated list, trimmed, without empty items.
pub(crate) fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            listen: "127.0.0.1:8080".into(),
            upstream: String::new(),
            path: "/mcp".into(),
            allowed_origins: String::new(),
            allowed_hosts: String::new(),
            forward_headers: String::new(),
            forward_authorization: true,
            quota: shoal_proxy::QuotaConfig::default(),
            event_id_key_file: None,
            event_id_previous_key_file: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_streams_per_session: 16,
            poll_interval: Duration::from_millis(50),
            stream_lease: Duration::from_secs(6),
            sse_retry: Duration::from_secs(1),
            upstream_timeout: Duration::from_secs(60),
            principal_header: None,
            bridge: shoal_proxy::BridgeMode::Off,
            pending_after: Duration::from_millis(50),
            orphan_stream_timeout: Duration::from_secs(300),
            max_orphan_streams: 1024,
            client_send_timeout: Duration::from_secs(2),
            sse_keepalive: Duration::from_secs(15),
            upstream_idle_timeout: Duration::from_secs(600),
            stream_error_deadline: Duration::from_secs(30),
            open_standalone_stream: true,
            request_timeout: Duration::from_secs(90),
            max_concurrent_requests: 4096,
        }
    }
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
