//! [`RedisPubSub`]: the bus handle, the state it shares with its background tasks, and its
//! counters.

use std::{
    fmt,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use shoal_core::{
    Error, Result, SessionId,
    notify::{
        BUS_CAPACITY, BusEvent, BusHook, BusHooks, Invalidation, NotifyBus, WAKEUP_CAPACITY, Wakeup,
    },
};
use tokio::sync::{Notify, broadcast};

use super::{
    channels::{ChannelKind, Channels},
    config::BusConfig,
    message::{parse_invalidation, parse_wakeup},
    outbox::Outbox,
    publisher::publish_loop,
    subscriber::Subscriber,
};
use crate::{
    config::{RedisConfig, Topology, redact_url},
    conn,
};

/// Counters of one bus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Invalidation messages sent.
    pub messages_published: u64,
    /// Session ids announced.
    pub ids_published: u64,
    /// Invalidation messages received from other instances.
    pub messages_received: u64,
    /// Wake-ups sent.
    pub wakeups_published: u64,
    /// Wake-ups received from other instances.
    pub wakeups_received: u64,
    /// Times the subscription was (re)established.
    pub subscriptions: u64,
    /// Failed publish attempts (retried).
    pub publish_failures: u64,
    /// Whether the subscription is up now.
    pub up: bool,
}

/// A [`NotifyBus`] on Redis pub/sub for every topology: cache invalidations on
/// `<key_prefix>:invalidate`, stream wake-ups on `<key_prefix>:wake:{w0}` …
/// `<key_prefix>:wake:{w15}` (see the [module docs](super)). Cloning shares the connections;
/// the background tasks stop when the last clone is dropped.
///
/// ```no_run
/// use std::sync::Arc;
/// use shoal_core::{SessionStore, cached::CacheConfig};
/// use shoal_redis::{RedisConfig, RedisPubSub, RedisStore, cache_builder};
///
/// # async fn demo() -> shoal_core::Result<()> {
/// let config = RedisConfig::new("redis+cluster://10.0.0.1:6379,10.0.0.2:6379")
///     .with_key_prefix("prod");
/// let store = RedisStore::connect_default(config.clone()).await?;
/// let bus = RedisPubSub::connect(&config, Default::default()).await?;
/// let cached = cache_builder(store, Some(bus.clone()))
///     .config(CacheConfig::default())
///     .build()?;
/// // … serve (a proxy takes the same bus for its wake-ups) …
/// cached.shutdown().await?;
/// bus.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisPubSub {
    state: Arc<BusState>,
}

/// What a bus's handles and its publisher and subscriber tasks share.
pub(crate) struct BusState {
    pub(crate) channels: Channels,
    pub(crate) origin: String,
    pub(crate) config: BusConfig,
    /// Cluster: sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`).
    pub(crate) sharded: bool,
    url: String,
    events: broadcast::Sender<BusEvent>,
    wakeups: broadcast::Sender<Wakeup>,
    hooks: BusHooks,
    up: AtomicBool,
    outbox: Mutex<Outbox>,
    /// A batch taken from the outbox is being sent.
    pub(crate) sending: AtomicBool,
    pub(crate) notify: Arc<Notify>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    pub(crate) published_msgs: AtomicU64,
    pub(crate) published_ids: AtomicU64,
    pub(crate) published_wakeups: AtomicU64,
    received: AtomicU64,
    received_wakeups: AtomicU64,
    subscriptions: AtomicU64,
    pub(crate) publish_failures: AtomicU64,
}

impl Drop for BusState {
    fn drop(&mut self) {
        self.abort_tasks();
    }
}

impl fmt::Debug for RedisPubSub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPubSub")
            .field("url", &redact_url(&self.state.url))
            .field("channel", &self.state.channels.invalidate())
            .field("sharded", &self.state.sharded)
            .field("origin", &self.state.origin)
            .field("up", &self.is_up())
            .finish()
    }
}

impl RedisPubSub {
    /// Connects the publisher and the subscriber for `config` (its URL — standalone,
    /// `rediss://`, Sentinel or Cluster —, key prefix, TLS and timeouts) and waits until every
    /// channel is subscribed.
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
        let (events, _) = broadcast::channel(BUS_CAPACITY);
        let (wakeups, _) = broadcast::channel(WAKEUP_CAPACITY);
        let notify = Arc::new(Notify::new());
        let channels = Channels::new(&config.key_prefix);
        let state = Arc::new(BusState {
            channels: channels.clone(),
            origin: SessionId::generate().as_str()[..16].to_owned(),
            config: bus,
            sharded: matches!(topology, Topology::Cluster { .. }),
            url: config.url.clone(),
            events,
            wakeups,
            hooks: BusHooks::default(),
            up: AtomicBool::new(false),
            outbox: Mutex::new(Outbox::default()),
            sending: AtomicBool::new(false),
            notify: Arc::clone(&notify),
            tasks: Mutex::new(Vec::new()),
            published_msgs: AtomicU64::new(0),
            published_ids: AtomicU64::new(0),
            published_wakeups: AtomicU64::new(0),
            received: AtomicU64::new(0),
            received_wakeups: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
            publish_failures: AtomicU64::new(0),
        });
        let mut events = state.events.subscribe();
        let subscriber = Subscriber::new(config.clone(), topology, channels.all());
        let tasks = vec![
            tokio::spawn(subscriber.run(Arc::downgrade(&state))).abort_handle(),
            tokio::spawn(publish_loop(
                Arc::downgrade(&state),
                notify,
                publisher,
                config
                    .connect_timeout
                    .saturating_add(config.response_timeout),
            ))
            .abort_handle(),
        ];
        *state.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        let bus = RedisPubSub { state };
        let wait = config
            .connect_timeout
            .saturating_add(config.response_timeout);
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
                bus.state.channels.invalidate(),
                redact_url(&config.url)
            )));
        }
        Ok(bus)
    }

    /// The invalidation channel, `<key_prefix>:invalidate`.
    pub fn channel(&self) -> &str {
        self.state.channels.invalidate()
    }

    /// The wake-up channels, `<key_prefix>:wake:{w0}` … `<key_prefix>:wake:{w15}`.
    pub fn wake_channels(&self) -> impl Iterator<Item = &str> {
        self.state.channels.wake().iter().map(String::as_str)
    }

    /// Whether the bus uses sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`: a Cluster).
    pub fn is_sharded(&self) -> bool {
        self.state.sharded
    }

    /// Counters since the bus connected.
    pub fn stats(&self) -> BusStats {
        let s = &self.state;
        BusStats {
            messages_published: s.published_msgs.load(Ordering::Relaxed),
            ids_published: s.published_ids.load(Ordering::Relaxed),
            messages_received: s.received.load(Ordering::Relaxed),
            wakeups_published: s.published_wakeups.load(Ordering::Relaxed),
            wakeups_received: s.received_wakeups.load(Ordering::Relaxed),
            subscriptions: s.subscriptions.load(Ordering::Relaxed),
            publish_failures: s.publish_failures.load(Ordering::Relaxed),
            up: self.is_up(),
        }
    }

    /// Waits (at most `timeout`) until everything published so far has been sent. Call it
    /// on graceful shutdown after [`Cached::shutdown`](shoal_core::Cached::shutdown).
    pub async fn flush(&self, timeout: Duration) -> bool {
        let now = tokio::time::Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or(now);
        loop {
            if self.state.outbox_empty() && !self.state.sending.load(Ordering::Acquire) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            self.state.notify.notify_one();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Sends what is still queued (waiting up to 2 s) and stops the background tasks.
    /// Caches using the bus see it go down.
    pub async fn close(&self) {
        if !self.flush(Duration::from_secs(2)).await {
            tracing::warn!("redis bus closed with unsent announcements");
        }
        self.state.abort_tasks();
        self.state.set_state(false, true);
    }

    fn queue(&self, add: impl FnOnce(&mut Outbox)) {
        add(&mut self.state.outbox.lock().unwrap_or_else(|e| e.into_inner()));
        self.state.notify.notify_one();
    }
}

impl NotifyBus for RedisPubSub {
    fn publish(&self, ids: &[SessionId]) {
        if !ids.is_empty() {
            self.queue(|out| out.ids.extend(ids.iter().cloned()));
        }
    }

    fn publish_all(&self) {
        self.queue(|out| out.all = true);
    }

    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.state.events.subscribe()
    }

    fn is_up(&self) -> bool {
        self.state.up.load(Ordering::Acquire)
    }

    fn add_hook(&self, hook: Weak<dyn BusHook>) -> Option<bool> {
        Some(
            self.state
                .hooks
                .add(hook, || self.state.up.load(Ordering::Acquire)),
        )
    }

    fn publish_wakeup(&self, session: &SessionId, stream: &str) {
        if !stream.is_empty() {
            self.queue(|out| {
                out.wakeups.insert((session.clone(), Arc::from(stream)));
            });
        }
    }

    fn subscribe_wakeups(&self) -> Option<broadcast::Receiver<Wakeup>> {
        Some(self.state.wakeups.subscribe())
    }
}

impl BusState {
    fn abort_tasks(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    /// Hooks first (synchronously), then subscribers.
    fn emit(&self, event: BusEvent, change: impl FnOnce() -> bool) -> bool {
        if !self.hooks.emit(&event, change) {
            return false;
        }
        let _ = self.events.send(event);
        true
    }

    /// Reports the subscription up (every channel subscribed) or down.
    pub(crate) fn set_up(&self, up: bool) {
        self.set_state(up, false);
    }

    /// Up or down; `closing` says the owner closed the bus (a down that is no failure, so
    /// it is logged at info, not warn).
    fn set_state(&self, up: bool, closing: bool) {
        let event = if up { BusEvent::Up } else { BusEvent::Down };
        if self.emit(event, || self.up.swap(up, Ordering::AcqRel) != up) {
            let channel = self.channels.invalidate();
            if up {
                self.subscriptions.fetch_add(1, Ordering::Relaxed);
                tracing::info!(channel, sharded = self.sharded, "redis pub/sub bus up");
            } else if closing {
                tracing::info!(channel, "redis pub/sub bus closed; caches off");
            } else {
                tracing::warn!(channel, "redis pub/sub bus down; caches off");
            }
        }
    }

    pub(crate) fn outbox_empty(&self) -> bool {
        self.outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    pub(crate) fn take_outbox(&self) -> Outbox {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn requeue(&self, failed: Outbox) {
        self.outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requeue(failed);
    }

    /// Handles one message from `channel`.
    pub(crate) fn deliver(&self, channel: &str, payload: &[u8]) {
        match self.channels.kind(channel) {
            Some(ChannelKind::Invalidate) => self.deliver_invalidation(payload),
            Some(ChannelKind::Wake) => self.deliver_wakeup(payload),
            None => tracing::debug!(channel, "ignoring a message from an unknown channel"),
        }
    }

    fn deliver_invalidation(&self, payload: &[u8]) {
        let Some(msg) = parse_invalidation(payload) else {
            tracing::debug!(
                channel = self.channels.invalidate(),
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

    fn deliver_wakeup(&self, payload: &[u8]) {
        let Some(msg) = parse_wakeup(payload) else {
            tracing::debug!("ignoring an unreadable wake-up message");
            return;
        };
        if msg.origin == self.origin {
            return;
        }
        self.received_wakeups.fetch_add(1, Ordering::Relaxed);
        let _ = self.wakeups.send(Wakeup::new(msg.session, msg.stream));
    }
}
