//! [`RedisConfig`]: where the Redis backend connects and how.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use shoal_core::{Error, FeedConfig, Result};

/// How to reach Redis and how the store behaves on it.
///
/// The URL selects the topology:
///
/// | URL | topology |
/// |---|---|
/// | `redis://[user:password@]host:port[/db]` | standalone |
/// | `rediss://…` | standalone over TLS |
/// | `redis+cluster://[user:password@]host:port,host:port,…` | Redis Cluster (seed nodes) |
/// | `rediss+cluster://…` | Redis Cluster over TLS |
/// | `redis+sentinel://[user:password@]host:port,host:port,…/<master-name>[/db]` | Sentinel |
/// | `rediss+sentinel://…` | Sentinel, data nodes over TLS |
///
/// Credentials in the URL are an ACL user and password (or only a password for the
/// `default` user); percent-encode reserved characters.
///
/// ```
/// use shoal_redis::RedisConfig;
/// use std::time::Duration;
///
/// let config = RedisConfig::new("redis://127.0.0.1:6379")
///     .with_key_prefix("prod")
///     .with_connections(2)
///     .with_response_timeout(Duration::from_millis(500));
/// assert!(config.validate().is_ok());
/// assert!(RedisConfig::new("redis://h").with_key_prefix("a{b").validate().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Where Redis is (see the table above). Default `redis://127.0.0.1:6379`.
    pub url: String,
    /// First part of every key (`<prefix>:{<sid>}:meta`, …). Visible ASCII without `{`, `}`,
    /// `*`, `?`, `[`, `]`, `\`. Default `shoal`. Read from a number too (`2024`), as an
    /// environment layer may have parsed it.
    #[serde(deserialize_with = "lenient_string")]
    pub key_prefix: String,
    /// Bound on establishing a connection (also the whole of [`RedisStore::connect`]).
    /// Default 5 s.
    ///
    /// [`RedisStore::connect`]: crate::RedisStore::connect
    #[serde(with = "shoal_core::serde_util::duration")]
    pub connect_timeout: Duration,
    /// Bound on one Redis round trip; a reply that takes longer is [`Error::Timeout`].
    /// Default 2 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub response_timeout: Duration,
    /// Multiplexed connections to spread commands over (round robin). Default 1, which is
    /// usually best: one multiplexed connection pipelines every concurrent request.
    pub connections: usize,
    /// A PEM file with the CA certificate(s) that sign the server's certificate, for
    /// `rediss://` servers whose certificate is not signed by a public root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// Extra time Redis keeps a session's keys (server-side `PEXPIRE`) beyond its logical
    /// expiry. Expiry is decided by the store's clock; the server TTL only collects garbage,
    /// so the grace absorbs clock differences between instances. Default 60 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub expiry_grace: Duration,
    /// How long one instance may hold the sweep lease (`<prefix>:sweep:lease`) before
    /// another may take over. Default 30 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub sweep_lease: Duration,
    /// Reconnection attempts of a standalone connection before a command fails. Default 2.
    pub reconnect_retries: usize,
    /// How far this instance's clock may differ from the Redis server's before the store
    /// stops trusting it and reads time as the server's (measured with `TIME` at connect and
    /// every [`clock_resync`](Self::clock_resync)). Within it, expiries are written and
    /// compared with this instance's own clock. Default 1 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub max_clock_skew: Duration,
    /// How often the background sweeper measures the clock difference again. Default 60 s.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub clock_resync: Duration,
    /// What [`RedisStore::connect`](crate::RedisStore::connect) does when the server's
    /// `maxmemory-policy` can evict session keys (anything but `noeviction` once
    /// `maxmemory` is set): log a warning (`warn`, the default) or fail (`refuse`).
    pub evicting_policy: EvictingPolicy,
    /// Replicas that must acknowledge each write before it is acknowledged (`WAIT`); 0 (the
    /// default) acknowledges once the master has it — replication is then asynchronous and a
    /// failover can lose the last writes. A write fewer replicas confirm within
    /// [`wait_timeout`](Self::wait_timeout) fails with `Unavailable` ("not replicated: …",
    /// [`Error::is_not_replicated`]): it is on the master, not yet safe. At most 16.
    pub wait_replicas: u32,
    /// How long one write waits for its replicas. Default 500 ms.
    #[serde(with = "shoal_core::serde_util::duration")]
    pub wait_timeout: Duration,
    /// Whether appends record frame epochs (see `shoal_core::epoch`), so that an SSE event id
    /// issued before a rollback — a failover to a replica that lacked the newest appends, a
    /// restart from an older snapshot or AOF — never resolves to another frame. Costs each
    /// append one `INFO replication` inside the script (a few µs of server time). Turn it
    /// off only when writes cannot be rolled back (no replicas, and `appendfsync always` or
    /// no persistence at all). Default on.
    pub frame_epochs: bool,
    /// The change feed (see `shoal_core::feed`): off unless set here or with
    /// [`RedisConfig::with_feed`]; a stack sets it from its `[feed]` section (it is not read
    /// from `[redis]`).
    #[serde(skip, default = "FeedConfig::disabled")]
    pub feed: FeedConfig,
}

/// What to do on a Redis server whose memory policy may evict session keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvictingPolicy {
    /// Connect, and warn once in the log and in `health`.
    #[default]
    Warn,
    /// Refuse to connect ([`Error::InvalidInput`] naming the policy).
    Refuse,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "shoal".into(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(2),
            connections: 1,
            tls_ca_file: None,
            expiry_grace: Duration::from_secs(60),
            sweep_lease: Duration::from_secs(30),
            reconnect_retries: 2,
            max_clock_skew: Duration::from_secs(1),
            clock_resync: Duration::from_secs(60),
            evicting_policy: EvictingPolicy::Warn,
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
            frame_epochs: true,
            feed: FeedConfig::disabled(),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("connections", &self.connections)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("expiry_grace", &self.expiry_grace)
            .field("sweep_lease", &self.sweep_lease)
            .field("reconnect_retries", &self.reconnect_retries)
            .field("max_clock_skew", &self.max_clock_skew)
            .field("clock_resync", &self.clock_resync)
            .field("evicting_policy", &self.evicting_policy)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .field("frame_epochs", &self.frame_epochs)
            .field("feed", &self.feed)
            .finish()
    }
}

impl RedisConfig {
    /// The defaults with `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            ..RedisConfig::default()
        }
    }

    /// Sets the key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Sets the response timeout.
    pub fn with_response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }

    /// Sets the number of multiplexed connections.
    pub fn with_connections(mut self, n: usize) -> Self {
        self.connections = n;
        self
    }

    /// Sets the CA file for `rediss://`.
    pub fn with_tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Writes the change feed with these settings (see [`RedisConfig::feed`]).
    pub fn with_feed(mut self, feed: FeedConfig) -> Self {
        self.feed = feed;
        self
    }

    /// Sets the server-side expiry grace.
    pub fn with_expiry_grace(mut self, d: Duration) -> Self {
        self.expiry_grace = d;
        self
    }

    /// Checks the prefix, counts and timeouts, and that the URL has a known scheme. The
    /// message of a bad setting starts with its key (`redis.connections must be …`).
    pub fn validate(&self) -> Result<()> {
        if self.feed.enabled {
            self.feed.check()?;
        }
        let p = &self.key_prefix;
        if p.is_empty() || p.len() > 64 {
            return Err(Error::invalid(format!(
                "redis.key_prefix must be 1 to 64 characters, got {}",
                p.len()
            )));
        }
        if let Some(b) = p
            .bytes()
            .find(|b| !(0x21..=0x7e).contains(b) || b"{}*?[]\\".contains(b))
        {
            return Err(Error::invalid(format!(
                "redis.key_prefix {p:?} contains the reserved or invisible character {:?}",
                b as char
            )));
        }
        if self.connections == 0 || self.connections > 64 {
            return Err(Error::invalid(format!(
                "redis.connections must be 1 to 64, got {}",
                self.connections
            )));
        }
        shoal_core::setting::all_at_most_max([
            ("redis.connect_timeout", self.connect_timeout),
            ("redis.response_timeout", self.response_timeout),
            ("redis.expiry_grace", self.expiry_grace),
            ("redis.sweep_lease", self.sweep_lease),
            ("redis.max_clock_skew", self.max_clock_skew),
            ("redis.clock_resync", self.clock_resync),
            ("redis.wait_timeout", self.wait_timeout),
        ])?;
        if self.wait_replicas > 16 {
            return Err(Error::invalid(format!(
                "redis.wait_replicas must be 0 to 16, got {}",
                self.wait_replicas
            )));
        }
        if self.wait_replicas > 0 && self.wait_timeout.is_zero() {
            return Err(Error::invalid(
                "redis.wait_timeout must be greater than zero when redis.wait_replicas is set",
            ));
        }
        if self.clock_resync < Duration::from_secs(1) {
            return Err(Error::invalid(format!(
                "redis.clock_resync must be at least 1s, got {:?}",
                self.clock_resync
            )));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::invalid(
                "redis.connect_timeout must be greater than zero",
            ));
        }
        if self.response_timeout.is_zero() {
            return Err(Error::invalid(
                "redis.response_timeout must be greater than zero",
            ));
        }
        if self.sweep_lease.is_zero() {
            return Err(Error::invalid(
                "redis.sweep_lease must be greater than zero",
            ));
        }
        Topology::parse(&self.url).map(|_| ())
    }
}

/// The parsed URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server; the URL as redis-rs understands it.
    Standalone { url: String, tls: bool },
    /// Seed nodes of a cluster, each a redis-rs URL with the credentials.
    Cluster { nodes: Vec<String>, tls: bool },
    /// Sentinels (`host:port`), the master name, credentials and db for the data nodes.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        username: Option<String>,
        password: Option<String>,
        db: i64,
        tls: bool,
    },
}

impl Topology {
    pub(crate) fn parse(url: &str) -> Result<Topology> {
        let bad = |why: &str| Error::invalid(format!("redis url {}: {why}", redact_url(url)));
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("missing scheme (expected e.g. redis://host:port)"))?;
        match scheme {
            "redis" | "rediss" | "unix" | "redis+unix" => Ok(Topology::Standalone {
                url: url.to_string(),
                tls: scheme == "rediss",
            }),
            "redis+cluster" | "rediss+cluster" => {
                let tls = scheme.starts_with("rediss");
                let (auth, hosts) = split_auth(rest);
                let hosts = hosts.trim_end_matches('/');
                if hosts.contains('/') {
                    return Err(bad("a cluster URL takes no database or path"));
                }
                let base = if tls { "rediss" } else { "redis" };
                let nodes: Vec<String> = hosts
                    .split(',')
                    .filter(|h| !h.is_empty())
                    .map(|h| match auth {
                        Some(a) => format!("{base}://{a}@{h}"),
                        None => format!("{base}://{h}"),
                    })
                    .collect();
                if nodes.is_empty() {
                    return Err(bad("no cluster nodes listed"));
                }
                Ok(Topology::Cluster { nodes, tls })
            }
            "redis+sentinel" | "rediss+sentinel" => {
                let tls = scheme.starts_with("rediss");
                let (auth, rest) = split_auth(rest);
                let (hosts, path) = rest
                    .split_once('/')
                    .ok_or_else(|| bad("a sentinel URL needs /<master-name>"))?;
                let mut sentinels = Vec::new();
                for h in hosts.split(',').filter(|h| !h.is_empty()) {
                    let (host, port) = match h.rsplit_once(':') {
                        Some((host, port)) => (
                            host,
                            port.parse::<u16>()
                                .map_err(|_| bad(&format!("bad sentinel port in {h:?}")))?,
                        ),
                        None => (h, 26379),
                    };
                    sentinels.push((host.to_string(), port));
                }
                if sentinels.is_empty() {
                    return Err(bad("no sentinels listed"));
                }
                let mut parts = path.split('/').filter(|p| !p.is_empty());
                let master = parts
                    .next()
                    .ok_or_else(|| bad("a sentinel URL needs /<master-name>"))?
                    .to_string();
                let db = match parts.next() {
                    Some(d) => d
                        .parse::<i64>()
                        .map_err(|_| bad(&format!("bad database number {d:?}")))?,
                    None => 0,
                };
                let (username, password) = match auth {
                    None => (None, None),
                    Some(a) => match a.split_once(':') {
                        Some((u, p)) => (
                            (!u.is_empty()).then(|| percent_decode(u)),
                            Some(percent_decode(p)),
                        ),
                        None => (Some(percent_decode(a)), None),
                    },
                };
                Ok(Topology::Sentinel {
                    sentinels,
                    master,
                    username,
                    password,
                    db,
                    tls,
                })
            }
            other => Err(bad(&format!(
                "unknown scheme {other:?}; expected redis, rediss, redis+cluster, \
                 rediss+cluster, redis+sentinel or rediss+sentinel"
            ))),
        }
    }

    pub(crate) fn tls(&self) -> bool {
        match self {
            Topology::Standalone { tls, .. }
            | Topology::Cluster { tls, .. }
            | Topology::Sentinel { tls, .. } => *tls,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Topology::Standalone { .. } => "standalone",
            Topology::Cluster { .. } => "cluster",
            Topology::Sentinel { .. } => "sentinel",
        }
    }
}

/// Splits `user:pw@hosts` into the credentials (if any) and the rest.
fn split_auth(rest: &str) -> (Option<&str>, &str) {
    match rest.rsplit_once('@') {
        Some((auth, hosts)) => (Some(auth), hosts),
        None => (None, rest),
    }
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = (hex(h), hex(l))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` with its credentials replaced by `***`, safe for messages and logs: Shoal's one
/// redaction ([`shoal_core::redact::redact_url`]), for any URL (`redis://user:secret@host` →
/// `redis://user:***@host`; a lone userinfo is hidden whole: `redis://secret@host` →
/// `redis://***@host`; credential-like query parameters such as `?password=` too).
///
/// ```
/// use shoal_redis::redact_url;
/// assert_eq!(redact_url("rediss://app:pw@h:6380/0"), "rediss://app:***@h:6380/0");
/// assert_eq!(
///     redact_url("redis+sentinel://pw@s1,s2/mymaster"),
///     "redis+sentinel://***@s1,s2/mymaster"
/// );
/// assert_eq!(redact_url("redis://h:1/0?password=pw"), "redis://h:1/0?password=***");
/// ```
pub fn redact_url(url: &str) -> String {
    shoal_core::redact::redact_url(url)
}

/// A string, also when the value was parsed as a number or boolean (an environment layer
/// reads `SHOAL_REDIS__PREFIX=2024` as a number).
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_topology() {
        assert_eq!(
            Topology::parse("redis://127.0.0.1:6379").ok(),
            Some(Topology::Standalone {
                url: "redis://127.0.0.1:6379".into(),
                tls: false
            })
        );
        assert_eq!(
            Topology::parse("rediss+cluster://u:p%40w@a:1,b:2/").ok(),
            Some(Topology::Cluster {
                nodes: vec!["rediss://u:p%40w@a:1".into(), "rediss://u:p%40w@b:2".into()],
                tls: true
            })
        );
        assert_eq!(
            Topology::parse("redis+sentinel://:pw@s1:26379,s2/mymaster/2").ok(),
            Some(Topology::Sentinel {
                sentinels: vec![("s1".into(), 26379), ("s2".into(), 26379)],
                master: "mymaster".into(),
                username: None,
                password: Some("pw".into()),
                db: 2,
                tls: false,
            })
        );
        assert!(Topology::parse("http://x").is_err());
        assert!(Topology::parse("redis+sentinel://s1:1").is_err());
        assert!(Topology::parse("redis+cluster://").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("redis://u:secret@h:1"), "redis://u:***@h:1");
        assert_eq!(redact_url("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("redis://secret@h:1"), "redis://***@h:1");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(redact_url("file:///a/b@c"), "file:///a/b@c");
        assert_eq!(redact_url("no scheme"), "no scheme");
        let dbg = format!("{:?}", RedisConfig::new("redis://u:secret@h:1"));
        assert!(!dbg.contains("secret"), "{dbg}");
    }

    #[test]
    fn bad_settings_name_their_key() {
        let base = RedisConfig::new("redis://h");
        for (config, key) in [
            (base.clone().with_key_prefix(""), "redis.key_prefix"),
            (base.clone().with_key_prefix("a{b"), "redis.key_prefix"),
            (base.clone().with_connections(65), "redis.connections"),
            (
                base.clone().with_connect_timeout(Duration::ZERO),
                "redis.connect_timeout",
            ),
            (
                base.clone().with_response_timeout(Duration::ZERO),
                "redis.response_timeout",
            ),
        ] {
            let e = config.validate().err().map(|e| e.to_string());
            assert!(e.as_deref().is_some_and(|e| e.contains(key)), "{e:?}");
        }
    }

    #[test]
    fn a_numeric_prefix_reads_as_text() {
        let c: RedisConfig = serde_json::from_str(r#"{"key_prefix": 2024}"#).unwrap();
        assert_eq!(c.key_prefix, "2024");
        let json = serde_json::to_string(&RedisConfig::default()).unwrap();
        assert!(!json.contains("tls_ca_file"), "{json}");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("p%40w%3a"), "p@w:");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
