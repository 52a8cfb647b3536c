//! Proxy configuration.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use shoal_core::NotifyBus;

pub use shoal_core::event_id::EventIdKey;

use crate::error::ConfigError;

/// Where the proxy sends MCP traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UpstreamConfig {
    /// An MCP Streamable HTTP server, e.g. `http://127.0.0.1:3001/mcp`.
    Http {
        /// The server's MCP endpoint.
        url: String,
    },
    /// An MCP server over stdio: one child process per session and instance.
    Stdio {
        /// The program to start.
        command: String,
        /// Its arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Extra environment variables for the child.
        #[serde(default)]
        env: Vec<(String, String)>,
    },
}

impl UpstreamConfig {
    /// Parses the command-line form: an `http://` / `https://` URL, or `stdio:CMD ARGS…`
    /// (arguments split on whitespace; single or double quotes group words).
    ///
    /// ```
    /// use shoal_proxy::UpstreamConfig;
    /// let u = UpstreamConfig::parse("stdio:node 'my server.js' stdio").unwrap();
    /// assert_eq!(
    ///     u,
    ///     UpstreamConfig::Stdio {
    ///         command: "node".into(),
    ///         args: vec!["my server.js".into(), "stdio".into()],
    ///         env: vec![],
    ///     }
    /// );
    /// assert!(UpstreamConfig::parse("ftp://x").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("stdio:") {
            let words = split_words(rest)?;
            let mut it = words.into_iter();
            let command = it.next().ok_or(ConfigError::MissingCommand)?;
            return Ok(UpstreamConfig::Stdio {
                command,
                args: it.collect(),
                env: Vec::new(),
            });
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(UpstreamConfig::Http { url: s.to_owned() });
        }
        Err(ConfigError::UnknownUpstream(s.to_owned()))
    }
}

fn split_words(s: &str) -> Result<Vec<String>, ConfigError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(ConfigError::UnbalancedQuote(s.to_owned()));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// How many sessions one client may open: per client address and per principal, at once and
/// per minute, counted in the store ([`SessionStore::quota`](shoal_core::SessionStore::quota))
/// so the numbers hold across every instance sharing it. Checked on `initialize` before any
/// upstream request or process start; a refusal is 429 with `Retry-After` and a JSON-RPC
/// error. 0 turns a bound off.
///
/// The defaults protect a public deployment without getting in a real client's way (a client
/// opens one session per connection): 256 live sessions and 120 new ones a minute per client
/// address, 1024 live and 600 a minute per principal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QuotaConfig {
    /// Most live sessions per client address (IPv6: per /64). Default 256.
    pub sessions_per_address: u32,
    /// Most sessions opened per minute per client address. Default 120.
    pub sessions_per_address_per_minute: u32,
    /// Most live sessions per principal. Default 1024.
    pub sessions_per_principal: u32,
    /// Most sessions opened per minute per principal. Default 600.
    pub sessions_per_principal_per_minute: u32,
    /// Refuse requests without a principal (401), for deployments whose clients all
    /// authenticate ([`ProxyConfig::principal_header`] or a bearer token). Default off.
    pub require_principal: bool,
    /// A request header that carries the client's address, set by a trusted load balancer in
    /// front of the proxy (e.g. `x-forwarded-for`: its last address is used, the one the
    /// balancer added). Unset: the TCP peer address. Behind a balancer, set it: otherwise
    /// every client shares the balancer's address and its quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_address_header: Option<String>,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            sessions_per_address: 256,
            sessions_per_address_per_minute: 120,
            sessions_per_principal: 1024,
            sessions_per_principal_per_minute: 600,
            require_principal: false,
            client_address_header: None,
        }
    }
}

/// Everything [`serve`](crate::serve) needs besides the listener and the store.
///
/// ```
/// use shoal_proxy::{ProxyConfig, UpstreamConfig};
/// let cfg = ProxyConfig::new(UpstreamConfig::parse("http://127.0.0.1:3001/mcp").unwrap());
/// assert_eq!(cfg.path, "/mcp");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// The upstream MCP server.
    pub upstream: UpstreamConfig,
    /// The path clients use (default `/mcp`).
    pub path: String,
    /// Extra allowed `Origin` values (exact match, e.g. `https://app.example.com`); `*` allows
    /// every origin. Loopback origins (`localhost`, `127.0.0.1`, `[::1]`, any port) are always
    /// allowed; requests without `Origin` are allowed.
    pub allowed_origins: Vec<String>,
    /// Allowed `Host` values (checked before `Origin`; 403 otherwise), so a DNS-rebinding
    /// page cannot reach the proxy under a name of its own: `name` (any port) or `name:port`,
    /// case-insensitive; `*` allows every host. Empty (the default): when the proxy listens
    /// on a loopback address, `localhost`, `127.0.0.1` and `[::1]` (any port); on any other
    /// address the proxy refuses to start until the names clients use are listed.
    pub allowed_hosts: Vec<String>,
    /// Request headers forwarded to an HTTP upstream besides the ones MCP needs (see
    /// [`FORWARDED_HEADERS`](crate::FORWARDED_HEADERS)), e.g. `x-request-id`. Hop-by-hop headers, `Host`, the
    /// session and resumption headers and the principal header cannot be listed.
    pub forward_headers: Vec<String>,
    /// Forward the client's `Authorization` header to the upstream (the upstream is the
    /// resource server of MCP's authorization). Default on.
    pub forward_authorization: bool,
    /// Session admission quotas.
    pub quota: QuotaConfig,
    /// The key that MACs event ids; share it between instances.
    pub event_id_key: EventIdKey,
    /// Keys that event ids made before a rotation were signed with: still accepted (never
    /// used for new ids) for as long as they are listed — the rotation's grace period.
    pub previous_event_id_keys: Vec<EventIdKey>,
    /// Largest request body accepted (413 beyond). Default 4 MiB.
    pub max_body_bytes: usize,
    /// Most SSE streams one session may hold open on one instance at once (429 beyond).
    /// Default 16.
    pub max_streams_per_session: usize,
    /// How often an instance that follows a stream another instance holds polls the store for
    /// new frames. Default 50 ms.
    pub poll_interval: Duration,
    /// How long a stream's holder lease lasts without renewal; a follower takes over or ends the
    /// stream after it. Default 6 s.
    pub stream_lease: Duration,
    /// The `retry` field (ms) sent to 2025-11-25 clients with the priming event. Default 1000.
    pub sse_retry: Duration,
    /// Longest an upstream request may take to start answering. Default 60 s.
    pub upstream_timeout: Duration,
    /// Longest a stream keeps recording after its client went away. Default 5 min.
    pub orphan_stream_timeout: Duration,
    /// Most streams, across all sessions, that may keep recording at once with no client
    /// attached (beyond that, a stream whose client goes away stops; its client resumes from
    /// the store and a follower takes the upstream stream over). Default 1024.
    pub max_orphan_streams: usize,
    /// Longest the proxy waits for a client to take one event before it detaches the client
    /// (its SSE response ends; it resumes with `Last-Event-ID`), so a client that stops reading
    /// never stalls the recording of its stream. Default 2 s.
    pub client_send_timeout: Duration,
    /// An SSE comment (`: keep-alive`) goes to a client whose stream was quiet this long, so
    /// load balancers and clients do not cut idle streams. Zero turns them off. Default 15 s.
    pub sse_keepalive: Duration,
    /// A POST stream whose upstream sends nothing for this long is ended (its pending
    /// requests stay; the client may resume). Default 10 min.
    pub upstream_idle_timeout: Duration,
    /// How long a stream's follower keeps retrying a failing store before it ends the client's
    /// stream (the client resumes or starts over). Errors that retrying cannot fix end it at
    /// once. Default 30 s.
    pub stream_error_deadline: Duration,
    /// Longest a request may take to produce its response head (a streamed body may last
    /// longer). Answered 504 with a JSON-RPC error when exceeded. Default 90 s.
    pub request_timeout: Duration,
    /// Most requests handled at once by this instance (until each one's response head); more
    /// wait for a slot, within `request_timeout`. At least 1. Default 4096.
    pub max_concurrent_requests: usize,
    /// Opens the session's standalone (GET) stream upstream when the client's
    /// `notifications/initialized` passes, before it is acknowledged, and records it, so
    /// requests and notifications the server sends there before the client's own GET arrives
    /// are replayed to that GET on any instance. Off: the standalone stream opens with the
    /// client's first GET. Default on.
    pub open_standalone_stream: bool,
    /// A request header that carries the authenticated principal, set by a trusted
    /// authenticating layer in front of the proxy (e.g. `x-authenticated-user`). When unset, a
    /// bearer token's SHA-256 fingerprint is the principal (the token itself is never stored).
    pub principal_header: Option<String>,
    /// Name of this instance in logs and leases (default: random).
    pub instance_id: String,
    /// Working directory for stdio upstream processes.
    pub stdio_cwd: Option<PathBuf>,
    /// The pub/sub between instances for wake-ups (e.g. `shoal_redis::RedisPubSub`, any
    /// topology; the same bus a cache uses): the instance recording a stream's events
    /// announces each append, and followers of that stream on other instances read the store
    /// at once instead of at their next poll. While it is connected followers poll only every
    /// third of `stream_lease` (a fallback); without it, or while it is down, every
    /// `poll_interval`. One bus per instance: instances sharing a bus object do not hear each
    /// other.
    pub bus: Option<Arc<dyn NotifyBus>>,
    /// Requests are recorded off the response path. One answered with a complete (JSON)
    /// reply within this time is recorded together with its reply in one store write and is
    /// never listed as pending; one still unanswered after it is recorded as pending then.
    /// Zero records every request (frame and pending entry) as soon as it arrives. Default
    /// 50 ms.
    pub pending_after: Duration,
    /// Where the proxy's metrics are registered and what `/metrics` renders: by default a
    /// recorder of this proxy's own; [`MetricsExport::install_global`](crate::MetricsExport::install_global)
    /// to export them beside the store's.
    pub metrics: crate::MetricsExport,
    /// Protocol eras bridged (default off: each request goes upstream in its own revision).
    pub bridge: crate::BridgeMode,
}

impl ProxyConfig {
    /// Defaults for everything but the upstream. The event id key is random: set
    /// [`ProxyConfig::event_id_key`] to the same key on every instance.
    pub fn new(upstream: UpstreamConfig) -> Self {
        let mut b = [0u8; 6];
        crate::fill_random(&mut b);
        let instance_id = b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        ProxyConfig {
            upstream,
            path: "/mcp".into(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            forward_headers: Vec::new(),
            forward_authorization: true,
            quota: QuotaConfig::default(),
            event_id_key: EventIdKey::random(),
            previous_event_id_keys: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            max_streams_per_session: 16,
            poll_interval: Duration::from_millis(50),
            stream_lease: Duration::from_secs(6),
            sse_retry: Duration::from_millis(1000),
            upstream_timeout: Duration::from_secs(60),
            orphan_stream_timeout: Duration::from_secs(300),
            max_orphan_streams: 1024,
            client_send_timeout: Duration::from_secs(2),
            sse_keepalive: Duration::from_secs(15),
            upstream_idle_timeout: Duration::from_secs(600),
            stream_error_deadline: Duration::from_secs(30),
            request_timeout: Duration::from_secs(90),
            max_concurrent_requests: 4096,
            open_standalone_stream: true,
            principal_header: None,
            instance_id,
            stdio_cwd: None,
            bus: None,
            pending_after: Duration::from_millis(50),
            metrics: crate::MetricsExport::private(),
            bridge: crate::BridgeMode::Off,
        }
    }

    /// Sets the event id key.
    pub fn with_event_id_key(mut self, key: EventIdKey) -> Self {
        self.event_id_key = key;
        self
    }

    /// Sets the instance name.
    pub fn with_instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// Sets the pub/sub bus for cross-instance wake-ups (see [`ProxyConfig::bus`]).
    pub fn with_bus(mut self, bus: Arc<dyn NotifyBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Refuses settings the proxy cannot run with (checked when it starts): every duration
    /// within its range, zero only where it means something (documented on the field), names
    /// that are valid header names. The error names the setting and its range.
    pub fn check(&self) -> Result<(), ConfigError> {
        const MS: Duration = Duration::from_millis(1);
        const MINUTE: Duration = Duration::from_secs(60);
        const HOUR: Duration = Duration::from_secs(3600);
        const DAY: Duration = Duration::from_secs(24 * 3600);
        const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
        if self.instance_id.is_empty()
            || self.instance_id.len() > shoal_core::lease::MAX_LEASE_OWNER
            || self.instance_id.chars().any(char::is_control)
        {
            return Err(setting(
                "instance_id",
                "must be 1-128 bytes without control characters",
            ));
        }
        if !self.path.starts_with('/')
            || self.path.len() > 256
            || ["/healthz", "/readyz", "/metrics"].contains(&self.path.as_str())
            || axum::http::uri::PathAndQuery::try_from(self.path.as_str()).is_err()
        {
            return Err(setting(
                "path",
                "must be a URL path starting with '/' (not /healthz, /readyz or /metrics)",
            ));
        }
        for (name, value, min, max) in [
            (
                "max_concurrent_requests",
                self.max_concurrent_requests,
                1,
                1 << 20,
            ),
            (
                "max_streams_per_session",
                self.max_streams_per_session,
                1,
                1 << 16,
            ),
            ("max_body_bytes", self.max_body_bytes, 1, 1 << 30),
            ("max_orphan_streams", self.max_orphan_streams, 0, 1 << 20),
        ] {
            if value < min || value > max {
                return Err(setting(name, format!("must be between {min} and {max}")));
            }
        }
        for (name, value, min, max) in [
            ("request_timeout", self.request_timeout, MS, DAY),
            (
                "stream_lease",
                self.stream_lease,
                Duration::from_millis(30),
                DAY,
            ),
            ("poll_interval", self.poll_interval, MS, MINUTE),
            ("sse_retry", self.sse_retry, MS, HOUR),
            ("upstream_timeout", self.upstream_timeout, MS, DAY),
            (
                "orphan_stream_timeout",
                self.orphan_stream_timeout,
                Duration::ZERO,
                DAY,
            ),
            ("client_send_timeout", self.client_send_timeout, MS, HOUR),
            ("sse_keepalive", self.sse_keepalive, Duration::ZERO, HOUR),
            (
                "upstream_idle_timeout",
                self.upstream_idle_timeout,
                MS,
                WEEK,
            ),
            ("stream_error_deadline", self.stream_error_deadline, MS, DAY),
            ("pending_after", self.pending_after, Duration::ZERO, MINUTE),
        ] {
            if value < min || value > max {
                return Err(setting(
                    name,
                    format!("must be between {} and {}", Pretty(min), Pretty(max)),
                ));
            }
        }
        for host in &self.allowed_hosts {
            if host.is_empty()
                || host.len() > 255
                || host
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '/')
            {
                return Err(setting(
                    "allowed_hosts",
                    format!("{host:?} is not a host name, host:port or *"),
                ));
            }
        }
        for name in &self.forward_headers {
            crate::upstream::check_forwardable(name, self.principal_header.as_deref())
                .map_err(|why| setting("forward_headers", why))?;
        }
        for (key, name) in [
            ("principal_header", &self.principal_header),
            (
                "quota.client_address_header",
                &self.quota.client_address_header,
            ),
        ] {
            if let Some(name) = name
                && axum::http::HeaderName::try_from(name.as_str()).is_err()
            {
                return Err(setting(key, format!("{name:?} is not a header name")));
            }
        }
        Ok(())
    }
}

/// A duration as people write it in settings: `30ms`, `90s`, `24h`.
struct Pretty(Duration);

impl fmt::Display for Pretty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => f.write_str("0s"),
            ms if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000),
            ms if ms % 1000 == 0 => write!(f, "{}s", ms / 1000),
            ms => write!(f, "{ms}ms"),
        }
    }
}

fn setting(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Setting {
        name,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstreams() {
        assert_eq!(
            UpstreamConfig::parse("http://127.0.0.1:1/mcp").unwrap(),
            UpstreamConfig::Http {
                url: "http://127.0.0.1:1/mcp".into()
            }
        );
        assert!(UpstreamConfig::parse("stdio:").is_err());
        assert!(UpstreamConfig::parse("stdio:'x").is_err());
        match UpstreamConfig::parse("stdio:npx -y \"a b\"").unwrap() {
            UpstreamConfig::Stdio { command, args, .. } => {
                assert_eq!(command, "npx");
                assert_eq!(args, vec!["-y", "a b"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
