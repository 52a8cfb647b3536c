//! The [`RedisStore`] handle, how it connects, and the state its clones share.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use shoal_core::{
    Clock, Direction, Error, Limits, NewFrame, Result, SessionId, SystemClock, Timestamp, codec,
};

use super::{
    dataset::DatasetWatch, feed_outbox::FeedOutbox, metrics::PendingMetrics,
    server_clock::ServerClock,
};
use crate::{
    config::{RedisConfig, Topology},
    conn::{self, Conn},
    keys::Keys,
    layout,
    scripts::Scripts,
};

/// The Redis [`SessionStore`](shoal_core::SessionStore): standalone, Cluster or Sentinel,
/// chosen by the URL.
///
/// Cloning shares the connections. See the crate docs for the key schema and the consistency
/// model.
///
/// ```no_run
/// use std::sync::Arc;
/// use shoal_core::{Limits, Session, SessionId, SessionStore, SystemClock, Transport};
/// use shoal_redis::{RedisConfig, RedisStore};
///
/// # async fn demo() -> shoal_core::Result<()> {
/// let store = RedisStore::connect(
///     RedisConfig::new("redis://127.0.0.1:6379"),
///     Limits::default(),
///     Arc::new(SystemClock),
/// )
/// .await?;
/// let s = store.create(Session::new(SessionId::generate(), Transport::StreamableHttp)).await?;
/// assert_eq!(s.revision, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    pub(super) state: Arc<StoreState>,
}

/// What every clone of a [`RedisStore`] shares — connections, key names, limits, clock,
/// scripts and the counter increments not yet written — and what its operations run on.
pub(super) struct StoreState {
    conns: Vec<Conn>,
    next: AtomicUsize,
    /// This instance's clock, corrected to the server's (see `server_clock`).
    pub(super) clock: Arc<ServerClock>,
    pub(super) keys: Keys,
    pub(super) limits: Limits,
    pub(super) config: RedisConfig,
    pub(super) topology: &'static str,
    pub(super) cluster: bool,
    pub(super) scripts: Scripts,
    pub(super) metrics: PendingMetrics,
    /// The encoded-frame bytes before the seq value (see `append.lua`).
    pub(super) frame_prefix: Vec<u8>,
    /// Bound on one Redis call, reconnection included.
    pub(super) deadline: Duration,
    /// The dataset marker this instance adopted, and the losses it noticed.
    pub(super) dataset: DatasetWatch,
    /// Creates that failed in doubt and are being settled in the background (bounded).
    pub(super) settling: AtomicUsize,
    /// Cluster with the feed on: the entries written after their changes, in batches.
    pub(super) feed_outbox: Option<FeedOutbox>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.state.config)
            .field("topology", &self.state.topology)
            .field("limits", &self.state.limits)
            .finish()
    }
}

/// The encoded-frame prefix up to the seq value, derived from the codec itself, so a codec
/// change that moves the seq is caught instead of silently writing bad frames.
fn frame_prefix() -> Result<Vec<u8>> {
    let probe = NewFrame::new(Direction::ClientToServer, Vec::new()).into_frame(
        SessionId::new("p").map_err(|e| Error::backend(e.to_string()))?,
        0,
    );
    let bytes = codec::encode_frame(&probe).map_err(|e| Error::backend(e.to_string()))?;
    let (prefix, _) = layout::split_frame(&bytes).ok_or_else(|| {
        Error::backend(
            "the frame codec no longer starts with the seq field; the redis append script \
             needs updating",
        )
    })?;
    Ok(prefix.to_vec())
}

impl RedisStore {
    /// Connects with `config`, enforcing `limits` and reading time from `clock`.
    ///
    /// Fails within `config.connect_timeout` with [`Error::Unavailable`] if Redis cannot be
    /// reached, [`Error::Backend`] if it refuses the credentials, [`Error::InvalidInput`] for
    /// a bad configuration.
    pub async fn connect(
        config: RedisConfig,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        config.validate()?;
        let topology = Topology::parse(&config.url)?;
        let conns = conn::connect(&config, &topology).await?;
        let deadline = config
            .connect_timeout
            .saturating_add(config.response_timeout);
        let cluster = matches!(topology, Topology::Cluster { .. });
        let feed_outbox = match conns.first() {
            Some(c) if cluster && config.feed.enabled => {
                Some(FeedOutbox::spawn(c.clone(), config.feed.cap, deadline))
            }
            _ => None,
        };
        let store = RedisStore {
            state: Arc::new(StoreState {
                conns,
                next: AtomicUsize::new(0),
                keys: Keys::new(&config.key_prefix),
                limits,
                clock: Arc::new(ServerClock::new(clock)),
                deadline,
                topology: topology.name(),
                cluster,
                config,
                scripts: Scripts::new(),
                metrics: PendingMetrics::default(),
                frame_prefix: frame_prefix()?,
                dataset: DatasetWatch::default(),
                settling: AtomicUsize::new(0),
                feed_outbox,
            }),
        };
        // Prove the connection (and the credentials) now, not at the first request.
        store.state.cmd("connect", None, redis::cmd("PING")).await?;
        store.state.sync_clock().await?;
        store.state.check_memory_policy().await?;
        store.state.check_dataset().await?;
        store.state.check_feed_permission().await?;
        Ok(store)
    }

    /// Connects with default limits and the system clock.
    pub async fn connect_default(config: RedisConfig) -> Result<Self> {
        RedisStore::connect(config, Limits::default(), Arc::new(SystemClock)).await
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        self.state.keys.prefix()
    }

    /// The clock this store decides expiry by: the one it was given, corrected to the Redis
    /// server's when they differ by more than
    /// [`RedisConfig::max_clock_skew`]. Wrappers over this store (a
    /// cache, a fallback) should read time from it too.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.state.clock) as Arc<dyn Clock>
    }

    /// The correction applied to the given clock, in milliseconds (server minus local; 0
    /// while the two agree within [`RedisConfig::max_clock_skew`]).
    pub fn clock_offset_ms(&self) -> i64 {
        self.state.clock.offset_ms()
    }

    /// `standalone`, `cluster` or `sentinel`.
    pub fn topology(&self) -> &'static str {
        self.state.topology
    }

    /// Runs one command under the store's deadline (for the crate's own parts beside the
    /// store: analytics).
    pub(crate) async fn command(&self, op: &'static str, cmd: redis::Cmd) -> Result<redis::Value> {
        self.state.cmd(op, None, cmd).await
    }

    /// Runs a script that is not a per-session one, with `keys` and `args`.
    pub(crate) async fn eval(
        &self,
        op: &'static str,
        script: &redis::Script,
        keys: &[String],
        args: Vec<Vec<u8>>,
    ) -> Result<redis::Value> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut c = self.state.conn();
        self.state
            .io(op, None, inv.invoke_async::<redis::Value>(&mut c))
            .await
    }

    /// Key names under this store's prefix.
    pub(crate) fn keys(&self) -> &Keys {
        &self.state.keys
    }

    /// The scripts, hashed once.
    pub(crate) fn scripts(&self) -> &Scripts {
        &self.state.scripts
    }

    /// How many change feed shards this store writes (1 on a single server).
    pub(crate) fn feed_shard_count(&self) -> u16 {
        self.state.feed_shards()
    }

    /// This store's clock (see [`RedisStore::clock`]), as a time.
    pub(crate) fn now(&self) -> Timestamp {
        self.state.now()
    }
}

impl StoreState {
    /// The next connection, round robin.
    pub(super) fn conn(&self) -> Conn {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len().max(1);
        // `connect` always opens at least one connection.
        self.conns[i].clone()
    }

    pub(super) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// When a session active at `now` expires.
    pub(super) fn expiry_from(&self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.limits.session_ttl)
    }

    /// Server-side TTL for keys whose logical expiry is `expires_at`: the remaining time plus
    /// the grace, at least one second.
    pub(super) fn pexpire_ms(&self, expires_at: Timestamp, now: Timestamp) -> u64 {
        let remaining = expires_at.as_millis().saturating_sub(now.as_millis());
        let grace = u64::try_from(self.config.expiry_grace.as_millis()).unwrap_or(u64::MAX);
        remaining
            .saturating_add(grace)
            .clamp(1_000, i64::MAX as u64 / 2)
    }

    /// The place limit as the scripts take it.
    pub(super) fn max_sessions(&self) -> u64 {
        u64::try_from(self.limits.max_sessions).unwrap_or(u64::MAX)
    }
}
