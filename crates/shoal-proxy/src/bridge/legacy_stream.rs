//! A 2025 upstream's reply stream, relayed to a 2026 client.
//!
//! Events go to the client without ids (a 2026 client has no resumption), each result made a
//! 2026 one. What the upstream asks the client on the way:
//! - `ping` is answered by the proxy;
//! - elicitation, sampling and roots inside `tools/call`, `prompts/get` or `resources/read`, of
//!   a client that declared the capability: the client's response becomes an
//!   `input_required` result and the rest of the stream goes to a continuation record (see
//!   [`input_required`](super::input_required)) that the client's retry follows on any
//!   instance;
//! - anything else is answered upstream with an error naming it, and logged.

use std::sync::Arc;

use axum::{
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::input_required::{self, ASKING_METHODS, Continuation, Held, INPUT_METHODS};
use crate::{
    handlers::sse_plain,
    protocol::{MessageKind, classify},
    sse,
    state::ProxyState,
    upstream::{EventStream, http::HttpUpstream},
};

/// How long the first event of a reply is awaited before the response head goes out.
const PEEK: std::time::Duration = std::time::Duration::from_millis(250);

/// Everything a relay needs.
pub(crate) struct Relay {
    pub(crate) inner: Arc<ProxyState>,
    pub(crate) http: HttpUpstream,
    /// The headers the request went upstream with.
    pub(crate) headers: HeaderMap,
    pub(crate) upstream_session_id: Option<String>,
    pub(crate) revision: String,
    pub(crate) owner: Option<String>,
    /// The client's request: its method, id and declared capabilities.
    pub(crate) method: String,
    pub(crate) request_id: Value,
    pub(crate) capabilities: Value,
    /// The log level the request opted in to (none: no log messages reach the client).
    pub(crate) log_level: Option<String>,
}

/// The client capability a question needs.
fn capability_of(method: &str) -> &'static str {
    match method {
        "elicitation/create" => "elicitation",
        "sampling/createMessage" => "sampling",
        _ => "roots",
    }
}

impl Relay {
    /// Starts relaying `events`; the client's response. The first event is awaited briefly: an
    /// error a 2026 server gives an HTTP status (method not found 404, missing capability 400)
    /// goes back with that status.
    pub(crate) async fn spawn(self, mut events: EventStream) -> Response {
        let mut first = Vec::new();
        let deadline = tokio::time::Instant::now() + PEEK;
        while let Ok(next) = tokio::time::timeout_at(deadline, events.next()).await {
            match next {
                Some(Ok(ev)) => {
                    let data = !ev.data.trim().is_empty();
                    first.push(Ok(ev));
                    if data {
                        break;
                    }
                }
                Some(Err(e)) => {
                    first.push(Err(e));
                    break;
                }
                None => break,
            }
        }
        if let Some(Ok(ev)) = first.last()
            && let Some(status) = super::legacy_upstream::error_status(ev.data.as_bytes())
            && ev.data.contains("\"error\"")
        {
            let mut r = (
                status,
                super::legacy_upstream::modern_body(&self.method, ev.data.as_bytes()),
            )
                .into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return r;
        }
        let events: EventStream = Box::pin(futures_util::stream::iter(first).chain(events));
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(async move { self.run(events, tx).await });
        sse_plain(rx)
    }

    async fn run(self, events: EventStream, tx: mpsc::Sender<Bytes>) {
        let mut held: Option<Continuation> = None;
        self.relay(events, tx, &mut held).await;
        if let Some(c) = held
            && let Err(e) = self
                .inner
                .release_lease(&c.record, input_required::HOLDER_STREAM)
                .await
        {
            tracing::debug!(error = %e, "bridge: could not release the held request's lease");
        }
    }

    async fn relay(
        &self,
        mut events: EventStream,
        tx: mpsc::Sender<Bytes>,
        held: &mut Option<Continuation>,
    ) {
        let mut client = Some(tx);
        let idle = self.inner.cfg.upstream_idle_timeout;
        let every = (self.inner.cfg.stream_lease / 3).max(std::time::Duration::from_millis(10));
        let mut renew = tokio::time::interval(every);
        let mut last_event = tokio::time::Instant::now();
        loop {
            let next = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = renew.tick() => {
                    if let Some(c) = held.as_ref()
                        && let Ok(false) = self
                            .inner
                            .renew_lease(&c.record, input_required::HOLDER_STREAM)
                            .await
                    {
                        tracing::info!(record = %c.record.as_str(), "bridge: lost the held request's lease");
                    }
                    if last_event.elapsed() < idle {
                        continue;
                    }
                    Err(())
                }
                n = events.next() => Ok(n),
            };
            last_event = tokio::time::Instant::now();
            let ev = match next {
                Ok(Some(Ok(ev))) => ev,
                Ok(_) | Err(()) => {
                    if let Some(c) = held.as_ref() {
                        let why = "the 2025 upstream's stream ended before it answered";
                        self.hold(c, &self.error(why)).await;
                    }
                    return;
                }
            };
            if ev.data.trim().is_empty() {
                continue;
            }
            let data = Bytes::from(ev.data);
            let v = serde_json::from_slice::<Value>(&data).unwrap_or(Value::Null);
            if let MessageKind::Request { method, .. } = classify(&v) {
                if method == "ping" {
                    self.answer(&v, json!({"result": {}})).await;
                    continue;
                }
                if let Some(c) = held.as_ref() {
                    // The next question: the retry following the record asks it.
                    self.hold(c, &data).await;
                    continue;
                }
                if let Some(tx) = client.take_if(|_| self.can_ask(&method)) {
                    match self.ask(&v, &data, &tx).await {
                        Some(c) => *held = Some(c),
                        None => client = Some(tx),
                    }
                    continue;
                }
                tracing::warn!(
                    method,
                    "bridge: an upstream request to the client is not translated; answered with an error"
                );
                let message = format!(
                    "{method} is not bridged from a 2025 upstream to 2026-07-28 clients here"
                );
                self.answer(&v, json!({"error": {"code": -32601, "message": message}}))
                    .await;
                continue;
            }
            let ends = v.get("id") == Some(&self.request_id)
                && matches!(classify(&v), MessageKind::Response { .. });
            if let Some(c) = held.as_ref() {
                self.hold(c, &data).await;
            } else if !super::modern_checks::log_allowed(self.log_level.as_deref(), &v) {
                // Below the level the 2026 client opted in to (or it opted in to none).
            } else if let Some(tx) = &client {
                let body = super::legacy_upstream::modern_body(&self.method, &data);
                if tx
                    .send(sse::encode(None, ev.event.as_deref(), None, &body))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if ends {
                return;
            }
        }
    }

    /// Whether a question of the upstream's can be asked of the client.
    fn can_ask(&self, method: &str) -> bool {
        ASKING_METHODS.contains(&self.method.as_str())
            && INPUT_METHODS.contains(&method)
            && self.capabilities.get(capability_of(method)).is_some()
    }

    /// Ends the client's response with an `input_required` result for `question` and opens
    /// the continuation record; `None` (and the question answered upstream with an error)
    /// when the record could not be written.
    async fn ask(
        &self,
        question: &Value,
        data: &Bytes,
        tx: &mpsc::Sender<Bytes>,
    ) -> Option<Continuation> {
        let held = Held {
            owner: self.owner.as_deref(),
            upstream_session_id: self.upstream_session_id.clone(),
            revision: self.revision.clone(),
            method: &self.method,
            request_id: &self.request_id,
        };
        match input_required::begin(&self.inner, held, data).await {
            Ok((c, seq)) => {
                let state = input_required::state_of(&c.token, seq);
                let ask = input_required::input_required(&self.request_id, question, &state);
                let chunk = sse::encode(None, None, None, ask.to_string().as_bytes());
                let _ = tx.send(chunk).await;
                tracing::debug!(record = %c.record.as_str(), "bridge: the upstream asked the client; held for its retry");
                Some(c)
            }
            Err(e) => {
                tracing::warn!(error = %e, "bridge: could not record a continuation; the upstream's question is refused");
                let message = "the proxy could not hold the request for the client's answer";
                self.answer(
                    question,
                    json!({"error": {"code": -32603, "message": message}}),
                )
                .await;
                None
            }
        }
    }

    /// Appends an event to the continuation record.
    async fn hold(&self, c: &Continuation, data: &Bytes) {
        if let Err(e) = input_required::append(&self.inner, &c.record, data).await {
            tracing::warn!(record = %c.record.as_str(), error = %e, "bridge: could not record an upstream event of a held request");
        }
    }

    /// Answers an upstream request (`answer` holds `result` or `error`).
    async fn answer(&self, request: &Value, answer: Value) {
        let mut msg =
            json!({"jsonrpc": "2.0", "id": request.get("id").cloned().unwrap_or(Value::Null)});
        if let (Some(m), Some(a)) = (msg.as_object_mut(), answer.as_object()) {
            for (k, v) in a {
                m.insert(k.clone(), v.clone());
            }
        }
        let _ = self
            .http
            .post(
                &self.headers,
                self.upstream_session_id.as_deref(),
                Bytes::from(msg.to_string()),
            )
            .await;
    }

    /// An error response to the client's request.
    fn error(&self, why: &str) -> Bytes {
        Bytes::from(
            json!({"jsonrpc": "2.0", "id": self.request_id,
                "error": {"code": -32603, "message": why}})
            .to_string(),
        )
    }
}
