//! Cross-instance cache invalidation over Redis pub/sub: [`RedisInvalidationBus`], and the
//! cheap version check a `strict` cache uses on Redis ([`Revalidate`] for [`RedisStore`]).
//!
//! # The channel
//! `<key_prefix>:invalidate`. Each message is ASCII, space-separated:
//! `1 <origin> <sent_at_us> <sid> <sid> …` (at most `max_ids_per_message` ids), or
//! `1 <origin> <sent_at_us> *` for "everything". `origin` is a random id per bus, so an
//! instance ignores its own messages; `sent_at_us` (the sender's wall clock, µs since the
//! epoch) lets receivers measure delivery delay. Session ids never contain spaces or `*`.
//!
//! # Connections
//! - **Subscriber**: a dedicated pub/sub connection (standalone: the server; Cluster: one node
//!   at a time, rotating on failure — classic pub/sub is broadcast to every node; Sentinel: the
//!   current master). A `PING` every `ping_interval` proves it alive. When it fails or goes
//!   silent the bus reports [`BusEvent::Down`] *before* reconnecting (caches empty themselves
//!   and stay off), then reconnects with backoff and reports [`BusEvent::Up`] once subscribed
//!   again (caches empty themselves once more and turn on).
//! - **Publisher**: its own multiplexed connection (the same kind the store uses). `publish`
//!   never blocks: ids go to a de-duplicated outbox that one task drains, pipelining one
//!   `PUBLISH` per batch. A failed send keeps the ids and is retried; meanwhile other instances
//!   rely on their entry ttl.
//!
//! # ACL
//! The bus needs `+subscribe +publish +ping` and `&<key_prefix>:invalidate` (channel
//! permission), on top of the store's permissions; `strict` mode also `+hmget`.

use std::{
    collections::HashSet,
    fmt,
    future::Future,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::{
    ConnectionAddr, TlsMode, Value,
    sentinel::{SentinelClientBuilder, SentinelServerType},
};
use serde::{Deserialize, Serialize};
use shoal_core::{
    CachedBuilder, Error, Result, SessionId,
    cached::{
        BusEvent, BusHook, BusHooks, Invalidation, InvalidationBus, Revalidate, SessionStamp,
        unix_micros,
    },
};
use tokio::sync::{Notify, broadcast};

use crate::{
    RedisStore,
    config::{RedisConfig, Topology, redact_url},
    conn::{self, Conn},
    meta,
};

/// Message format version.
const VERSION: &str = "1";

/// How the bus keeps its subscription alive (`[cache.bus]` in a config file).
///
/// Deserializes with unknown keys refused and durations as humantime strings.
///
/// ```
/// use shoal_redis::invalidation::BusConfig;
/// let c: BusConfig = serde_json::from_str(r#"{"ping_interval": "500ms"}"#).unwrap();
/// assert_eq!(c.ping_interval, std::time::Duration::from_millis(500));
/// assert!(c.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BusConfig {
    /// How often the subscription is pinged; no answer within the store's `response_timeout`
    /// counts as a lost connection. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// First delay before reconnecting (doubles up to `reconnect_max`). Default 50 ms.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest delay between reconnection attempts. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// Most session ids in one `PUBLISH`. Default 256.
    pub max_ids_per_message: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            ping_interval: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            max_ids_per_message: 256,
        }
    }
}

impl BusConfig {
    /// Checks that intervals are non-zero and the batch size is at least 1.
    pub fn validate(&self) -> Result<()> {
        if self.ping_interval.is_zero() || self.reconnect_min.is_zero() {
            return Err(Error::invalid(
                "bus ping_interval and reconnect_min must be greater than zero",
            ));
        }
        if self.reconnect_max < self.reconnect_min {
            return Err(Error::invalid(
                "bus reconnect_max must be at least reconnect_min",
            ));
        }
        if self.max_ids_per_message == 0 {
            return Err(Error::invalid("bus max_ids_per_message must be at least 1"));
        }
        Ok(())
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.reconnect_min
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.reconnect_max)
    }
}

/// Counters of one bus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// `PUBLISH` commands sent.
    pub messages_published: u64,
    /// Session ids announced.
    pub ids_published: u64,
    /// Messages received from other instances.
    pub messages_received: u64,
    /// Times the subscription was (re)established.
    pub subscriptions: u64,
    /// Failed publish attempts (retried).
    pub publish_failures: u64,
    /// Whether the subscription is up now.
    pub up: bool,
}

/// An [`InvalidationBus`] on Redis pub/sub (channel `<key_prefix>:invalidate`). Cloning
/// shares the connections; the background tasks stop when the last clone is dropped.
///
/// ```no_run
/// use std::sync::Arc;
/// use shoal_core::{SessionStore, cached::CacheConfig};
/// use shoal_redis::{RedisConfig, RedisStore, invalidation::{self, RedisInvalidationBus}};
///
/// # async fn demo() -> shoal_core::Result<()> {
/// let config = RedisConfig::new("redis://127.0.0.1:6379").with_key_prefix("prod");
/// let store = RedisStore::connect_default(config.clone()).await?;
/// let bus = RedisInvalidationBus::connect(&config, Default::default()).await?;
/// let cached = invalidation::cache_builder(store, Some(bus.clone()))
///     .config(CacheConfig::default())
///     .build()?;
/// // … serve …
/// cached.shutdown().await?;
/// bus.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisInvalidationBus {
    inner: Arc<BusInner>,
}

struct BusInner {
    channel: String,
    origin: String,
    config: BusConfig,
    url: String,
    tx: broadcast::Sender<BusEvent>,
    hooks: BusHooks,
    up: AtomicBool,
    outbox: Mutex<Outbox>,
    /// A batch taken from the outbox is being sent.
    sending: AtomicBool,
    notify: Arc<Notify>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    published_msgs: AtomicU64,
    published_ids: AtomicU64,
    received: AtomicU64,
    subscriptions: AtomicU64,
    publish_failures: AtomicU64,
}

#[derive(Default)]
struct Outbox {
    ids: HashSet<SessionId>,
    all: bool,
}

impl Drop for BusInner {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

impl fmt::Debug for RedisInvalidationBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisInvalidationBus")
            .field("url", &redact_url(&self.inner.url))
            .field("channel", &self.inner.channel)
            .field("origin", &self.inner.origin)
            .field("up", &self.is_up())
            .finish()
    }
}

impl RedisInvalidationBus {
    /// Connects the publisher and the subscriber for `config` (its URL, key prefix, TLS and
    /// timeouts) and waits until the subscription is confirmed.
    ///
    /// Fails within `config.connect_timeout` (plus one response timeout) with
    /// [`Error::Unavailable`] when Redis cannot be reached or refuses to subscribe.
    pub async fn connect(config: &RedisConfig, bus: BusConfig) -> Result<Self> {
        config.validate()?;
        bus.validate()?;
        let topology = Topology::parse(&config.url)?;
        let mut pub_config = config.clone();
        pub_config.connections = 1;
        let publisher = conn::connect(&pub_config, &topology)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::backend("redis bus: no publisher connection"))?;
        let (tx, _) = broadcast::channel(shoal_core::cached::BUS_CAPACITY);
        let notify = Arc::new(Notify::new());
        let inner = Arc::new(BusInner {
            channel: format!("{}:invalidate", config.key_prefix),
            origin: SessionId::generate().as_str()[..16].to_owned(),
            config: bus,
            url: config.url.clone(),
            tx,
            hooks: BusHooks::default(),
            up: AtomicBool::new(false),
            outbox: Mutex::new(Outbox::default()),
            sending: AtomicBool::new(false),
            notify: Arc::clone(&notify),
            tasks: Mutex::new(Vec::new()),
            published_msgs: AtomicU64::new(0),
            published_ids: AtomicU64::new(0),
            received: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
            publish_failures: AtomicU64::new(0),
        });
        let mut events = inner.tx.subscribe();
        let sub = Subscriber {
            config: config.clone(),
            topology,
        };
        let tasks = vec![
            tokio::spawn(sub.run(Arc::downgrade(&inner))).abort_handle(),
            tokio::spawn(publish_loop(
                Arc::downgrade(&inner),
                notify,
                publisher,
                config.connect_timeout + config.response_timeout,
            ))
            .abort_handle(),
        ];
        *inner.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        let bus = RedisInvalidationBus { inner };
        let wait = config.connect_timeout + config.response_timeout;
        let confirmed = tokio::time::timeout(wait, async {
            loop {
                match events.recv().await {
                    Ok(BusEvent::Up) => return true,
                    Err(broadcast::error::RecvError::Closed) => return false,
                    _ => {}
                }
            }
        })
        .await;
        if confirmed != Ok(true) && !bus.is_up() {
            return Err(Error::unavailable(format!(
                "redis bus: no subscription to {} at {} within {wait:?}",
                bus.inner.channel,
                redact_url(&config.url)
            )));
        }
        Ok(bus)
    }

    /// The channel name, `<key_prefix>:invalidate`.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Counters since the bus connected.
    pub fn stats(&self) -> BusStats {
        let i = &self.inner;
        BusStats {
            messages_published: i.published_msgs.load(Ordering::Relaxed),
            ids_published: i.published_ids.load(Ordering::Relaxed),
            messages_received: i.received.load(Ordering::Relaxed),
            subscriptions: i.subscriptions.load(Ordering::Relaxed),
            publish_failures: i.publish_failures.load(Ordering::Relaxed),
            up: self.is_up(),
        }
    }

    /// Waits (at most `timeout`) until everything published so far has been sent. Call it
    /// on graceful shutdown after [`Cached::shutdown`](shoal_core::Cached::shutdown).
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.inner.outbox_empty() && !self.inner.sending.load(Ordering::Acquire) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            self.inner.notify.notify_one();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Sends what is still queued (waiting up to 2 s) and stops the background tasks.
    /// Caches using the bus see it go down.
    pub async fn close(&self) {
        if !self.flush(Duration::from_secs(2)).await {
            tracing::warn!("redis bus closed with unsent invalidations");
        }
        for t in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
        self.inner.set_state(false, true);
    }
}

impl InvalidationBus for RedisInvalidationBus {
    fn publish(&self, ids: &[SessionId]) {
        if ids.is_empty() {
            return;
        }
        {
            let mut out = self.inner.outbox.lock().unwrap_or_else(|e| e.into_inner());
            out.ids.extend(ids.iter().cloned());
        }
        self.inner.notify.notify_one();
    }

    fn publish_all(&self) {
        self.inner
            .outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .all = true;
        self.inner.notify.notify_one();
    }

    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.inner.tx.subscribe()
    }

    fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    fn add_hook(&self, hook: Weak<dyn BusHook>) -> Option<bool> {
        Some(
            self.inner
                .hooks
                .add(hook, || self.inner.up.load(Ordering::Acquire)),
        )
    }
}

impl BusInner {
    /// Hooks first (synchronously), then subscribers.
    fn emit(&self, event: BusEvent, change: impl FnOnce() -> bool) -> bool {
        if !self.hooks.emit(&event, change) {
            return false;
        }
        let _ = self.tx.send(event);
        true
    }

    fn set_up(&self, up: bool) {
        self.set_state(up, false);
    }

    /// Up or down; `closing` says the owner closed the bus (a down that is no failure, so
    /// it is logged at info, not warn).
    fn set_state(&self, up: bool, closing: bool) {
        let event = if up { BusEvent::Up } else { BusEvent::Down };
        if self.emit(event, || self.up.swap(up, Ordering::AcqRel) != up) {
            if up {
                self.subscriptions.fetch_add(1, Ordering::Relaxed);
                tracing::info!(channel = %self.channel, "redis invalidation bus up");
            } else if closing {
                tracing::info!(channel = %self.channel, "redis invalidation bus closed; caches off");
            } else {
                tracing::warn!(channel = %self.channel, "redis invalidation bus down; caches off");
            }
        }
    }

    fn outbox_empty(&self) -> bool {
        let out = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        out.ids.is_empty() && !out.all
    }

    fn take_outbox(&self) -> Outbox {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn requeue(&self, failed: Outbox) {
        let mut out = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
        out.ids.extend(failed.ids);
        out.all |= failed.all;
    }

    /// Handles one message payload from the channel.
    fn deliver(&self, payload: &[u8]) {
        let Some(msg) = parse_message(payload) else {
            tracing::debug!(
                channel = %self.channel,
                "ignoring an unreadable invalidation message"
            );
            return;
        };
        if msg.origin == self.origin {
            return;
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        let event = if msg.all {
            BusEvent::InvalidateAll
        } else {
            BusEvent::Invalidate(Invalidation::new(msg.ids, msg.sent_at_us))
        };
        self.emit(event, || true);
    }
}

/// One decoded channel message.
#[derive(Debug, PartialEq, Eq)]
struct Message {
    origin: String,
    sent_at_us: Option<u64>,
    ids: Vec<SessionId>,
    all: bool,
}

fn parse_message(payload: &[u8]) -> Option<Message> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.split(' ');
    if parts.next()? != VERSION {
        return None;
    }
    let origin = parts.next()?.to_owned();
    let sent_at_us = parts.next()?.parse().ok();
    let mut msg = Message {
        origin,
        sent_at_us,
        ids: Vec::new(),
        all: false,
    };
    for p in parts {
        if p == "*" {
            msg.all = true;
        } else if let Ok(id) = SessionId::new(p) {
            msg.ids.push(id);
        }
    }
    Some(msg)
}

fn format_messages(origin: &str, out: &Outbox, max_ids: usize) -> Vec<(String, usize)> {
    let now = unix_micros();
    let mut msgs = Vec::new();
    if out.all {
        msgs.push((format!("{VERSION} {origin} {now} *"), 0));
    }
    let ids: Vec<&SessionId> = out.ids.iter().collect();
    for chunk in ids.chunks(max_ids.max(1)) {
        let mut m = format!("{VERSION} {origin} {now}");
        for id in chunk {
            m.push(' ');
            m.push_str(id.as_str());
        }
        msgs.push((m, chunk.len()));
    }
    msgs
}

/// Drains the outbox: one pipelined batch of `PUBLISH`es at a time, retrying failures.
async fn publish_loop(
    weak: Weak<BusInner>,
    notify: Arc<Notify>,
    mut conn: Conn,
    deadline: Duration,
) {
    let mut failures = 0u32;
    loop {
        notify.notified().await;
        loop {
            let Some(inner) = weak.upgrade() else { return };
            inner.sending.store(true, Ordering::Release);
            let out = inner.take_outbox();
            if out.ids.is_empty() && !out.all {
                inner.sending.store(false, Ordering::Release);
                break;
            }
            let msgs = format_messages(&inner.origin, &out, inner.config.max_ids_per_message);
            let mut pipe = redis::pipe();
            for (m, _) in &msgs {
                pipe.cmd("PUBLISH").arg(&inner.channel).arg(m).ignore();
            }
            let sent = tokio::time::timeout(deadline, pipe.query_async::<()>(&mut conn)).await;
            match sent {
                Ok(Ok(())) => {
                    failures = 0;
                    inner
                        .published_msgs
                        .fetch_add(msgs.len() as u64, Ordering::Relaxed);
                    inner
                        .published_ids
                        .fetch_add(msgs.iter().map(|(_, n)| *n as u64).sum(), Ordering::Relaxed);
                    inner.sending.store(false, Ordering::Release);
                }
                other => {
                    let why = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no reply within {deadline:?}"),
                    };
                    inner.publish_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(channel = %inner.channel, error = %why, "redis bus: publish failed; will retry");
                    inner.requeue(out);
                    inner.sending.store(false, Ordering::Release);
                    let delay = inner.config.backoff(failures);
                    failures = failures.saturating_add(1);
                    drop(inner);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Opens and keeps the subscription.
struct Subscriber {
    config: RedisConfig,
    topology: Topology,
}

impl Subscriber {
    /// A fresh pub/sub connection; on a cluster the `attempt`-th node (round robin).
    async fn open(&self, attempt: u32) -> Result<redis::aio::PubSub> {
        let certs = conn::tls_certificates(&self.config)?;
        if self.topology.tls() {
            conn::ensure_crypto_provider();
        }
        let bad = |e: redis::RedisError| {
            Error::invalid(format!("redis url {}: {e}", redact_url(&self.config.url)))
        };
        let client = match &self.topology {
            Topology::Standalone { url, .. } => match certs {
                Some(c) => redis::Client::build_with_tls(url.as_str(), c),
                None => redis::Client::open(url.as_str()),
            }
            .map_err(bad)?,
            Topology::Cluster { nodes, .. } => {
                let n = nodes.len().max(1);
                let url = nodes
                    .get(attempt as usize % n)
                    .ok_or_else(|| Error::invalid("redis bus: no cluster nodes"))?;
                match certs {
                    Some(c) => redis::Client::build_with_tls(url.as_str(), c),
                    None => redis::Client::open(url.as_str()),
                }
                .map_err(bad)?
            }
            Topology::Sentinel {
                sentinels,
                master,
                username,
                password,
                db,
                tls,
            } => {
                let addrs = sentinels
                    .iter()
                    .map(|(h, p)| ConnectionAddr::Tcp(h.clone(), *p));
                let mut b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)
                    .map_err(bad)?
                    .set_client_to_redis_db(*db);
                if let Some(u) = username {
                    b = b.set_client_to_redis_username(u);
                }
                if let Some(p) = password {
                    b = b.set_client_to_redis_password(p);
                }
                if *tls {
                    b = b.set_client_to_redis_tls_mode(TlsMode::Secure);
                }
                if let Some(c) = certs {
                    b = b.set_client_to_redis_certificates(c);
                }
                let mut sentinel = b.build().map_err(bad)?;
                self.bounded(sentinel.async_get_client()).await?
            }
        };
        self.bounded(client.get_async_pubsub()).await
    }

    async fn bounded<T>(&self, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        match tokio::time::timeout(self.config.connect_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(conn::connect_error(&self.config.url, &e)),
            Err(_) => Err(Error::unavailable(format!(
                "redis bus: no connection to {} within {:?}",
                redact_url(&self.config.url),
                self.config.connect_timeout
            ))),
        }
    }

    /// Subscribes, reports up, forwards messages and pings until the connection fails;
    /// reports down; reconnects with backoff. Ends when the bus is dropped.
    async fn run(self, weak: Weak<BusInner>) {
        let mut attempt: u32 = 0;
        let mut failures: u32 = 0;
        loop {
            let (channel, bus) = match weak.upgrade() {
                Some(i) => (i.channel.clone(), i.config.clone()),
                None => return,
            };
            match self.open(attempt).await {
                Ok(pubsub) => {
                    let (mut sink, mut stream) = pubsub.split();
                    let subscribed = tokio::time::timeout(
                        self.config.response_timeout,
                        sink.subscribe(&channel),
                    )
                    .await;
                    if matches!(subscribed, Ok(Ok(()))) {
                        failures = 0;
                        match weak.upgrade() {
                            Some(i) => i.set_up(true),
                            None => return,
                        }
                        let mut ping = tokio::time::interval(bus.ping_interval);
                        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        ping.tick().await;
                        let why = loop {
                            tokio::select! {
                                msg = stream.next() => match msg {
                                    Some(m) => match weak.upgrade() {
                                        Some(i) => i.deliver(m.get_payload_bytes()),
                                        None => return,
                                    },
                                    None => break "connection closed".to_owned(),
                                },
                                _ = ping.tick() => {
                                    let pong = tokio::time::timeout(
                                        self.config.response_timeout,
                                        sink.ping::<Value>(),
                                    ).await;
                                    match pong {
                                        Ok(Ok(_)) => {}
                                        Ok(Err(e)) => break format!("ping failed: {e}"),
                                        Err(_) => break "ping unanswered".to_owned(),
                                    }
                                }
                            }
                        };
                        match weak.upgrade() {
                            Some(i) => {
                                tracing::debug!(reason = %why, "redis bus subscription lost");
                                i.set_up(false);
                            }
                            None => return,
                        }
                    } else {
                        tracing::debug!(channel = %channel, "redis bus: subscribe failed");
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "redis bus: cannot connect the subscriber");
                }
            }
            if let Some(i) = weak.upgrade() {
                i.set_up(false);
            }
            attempt = attempt.wrapping_add(1);
            tokio::time::sleep(bus.backoff(failures)).await;
            failures = failures.saturating_add(1);
        }
    }
}

/// The cheap version check for `strict` caches: one `HMGET` of the meta field `a` (activity
/// and counters); the caller-owned blob is not read.
#[async_trait]
impl Revalidate for RedisStore {
    async fn stamp(&self, id: &SessionId) -> Result<Option<SessionStamp>> {
        let values = self.meta_fields(id, &[meta::F_ACTIVITY]).await?;
        let Some(a) = values.first().and_then(meta::bytes_of) else {
            return Ok(None);
        };
        let a = meta::parse_activity(id, a)?;
        let mut stamp = SessionStamp::of(&shoal_core::Session::new(
            id.clone(),
            shoal_core::Transport::Http,
        ));
        stamp.revision = a.revision;
        stamp.last_seq = a.seq;
        stamp.first_seq = a.first_seq;
        stamp.frame_count = a.frame_count;
        stamp.created_at = a.created_at;
        stamp.last_activity = a.last_activity;
        stamp.expires_at = a.expires_at;
        Ok(Some(stamp))
    }
}

/// A [`Cached`](shoal_core::Cached) builder for `store`: with `bus` (for
/// `consistency = invalidate`) and the store's one-`HMGET` version check (for `strict`).
/// Set the clock if the store does not use the system clock.
pub fn cache_builder(
    store: RedisStore,
    bus: Option<RedisInvalidationBus>,
) -> CachedBuilder<RedisStore> {
    let validator: Arc<dyn Revalidate> = Arc::new(store.clone());
    let mut b = shoal_core::Cached::builder(store).validator(validator);
    if let Some(bus) = bus {
        b = b.bus(Arc::new(bus));
    }
    b
}

/// Durations as humantime strings in config files.
mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    #[test]
    fn messages_round_trip_in_batches() {
        let mut out = Outbox::default();
        for i in 0..5 {
            out.ids.insert(sid(&format!("s{i}")));
        }
        let msgs = format_messages("abc", &out, 2);
        assert_eq!(msgs.len(), 3);
        let mut seen = Vec::new();
        for (m, n) in &msgs {
            let parsed = parse_message(m.as_bytes()).unwrap();
            assert_eq!(parsed.origin, "abc");
            assert!(parsed.sent_at_us.is_some());
            assert!(!parsed.all);
            assert_eq!(parsed.ids.len(), *n);
            seen.extend(parsed.ids);
        }
        seen.sort();
        assert_eq!(seen.len(), 5);

        out.all = true;
        out.ids.clear();
        let msgs = format_messages("o", &out, 10);
        assert_eq!(msgs.len(), 1);
        assert!(parse_message(msgs[0].0.as_bytes()).unwrap().all);
    }

    #[test]
    fn unreadable_messages_are_ignored() {
        assert!(parse_message(b"2 o 1 a").is_none(), "unknown version");
        assert!(parse_message(b"1").is_none());
        assert!(parse_message(&[0xff, 0xfe]).is_none());
        let m = parse_message(b"1 o notanumber good bad{id}").unwrap();
        assert_eq!(m.sent_at_us, None);
        assert_eq!(m.ids, vec![sid("good")], "invalid ids are skipped");
    }

    #[test]
    fn config_defaults_validate_and_back_off() {
        let c = BusConfig::default();
        c.validate().unwrap();
        assert_eq!(c.backoff(0), Duration::from_millis(50));
        assert_eq!(c.backoff(3), Duration::from_millis(400));
        assert_eq!(c.backoff(30), Duration::from_secs(2));
        assert!(serde_json::from_str::<BusConfig>(r#"{"nope": 1}"#).is_err());
        let mut bad = c.clone();
        bad.max_ids_per_message = 0;
        assert!(bad.validate().is_err());
    }
}
