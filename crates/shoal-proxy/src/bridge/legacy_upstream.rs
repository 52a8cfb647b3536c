//! 2026-07-28 clients in front of a 2025-revision upstream.
//!
//! A 2026 client has no session and no `initialize`: every request carries the revision, the
//! client's capabilities and its `clientInfo` in `params._meta`. A 2025 upstream needs an
//! `initialize` and a session id on every request. The proxy closes the gap:
//!
//! - **Upstream sessions are keyed by who asks and what they declare**: the principal (the
//!   proxy's principal rule: the trusted header, or a fingerprint of the bearer token) and
//!   the client's declared capabilities (canonical JSON). Requests with the same key share one
//!   upstream session; different principals never do. The key is hashed into the id of a
//!   store session that holds the upstream session id, the negotiated revision and the
//!   upstream's `initialize` result, so every instance reuses it.
//! - **First use** runs `initialize` (revision 2025-11-25, the client's capabilities and
//!   `clientInfo`) and `notifications/initialized` upstream, then stores the session. Two
//!   instances racing: one store create wins; the loser ends its own upstream session.
//! - **`server/discover`** is answered from the stored `initialize` result.
//! - **Each request** goes upstream in that session with the negotiated revision; the 2026
//!   `_meta` keys and mirrored headers are taken off (a dual-era upstream must not mistake it
//!   for a sessionless request). An SSE reply goes back without event ids (a 2026 client
//!   has no resumption and would otherwise try one).
//! - **Upstream session expiry**: a 404 from the upstream (or a 400 whose error names the
//!   session, as some SDK servers answer) means it forgot the session; the proxy initializes
//!   a new one, stores it, and sends the request again once.
//! - **The upstream's questions to the client** inside a request (elicitation, sampling,
//!   roots) become `input_required` results; the client's retry, on any instance, carries the
//!   answers upstream and gets the rest of the request's stream (see
//!   [`legacy_stream`](super::legacy_stream) and [`input_required`](super::input_required)).
//! - **`subscriptions/listen`** is served from the upstream session's GET stream, read by one
//!   instance and recorded, followed by every listen stream on any instance (see
//!   [`legacy_listen`](super::legacy_listen)).
//! - **Not translated** (refused with a JSON-RPC error naming the feature, never dropped):
//!   batches; an upstream request to the client outside those above (or of a capability the
//!   client did not declare) is answered upstream with an error naming it, and logged.

use std::sync::Arc;

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::Digest;
use shoal_core::{Error as StoreError, Session, SessionId, Transport};

use super::legacy_stream::Relay;
use crate::{
    handlers::{bad_gateway, copy_back, principal, refuse, unavailable},
    protocol::{Body, headers as h},
    state::{ProxyState, hex},
    upstream::{Reply, http::HttpUpstream},
};

/// The revision the proxy asks a legacy upstream for.
pub(crate) const LEGACY_REVISION: &str = "2025-11-25";
/// The revision the proxy speaks to the clients.
const MODERN_REVISION: &str = "2026-07-28";
/// The prefix of the 2026 `_meta` keys.
const META_PREFIX: &str = "io.modelcontextprotocol/";
/// The metadata key that marks a store session as a bridge's upstream session.
pub(crate) const BRIDGE_KEY: &str = "bridge";
/// The id of the proxy's own `initialize`.
const INIT_ID: &str = "shoal-bridge-initialize";

/// The store session id of an upstream session: `bridge-` and 32 hex digits of
/// SHA-256(principal, canonical capabilities).
pub(crate) fn key(principal: Option<&str>, capabilities: &Value) -> Option<SessionId> {
    let mut d = sha2::Sha256::new();
    d.update(principal.unwrap_or("").as_bytes());
    d.update([0u8]);
    // serde_json's maps are sorted by key: this text is canonical.
    d.update(capabilities.to_string().as_bytes());
    SessionId::new(format!("bridge-{}", hex(&d.finalize()[..16]))).ok()
}

/// Whether `id` names a record of this bridge (`bridge-…`), never a client's session: ids the
/// proxy mints are 32 hex digits.
pub(crate) fn is_bridge_record(id: &SessionId) -> bool {
    id.as_str().starts_with("bridge-")
}

/// The 2026 request without its `_meta` protocol keys (other `_meta` keys, e.g. a progress
/// token, stay).
pub(crate) fn legacy_body(msg: &Value) -> Value {
    let mut m = msg.clone();
    if let Some(meta) = m
        .get_mut("params")
        .and_then(|p| p.get_mut("_meta"))
        .and_then(Value::as_object_mut)
    {
        meta.retain(|k, _| !k.starts_with(META_PREFIX));
        if meta.is_empty()
            && let Some(p) = m.get_mut("params").and_then(Value::as_object_mut)
        {
            p.remove("_meta");
        }
    }
    m
}

/// Results a 2026 client may cache, which must say for how long and for whom.
const CACHEABLE: [&str; 6] = [
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// A 2025 response made a 2026 one: every result says `resultType` (`complete`: a legacy
/// upstream has no input-required results), and cacheable ones `ttlMs` 0 (no caching: the
/// upstream gave no hint) and `cacheScope` `private` (its session is one principal's).
pub(crate) fn modern_response(method: &str, v: &mut Value) {
    let Some(result) = v.get_mut("result").and_then(Value::as_object_mut) else {
        return;
    };
    result
        .entry("resultType")
        .or_insert_with(|| json!("complete"));
    if CACHEABLE.contains(&method) {
        result.entry("ttlMs").or_insert_with(|| json!(0));
        result
            .entry("cacheScope")
            .or_insert_with(|| json!("private"));
    }
}

/// A reply body (one JSON-RPC message) made a 2026 one; anything else as it is.
pub(crate) fn modern_body(method: &str, body: &[u8]) -> Bytes {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) if v.get("result").is_some() => {
            modern_response(method, &mut v);
            Bytes::from(v.to_string())
        }
        _ => Bytes::copy_from_slice(body),
    }
}

/// The HTTP status a 2026 server gives a JSON-RPC error reply: 404 for "method not found",
/// 400 for a missing client capability (-32021); `None` for anything else (its status stays).
pub(crate) fn error_status(body: &[u8]) -> Option<StatusCode> {
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.get("code")?.as_i64())?;
    match code {
        -32601 => Some(StatusCode::NOT_FOUND),
        -32021 => Some(StatusCode::BAD_REQUEST),
        _ => None,
    }
}

/// Whether the upstream says it does not know the session: 404 (the 2025 rule), or a 400
/// whose JSON-RPC error names the session (how some SDK servers answer an unknown id).
pub(crate) fn forgot_session(reply: &Reply) -> bool {
    match reply {
        Reply::Full { status, .. } | Reply::Stream { status, .. }
            if *status == StatusCode::NOT_FOUND =>
        {
            true
        }
        Reply::Full { status, body, .. } if *status == StatusCode::BAD_REQUEST => {
            serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| {
                    v.get("error")?
                        .get("message")?
                        .as_str()
                        .map(|m| m.to_ascii_lowercase().contains("session"))
                })
                .unwrap_or(false)
        }
        _ => false,
    }
}

/// Handles one 2026 request bound for a legacy upstream.
pub(crate) async fn handle(
    inner: &Arc<ProxyState>,
    headers: &HeaderMap,
    parsed: &Body,
) -> Response {
    let Some(http) = &inner.http else {
        return refuse(
            StatusCode::BAD_REQUEST,
            -32600,
            "Bad Request: the 2026-to-2025 bridge needs an HTTP upstream",
        );
    };
    let [msg] = parsed.messages.as_slice() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            -32600,
            "Invalid Request: batches are not part of 2026-07-28",
        );
    };
    if let Err(refused) = super::modern_checks::check(headers, msg) {
        return *refused;
    }
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    if let Err(why) = crate::protocol::check_mirrored_headers(headers, parsed) {
        return header_mismatch(&id, why);
    }
    let method = msg.get("method").and_then(Value::as_str);
    let meta = msg.get("params").and_then(|p| p.get("_meta"));
    let capabilities = meta
        .and_then(|m| m.get("io.modelcontextprotocol/clientCapabilities"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let client_info = meta
        .and_then(|m| m.get("io.modelcontextprotocol/clientInfo"))
        .cloned()
        .unwrap_or_else(|| json!({"name": "shoal-bridge", "version": env!("CARGO_PKG_VERSION")}));
    let owner = principal(inner, headers);
    let Some(key) = key(owner.as_deref(), &capabilities) else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, -32603, "Internal error");
    };
    let ask = Ask {
        inner,
        http,
        key: &key,
        owner: owner.as_deref(),
        capabilities: &capabilities,
        client_info: &client_info,
    };
    match method {
        Some("server/discover") => match ask.session(None).await {
            Ok(s) => discover(&id, &s),
            Err(r) => r,
        },
        Some("subscriptions/listen") => match ask.session(None).await {
            Ok(s) => super::legacy_listen::listen(inner, http, msg, s).await,
            Err(r) => r,
        },
        _ => match msg
            .get("params")
            .and_then(|p| p.get("requestState"))
            .and_then(Value::as_str)
            .filter(|s| super::input_required::parse_state(s).is_some())
        {
            Some(state) => {
                super::input_required::resume(inner, http, headers, msg, owner.as_deref(), state)
                    .await
            }
            None => {
                if let Err(why) = ask.check_param_headers(headers, msg).await {
                    return header_mismatch(&id, &why);
                }
                ask.forward(headers, msg).await
            }
        },
    }
}

/// A header that disagrees with the body: HTTP 400, -32020 (`HeaderMismatch`), as a 2026
/// server answers.
fn header_mismatch(id: &Value, why: &str) -> Response {
    super::modern_checks::rpc_error(
        StatusCode::BAD_REQUEST,
        id,
        crate::protocol::HEADER_MISMATCH,
        &format!("Bad Request: {why}"),
        None,
    )
}

/// `server/discover`'s result from the upstream's `initialize` result.
fn discover(id: &Value, s: &Session) -> Response {
    let init = s.server_info.clone().unwrap_or_else(|| json!({}));
    let mut result = json!({
        "resultType": "complete",
        "supportedVersions": [MODERN_REVISION],
        "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        "_meta": {"io.modelcontextprotocol/serverInfo": init.get("serverInfo").cloned().unwrap_or(Value::Null)},
    });
    if let Some(i) = init.get("instructions") {
        result["instructions"] = i.clone();
    }
    let mut body = json!({"jsonrpc": "2.0", "id": id, "result": result});
    modern_response("server/discover", &mut body);
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// One request's view of its upstream session.
struct Ask<'a> {
    inner: &'a Arc<ProxyState>,
    http: &'a HttpUpstream,
    key: &'a SessionId,
    owner: Option<&'a str>,
    capabilities: &'a Value,
    client_info: &'a Value,
}

/// Headers for a legacy request: the client's, with the negotiated revision and without the
/// 2026 mirrored headers.
pub(crate) fn legacy_headers(client: &HeaderMap, revision: &str) -> HeaderMap {
    let mut hm = client.clone();
    hm.remove(h::MCP_METHOD);
    hm.remove(h::MCP_NAME);
    hm.remove(h::SESSION_ID);
    if let Ok(v) = HeaderValue::from_str(revision) {
        hm.insert(h::PROTOCOL_VERSION, v);
    }
    hm.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    hm.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    hm
}

impl Ask<'_> {
    /// The upstream session: the stored one, or a new one (also when `replacing` names the
    /// upstream session id the upstream forgot).
    async fn session(&self, replacing: Option<&str>) -> Result<Session, Response> {
        let store = &self.inner.store;
        let stored = store
            .get(self.key)
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        if let Some(s) = &stored
            && s.upstream_session_id.as_deref() != replacing
        {
            return Ok(s.clone());
        }
        let (init, upstream_sid) = self.initialize().await?;
        let revision = init
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(LEGACY_REVISION)
            .to_owned();
        match stored {
            Some(mut s) => {
                s.upstream_session_id = upstream_sid.clone();
                s.protocol_version = Some(revision);
                s.server_info = Some(init);
                match store.update(&s).await {
                    Ok(s) => Ok(s),
                    // Another instance replaced it first: use theirs, end ours.
                    Err(StoreError::Conflict { .. }) => self.theirs(upstream_sid.as_deref()).await,
                    Err(e) => Err(unavailable(&e.to_string())),
                }
            }
            None => {
                let mut s = Session::new(self.key.clone(), Transport::StreamableHttp);
                s.principal = self.owner.map(str::to_owned);
                s.upstream_session_id = upstream_sid.clone();
                s.protocol_version = Some(revision);
                s.server_info = Some(init);
                s.client_info = Some(json!({
                    "clientInfo": self.client_info,
                    "capabilities": self.capabilities,
                }));
                s.metadata
                    .insert(BRIDGE_KEY.to_owned(), "2026-to-2025".to_owned());
                match store.create(s).await {
                    Ok(s) => {
                        tracing::info!(session = %self.key.as_str(), "bridge: upstream session created");
                        Ok(s)
                    }
                    // Another instance created it first: use theirs, end ours.
                    Err(StoreError::AlreadyExists { .. }) => {
                        self.theirs(upstream_sid.as_deref()).await
                    }
                    Err(e) => Err(unavailable(&e.to_string())),
                }
            }
        }
    }

    /// Another instance's record won: ends the upstream session `ours` and reads theirs.
    async fn theirs(&self, ours: Option<&str>) -> Result<Session, Response> {
        self.end(ours).await;
        self.inner
            .store
            .get(self.key)
            .await
            .map_err(|e| unavailable(&e.to_string()))?
            .ok_or_else(|| unavailable("the upstream session's record vanished"))
    }

    /// Runs `initialize` and `notifications/initialized` upstream; returns the result and the
    /// upstream's session id (none from a stateless upstream).
    async fn initialize(&self) -> Result<(Value, Option<String>), Response> {
        let body = json!({
            "jsonrpc": "2.0",
            "id": INIT_ID,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY_REVISION,
                "capabilities": self.capabilities,
                "clientInfo": self.client_info,
            },
        });
        let hm = legacy_headers(&HeaderMap::new(), LEGACY_REVISION);
        let reply = self
            .http
            .post(&hm, None, Bytes::from(body.to_string()))
            .await
            .map_err(|e| bad_gateway(self.inner, &e))?;
        let status = reply.status();
        let sid = match &reply {
            Reply::Full { headers, .. } | Reply::Stream { headers, .. } => headers
                .get(h::SESSION_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        let response = reply.response_to(INIT_ID).await;
        let Some(result) = response.as_ref().and_then(|r| r.get("result")).cloned() else {
            tracing::warn!(%status, "bridge: the upstream refused initialize");
            return Err(refuse(
                StatusCode::BAD_GATEWAY,
                -32603,
                "Bad Gateway: the 2025 upstream refused initialize",
            ));
        };
        let revision = result
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or(LEGACY_REVISION);
        let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let hm = legacy_headers(&HeaderMap::new(), revision);
        if let Err(e) = self
            .http
            .post(&hm, sid.as_deref(), Bytes::from(done.to_string()))
            .await
        {
            return Err(bad_gateway(self.inner, &e));
        }
        Ok((result, sid))
    }

    /// Ends an upstream session this proxy will not use (best effort).
    async fn end(&self, sid: Option<&str>) {
        if let Some(sid) = sid {
            let hm = legacy_headers(&HeaderMap::new(), LEGACY_REVISION);
            let _ = self.http.delete(&hm, Some(sid)).await;
        }
    }

    /// For a `tools/call`: checks the client's `Mcp-Param-*` headers against the arguments
    /// the tool mirrors, as a 2026 server does (see
    /// [`param_headers`](super::param_headers)); the tool listing is read in the key's
    /// upstream session.
    async fn check_param_headers(&self, client: &HeaderMap, msg: &Value) -> Result<(), String> {
        if msg.get("method").and_then(Value::as_str) != Some("tools/call") {
            return Ok(());
        }
        let params = msg.get("params");
        let Some(name) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
            return Ok(());
        };
        let scope = format!("2025:{}", self.key.as_str());
        let decls = self
            .inner
            .tool_headers
            .of(&scope, name, |cursor| self.tools_page(client, cursor))
            .await;
        super::param_headers::check(client, &decls, params.and_then(|p| p.get("arguments")))
    }

    /// One page of the upstream's `tools/list` in the key's session (`None` when it cannot be
    /// read).
    async fn tools_page(&self, client: &HeaderMap, cursor: Option<Value>) -> Option<Value> {
        let session = self.session(None).await.ok()?;
        let revision = session
            .protocol_version
            .clone()
            .unwrap_or_else(|| LEGACY_REVISION.to_owned());
        let id = "shoal-param-headers-tools";
        let mut list = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}});
        if let Some(c) = cursor {
            list["params"]["cursor"] = c;
        }
        let reply = self
            .http
            .post(
                &legacy_headers(client, &revision),
                session.upstream_session_id.as_deref(),
                Bytes::from(list.to_string()),
            )
            .await
            .ok()?;
        reply.response_to(id).await?.get("result").cloned()
    }

    /// Sends the request upstream in the key's session; once more in a new session when the
    /// upstream forgot the old one.
    async fn forward(&self, client: &HeaderMap, msg: &Value) -> Response {
        let body = Bytes::from(legacy_body(msg).to_string());
        let mut session = match self.session(None).await {
            Ok(s) => s,
            Err(r) => return r,
        };
        for attempt in 0..2 {
            let revision = session
                .protocol_version
                .clone()
                .unwrap_or_else(|| LEGACY_REVISION.to_owned());
            let hm = legacy_headers(client, &revision);
            let sid = session.upstream_session_id.clone();
            let reply = match self.http.post(&hm, sid.as_deref(), body.clone()).await {
                Ok(r) => r,
                Err(e) => return bad_gateway(self.inner, &e),
            };
            if sid.is_some() && attempt == 0 && forgot_session(&reply) {
                tracing::info!(session = %self.key.as_str(), "bridge: the upstream forgot its session; initializing a new one");
                session = match self.session(sid.as_deref()).await {
                    Ok(s) => s,
                    Err(r) => return r,
                };
                continue;
            }
            let store = self.inner.store.clone();
            let key = self.key.clone();
            tokio::spawn(async move {
                // Keeps the upstream session's record alive while it is used.
                let _ = store.touch(&key).await;
            });
            return self.reply(reply, hm, sid, revision, msg).await;
        }
        refuse(
            StatusCode::BAD_GATEWAY,
            -32603,
            "Bad Gateway: the upstream forgot a new session at once",
        )
    }

    /// The upstream's reply as the 2026 client gets it: a JSON body made a 2026 one; a stream
    /// relayed (see [`Relay`]).
    async fn reply(
        &self,
        reply: Reply,
        hm: HeaderMap,
        sid: Option<String>,
        revision: String,
        msg: &Value,
    ) -> Response {
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        match reply {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                // A 2026 server answers an unknown method with HTTP 404, a missing client
                // capability with 400.
                let status = error_status(&body).unwrap_or(status);
                let mut r = (status, modern_body(method, &body)).into_response();
                copy_back(&headers, r.headers_mut());
                r
            }
            Reply::Stream { events, .. } => {
                Relay {
                    inner: self.inner.clone(),
                    http: self.http.clone(),
                    headers: hm,
                    upstream_session_id: sid,
                    revision,
                    owner: self.owner.map(str::to_owned),
                    method: method.to_owned(),
                    request_id: msg.get("id").cloned().unwrap_or(Value::Null),
                    capabilities: self.capabilities.clone(),
                    log_level: super::modern_checks::requested_log_level(msg),
                }
                .spawn(events)
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_principals_and_capabilities_and_ignore_key_order() {
        let caps = json!({"sampling": {}, "elicitation": {"form": {}}});
        let same = json!({"elicitation": {"form": {}}, "sampling": {}});
        let a = key(Some("alice"), &caps);
        assert_eq!(a, key(Some("alice"), &same));
        assert_ne!(a, key(Some("bob"), &caps));
        assert_ne!(a, key(None, &caps));
        assert_ne!(a, key(Some("alice"), &json!({})));
        assert!(
            a.as_ref()
                .is_some_and(|k| is_bridge_record(k) && k.as_str().len() == 39)
        );
        assert!(!is_bridge_record(&SessionId::generate()));
    }

    #[test]
    fn a_forgotten_session_is_told_by_404_or_a_400_naming_it() {
        let full = |status: u16, body: &str| Reply::Full {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        };
        assert!(forgot_session(&full(404, "")));
        assert!(forgot_session(&full(
            400,
            r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"}}"#
        )));
        assert!(!forgot_session(&full(
            400,
            r#"{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params"}}"#
        )));
        assert!(!forgot_session(&full(200, "{}")));
    }

    #[test]
    fn legacy_results_become_2026_results() {
        let mut list = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}});
        modern_response("tools/list", &mut list);
        assert_eq!(
            list["result"],
            json!({"tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"})
        );
        let mut call =
            json!({"jsonrpc": "2.0", "id": 2, "result": {"content": [], "resultType": "complete"}});
        modern_response("tools/call", &mut call);
        assert_eq!(
            call["result"],
            json!({"content": [], "resultType": "complete"})
        );
        let mut err = json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32601, "message": "x"}});
        let before = err.clone();
        modern_response("tools/list", &mut err);
        assert_eq!(err, before);
        assert_eq!(&modern_body("tools/call", b"not json")[..], b"not json");
    }

    #[test]
    fn the_legacy_body_loses_only_the_protocol_meta() {
        let m = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo",
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}, "progressToken": 1}}});
        let l = legacy_body(&m);
        assert_eq!(l["params"]["_meta"], json!({"progressToken": 1}));
        let bare = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        assert_eq!(legacy_body(&bare)["params"], json!({}));
    }
}
