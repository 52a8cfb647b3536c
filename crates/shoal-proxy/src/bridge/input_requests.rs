//! A 2026 upstream's `input_required` result, asked of a 2025 client as server requests.
//!
//! A 2026-07-28 server that needs the client (elicitation, sampling, roots) answers the
//! request with `resultType: "input_required"`, a map of `inputRequests` and an opaque
//! `requestState`; the client is expected to retry the request with `inputResponses` (same
//! keys) and the state. A 2025 client knows none of that: it expects the server to send it
//! JSON-RPC requests on the response stream and to go on once it POSTed the answers.
//!
//! So the proxy, reading the request's upstream stream (the pump):
//! 1. sends the client one JSON-RPC request per input request on the same response stream,
//!    recorded like any event (a client that reconnects gets them again, on any instance;
//!    each is listed as pending until answered);
//! 2. waits for the answers, which the client POSTs to any instance: they are recorded as the
//!    session's client-to-server frames, and this instance reads them from the store;
//! 3. retries the request upstream with `inputResponses` and `requestState`, and goes on
//!    reading the retry's stream as the same client stream. A further `input_required` starts
//!    another round (at most [`MAX_ROUNDS`]).
//!
//! The client declared the capability in its `initialize` (the proxy passes those capabilities
//! upstream), so the upstream only asks what the client can answer. A client that answers with
//! a JSON-RPC error, or not within the upstream idle timeout, ends the request with an error
//! naming the input request.

use std::{sync::Arc, time::Duration};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};
use shoal_core::{Direction, FrameQuery, RequestId};

use crate::{
    protocol::{MessageKind, classify, id_to_json, request_id},
    sse::SseEvent,
    state::{Live, ProxyState},
    upstream::{EventStream, Reply, UpstreamError},
};

/// Most input rounds one request may take.
pub(crate) const MAX_ROUNDS: u32 = 8;
/// The result type of a 2026 result that asks the client for input.
const INPUT_REQUIRED: &str = "input_required";
/// How often the store is read for the client's answers.
const ANSWER_POLL: Duration = Duration::from_millis(50);
/// How often a waiting round tells the pump it is alive (an empty event).
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// What an `input_required` result asks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InputAsk {
    /// The input requests (`{method, params}`) by the upstream's keys.
    pub(crate) requests: Vec<(String, Value)>,
    /// The opaque state to send back.
    pub(crate) state: Option<Value>,
}

/// The ask in `v` when it is an `input_required` result answering `id`.
pub(crate) fn ask_of(v: &Value, id: &RequestId) -> Option<InputAsk> {
    if v.get("id").and_then(request_id).as_ref() != Some(id) {
        return None;
    }
    let result = v.get("result")?;
    if result.get("resultType").and_then(Value::as_str) != Some(INPUT_REQUIRED) {
        return None;
    }
    let requests = result
        .get("inputRequests")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, r)| (k.clone(), r.clone())).collect())
        .unwrap_or_default();
    Some(InputAsk {
        requests,
        state: result.get("requestState").cloned(),
    })
}

/// Whether a complete reply body is an `input_required` result (it then goes to the client as
/// a stream, since answering it takes server requests).
pub(crate) fn is_input_required(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| {
        v.get("result")
            .and_then(|r| r.get("resultType"))
            .and_then(Value::as_str)
            == Some(INPUT_REQUIRED)
    })
}

/// A complete reply made a one-event stream.
pub(crate) fn as_stream(reply: Reply) -> Reply {
    match reply {
        Reply::Full { status, body, .. } => {
            let event = SseEvent {
                id: None,
                event: None,
                data: String::from_utf8_lossy(&body).into_owned(),
                retry: None,
            };
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            Reply::Stream {
                status: if status.is_success() {
                    status
                } else {
                    StatusCode::OK
                },
                headers,
                events: Box::pin(futures_util::stream::once(async { Ok(event) })),
            }
        }
        stream => stream,
    }
}

/// The id the proxy gives the server request for `key` in round `round` of `stream`.
pub(crate) fn asked_id(stream: &str, round: u32, key: &str) -> RequestId {
    RequestId::String(format!("shoal-input-{stream}-{round}-{key}"))
}

/// The 2025 server request (a JSON-RPC request to the client) for one input request, `None`
/// when the input request has no method.
pub(crate) fn server_request(id: &RequestId, input: &Value) -> Option<Bytes> {
    let method = input.get("method").and_then(Value::as_str)?;
    let mut msg = json!({"jsonrpc": "2.0", "id": id_to_json(id), "method": method});
    if let Some(p) = input.get("params") {
        msg["params"] = p.clone();
    }
    Some(Bytes::from(msg.to_string()))
}

/// The original request retried with the client's answers and the upstream's state.
pub(crate) fn retried(
    original: &Value,
    answers: Map<String, Value>,
    state: Option<&Value>,
) -> Value {
    let mut m = original.clone();
    if let Some(obj) = m.as_object_mut() {
        let params = obj.entry("params").or_insert_with(|| json!({}));
        if let Some(p) = params.as_object_mut() {
            p.insert("inputResponses".into(), Value::Object(answers));
            match state {
                Some(s) => {
                    p.insert("requestState".into(), s.clone());
                }
                None => {
                    p.remove("requestState");
                }
            }
        }
    }
    m
}

/// The JSON-RPC error that ends the original request, as one event.
pub(crate) fn error_event(original_id: &RequestId, code: i64, message: &str) -> SseEvent {
    SseEvent {
        id: None,
        event: None,
        data: json!({"jsonrpc": "2.0", "id": id_to_json(original_id),
            "error": {"code": code, "message": message}})
        .to_string(),
        retry: None,
    }
}

/// One round: the client was asked `asked` (id, key, method) in frames after `after_seq`.
pub(crate) struct Round {
    pub(crate) original: Value,
    pub(crate) original_id: RequestId,
    pub(crate) asked: Vec<(RequestId, String, String)>,
    pub(crate) state: Option<Value>,
    pub(crate) after_seq: u64,
    pub(crate) client_headers: HeaderMap,
    pub(crate) meta: Value,
}

/// The events of a round: keep-alives while the client's answers are awaited, then the
/// upstream's stream for the retried request (or one error event ending the request).
pub(crate) fn answer_then_retry(
    inner: &Arc<ProxyState>,
    live: &Arc<Live>,
    round: Round,
) -> EventStream {
    let (inner, live) = (inner.clone(), live.clone());
    let stream = futures_util::stream::unfold(
        Phase::Waiting(Box::new(round), tokio::time::Instant::now()),
        move |phase| {
            let (inner, live) = (inner.clone(), live.clone());
            async move { step(&inner, &live, phase).await }
        },
    )
    .flatten();
    Box::pin(stream)
}

enum Phase {
    Waiting(Box<Round>, tokio::time::Instant),
    Done,
}

type Item = Result<SseEvent, UpstreamError>;

async fn step(
    inner: &Arc<ProxyState>,
    live: &Arc<Live>,
    phase: Phase,
) -> Option<(EventStream, Phase)> {
    let Phase::Waiting(round, started) = phase else {
        return None;
    };
    let wait_for = inner.cfg.upstream_idle_timeout;
    let alive_until = tokio::time::Instant::now() + KEEP_ALIVE;
    loop {
        match answers(inner, live, &round).await {
            Ok(Some(Ok(answers))) => {
                let events = retry(inner, &round, answers).await;
                return Some((events, Phase::Done));
            }
            Ok(Some(Err(why))) => {
                let ev = error_event(&round.original_id, -32603, &why);
                return Some((one(Ok(ev)), Phase::Done));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(session = %live.id, error = %e, "bridge: could not read the client's answers");
            }
        }
        if started.elapsed() >= wait_for {
            let methods: Vec<&str> = round.asked.iter().map(|(_, _, m)| m.as_str()).collect();
            let why = format!(
                "the client did not answer {} within {} s",
                methods.join(", "),
                wait_for.as_secs()
            );
            let ev = error_event(&round.original_id, -32603, &why);
            return Some((one(Ok(ev)), Phase::Done));
        }
        if tokio::time::Instant::now() >= alive_until {
            let keep_alive = SseEvent {
                id: None,
                event: None,
                data: String::new(),
                retry: None,
            };
            return Some((one(Ok(keep_alive)), Phase::Waiting(round, started)));
        }
        tokio::select! {
            _ = inner.shutdown.cancelled() => return None,
            _ = tokio::time::sleep(ANSWER_POLL) => {}
        }
    }
}

fn one(item: Item) -> EventStream {
    Box::pin(futures_util::stream::once(async move { item }))
}

/// The client's answers to the round: `None` while some are missing; `Some(Err)` when the
/// client answered one with an error.
async fn answers(
    inner: &ProxyState,
    live: &Live,
    round: &Round,
) -> shoal_core::Result<Option<Result<Map<String, Value>, String>>> {
    let mut found: Map<String, Value> = Map::new();
    let mut after = round.after_seq;
    loop {
        let page = inner
            .store
            .frames(&live.id, &FrameQuery::after(after, 100))
            .await?;
        for f in page
            .frames
            .iter()
            .filter(|f| f.direction == Direction::ClientToServer)
        {
            let Ok(v) = serde_json::from_slice::<Value>(&f.content) else {
                continue;
            };
            let messages = match v {
                Value::Array(items) => items,
                m => vec![m],
            };
            for m in messages {
                if !matches!(classify(&m), MessageKind::Response { .. }) {
                    continue;
                }
                let Some(id) = m.get("id").and_then(request_id) else {
                    continue;
                };
                let Some((_, key, method)) = round.asked.iter().find(|(a, _, _)| *a == id) else {
                    continue;
                };
                if let Some(result) = m.get("result") {
                    found.insert(key.clone(), result.clone());
                } else {
                    let message = m
                        .get("error")
                        .and_then(|e| e.get("message"))
                        .and_then(Value::as_str)
                        .unwrap_or("no message");
                    return Ok(Some(Err(format!(
                        "the client answered {method} with an error: {message}"
                    ))));
                }
            }
        }
        after = page.next_after(after);
        if !page.has_more {
            break;
        }
    }
    Ok((found.len() == round.asked.len()).then_some(Ok(found)))
}

/// Sends the retried request upstream; its events, or one error event.
async fn retry(inner: &ProxyState, round: &Round, answers: Map<String, Value>) -> EventStream {
    let Some(http) = &inner.http else {
        return one(Ok(error_event(&round.original_id, -32603, "no upstream")));
    };
    let msg = retried(&round.original, answers, round.state.as_ref());
    let (mut hm, body) =
        super::modern_upstream::modern_request(&round.client_headers, &msg, &round.meta);
    super::modern_upstream::mirror_params(inner, &round.client_headers, &round.meta, &msg, &mut hm)
        .await;
    match http.post(&hm, None, body).await {
        Ok(Reply::Stream { events, .. }) => events,
        Ok(Reply::Full { status, body, .. }) if status.is_success() && !body.is_empty() => {
            one(Ok(SseEvent {
                id: None,
                event: None,
                data: String::from_utf8_lossy(&body).into_owned(),
                retry: None,
            }))
        }
        Ok(Reply::Full { status, .. }) => one(Ok(error_event(
            &round.original_id,
            -32603,
            &format!("the upstream answered the retried request with {status}"),
        ))),
        Err(e) => one(Ok(error_event(
            &round.original_id,
            -32603,
            &format!("the retried request failed upstream: {e}"),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_required_result_is_asked_and_retried() {
        let id = RequestId::Number(7);
        let v = json!({"jsonrpc": "2.0", "id": 7, "result": {
            "resultType": "input_required",
            "inputRequests": {"name": {"method": "elicitation/create",
                "params": {"message": "Your name?", "requestedSchema": {"type": "object"}}}},
            "requestState": "s1"}});
        let ask = ask_of(&v, &id).expect("an ask");
        assert_eq!(ask.requests.len(), 1);
        assert_eq!(ask.state, Some(json!("s1")));
        assert!(
            ask_of(&v, &RequestId::Number(8)).is_none(),
            "another request's result"
        );
        assert!(ask_of(&json!({"id": 7, "result": {"content": []}}), &id).is_none());
        assert!(is_input_required(v.to_string().as_bytes()));
        assert!(!is_input_required(b"{\"result\":{}}"));

        let asked = asked_id("p1", 0, "name");
        let req = server_request(&asked, &ask.requests[0].1).expect("a request");
        let r: Value = serde_json::from_slice(&req).unwrap_or_default();
        assert_eq!(r["method"], json!("elicitation/create"));
        assert_eq!(r["id"], json!("shoal-input-p1-0-name"));
        assert_eq!(r["params"]["message"], json!("Your name?"));
        assert!(server_request(&asked, &json!({"params": {}})).is_none());

        let original = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "ask", "requestState": "old"}});
        let mut answers = Map::new();
        answers.insert(
            "name".into(),
            json!({"action": "accept", "content": {"name": "Ada"}}),
        );
        let again = retried(&original, answers.clone(), ask.state.as_ref());
        assert_eq!(
            again["params"]["inputResponses"]["name"]["content"]["name"],
            json!("Ada")
        );
        assert_eq!(again["params"]["requestState"], json!("s1"));
        assert_eq!(again["params"]["name"], json!("ask"));
        let stateless = retried(&original, answers, None);
        assert!(stateless["params"].get("requestState").is_none());
    }
}
