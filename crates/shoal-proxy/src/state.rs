//! Per-instance state: the sessions this instance has seen and the streams it is reading.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::Duration,
};

use serde_json::{Value, json};
use shoal_core::{Session, SessionId, SessionStore, Timestamp};
use tokio::sync::{OnceCell, broadcast};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{ProxyConfig, UpstreamConfig},
    event_id::EventIdCodec,
    metrics::Metrics,
    protocol::{MessageKind, Revision, classify},
    upstream::{Reply, http::HttpUpstream, stdio::StdioProc},
    wake_fanout::WakeupFanout,
};

/// A session as this instance serves it.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) id: SessionId,
    pub(crate) revision: Revision,
    pub(crate) protocol_version: Option<String>,
    pub(crate) upstream_session_id: Option<String>,
    pub(crate) principal: Option<String>,
    /// The quota subjects the session was admitted under (given back on DELETE).
    pub(crate) admitted: Vec<String>,
    pub(crate) stdio: Option<Arc<StdioProc>>,
    pub(crate) open_streams: AtomicUsize,
    pub(crate) initialized: AtomicBool,
    /// Whether this instance made sure the session's standalone stream is read upstream.
    pub(crate) standalone_checked: AtomicBool,
    pub(crate) last_used_ms: AtomicU64,
    /// For a session bridged to a 2026-07-28 upstream: the `_meta` every request gets there.
    pub(crate) modern_meta: Option<serde_json::Value>,
    /// For a session bridged to a 2026-07-28 upstream: the log level the client set
    /// (`logging/setLevel`), sent upstream as `_meta["io.modelcontextprotocol/logLevel"]`, and
    /// the revision of the session record it was read from (an older read never replaces it).
    pub(crate) bridge_log_level: Mutex<(u64, Option<String>)>,
}

impl Live {
    pub(crate) fn touch_local(&self) {
        self.last_used_ms
            .store(Timestamp::now().as_millis(), Relaxed);
    }

    /// The `_meta` of the session's next request to a 2026 upstream (with the log level the
    /// client set, if any); `None` when the session is not bridged.
    pub(crate) fn modern_meta_now(&self) -> Option<Value> {
        let mut meta = self.modern_meta.clone()?;
        let level = self.bridge_log_level.lock().ok().and_then(|l| l.1.clone());
        if let (Some(level), Some(m)) = (level, meta.as_object_mut()) {
            m.insert(
                crate::bridge::modern_upstream::LOG_LEVEL_META.to_owned(),
                Value::String(level),
            );
        }
        Some(meta)
    }

    /// Takes the log level a session record holds (set on any instance).
    pub(crate) fn note_log_level(&self, s: &Session) {
        if self.modern_meta.is_none() {
            return;
        }
        let stored = s
            .metadata
            .get(crate::bridge::modern_upstream::LOG_LEVEL_KEY)
            .cloned();
        if let Ok(mut l) = self.bridge_log_level.lock()
            && s.revision >= l.0
        {
            *l = (s.revision, stored);
        }
    }
}

type Cell = Arc<OnceCell<Arc<Live>>>;

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct ProxyState {
    pub(crate) cfg: ProxyConfig,
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) codec: EventIdCodec,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) http: Option<HttpUpstream>,
    pub(crate) shutdown: CancellationToken,
    /// Cross-instance wake-ups, when the config has a bus that carries them.
    pub(crate) wakeups: Option<Arc<WakeupFanout>>,
    /// The upstream tools' `Mcp-Param-*` declarations, per scope (the bridges').
    pub(crate) tool_headers: crate::bridge::param_headers::ToolHeaders,
    sessions: Mutex<HashMap<SessionId, Cell>>,
    pumps: Mutex<HashMap<(SessionId, String), broadcast::Sender<u64>>>,
}

/// Why a session could not be served.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// Unknown, expired or deleted.
    NotFound,
    /// The store or the upstream failed.
    Failed(String),
}

impl ProxyState {
    pub(crate) fn new(
        cfg: ProxyConfig,
        store: Arc<dyn SessionStore>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        wakeups: Option<Arc<WakeupFanout>>,
    ) -> Result<Self, crate::error::ConfigError> {
        cfg.check()?;
        let max_message = cfg.max_body_bytes.max(store.limits().max_frame_bytes);
        let http = match &cfg.upstream {
            UpstreamConfig::Http { url } => Some(HttpUpstream::new(
                url,
                cfg.upstream_timeout,
                max_message,
                crate::upstream::ForwardPolicy::new(
                    &cfg.forward_headers,
                    cfg.forward_authorization,
                    cfg.principal_header.as_deref(),
                ),
            )?),
            UpstreamConfig::Stdio { .. } => None,
        };
        Ok(ProxyState {
            codec: EventIdCodec::with_previous(&cfg.event_id_key, &cfg.previous_event_id_keys),
            cfg,
            store,
            metrics,
            http,
            shutdown,
            wakeups,
            tool_headers: Default::default(),
            sessions: Mutex::new(HashMap::new()),
            pumps: Mutex::new(HashMap::new()),
        })
    }

    /// The session `id`, from this instance's memory or loaded (and, for a stdio upstream,
    /// restored) from the store. Concurrent callers share one load.
    pub(crate) async fn session(&self, id: &SessionId) -> Result<Arc<Live>, LoadError> {
        let cell = {
            let mut map = self.sessions.lock().map_err(|_| poisoned())?;
            map.entry(id.clone()).or_default().clone()
        };
        let res = cell.get_or_try_init(|| self.load(id)).await;
        match res {
            Ok(live) => {
                live.touch_local();
                Ok(live.clone())
            }
            Err(e) => {
                if let Ok(mut map) = self.sessions.lock()
                    && map.get(id).is_some_and(|c| Arc::ptr_eq(c, &cell))
                {
                    map.remove(id);
                }
                Err(e)
            }
        }
    }

    async fn load(&self, id: &SessionId) -> Result<Arc<Live>, LoadError> {
        let s = match self.store.get(id).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(LoadError::NotFound),
            Err(e) => return Err(LoadError::Failed(e.to_string())),
        };
        let stdio = match &self.cfg.upstream {
            UpstreamConfig::Stdio { .. } => Some(self.restore_stdio(&s).await?),
            UpstreamConfig::Http { .. } => None,
        };
        self.metrics.sessions_loaded.inc();
        tracing::info!(session = %id, restored = stdio.is_some(), "session loaded from the store");
        Ok(Arc::new(live_from(&s, stdio)))
    }

    /// Starts a stdio server for a stored session and replays its initialize handshake. The
    /// session is published (returned) only after the server answered `initialize` and was sent
    /// `notifications/initialized`.
    async fn restore_stdio(&self, s: &Session) -> Result<Arc<StdioProc>, LoadError> {
        let params = s
            .initialize_params
            .clone()
            .ok_or_else(|| LoadError::Failed("stored session has no initialize params".into()))?;
        let proc = StdioProc::spawn(&self.cfg.upstream, self.cfg.stdio_cwd.as_deref())
            .map_err(|e| LoadError::Failed(e.0))?;
        let mut rid = [0u8; 8];
        crate::fill_random(&mut rid);
        let rid = format!("shoal-restore-{}", hex(&rid));
        let init = json!({"jsonrpc": "2.0", "id": rid, "method": "initialize", "params": params});
        let reply = proc
            .post(std::slice::from_ref(&init))
            .await
            .map_err(|e| LoadError::Failed(e.0))?;
        let Reply::Stream { mut events, .. } = reply else {
            return Err(LoadError::Failed("stdio restore: no reply stream".into()));
        };
        let wait = async {
            use futures_util::StreamExt as _;
            while let Some(ev) = events.next().await {
                let ev = ev.map_err(|e| LoadError::Failed(e.0))?;
                let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                    continue;
                };
                if let MessageKind::Response { id: Some(id) } = classify(&v)
                    && crate::protocol::id_to_json(&id) == rid.clone()
                {
                    if v.get("result").is_some() {
                        return Ok(());
                    }
                    return Err(LoadError::Failed(
                        "stdio restore: initialize was refused".into(),
                    ));
                }
            }
            Err(LoadError::Failed(
                "stdio restore: server ended before answering".into(),
            ))
        };
        tokio::time::timeout(self.cfg.upstream_timeout, wait)
            .await
            .map_err(|_| LoadError::Failed("stdio restore timed out".into()))??;
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        proc.post(std::slice::from_ref(&initialized))
            .await
            .map_err(|e| LoadError::Failed(e.0))?;
        self.metrics.sessions_restored.inc();
        Ok(proc)
    }

    /// Publishes a session this instance just created.
    pub(crate) fn insert(&self, live: Arc<Live>) {
        if let Ok(mut map) = self.sessions.lock() {
            let id = live.id.clone();
            map.insert(id, Arc::new(OnceCell::new_with(Some(live))));
        }
    }

    /// Forgets a session (deleted or expired elsewhere); stops its stdio server.
    pub(crate) fn evict(&self, id: &SessionId) {
        let cell = self.sessions.lock().ok().and_then(|mut m| m.remove(id));
        if let Some(live) = cell.as_ref().and_then(|c| c.get())
            && let Some(p) = &live.stdio
        {
            p.kill();
        }
    }

    /// Forgets sessions unused for longer than `idle` (they are reloaded on demand).
    pub(crate) fn evict_idle(&self, idle: Duration) -> usize {
        let cutoff = Timestamp::now()
            .as_millis()
            .saturating_sub(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX));
        let Ok(mut map) = self.sessions.lock() else {
            return 0;
        };
        let before = map.len();
        map.retain(|_, c| {
            c.get().is_none_or(|l| {
                l.last_used_ms.load(Relaxed) >= cutoff || l.open_streams.load(Relaxed) > 0
            })
        });
        before - map.len()
    }

    /// Registers a local upstream reader for a stream; followers here subscribe to it.
    pub(crate) fn register_pump(&self, id: &SessionId, stream: &str) -> broadcast::Sender<u64> {
        let (tx, _) = broadcast::channel(64);
        if let Ok(mut m) = self.pumps.lock() {
            m.insert((id.clone(), stream.to_owned()), tx.clone());
        }
        tx
    }

    /// Registers a local upstream reader for a stream unless this instance has one already
    /// (`None` then): one reader per stream and instance.
    pub(crate) fn try_register_pump(
        &self,
        id: &SessionId,
        stream: &str,
    ) -> Option<broadcast::Sender<u64>> {
        let mut m = self.pumps.lock().ok()?;
        let key = (id.clone(), stream.to_owned());
        if m.contains_key(&key) {
            return None;
        }
        let (tx, _) = broadcast::channel(64);
        m.insert(key, tx.clone());
        Some(tx)
    }

    pub(crate) fn unregister_pump(&self, id: &SessionId, stream: &str) {
        if let Ok(mut m) = self.pumps.lock() {
            m.remove(&(id.clone(), stream.to_owned()));
        }
    }

    pub(crate) fn subscribe_pump(
        &self,
        id: &SessionId,
        stream: &str,
    ) -> Option<broadcast::Receiver<u64>> {
        self.pumps
            .lock()
            .ok()?
            .get(&(id.clone(), stream.to_owned()))
            .map(broadcast::Sender::subscribe)
    }
}

pub(crate) fn live_from(s: &Session, stdio: Option<Arc<StdioProc>>) -> Live {
    Live {
        id: s.id.clone(),
        revision: s
            .protocol_version
            .as_deref()
            .and_then(Revision::parse)
            .unwrap_or(Revision::V2025_03_26),
        protocol_version: s.protocol_version.clone(),
        upstream_session_id: s.upstream_session_id.clone(),
        principal: s.principal.clone(),
        admitted: s
            .metadata
            .get(crate::admission::ADMITTED_KEY)
            .map(|v| v.lines().map(str::to_owned).collect())
            .unwrap_or_default(),
        stdio,
        open_streams: AtomicUsize::new(0),
        initialized: AtomicBool::new(s.state != shoal_core::SessionState::Initializing),
        standalone_checked: AtomicBool::new(false),
        last_used_ms: AtomicU64::new(Timestamp::now().as_millis()),
        modern_meta: crate::bridge::modern_upstream::modern_meta(s),
        bridge_log_level: Mutex::new((
            s.revision,
            s.metadata
                .get(crate::bridge::modern_upstream::LOG_LEVEL_KEY)
                .cloned(),
        )),
    }
}

fn poisoned() -> LoadError {
    LoadError::Failed("internal lock poisoned".into())
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}
