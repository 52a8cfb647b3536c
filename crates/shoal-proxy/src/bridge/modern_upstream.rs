//! 2025-revision clients in front of a 2026-07-28 upstream.
//!
//! The client speaks the full 2025 protocol to the proxy — `initialize`, `Mcp-Session-Id`,
//! SSE resumption with `Last-Event-ID` on any instance — and the proxy speaks 2026 upstream:
//!
//! - **`initialize`** is answered by the proxy from the upstream's `server/discover`
//!   (capabilities, `serverInfo`, `instructions`); the revision is the client's when it is a
//!   2025 one the proxy speaks, else 2025-11-25. The session is the proxy's own (in the store,
//!   on every instance); the upstream has none.
//! - **Each request** goes upstream as a 2026 request: `params._meta` gets the revision, the
//!   client's capabilities and `clientInfo` from the stored `initialize`, and the request gets
//!   `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` (non-ASCII names base64-encoded as the
//!   revision says). Replies are recorded as for any session, so a 2025 client whose stream
//!   broke resumes on any instance with every event once, although the upstream has no
//!   resumability.
//! - **Client notifications** (`notifications/initialized`, cancellations) are answered 202
//!   by the proxy: 2026 has no session to initialize, and cancels a request by closing its
//!   stream.
//! - **The upstream's questions to the client** (an `input_required` result: elicitation,
//!   sampling, roots) become 2025 server requests on the response stream, answered by the
//!   client on any instance, and the request is retried upstream with the answers (see
//!   [`input_requests`](super::input_requests)). The client's declared capabilities go upstream
//!   as declared, so the upstream asks only what the client can answer.
//! - **The standalone (GET) stream** is a `subscriptions/listen` upstream (every list-change
//!   kind), opened when the client's `notifications/initialized` passes and recorded like any
//!   standalone stream, so list changes reach the client's GET on any instance. A listen
//!   stream that ends is opened again once; nothing it missed is replayed (2026 has none).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use shoal_core::{Session, SessionId, SessionStore};

use crate::{
    protocol::{Revision, headers as h},
    state::Live,
    upstream::{Reply, UpstreamError, http::HttpUpstream},
};

/// The metadata value that marks a session as bridged to a 2026 upstream.
pub(crate) const MARK: &str = "2025-to-2026";
/// The revision spoken upstream.
const MODERN_REVISION: &str = "2026-07-28";
/// The id of the proxy's own `server/discover`.
const DISCOVER_ID: &str = "shoal-bridge-discover";

/// The 2026 `_meta` for a bridged session, from its stored `initialize` params.
pub(crate) fn modern_meta(s: &Session) -> Option<Value> {
    if s.metadata
        .get(super::legacy_upstream::BRIDGE_KEY)
        .map(String::as_str)
        != Some(MARK)
    {
        return None;
    }
    let params = s.initialize_params.as_ref();
    Some(meta_of(
        params.and_then(|p| p.get("capabilities")),
        params.and_then(|p| p.get("clientInfo")),
    ))
}

fn meta_of(capabilities: Option<&Value>, client_info: Option<&Value>) -> Value {
    let caps = capabilities.cloned().unwrap_or_else(|| json!({}));
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN_REVISION,
        "io.modelcontextprotocol/clientCapabilities": caps,
        "io.modelcontextprotocol/clientInfo": client_info.cloned()
            .unwrap_or_else(|| json!({"name": "shoal-bridge", "version": env!("CARGO_PKG_VERSION")})),
    })
}

/// `Mcp-Name`'s value: as it is when it is printable ASCII, else `=?base64?…?=`.
pub(crate) fn header_name_value(name: &str) -> Option<HeaderValue> {
    if name.bytes().all(|b| (0x20..0x7f).contains(&b)) && !name.starts_with("=?") {
        HeaderValue::from_str(name).ok()
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(name.as_bytes());
        HeaderValue::from_str(&format!("=?base64?{b64}?=")).ok()
    }
}

/// A 2025 request made a 2026 one: its body with `meta` merged into `params._meta`, and the
/// headers 2026 asks for (the client's others stay).
pub(crate) fn modern_request(client: &HeaderMap, msg: &Value, meta: &Value) -> (HeaderMap, Bytes) {
    let mut m = msg.clone();
    if let Some(obj) = m.as_object_mut() {
        let params = obj.entry("params").or_insert_with(|| json!({}));
        if let Some(p) = params.as_object_mut() {
            let into = p.entry("_meta").or_insert_with(|| json!({}));
            if let (Some(into), Some(meta)) = (into.as_object_mut(), meta.as_object()) {
                for (k, v) in meta {
                    into.insert(k.clone(), v.clone());
                }
            }
        }
    }
    let mut hm = client.clone();
    hm.remove(h::SESSION_ID);
    hm.remove(h::LAST_EVENT_ID);
    hm.insert(
        h::PROTOCOL_VERSION,
        HeaderValue::from_static(MODERN_REVISION),
    );
    hm.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    hm.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let method = m.get("method").and_then(Value::as_str).unwrap_or("");
    if let Ok(v) = HeaderValue::from_str(method) {
        hm.insert(h::MCP_METHOD, v);
    }
    let target = match method {
        "tools/call" | "prompts/get" => m.get("params").and_then(|p| p.get("name")),
        "resources/read" => m.get("params").and_then(|p| p.get("uri")),
        _ => None,
    };
    match target.and_then(Value::as_str).and_then(header_name_value) {
        Some(v) => {
            hm.insert(h::MCP_NAME, v);
        }
        None => {
            hm.remove(h::MCP_NAME);
        }
    }
    (hm, Bytes::from(m.to_string()))
}

/// For a `tools/call`: adds to `hm` the `Mcp-Param-*` headers of the arguments the tool
/// mirrors (see [`param_headers`](super::param_headers)), reading the upstream's tool listing
/// when this instance has none for the client's principal or it is old.
pub(crate) async fn mirror_params(
    inner: &crate::state::ProxyState,
    client: &HeaderMap,
    meta: &Value,
    msg: &Value,
    hm: &mut HeaderMap,
) {
    let (Some(http), Some("tools/call")) = (&inner.http, msg.get("method").and_then(Value::as_str))
    else {
        return;
    };
    let params = msg.get("params");
    let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
        return;
    };
    let scope = format!(
        "2026:{}",
        crate::handlers::principal(inner, client).unwrap_or_default()
    );
    let decls = inner
        .tool_headers
        .of(&scope, name, |cursor| async move {
            let id = "shoal-param-headers-tools";
            let mut list =
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}});
            if let Some(c) = cursor {
                list["params"]["cursor"] = c;
            }
            let (lh, body) = modern_request(client, &list, meta);
            let reply = http.post(&lh, None, body).await.ok()?;
            reply.response_to(id).await?.get("result").cloned()
        })
        .await;
    super::param_headers::add(hm, &decls, params.and_then(|p| p.get("arguments")));
}

/// Opens the session's server-to-client stream on a 2026 upstream: a `subscriptions/listen`
/// for every list change and the resources the client subscribed to, whose response stream the
/// proxy records as the session's standalone (GET) stream.
pub(crate) async fn listen(
    http: &HttpUpstream,
    client: &HeaderMap,
    meta: &Value,
    session: &str,
    resources: &[String],
) -> Result<Reply, UpstreamError> {
    let mut notifications = json!({
        "toolsListChanged": true,
        "promptsListChanged": true,
        "resourcesListChanged": true,
    });
    if !resources.is_empty() {
        notifications["resourceSubscriptions"] = json!(resources);
    }
    let msg = json!({
        "jsonrpc": "2.0",
        "id": format!("shoal-listen-{session}"),
        "method": "subscriptions/listen",
        "params": {"notifications": notifications},
    });
    let (hm, body) = modern_request(client, &msg, meta);
    http.post(&hm, None, body).await
}

/// The session metadata key holding the resource URIs the client subscribed to (JSON array).
pub(crate) const SUBSCRIPTIONS_KEY: &str = "bridge_resource_subscriptions";
/// Most resource subscriptions one bridged session keeps.
const MAX_SUBSCRIPTIONS: usize = 256;

/// The resource URIs a bridged session subscribed to.
pub(crate) fn subscribed(s: &Session) -> Vec<String> {
    s.metadata
        .get(SUBSCRIPTIONS_KEY)
        .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
        .unwrap_or_default()
}

/// The session metadata key holding the log level the client set.
pub(crate) const LOG_LEVEL_KEY: &str = "bridge_log_level";
/// The 2026 `_meta` key carrying a request's log level.
pub(crate) const LOG_LEVEL_META: &str = "io.modelcontextprotocol/logLevel";

/// Whether the proxy answers a 2025 request itself: methods 2026-07-28 removed
/// (`ping`, `logging/setLevel`, `resources/subscribe`, `resources/unsubscribe`).
pub(crate) fn answered_here(method: &str) -> bool {
    matches!(
        method,
        "ping" | "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe"
    )
}

/// The proxy's answer to a request [`answered_here`] names.
pub(crate) async fn answer_here(store: &dyn SessionStore, live: &Live, msg: &Value) -> Reply {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    match msg.get("method").and_then(Value::as_str) {
        Some("logging/setLevel") => set_level(store, live, msg).await,
        Some("resources/subscribe" | "resources/unsubscribe") => {
            subscription(store, &live.id, msg).await
        }
        // The proxy answers for the upstream: it has no ping in 2026-07-28.
        _ => json_reply(
            StatusCode::OK,
            &json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        ),
    }
}

/// `logging/setLevel`: 2026 takes the level per request (`_meta` logLevel); the proxy keeps
/// it in the session and sends it with each request (another instance takes it up from the
/// session's next request there).
async fn set_level(store: &dyn SessionStore, live: &Live, msg: &Value) -> Reply {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let Some(level) = msg
        .get("params")
        .and_then(|p| p.get("level"))
        .and_then(Value::as_str)
        .filter(|l| super::modern_checks::LOG_LEVELS.contains(l))
        .map(str::to_owned)
    else {
        return json_reply(
            StatusCode::OK,
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602,
                "message": "Invalid params: level must be one of debug, info, notice, warning, error, critical, alert, emergency"}}),
        );
    };
    let stored = shoal_core::store::modify(store, &live.id, 8, |s| {
        s.metadata.insert(LOG_LEVEL_KEY.to_owned(), level.clone());
    })
    .await;
    match stored {
        Ok(s) => {
            live.note_log_level(&s);
            json_reply(
                StatusCode::OK,
                &json!({"jsonrpc": "2.0", "id": id, "result": {}}),
            )
        }
        Err(e) => json_reply(
            StatusCode::OK,
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603,
                "message": format!("the log level could not be stored: {e}")}}),
        ),
    }
}

/// A 2025 `resources/subscribe` or `resources/unsubscribe`: the URI joins or leaves the
/// session's list in the store, which the instance holding the session's listen stream picks
/// up at its next lease renewal (it opens the listen stream again with the new list). Answered
/// by the proxy (a 2026 upstream has neither method).
pub(crate) async fn subscription(
    store: &dyn SessionStore,
    session: &SessionId,
    msg: &Value,
) -> Reply {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    let Some(uri) = msg
        .get("params")
        .and_then(|p| p.get("uri"))
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return json_reply(
            StatusCode::OK,
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "Invalid params: uri is required"}}),
        );
    };
    let subscribe = method == "resources/subscribe";
    let mut full = false;
    let changed = shoal_core::store::modify(store, session, 8, |s| {
        let mut uris = subscribed(s);
        uris.retain(|u| *u != uri);
        if subscribe {
            if uris.len() >= MAX_SUBSCRIPTIONS {
                full = true;
                return;
            }
            uris.push(uri.clone());
        }
        s.metadata.insert(
            SUBSCRIPTIONS_KEY.to_owned(),
            serde_json::to_string(&uris).unwrap_or_else(|_| "[]".into()),
        );
    })
    .await;
    let answer = match changed {
        _ if full => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602,
            "message": format!("Invalid params: at most {MAX_SUBSCRIPTIONS} resource subscriptions per session")}}),
        Ok(_) => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        Err(e) => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603,
            "message": format!("the subscription could not be stored: {e}")}}),
    };
    json_reply(StatusCode::OK, &answer)
}

/// An empty 202, as the proxy's answer to a client notification a 2026 upstream has no use for.
pub(crate) fn accepted() -> Reply {
    Reply::Full {
        status: StatusCode::ACCEPTED,
        headers: HeaderMap::new(),
        body: Bytes::new(),
    }
}

/// The upstream's `server/discover`, answered as `initialize` would have been: a JSON reply
/// to `init` (the client's `initialize` message).
pub(crate) async fn initialize(http: &HttpUpstream, init: &Value) -> Result<Reply, UpstreamError> {
    let params = init.get("params");
    let meta = meta_of(
        params.and_then(|p| p.get("capabilities")),
        params.and_then(|p| p.get("clientInfo")),
    );
    let discover =
        json!({"jsonrpc": "2.0", "id": DISCOVER_ID, "method": "server/discover", "params": {}});
    let (hm, body) = modern_request(&HeaderMap::new(), &discover, &meta);
    let reply = http.post(&hm, None, body).await?;
    let status = reply.status();
    let answer = reply.response_to(DISCOVER_ID).await;
    let id = init.get("id").cloned().unwrap_or(Value::Null);
    let Some(result) = answer.as_ref().and_then(|a| a.get("result")) else {
        let why = answer
            .as_ref()
            .and_then(|a| a.get("error"))
            .cloned()
            .unwrap_or_else(|| json!({"code": -32603, "message": format!("the 2026 upstream answered server/discover with {status}")}));
        tracing::warn!(%status, "bridge: the upstream's server/discover failed");
        return Ok(json_reply(
            StatusCode::OK,
            &json!({"jsonrpc": "2.0", "id": id, "error": why}),
        ));
    };
    let asked = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str)
        .and_then(Revision::parse)
        .filter(|r| r.has_sessions())
        .unwrap_or(Revision::V2025_11_25);
    let mut out = json!({
        "protocolVersion": asked.as_str(),
        "capabilities": result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "serverInfo": result
            .get("_meta")
            .and_then(|m| m.get("io.modelcontextprotocol/serverInfo"))
            .cloned()
            .unwrap_or_else(|| json!({"name": "upstream", "version": "unknown"})),
    });
    if let Some(i) = result.get("instructions") {
        out["instructions"] = i.clone();
    }
    Ok(json_reply(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": id, "result": out}),
    ))
}

fn json_reply(status: StatusCode, v: &Value) -> Reply {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Reply::Full {
        status,
        headers,
        body: Bytes::from(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(r: Reply) -> Value {
        match r {
            Reply::Full { body, .. } => serde_json::from_slice(&body).unwrap_or_default(),
            Reply::Stream { .. } => Value::Null,
        }
    }

    #[tokio::test]
    async fn removed_methods_are_answered_here_and_kept_in_the_session() {
        let store = shoal_core::MemoryStore::new();
        let mut s = Session::new(SessionId::generate(), shoal_core::Transport::StreamableHttp);
        s.metadata.insert(
            super::super::legacy_upstream::BRIDGE_KEY.into(),
            MARK.into(),
        );
        let s = store.create(s).await.expect("created");
        let live = crate::state::live_from(&s, None);
        assert!(answered_here("ping") && answered_here("logging/setLevel"));
        assert!(!answered_here("tools/call"));

        let ping = body_of(
            answer_here(
                &store,
                &live,
                &json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
            )
            .await,
        );
        assert_eq!(ping["result"], json!({}));
        let set = json!({"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "warning"}});
        assert_eq!(
            body_of(answer_here(&store, &live, &set).await)["result"],
            json!({})
        );
        assert_eq!(
            live.modern_meta_now().map(|m| m[LOG_LEVEL_META].clone()),
            Some(json!("warning"))
        );
        let bad = json!({"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel", "params": {"level": "loud"}});
        assert_eq!(
            body_of(answer_here(&store, &live, &bad).await)["error"]["code"],
            json!(-32602)
        );

        let sub = |m: &str, uri: &str| json!({"jsonrpc": "2.0", "id": 4, "method": m, "params": {"uri": uri}});
        for uri in ["a://1", "a://2", "a://1"] {
            body_of(answer_here(&store, &live, &sub("resources/subscribe", uri)).await);
        }
        body_of(answer_here(&store, &live, &sub("resources/unsubscribe", "a://2")).await);
        let stored = store.get(&s.id).await.ok().flatten().expect("the session");
        assert_eq!(subscribed(&stored), vec!["a://1".to_owned()]);
        assert_eq!(
            stored.metadata.get(LOG_LEVEL_KEY).map(String::as_str),
            Some("warning")
        );
        let other = crate::state::live_from(&stored, None);
        assert_eq!(
            other.modern_meta_now().map(|m| m[LOG_LEVEL_META].clone()),
            Some(json!("warning")),
            "another instance loading the session sends the level"
        );
    }

    #[test]
    fn requests_get_2026_meta_and_headers() {
        let meta = meta_of(
            Some(&json!({"sampling": {}, "elicitation": {}, "experimental": {"x": {}}})),
            Some(&json!({"name": "c", "version": "1"})),
        );
        assert_eq!(
            meta["io.modelcontextprotocol/clientCapabilities"],
            json!({"sampling": {}, "elicitation": {}, "experimental": {"x": {}}}),
            "the client's capabilities go upstream as declared"
        );
        let mut client = HeaderMap::new();
        client.insert(h::SESSION_ID, HeaderValue::from_static("abc"));
        client.insert("traceparent", HeaderValue::from_static("00-1-2-01"));
        let msg = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "météo", "arguments": {}, "_meta": {"progressToken": 3}}});
        let (hm, body) = modern_request(&client, &msg, &meta);
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(v["params"]["_meta"]["progressToken"], json!(3));
        assert_eq!(
            v["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
            json!("2026-07-28")
        );
        assert!(hm.get(h::SESSION_ID).is_none());
        assert_eq!(
            hm.get(h::MCP_METHOD).and_then(|v| v.to_str().ok()),
            Some("tools/call")
        );
        assert_eq!(
            hm.get(h::MCP_NAME).and_then(|v| v.to_str().ok()),
            Some("=?base64?bcOpdMOpbw==?=")
        );
        assert_eq!(
            hm.get("traceparent").and_then(|v| v.to_str().ok()),
            Some("00-1-2-01")
        );
        let (hm, body) = modern_request(
            &HeaderMap::new(),
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            &meta,
        );
        assert!(hm.get(h::MCP_NAME).is_none());
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert!(
            v["params"]["_meta"]
                .get("io.modelcontextprotocol/clientInfo")
                .is_some()
        );
        assert_eq!(
            header_name_value("echo")
                .and_then(|v| v.to_str().ok().map(str::to_owned))
                .as_deref(),
            Some("echo")
        );
    }
}
