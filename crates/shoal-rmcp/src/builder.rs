//! [`ShoalRmcp`]: everything rmcp needs, from a store URL or a store.

use std::sync::Arc;

use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, session::local::SessionConfig,
};
use shoal_core::{
    SessionStore,
    event_id::{EventIdCodec, EventIdKey},
    notify::NotifyBus,
};

use crate::{
    ShoalEventStore, ShoalSessionManager, ShoalSessionStore,
    error::{Error, Result},
    event_store::ReplaySettings,
    wakeups::Wakeups,
};

/// The name under which a fleet without a configured key agrees on its event id key
/// ([`EventIdKey::shared`]).
pub const EVENT_ID_KEY_NAME: &str = "rmcp.event-id-key";

/// Shared sessions and resumable streams for an rmcp server: the session store, the event
/// store and the session manager, over one Shoal store.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// # #[derive(Clone)] struct Counter;
/// # impl rmcp::ServerHandler for Counter {}
/// use rmcp::transport::streamable_http_server::StreamableHttpService;
///
/// let shoal = shoal_rmcp::ShoalRmcp::open("redis://127.0.0.1:6379").await?;
/// let service = StreamableHttpService::new(|| Ok(Counter), shoal.session_manager(), shoal.server_config());
/// let app: axum::Router = axum::Router::new().nest_service("/mcp", service);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ShoalRmcp {
    store: Arc<dyn SessionStore>,
    events: ShoalEventStore,
    manager: Arc<ShoalSessionManager>,
    #[cfg(feature = "redis")]
    stack: Option<shoal_redis::stack::Stack>,
}

/// Builds a [`ShoalRmcp`].
#[derive(Debug, Default)]
#[must_use]
pub struct Builder {
    store: Option<Arc<dyn SessionStore>>,
    bus: Option<Arc<dyn NotifyBus>>,
    key: Option<EventIdKey>,
    previous_keys: Vec<EventIdKey>,
    replay: ReplaySettings,
    session_config: Option<SessionConfig>,
}

impl Builder {
    /// The store sessions and events live in (any backend or wrapper).
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// A pub/sub bus (e.g. `shoal_redis::RedisPubSub`) that wakes replays on other replicas
    /// as soon as an event is stored; without one they poll.
    pub fn bus(mut self, bus: Arc<dyn NotifyBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The event id key. Without one the replicas agree on a random key through the store
    /// ([`EVENT_ID_KEY_NAME`]); with one every replica must be given the same.
    pub fn event_id_key(mut self, key: EventIdKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Keys still accepted for ids handed out before a key rotation.
    pub fn previous_event_id_keys(mut self, keys: Vec<EventIdKey>) -> Self {
        self.previous_keys = keys;
        self
    }

    /// How replays read and wait.
    pub fn replay_settings(mut self, settings: ReplaySettings) -> Self {
        self.replay = settings;
        self
    }

    /// rmcp's local session settings (channel capacity, keep-alive, priming retry).
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.session_config = Some(config);
        self
    }

    /// Builds it; agrees on the event id key through the store when none was given.
    pub async fn build(self) -> Result<ShoalRmcp> {
        let store = self
            .store
            .ok_or_else(|| Error::Open("no store given (Builder::store)".into()))?;
        let key = match self.key {
            Some(k) => k,
            None => EventIdKey::shared(&*store, EVENT_ID_KEY_NAME).await?,
        };
        let codec = EventIdCodec::with_previous(&key, &self.previous_keys);
        let events =
            ShoalEventStore::new(store.clone(), codec, Wakeups::new(self.bus), self.replay);
        let manager = Arc::new(ShoalSessionManager::new(
            store.clone(),
            events.clone(),
            self.session_config.unwrap_or_default(),
        ));
        Ok(ShoalRmcp {
            store,
            events,
            manager,
            #[cfg(feature = "redis")]
            stack: None,
        })
    }
}

impl ShoalRmcp {
    /// A builder.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Over `store`, with defaults (no bus: replays on other replicas poll).
    pub async fn with_store(store: Arc<dyn SessionStore>) -> Result<Self> {
        Self::builder().store(store).build().await
    }

    /// Opens `url` — `redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://` or
    /// `memory://` — with Shoal's defaults, and its pub/sub bus for cross-replica wake-ups.
    #[cfg(feature = "redis")]
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(
            url,
            &shoal_redis::stack::StackConfig::default(),
            Self::builder(),
        )
        .await
    }

    /// Opens `url` with `config` (the `[limits]`, `[redis]`, `[resilience]` and `[cache]`
    /// sections of a Shoal config file), finishing `builder` with the opened store and bus.
    #[cfg(feature = "redis")]
    pub async fn open_with(
        url: &str,
        config: &shoal_redis::stack::StackConfig,
        builder: Builder,
    ) -> Result<Self> {
        let stack = shoal_redis::stack::Stack::open(url, config)
            .await
            .map_err(|e| Error::Open(e.to_string()))?;
        let mut builder = builder.store(stack.store());
        if let Some(bus) = stack.notify_bus().await? {
            builder = builder.bus(bus);
        }
        let mut built = builder.build().await?;
        built.stack = Some(stack);
        Ok(built)
    }

    /// The session manager to give `StreamableHttpService::new`.
    pub fn session_manager(&self) -> Arc<ShoalSessionManager> {
        self.manager.clone()
    }

    /// The session store for `StreamableHttpServerConfig::session_store`.
    pub fn session_store(&self) -> Arc<ShoalSessionStore> {
        Arc::new(ShoalSessionStore::new(self.store.clone()))
    }

    /// The event store (already in the session manager; for custom managers).
    pub fn event_store(&self) -> ShoalEventStore {
        self.events.clone()
    }

    /// rmcp's default server config with [`ShoalRmcp::session_store`] set.
    pub fn server_config(&self) -> StreamableHttpServerConfig {
        let mut config = StreamableHttpServerConfig::default();
        config.session_store = Some(self.session_store());
        config
    }

    /// The Shoal store underneath.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// Writes what the store deferred (cache write-behind, an outage journal) when it was
    /// opened by [`ShoalRmcp::open`]; a no-op otherwise.
    pub async fn close(self) -> Result<()> {
        #[cfg(feature = "redis")]
        if let Some(stack) = self.stack {
            stack
                .close()
                .await
                .map_err(|e| Error::Open(e.to_string()))?;
        }
        Ok(())
    }
}
