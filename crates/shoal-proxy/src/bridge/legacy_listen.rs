//! `subscriptions/listen` of 2026 clients, served from a 2025 upstream session's GET stream.
//!
//! A 2025 server sends notifications outside any request (list changes, resource updates) on
//! its session's standalone GET stream, and allows one such stream per session. The 2026
//! clients sharing an upstream session (see [`legacy_upstream`](super::legacy_upstream)) may
//! listen on any instance, so:
//!
//! - **One reader per upstream session, fleet-wide**: the instance that holds the stream lease
//!   of the session's record (`bridge-…`, stream `g0`) opens the GET upstream and appends each
//!   notification to the record (resuming with the upstream's `Last-Event-ID` when the stream
//!   breaks). It stops when no listener of its own is left for two lease periods; a listener
//!   on another instance then takes the lease and reads (a notification sent between the two
//!   can be missed: 2026 listen streams have no replay either).
//! - **Every listen stream follows the record** from the moment it opened (woken by the reader
//!   on this instance, by the bus from another, or by polling), keeps the kinds it asked for
//!   and the upstream honours, and stamps each with its `subscriptionId` (the listen request's
//!   id).
//! - **Acknowledgement**: the first event is `notifications/subscriptions/acknowledged` with
//!   the honoured subset: a list-change kind when the upstream declares `listChanged` for it;
//!   resource URIs when the upstream declares `resources.subscribe` and accepted the proxy's
//!   `resources/subscribe` for each (in the shared upstream session; the proxy does not
//!   unsubscribe, since another listener of the session may need the same URI).
//!
//! Requests the upstream sends on the GET stream (outside any client request) are answered by
//! the proxy: `ping` with an empty result, anything else with an error naming it.

use std::{sync::Arc, time::Duration};

use axum::{
    http::{HeaderMap, HeaderValue, header},
    response::Response,
};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use shoal_core::{Direction, Error, FrameQuery, NewFrame, Session, SessionId};
use tokio::{
    sync::{broadcast, mpsc},
    time::Instant,
};

use crate::{
    handlers::{sse_plain, unavailable},
    protocol::{MessageKind, classify, headers as h},
    sse,
    state::ProxyState,
    upstream::{EventStream, Reply, http::HttpUpstream},
};

/// The stream of the upstream session's record that holds its GET stream's notifications.
const READER_STREAM: &str = "g0";
/// The `_meta` key naming the listen stream a notification belongs to.
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// Most reconnections of a broken upstream GET stream in a row.
const MAX_RECONNECTS: u32 = 5;

/// The notification kinds one listen stream gets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    tools: bool,
    prompts: bool,
    resources: bool,
    uris: Vec<String>,
}

impl Filter {
    /// What the client asked for (`params.notifications`) and the upstream honours, given
    /// its `initialize` capabilities; resource URIs are added once subscribed upstream.
    pub(crate) fn honoured(requested: &Value, capabilities: &Value) -> Self {
        let asked = |k: &str| requested.get(k).and_then(Value::as_bool) == Some(true);
        let list_changed = |k: &str| {
            capabilities
                .get(k)
                .and_then(|c| c.get("listChanged"))
                .and_then(Value::as_bool)
                == Some(true)
        };
        Filter {
            tools: asked("toolsListChanged") && list_changed("tools"),
            prompts: asked("promptsListChanged") && list_changed("prompts"),
            resources: asked("resourcesListChanged") && list_changed("resources"),
            uris: Vec::new(),
        }
    }

    /// The filter as the acknowledgement states it (only what is honoured).
    pub(crate) fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (on, k) in [
            (self.tools, "toolsListChanged"),
            (self.prompts, "promptsListChanged"),
            (self.resources, "resourcesListChanged"),
        ] {
            if on {
                m.insert(k.into(), json!(true));
            }
        }
        if !self.uris.is_empty() {
            m.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Value::Object(m)
    }

    /// Whether a notification from the upstream's GET stream goes to this listener.
    pub(crate) fn passes(&self, v: &Value) -> bool {
        match v.get("method").and_then(Value::as_str) {
            Some("notifications/tools/list_changed") => self.tools,
            Some("notifications/prompts/list_changed") => self.prompts,
            Some("notifications/resources/list_changed") => self.resources,
            Some("notifications/resources/updated") => v
                .get("params")
                .and_then(|p| p.get("uri"))
                .and_then(Value::as_str)
                .is_some_and(|u| self.uris.iter().any(|w| w == u)),
            _ => false,
        }
    }
}

/// `v` stamped with the listen stream's id.
pub(crate) fn stamped(mut v: Value, subscription: &Value) -> Value {
    if let Some(obj) = v.as_object_mut() {
        let params = obj.entry("params").or_insert_with(|| json!({}));
        if let Some(p) = params.as_object_mut() {
            let meta = p.entry("_meta").or_insert_with(|| json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.insert(SUBSCRIPTION_ID.into(), subscription.clone());
            }
        }
    }
    v
}

/// Headers for the upstream requests of a session negotiated at `revision`.
fn upstream_headers(revision: &str, accept: &'static str) -> HeaderMap {
    let mut hm = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(revision) {
        hm.insert(h::PROTOCOL_VERSION, v);
    }
    hm.insert(header::ACCEPT, HeaderValue::from_static(accept));
    hm.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    hm
}

/// The upstream session's coordinates.
#[derive(Clone)]
struct Upstream {
    http: HttpUpstream,
    record: SessionId,
    session_id: Option<String>,
    revision: String,
}

/// Serves one `subscriptions/listen` request from the upstream session `record`.
pub(crate) async fn listen(
    inner: &Arc<ProxyState>,
    http: &HttpUpstream,
    msg: &Value,
    record: Session,
) -> Response {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let requested = msg
        .get("params")
        .and_then(|p| p.get("notifications"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let capabilities = record
        .server_info
        .as_ref()
        .and_then(|i| i.get("capabilities"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let up = Upstream {
        http: http.clone(),
        record: record.id.clone(),
        session_id: record.upstream_session_id.clone(),
        revision: record
            .protocol_version
            .clone()
            .unwrap_or_else(|| super::legacy_upstream::LEGACY_REVISION.to_owned()),
    };
    let mut filter = Filter::honoured(&requested, &capabilities);
    let can_subscribe = capabilities
        .get("resources")
        .and_then(|r| r.get("subscribe"))
        .and_then(Value::as_bool)
        == Some(true);
    if can_subscribe {
        let uris = requested
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned))
            .into_iter()
            .flatten();
        for uri in uris {
            if subscribe(&up, &uri).await {
                filter.uris.push(uri);
            }
        }
    }
    // The listener gets what the record receives from now on.
    let start = match inner
        .store
        .frames(&up.record, &FrameQuery::after(0, 1))
        .await
    {
        Ok(page) => page.last_seq,
        Err(e) => return unavailable(&e.to_string()),
    };
    ensure_reader(inner, &up).await;
    let (tx, rx) = mpsc::channel(32);
    let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
        "params": {"notifications": filter.to_json(), "_meta": {SUBSCRIPTION_ID: id}}});
    let _ = tx.try_send(event(&ack));
    let listener = Listener {
        inner: inner.clone(),
        up,
        filter,
        subscription: id,
        after: start,
    };
    tokio::spawn(async move { listener.run(tx).await });
    sse_plain(rx)
}

/// `resources/subscribe` upstream; whether the upstream accepted it.
async fn subscribe(up: &Upstream, uri: &str) -> bool {
    let msg = json!({"jsonrpc": "2.0", "id": "shoal-bridge-subscribe", "method": "resources/subscribe",
        "params": {"uri": uri}});
    let hm = upstream_headers(&up.revision, "application/json, text/event-stream");
    let reply = up
        .http
        .post(&hm, up.session_id.as_deref(), Bytes::from(msg.to_string()))
        .await;
    let answer = match reply {
        Ok(r) if r.status().is_success() => r.response_to("shoal-bridge-subscribe").await,
        _ => None,
    };
    let ok = answer.is_some_and(|a| a.get("result").is_some());
    if !ok {
        tracing::info!(
            uri,
            "bridge: the upstream refused resources/subscribe; not honoured"
        );
    }
    ok
}

/// Makes sure some instance reads the upstream session's GET stream: starts a reader here
/// unless one runs here already or another instance holds the lease.
async fn ensure_reader(inner: &Arc<ProxyState>, up: &Upstream) {
    if inner.subscribe_pump(&up.record, READER_STREAM).is_some() {
        return;
    }
    match inner.claim_lease(&up.record, READER_STREAM).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::debug!(error = %e, "bridge: could not claim the upstream GET stream");
            return;
        }
    }
    let Some(wake) = inner.try_register_pump(&up.record, READER_STREAM) else {
        return;
    };
    // The upstream session may have been replaced since the listener opened (the upstream
    // forgot it and a request initialized a new one): read the one the record names now.
    let mut current = up.clone();
    if let Ok(Some(s)) = inner.store.get(&up.record).await {
        current.session_id = s.upstream_session_id;
        if let Some(r) = s.protocol_version {
            current.revision = r;
        }
    }
    let reader = Reader {
        inner: inner.clone(),
        up: current,
        wake,
        last_upstream_id: None,
    };
    tokio::spawn(async move { reader.run().await });
}

/// The one reader of an upstream session's GET stream.
struct Reader {
    inner: Arc<ProxyState>,
    up: Upstream,
    wake: broadcast::Sender<u64>,
    last_upstream_id: Option<String>,
}

impl Reader {
    async fn run(mut self) {
        tracing::debug!(record = %self.up.record.as_str(), "bridge: reading the upstream session's GET stream");
        if let Some(mut events) = self.open().await {
            self.read(&mut events).await;
        }
        self.inner.unregister_pump(&self.up.record, READER_STREAM);
        if let Err(e) = self
            .inner
            .release_lease(&self.up.record, READER_STREAM)
            .await
        {
            tracing::debug!(error = %e, "bridge: could not release the GET stream's lease");
        }
        tracing::debug!(record = %self.up.record.as_str(), "bridge: stopped reading the upstream session's GET stream");
    }

    async fn open(&self) -> Option<EventStream> {
        let hm = upstream_headers(&self.up.revision, "text/event-stream");
        match self
            .up
            .http
            .get(
                &hm,
                self.up.session_id.as_deref(),
                self.last_upstream_id.as_deref(),
            )
            .await
        {
            Ok(Reply::Stream { events, .. }) => Some(events),
            Ok(other) => {
                tracing::info!(status = %other.status(), "bridge: the upstream refused its GET stream; listeners get no notifications");
                None
            }
            Err(e) => {
                tracing::info!(error = %e, "bridge: the upstream's GET stream failed to open");
                None
            }
        }
    }

    async fn read(&mut self, events: &mut EventStream) {
        let lease = self.inner.cfg.stream_lease;
        let every = (lease / 3).max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(every);
        let mut alone_since: Option<Instant> = None;
        let mut reconnects = 0;
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    match self.inner.renew_lease(&self.up.record, READER_STREAM).await {
                        Ok(true) => {}
                        Ok(false) | Err(Error::NotFound { .. }) => return,
                        Err(e) => tracing::debug!(error = %e, "bridge: lease renewal failed"),
                    }
                    if self.wake.receiver_count() == 0 {
                        if alone_since.get_or_insert_with(Instant::now).elapsed() > lease * 2 {
                            return;
                        }
                    } else {
                        alone_since = None;
                        // Listeners keep the upstream session's record alive.
                        let _ = self.inner.store.touch(&self.up.record).await;
                    }
                }
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        reconnects = 0;
                        if ev.id.is_some() {
                            self.last_upstream_id.clone_from(&ev.id);
                        }
                        if !ev.data.trim().is_empty() {
                            self.on_event(Bytes::from(ev.data)).await;
                        }
                    }
                    _ => {
                        reconnects += 1;
                        if reconnects > MAX_RECONNECTS {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(reconnects))).await;
                        match self.open().await {
                            Some(e) => *events = e,
                            None => return,
                        }
                    }
                }
            }
        }
    }

    async fn on_event(&self, data: Bytes) {
        let v = serde_json::from_slice::<Value>(&data).unwrap_or(Value::Null);
        if let MessageKind::Request { method, .. } = classify(&v) {
            let answer = if method == "ping" {
                json!({"result": {}})
            } else {
                tracing::warn!(
                    method,
                    "bridge: an upstream request on the GET stream is not translated; answered with an error"
                );
                json!({"error": {"code": -32601, "message":
                    format!("{method} outside a request is not bridged to 2026-07-28 clients")}})
            };
            let mut msg =
                json!({"jsonrpc": "2.0", "id": v.get("id").cloned().unwrap_or(Value::Null)});
            if let (Some(m), Some(a)) = (msg.as_object_mut(), answer.as_object()) {
                m.extend(a.clone());
            }
            let hm = upstream_headers(&self.up.revision, "application/json, text/event-stream");
            let _ = self
                .up
                .http
                .post(
                    &hm,
                    self.up.session_id.as_deref(),
                    Bytes::from(msg.to_string()),
                )
                .await;
            return;
        }
        let nf = NewFrame::new(Direction::ServerToClient, data)
            .with_stream(READER_STREAM)
            .with_content_type("application/json");
        match crate::retention::append_frames(&self.inner, &self.up.record, vec![nf]).await {
            Ok(a) => {
                if let Some(&seq) = a.seqs.first() {
                    let _ = self.wake.send(seq);
                }
                if let Some(w) = &self.inner.wakeups {
                    w.publish(&self.up.record, READER_STREAM);
                }
            }
            Err(e) => {
                tracing::warn!(record = %self.up.record.as_str(), error = %e, "bridge: could not record an upstream notification");
            }
        }
    }
}

/// One listen stream.
struct Listener {
    inner: Arc<ProxyState>,
    up: Upstream,
    filter: Filter,
    subscription: Value,
    after: u64,
}

/// The next message of an optional receiver; pending forever without one.
async fn next_wake<T: Clone>(r: &mut Option<broadcast::Receiver<T>>) {
    match r {
        Some(rx) => {
            if let Err(broadcast::error::RecvError::Closed) = rx.recv().await {
                *r = None;
            }
        }
        None => std::future::pending().await,
    }
}

impl Listener {
    async fn run(mut self, tx: mpsc::Sender<Bytes>) {
        let inner = self.inner.clone();
        let lease = inner.cfg.stream_lease;
        let mut local = inner.subscribe_pump(&self.up.record, READER_STREAM);
        let mut bus = inner
            .wakeups
            .as_ref()
            .map(|w| w.follow(&self.up.record, READER_STREAM));
        let mut checked = Instant::now();
        loop {
            if !self.deliver(&tx).await {
                return;
            }
            if checked.elapsed() >= lease {
                // The reader may have stopped (its instance lost its listeners or died).
                ensure_reader(&inner, &self.up).await;
                local = inner.subscribe_pump(&self.up.record, READER_STREAM);
                checked = Instant::now();
            }
            let nap = if bus.is_some() && inner.wakeups.as_ref().is_some_and(|w| w.is_up()) {
                lease.max(inner.cfg.poll_interval)
            } else {
                inner.cfg.poll_interval
            };
            tokio::select! {
                _ = inner.shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = next_wake(&mut local) => {}
                _ = next_wake(&mut bus) => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// Sends the record's new notifications that pass the filter; `false` when the client is
    /// gone or the record is.
    async fn deliver(&mut self, tx: &mpsc::Sender<Bytes>) -> bool {
        loop {
            let q = FrameQuery::after(self.after, 100).in_stream(READER_STREAM);
            let page = match self.inner.store.frames(&self.up.record, &q).await {
                Ok(p) => p,
                Err(e) if e.is_not_found() => return false,
                Err(e) => {
                    tracing::debug!(error = %e, "bridge: could not read the upstream notifications");
                    return true;
                }
            };
            for f in &page.frames {
                self.after = f.seq;
                let Ok(v) = serde_json::from_slice::<Value>(&f.content) else {
                    continue;
                };
                if self.filter.passes(&v)
                    && tx
                        .send(event(&stamped(v, &self.subscription)))
                        .await
                        .is_err()
                {
                    return false;
                }
            }
            self.after = page.next_after(self.after).max(self.after);
            if !page.has_more {
                return true;
            }
        }
    }
}

/// One SSE event (no id: a 2026 client does not resume) carrying `v`.
fn event(v: &Value) -> Bytes {
    sse::encode(None, None, None, v.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_was_asked_and_is_offered_is_honoured() {
        let caps = json!({"tools": {"listChanged": true}, "prompts": {}, "resources": {"listChanged": true, "subscribe": true}});
        let asked = json!({"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": false});
        let mut f = Filter::honoured(&asked, &caps);
        assert_eq!(f.to_json(), json!({"toolsListChanged": true}));
        f.uris.push("demo://a".into());
        assert_eq!(
            f.to_json(),
            json!({"toolsListChanged": true, "resourceSubscriptions": ["demo://a"]})
        );
        let n = |m: &str, uri: Option<&str>| {
            let mut v = json!({"jsonrpc": "2.0", "method": m});
            if let Some(u) = uri {
                v["params"] = json!({"uri": u});
            }
            v
        };
        assert!(f.passes(&n("notifications/tools/list_changed", None)));
        assert!(!f.passes(&n("notifications/prompts/list_changed", None)));
        assert!(f.passes(&n("notifications/resources/updated", Some("demo://a"))));
        assert!(!f.passes(&n("notifications/resources/updated", Some("demo://b"))));
        assert!(!f.passes(&n("notifications/message", None)));
        let s = stamped(n("notifications/tools/list_changed", None), &json!(7));
        assert_eq!(s["params"]["_meta"][SUBSCRIPTION_ID], json!(7));
    }
}
