//! A 2025 upstream's questions to the client, asked of a 2026 client as `input_required`.
//!
//! A 2025 server that needs the client inside a request (elicitation, sampling, roots) sends
//! it a JSON-RPC request on the request's response stream and waits for the answer, which is
//! POSTed in the same upstream session. A 2026 client has no such requests: it expects the
//! result `resultType: "input_required"` with `inputRequests`, answers them, and sends the
//! original request again with `inputResponses` and the `requestState` it was given.
//!
//! The proxy joins the two (multi round-trip requests over a held stream):
//! 1. The instance reading the upstream stream ends the client's response with an
//!    `input_required` result for the upstream's request, and keeps reading the upstream stream
//!    into a **continuation record** in the store (a store session `bridge-<32 hex>`, the hex
//!    derived from a random 128-bit token; the record holds the upstream session, the request's
//!    method and the caller's principal). Every later upstream event is appended to it.
//! 2. The client's retry may reach any instance. Its `requestState`
//!    (`shoal-bridge.<token>.<seq>`) names the record and the upstream request answered (the
//!    record's frame `seq`); the instance checks the caller is the record's principal, POSTs
//!    the answer upstream in the record's upstream session, and answers the retry with the
//!    record's events after `seq`: progress (its token made the retry's), and then the final
//!    response (its id made the retry's) or the upstream's next question (another
//!    `input_required`, with the next `seq`).
//!
//! The instance reading the held upstream stream keeps a lease on the record; a retry that
//! finds no answer and no live holder (that instance died) ends with an error saying the
//! request may or may not have completed, instead of waiting for the idle timeout.
//!
//! A retry with a state that is unknown, expired or another principal's is refused
//! (-32602, "unknown or expired requestState"): the state is a bearer capability of its
//! principal. The record is deleted once its final response was delivered, else expires with
//! the store's session TTL.

use std::{sync::Arc, time::Duration};

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::Digest;
use shoal_core::{Direction, FrameQuery, NewFrame, Session, SessionId, Transport};
use tokio::sync::mpsc;

use crate::{
    handlers::sse_plain,
    protocol::{MessageKind, classify},
    sse,
    state::{ProxyState, hex},
    upstream::http::HttpUpstream,
};

/// The prefix of the `requestState` the proxy mints.
const STATE_PREFIX: &str = "shoal-bridge.";
/// The metadata value that marks a continuation record.
pub(crate) const CONTINUATION_MARK: &str = "2026-to-2025-continuation";
/// Metadata key: the method of the request the record continues.
const METHOD_KEY: &str = "method";
/// Metadata key: the original request's id (JSON).
const REQUEST_ID_KEY: &str = "request_id";
/// The lease (on the record) of the instance reading the held upstream stream: a retry whose
/// record has no live holder and no answer ends with an error instead of waiting.
pub(crate) const HOLDER_STREAM: &str = "held";
/// How often a retry reads the record for new events.
const FOLLOW_POLL: Duration = Duration::from_millis(25);
/// The requests a 2026 client answers through `input_required` results.
pub(crate) const INPUT_METHODS: [&str; 3] =
    ["elicitation/create", "sampling/createMessage", "roots/list"];
/// The requests whose results may be `input_required`.
pub(crate) const ASKING_METHODS: [&str; 3] = ["tools/call", "prompts/get", "resources/read"];

/// The store id of the continuation record of `token`.
pub(crate) fn record_id(token: &str) -> Option<SessionId> {
    let mut d = sha2::Sha256::new();
    d.update(b"shoal-bridge-continuation\0");
    d.update(token.as_bytes());
    SessionId::new(format!("bridge-{}", hex(&d.finalize()[..16]))).ok()
}

/// The `requestState` naming `token`'s record and the upstream request at `seq`.
pub(crate) fn state_of(token: &str, seq: u64) -> String {
    format!("{STATE_PREFIX}{token}.{seq}")
}

/// The token and seq of a `requestState` the proxy minted.
pub(crate) fn parse_state(state: &str) -> Option<(&str, u64)> {
    let rest = state.strip_prefix(STATE_PREFIX)?;
    let (token, seq) = rest.split_once('.')?;
    if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((token, seq.parse().ok()?))
}

/// The `inputRequests` key of an upstream request: its JSON-RPC id.
pub(crate) fn input_key(upstream_request: &Value) -> String {
    match upstream_request.get("id") {
        Some(Value::String(s)) => format!("upstream-{s}"),
        Some(other) => format!("upstream-{other}"),
        None => "upstream".to_owned(),
    }
}

/// The `input_required` response to the client's request `id` for one upstream request.
pub(crate) fn input_required(id: &Value, upstream_request: &Value, state: &str) -> Value {
    let mut input =
        json!({"method": upstream_request.get("method").cloned().unwrap_or(Value::Null)});
    if let Some(p) = upstream_request.get("params") {
        input["params"] = p.clone();
    }
    json!({"jsonrpc": "2.0", "id": id, "result": {
        "resultType": "input_required",
        "inputRequests": {input_key(upstream_request): input},
        "requestState": state,
    }})
}

/// Where a held upstream stream's events go once the client has been asked: the record.
pub(crate) struct Continuation {
    pub(crate) record: SessionId,
    pub(crate) token: String,
}

/// What the record of a continuation holds.
pub(crate) struct Held<'a> {
    pub(crate) owner: Option<&'a str>,
    pub(crate) upstream_session_id: Option<String>,
    pub(crate) revision: String,
    pub(crate) method: &'a str,
    pub(crate) request_id: &'a Value,
}

/// Creates the record of a new continuation and appends the upstream's first question; returns
/// it and the question's seq.
pub(crate) async fn begin(
    inner: &ProxyState,
    held: Held<'_>,
    question: &Bytes,
) -> shoal_core::Result<(Continuation, u64)> {
    let mut raw = [0u8; 16];
    crate::fill_random(&mut raw);
    let token = hex(&raw);
    let record =
        record_id(&token).ok_or_else(|| shoal_core::Error::backend("no record id for a token"))?;
    let mut s = Session::new(record.clone(), Transport::StreamableHttp);
    s.principal = held.owner.map(str::to_owned);
    s.upstream_session_id = held.upstream_session_id;
    s.protocol_version = Some(held.revision);
    s.metadata.insert(
        super::legacy_upstream::BRIDGE_KEY.to_owned(),
        CONTINUATION_MARK.to_owned(),
    );
    s.metadata
        .insert(METHOD_KEY.to_owned(), held.method.to_owned());
    s.metadata
        .insert(REQUEST_ID_KEY.to_owned(), held.request_id.to_string());
    inner.store.create(s).await?;
    if let Err(e) = inner.claim_lease(&record, HOLDER_STREAM).await {
        tracing::debug!(error = %e, "bridge: could not take the held request's lease");
    }
    let c = Continuation { record, token };
    let seq = append(inner, &c.record, question).await?;
    Ok((c, seq))
}

/// Appends one upstream event to a record; its seq.
pub(crate) async fn append(
    inner: &ProxyState,
    record: &SessionId,
    data: &Bytes,
) -> shoal_core::Result<u64> {
    let nf = NewFrame::new(Direction::ServerToClient, data.clone())
        .with_content_type("application/json");
    inner.store.append_frame(record, nf).await
}

/// A JSON-RPC error response to `id`.
fn rpc_error(id: &Value, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A retried request carrying a `requestState` the proxy minted: answers the upstream's
/// question upstream, then gives the client the record's events after it.
pub(crate) async fn resume(
    inner: &Arc<ProxyState>,
    http: &HttpUpstream,
    client: &HeaderMap,
    msg: &Value,
    owner: Option<&str>,
    state: &str,
) -> Response {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let unknown = || {
        rpc_error(
            &id,
            -32602,
            "Invalid params: unknown or expired requestState",
        )
    };
    let Some((token, seq)) = parse_state(state) else {
        return unknown();
    };
    let Some(record) = record_id(token) else {
        return unknown();
    };
    let held = match inner.store.get(&record).await {
        Ok(Some(s)) => s,
        Ok(None) => return unknown(),
        Err(e) => return crate::handlers::unavailable(&e.to_string()),
    };
    if held.principal.as_deref() != owner
        || held
            .metadata
            .get(super::legacy_upstream::BRIDGE_KEY)
            .map(String::as_str)
            != Some(CONTINUATION_MARK)
    {
        tracing::info!("bridge: a retry named a continuation of another principal (refused)");
        return unknown();
    }
    let question = match inner
        .store
        .frames(&record, &FrameQuery::after(seq.saturating_sub(1), 1))
        .await
    {
        Ok(page) => page
            .frames
            .into_iter()
            .find(|f| f.seq == seq)
            .and_then(|f| serde_json::from_slice::<Value>(&f.content).ok()),
        Err(e) => return crate::handlers::unavailable(&e.to_string()),
    };
    let Some(question) = question.filter(|q| matches!(classify(q), MessageKind::Request { .. }))
    else {
        return unknown();
    };
    let key = input_key(&question);
    let Some(answer) = msg
        .get("params")
        .and_then(|p| p.get("inputResponses"))
        .and_then(|r| r.get(&key))
    else {
        return rpc_error(
            &id,
            -32602,
            &format!("Invalid params: inputResponses has no answer for {key}"),
        );
    };
    let revision = held
        .protocol_version
        .clone()
        .unwrap_or_else(|| super::legacy_upstream::LEGACY_REVISION.to_owned());
    let hm = super::legacy_upstream::legacy_headers(client, &revision);
    let reply = json!({"jsonrpc": "2.0", "id": question.get("id").cloned().unwrap_or(Value::Null), "result": answer});
    match http
        .post(
            &hm,
            held.upstream_session_id.as_deref(),
            Bytes::from(reply.to_string()),
        )
        .await
    {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => {
            return rpc_error(
                &id,
                -32603,
                &format!(
                    "the 2025 upstream refused the answer to {} ({})",
                    question
                        .get("method")
                        .and_then(Value::as_str)
                        .unwrap_or("its request"),
                    r.status()
                ),
            );
        }
        Err(e) => return crate::handlers::bad_gateway(inner, &e),
    }
    let progress_token = msg
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("progressToken"))
        .cloned();
    let method = held.metadata.get(METHOD_KEY).cloned().unwrap_or_default();
    let (tx, rx) = mpsc::channel(32);
    let follow = Follow {
        log_level: super::modern_checks::requested_log_level(msg),
        inner: inner.clone(),
        record,
        token: token.to_owned(),
        after: seq,
        client_id: id,
        method,
        progress_token,
    };
    tokio::spawn(async move { follow.run(tx).await });
    sse_plain(rx)
}

/// A retry following a continuation record.
struct Follow {
    inner: Arc<ProxyState>,
    record: SessionId,
    token: String,
    after: u64,
    client_id: Value,
    method: String,
    progress_token: Option<Value>,
    /// The log level the retry opted in to.
    log_level: Option<String>,
}

impl Follow {
    async fn run(mut self, tx: mpsc::Sender<Bytes>) {
        let wait_for = self.inner.cfg.upstream_idle_timeout;
        let lease = self.inner.cfg.stream_lease;
        let mut last_event = tokio::time::Instant::now();
        let mut holder_checked = tokio::time::Instant::now();
        let mut holder_gone = false;
        loop {
            let page = match self
                .inner
                .store
                .frames(&self.record, &FrameQuery::after(self.after, 100))
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %e, "bridge: could not read a continuation");
                    if e.is_not_found() {
                        let _ = tx.send(self.error("the continuation expired")).await;
                        return;
                    }
                    tokio::time::sleep(FOLLOW_POLL).await;
                    continue;
                }
            };
            for f in &page.frames {
                self.after = f.seq;
                last_event = tokio::time::Instant::now();
                let Ok(mut v) = serde_json::from_slice::<Value>(&f.content) else {
                    continue;
                };
                match classify(&v) {
                    MessageKind::Request { .. } => {
                        // The upstream's next question.
                        let state = state_of(&self.token, f.seq);
                        let ask = input_required(&self.client_id, &v, &state);
                        let _ = tx.send(event(&ask)).await;
                        return;
                    }
                    MessageKind::Notification { .. }
                        if !super::modern_checks::log_allowed(self.log_level.as_deref(), &v) => {}
                    MessageKind::Notification { method } => {
                        if method == "notifications/progress"
                            && let (Some(t), Some(p)) = (&self.progress_token, v.get_mut("params"))
                        {
                            p["progressToken"] = t.clone();
                        }
                        if tx.send(event(&v)).await.is_err() {
                            return;
                        }
                    }
                    MessageKind::Response { .. } => {
                        v["id"] = self.client_id.clone();
                        super::legacy_upstream::modern_response(&self.method, &mut v);
                        let _ = tx.send(event(&v)).await;
                        if let Err(e) = self.inner.store.delete(&self.record).await {
                            tracing::debug!(error = %e, "bridge: could not delete a finished continuation");
                        }
                        return;
                    }
                    MessageKind::Invalid => {}
                }
            }
            if page.has_more {
                continue;
            }
            if holder_gone {
                // Read once more after the holder was found gone: its last event may have
                // landed just before it released the lease.
                let why = "the proxy instance holding the upstream request stopped before it \
                           answered; the request may or may not have completed";
                let _ = tx.send(self.error(why)).await;
                return;
            }
            if page.frames.is_empty() && holder_checked.elapsed() >= lease {
                holder_checked = tokio::time::Instant::now();
                if let Ok(None) = self.inner.lease_holder(&self.record, HOLDER_STREAM).await {
                    holder_gone = true;
                    continue;
                }
            }
            if last_event.elapsed() >= wait_for {
                let _ = tx
                    .send(self.error("the upstream sent nothing for too long"))
                    .await;
                return;
            }
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
            }
        }
    }

    fn error(&self, why: &str) -> Bytes {
        event(&json!({"jsonrpc": "2.0", "id": self.client_id,
            "error": {"code": -32603, "message": why}}))
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
    fn states_name_a_record_and_a_seq_and_nothing_else_parses() {
        let token = "0123456789abcdef0123456789abcdef";
        let s = state_of(token, 7);
        assert_eq!(parse_state(&s), Some((token, 7)));
        assert_eq!(parse_state("shoal-bridge.short.7"), None);
        assert_eq!(parse_state(&format!("shoal-bridge.{token}.x")), None);
        assert_eq!(parse_state("someone else's state"), None);
        let a = record_id(token);
        assert!(
            a.as_ref()
                .is_some_and(|r| r.as_str().starts_with("bridge-"))
        );
        assert_ne!(a, record_id("fedcba9876543210fedcba9876543210"));
        assert!(
            !a.as_ref().is_some_and(|r| r.as_str().contains(token)),
            "the record's id does not show the token"
        );
    }

    #[test]
    fn an_upstream_request_becomes_an_input_required_result() {
        let q = json!({"jsonrpc": "2.0", "id": 4, "method": "elicitation/create",
            "params": {"message": "Name?", "requestedSchema": {"type": "object"}}});
        let r = input_required(&json!("c1"), &q, "shoal-bridge.x.1");
        assert_eq!(r["id"], json!("c1"));
        assert_eq!(r["result"]["resultType"], json!("input_required"));
        assert_eq!(r["result"]["requestState"], json!("shoal-bridge.x.1"));
        let input = &r["result"]["inputRequests"]["upstream-4"];
        assert_eq!(input["method"], json!("elicitation/create"));
        assert_eq!(input["params"]["message"], json!("Name?"));
        assert_eq!(input_key(&json!({"id": "a"})), "upstream-a");
    }
}
