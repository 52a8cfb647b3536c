//! The HTTP handlers: POST, GET and DELETE on the MCP endpoint, plus health and metrics.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Instant,
};

use axum::{
    BoxError, Extension, Router,
    body::Bytes,
    error_handling::HandleErrorLayer,
    extract::{ConnectInfo, DefaultBodyLimit, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse as _, Response},
    routing::{any, get},
};
use futures_util::StreamExt as _;
use serde_json::Value;
use sha2::Digest as _;
use shoal_core::{
    AppendedFrames, Direction, Error, NewFrame, RequestId, Session, SessionId, SessionState,
    Transport,
};
use tokio::sync::mpsc;

use crate::{
    admission::{self, ClientAddr},
    protocol::{
        self, Body, MessageKind, Revision, VersionHeader, accepts, error_body, headers as h,
        is_json_content_type, version_header,
    },
    record, sse,
    state::{Live, LoadError, ProxyState, live_from},
    stream::{self, Follow, Kind, PumpSpec, STANDALONE, Standalone},
    upstream::{Reply, UpstreamError, http::PASS_BACK, stdio::StdioProc},
};

type S = State<Arc<ProxyState>>;

/// The longest `notifications/initialized` waits for the standalone stream to open upstream.
const STANDALONE_OPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The router: the MCP endpoint plus `/healthz`, `/readyz` and `/metrics`.
pub(crate) fn router(inner: Arc<ProxyState>) -> Router {
    let path = inner.cfg.path.clone();
    let limit = inner.cfg.max_body_bytes;
    let counters = inner.metrics.clone();
    // Outermost: the deadline (504) covers the wait for a slot as well as the handler, up to
    // the response head; a streamed body is not bounded here (its own deadlines apply).
    let bounds = tower::ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |e: BoxError| {
            let counters = counters.clone();
            async move { request_failed(&counters, &e) }
        }))
        .layer(tower::timeout::TimeoutLayer::new(inner.cfg.request_timeout))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            inner.cfg.max_concurrent_requests.max(1),
        ));
    let mcp = Router::new()
        .route(
            &path,
            any(endpoint).layer(middleware::from_fn_with_state(inner.clone(), observe)),
        )
        .layer(DefaultBodyLimit::max(limit))
        .layer(bounds);
    Router::new()
        .merge(mcp)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(inner)
}

/// The answer when the request bounds fail a request: 504 after `request_timeout`.
fn request_failed(metrics: &crate::metrics::Metrics, e: &BoxError) -> Response {
    if e.is::<tower::timeout::error::Elapsed>() {
        metrics.requests_timed_out.inc();
        tracing::info!("request timed out before its response was ready");
        return refuse(
            StatusCode::GATEWAY_TIMEOUT,
            -32000,
            "Gateway timeout: no response within the proxy's request timeout",
        );
    }
    tracing::warn!(error = %e, "request failed in the proxy's request bounds");
    refuse(StatusCode::INTERNAL_SERVER_ERROR, -32603, "Internal error")
}

/// Counts requests and responses, checks `Host` and then `Origin` first of all, and notes the
/// client's address for the handlers.
async fn observe(State(inner): S, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    inner.metrics.request(&method);
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    let resp = if !protocol::host_allowed(
        req.headers(),
        authority.as_deref(),
        &inner.cfg.allowed_hosts,
    ) {
        inner.metrics.hosts_refused.inc();
        tracing::debug!("request refused: host not allowed");
        refuse(StatusCode::FORBIDDEN, -32000, "Forbidden: Host not allowed")
    } else if protocol::origin_allowed(req.headers(), &inner.cfg.allowed_origins) {
        let peer = req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let addr = ClientAddr::of(
            req.headers(),
            inner.cfg.quota.client_address_header.as_deref(),
            peer,
        );
        req.extensions_mut().insert(addr);
        next.run(req).await
    } else {
        tracing::debug!("request refused: origin not allowed");
        refuse(
            StatusCode::FORBIDDEN,
            -32000,
            "Forbidden: Origin not allowed",
        )
    };
    inner
        .metrics
        .response(&method, resp.status().as_u16(), started.elapsed());
    resp
}

async fn endpoint(
    State(inner): S,
    Extension(addr): Extension<ClientAddr>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            // Too large, or the body could not be read: a JSON-RPC error like every refusal.
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "Payload Too Large: the request body exceeds the limit"
            } else {
                "Bad Request: the request body could not be read"
            };
            return refuse(status, -32600, message);
        }
    };
    if inner.cfg.quota.require_principal && principal(&inner, &headers).is_none() {
        let mut r = refuse(
            StatusCode::UNAUTHORIZED,
            -32001,
            "Unauthorized: this server requires an authenticated principal",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    match method {
        Method::POST => post(inner, headers, body, addr).await,
        Method::GET => get_stream(inner, headers).await,
        Method::DELETE => delete(inner, headers).await,
        _ => {
            let mut r = refuse(StatusCode::METHOD_NOT_ALLOWED, -32000, "Method Not Allowed");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            r
        }
    }
}

/// An HTTP error with a JSON-RPC error body.
pub(crate) fn refuse(status: StatusCode, code: i64, message: &str) -> Response {
    let mut r = (status, error_body(code, message)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn not_found() -> Response {
    refuse(StatusCode::NOT_FOUND, -32001, "Session not found")
}

pub(crate) fn bad_gateway(inner: &ProxyState, e: &UpstreamError) -> Response {
    inner.metrics.upstream_errors.inc();
    tracing::warn!(error = %e, "upstream failed");
    refuse(
        StatusCode::BAD_GATEWAY,
        -32603,
        "Bad Gateway: upstream failed",
    )
}

pub(crate) fn unavailable(e: &str) -> Response {
    tracing::warn!(error = %e, "session store failed");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        -32603,
        "Service Unavailable: session store failed",
    )
}

/// The principal of a request: the trusted header when configured, else a fingerprint of the
/// bearer token (never the token).
pub(crate) fn principal(inner: &ProxyState, headers: &HeaderMap) -> Option<String> {
    if let Some(name) = &inner.cfg.principal_header {
        return headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return None;
    }
    let digest = sha2::Sha256::digest(token.trim().as_bytes());
    Some(format!("token-sha256:{}", crate::state::hex(&digest[..16])))
}

/// Finds the session named by the request: 400 without a header, 404 when unknown or
/// owned by another principal, 400 for an unsupported `MCP-Protocol-Version`.
async fn session_of(inner: &ProxyState, headers: &HeaderMap) -> Result<Arc<Live>, Response> {
    let Some(raw) = headers.get(h::SESSION_ID) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            -32000,
            "Bad Request: Mcp-Session-Id header is required",
        ));
    };
    // An id that is not even well formed cannot be a session: 404, like any unknown id.
    let Some(id) = raw.to_str().ok().and_then(|s| SessionId::new(s).ok()) else {
        return Err(not_found());
    };
    // The records of the 2026-to-2025 bridge's upstream sessions are not client sessions: a
    // client naming one (its id is derived, not secret) gets 404 like any unknown id.
    if crate::bridge::legacy_upstream::is_bridge_record(&id) {
        return Err(not_found());
    }
    let live = match inner.session(&id).await {
        Ok(l) => l,
        Err(LoadError::NotFound) => return Err(not_found()),
        Err(LoadError::Failed(e)) => return Err(unavailable(&e)),
    };
    if let Some(owner) = &live.principal
        && principal(inner, headers).as_deref() != Some(owner.as_str())
    {
        tracing::debug!(session = %id, "request from another principal refused");
        return Err(not_found());
    }
    if let Some(v) = headers.get(h::PROTOCOL_VERSION) {
        let ok = v.to_str().is_ok_and(|v| {
            Revision::parse(v).is_some() || live.protocol_version.as_deref() == Some(v.trim())
        });
        if !ok {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                -32000,
                "Bad Request: Unsupported MCP-Protocol-Version",
            ));
        }
    }
    Ok(live)
}

pub(crate) fn copy_back(from: &HeaderMap, to: &mut HeaderMap) {
    for name in PASS_BACK {
        if let Some(v) = from.get(name) {
            to.insert(name.clone(), v.clone());
        }
    }
}

async fn post(
    inner: Arc<ProxyState>,
    headers: HeaderMap,
    body: Bytes,
    addr: ClientAddr,
) -> Response {
    let vh = version_header(&headers);
    let parsed = Body::parse(&body);
    let sessionless = match vh {
        VersionHeader::Known(r) => !r.has_sessions(),
        VersionHeader::Absent => parsed.as_ref().is_some_and(|b| {
            b.messages
                .first()
                .and_then(protocol::meta_revision)
                .is_some_and(|r| !r.has_sessions())
                || (!headers.contains_key(h::SESSION_ID)
                    && b.messages.first().and_then(|m| m.get("method"))
                        == Some(&Value::from("server/discover")))
        }),
        // A revision the proxy does not know, in front of a 2025 upstream for 2026 clients:
        // the bridge answers it as a 2026 server would (an unsupported-version error).
        VersionHeader::Invalid => {
            inner.cfg.bridge == crate::BridgeMode::ModernClientsToLegacyUpstream
                && !headers.contains_key(h::SESSION_ID)
                && parsed.as_ref().is_some_and(|b| {
                    b.messages
                        .first()
                        .is_some_and(crate::bridge::modern_checks::names_a_revision)
                })
        }
    };
    if !is_json_content_type(headers.get(header::CONTENT_TYPE)) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            -32000,
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }
    if parsed.is_none() && protocol::is_empty_batch(&body) {
        return refuse(
            StatusCode::BAD_REQUEST,
            -32600,
            "Invalid Request: an empty batch",
        );
    }
    if sessionless {
        if inner.cfg.bridge == crate::BridgeMode::ModernClientsToLegacyUpstream
            && let Some(b) = &parsed
        {
            return crate::bridge::legacy_upstream::handle(&inner, &headers, b).await;
        }
        if matches!(vh, VersionHeader::Known(_))
            && let Some(b) = &parsed
            && let Err(why) = protocol::check_mirrored_headers(&headers, b)
        {
            return refuse(
                StatusCode::BAD_REQUEST,
                protocol::HEADER_MISMATCH,
                &format!("Bad Request: {why}"),
            );
        }
        return passthrough(&inner, &headers, body).await;
    }
    if !(accepts(&headers, "application/json") && accepts(&headers, "text/event-stream")) {
        return refuse(
            StatusCode::NOT_ACCEPTABLE,
            -32000,
            "Not Acceptable: Accept must include application/json and text/event-stream",
        );
    }
    let Some(parsed) = parsed else {
        return refuse(StatusCode::BAD_REQUEST, -32700, "Parse error");
    };
    let kinds = parsed.kinds();
    if kinds.contains(&MessageKind::Invalid) {
        return refuse(
            StatusCode::BAD_REQUEST,
            -32600,
            "Invalid Request: not a JSON-RPC 2.0 message",
        );
    }
    let is_init = kinds
        .iter()
        .any(|k| matches!(k, MessageKind::Request { method, .. } if method == "initialize"));
    if is_init {
        if parsed.batch {
            return refuse(
                StatusCode::BAD_REQUEST,
                -32600,
                "Invalid Request: initialize must not be part of a batch",
            );
        }
        if vh == VersionHeader::Invalid {
            return refuse(
                StatusCode::BAD_REQUEST,
                -32000,
                "Bad Request: Unsupported MCP-Protocol-Version",
            );
        }
        if headers.contains_key(h::SESSION_ID) {
            return refuse(
                StatusCode::BAD_REQUEST,
                -32600,
                "Invalid Request: initialize must not carry an Mcp-Session-Id",
            );
        }
        return initialize(&inner, &headers, body, parsed, addr).await;
    }
    let live = match session_of(&inner, &headers).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if parsed.batch && !live.revision.allows_batches() {
        return refuse(
            StatusCode::BAD_REQUEST,
            -32600,
            "Invalid Request: batches are not allowed in this protocol revision",
        );
    }
    forward_post(&inner, &live, &headers, body, &parsed, &kinds).await
}

async fn forward_post(
    inner: &Arc<ProxyState>,
    live: &Arc<Live>,
    headers: &HeaderMap,
    body: Bytes,
    parsed: &Body,
    kinds: &[MessageKind],
) -> Response {
    let stream = stream::new_stream_id('p');
    let requests: Vec<(RequestId, String)> = kinds
        .iter()
        .filter_map(|k| match k {
            MessageKind::Request { id, method } => Some((id.clone(), method.clone())),
            _ => None,
        })
        .collect();
    let answers: Vec<RequestId> = kinds
        .iter()
        .filter_map(|k| match k {
            MessageKind::Response { id } => id.clone(),
            _ => None,
        })
        .collect();
    let initializes = !live.initialized.load(Relaxed)
        && kinds.iter().any(
            |k| matches!(k, MessageKind::Notification { method } if method == "notifications/initialized"),
        );
    if initializes {
        live.initialized.store(true, Relaxed);
        let (store, id) = (inner.store.clone(), live.id.clone());
        tokio::spawn(async move {
            let _ = shoal_core::store::modify(&*store, &id, 8, |s| {
                s.state = SessionState::Active;
            })
            .await;
        });
    }
    // Frames and pending requests are recorded off the response path (see `record`). What
    // stays on it, concurrently with the upstream call, is one read proving the session still
    // exists in the store (deleted or expired on another instance: 404): a memory hit on a
    // hot-session cache with invalidation, one small read otherwise.
    let recording = record::spawn(
        inner,
        live,
        record::Post {
            stream: stream.clone(),
            body: body.clone(),
            requests: requests.clone(),
            answers,
        },
    );
    let exists = inner.store.get(&live.id);
    let upstream = async {
        match (&inner.http, &live.stdio) {
            (Some(_), _) if live.modern_meta.is_some() && requests.is_empty() => {
                // A 2026 upstream has no session to initialize and cancels by a closed
                // stream: client notifications and answers stop here.
                Ok(crate::bridge::modern_upstream::accepted())
            }
            (Some(http), _) => match (&live.modern_meta, parsed.messages.as_slice()) {
                (Some(_), [msg])
                    if msg
                        .get("method")
                        .and_then(Value::as_str)
                        .is_some_and(crate::bridge::modern_upstream::answered_here) =>
                {
                    // Methods 2026 removed (ping, setLevel, resource subscriptions).
                    Ok(crate::bridge::modern_upstream::answer_here(&*inner.store, live, msg).await)
                }
                (Some(_), [msg]) => {
                    let meta = live.modern_meta_now().unwrap_or_default();
                    let (mut hm, b) =
                        crate::bridge::modern_upstream::modern_request(headers, msg, &meta);
                    crate::bridge::modern_upstream::mirror_params(
                        inner, headers, &meta, msg, &mut hm,
                    )
                    .await;
                    http.post(&hm, None, b).await
                }
                (Some(_), _) => Err(UpstreamError(
                    "a batch cannot be bridged to a 2026-07-28 upstream".into(),
                )),
                (None, _) => {
                    http.post(headers, live.upstream_session_id.as_deref(), body)
                        .await
                }
            },
            (None, Some(p)) => p.post(&parsed.messages).await,
            (None, None) => Err(UpstreamError("no upstream".into())),
        }
    };
    let (exists, reply) = tokio::join!(exists, upstream);
    if let Ok(Some(s)) = &exists {
        live.note_log_level(s);
    }
    // A request bridged to a 2026 upstream: an `input_required` result is answered by asking
    // the client on a stream (see `bridge::input_requests`), so it goes out as one.
    let bridged_request = match (&live.modern_meta, parsed.messages.as_slice()) {
        (Some(_), [msg]) if !requests.is_empty() => Some(msg),
        _ => None,
    };
    let reply = match reply {
        Ok(r @ Reply::Full { .. })
            if bridged_request.is_some()
                && matches!(&r, Reply::Full { body, .. } if crate::bridge::input_requests::is_input_required(body)) =>
        {
            Ok(crate::bridge::input_requests::as_stream(r))
        }
        other => other,
    };
    match exists {
        Ok(Some(_)) => {}
        Ok(None) => {
            // Deleted or expired (possibly by another instance) since this one cached it.
            let _ = recording.send(record::Outcome::Nothing);
            inner.evict(&live.id);
            return not_found();
        }
        Err(e) => {
            tracing::warn!(session = %live.id, error = %e, "could not check the session in the store");
        }
    }
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            let _ = recording.send(record::Outcome::Nothing);
            return bad_gateway(inner, &e);
        }
    };
    if inner.cfg.open_standalone_stream
        && live.initialized.load(Relaxed)
        && !live.standalone_checked.swap(true, Relaxed)
    {
        if initializes && reply.status().is_success() {
            // Open before the client hears back: nothing it sends next can make the server
            // talk to a standalone stream that is not open yet. An upstream that holds back
            // the GET's response head is not waited for longer than STANDALONE_OPEN_WAIT
            // (the stream still opens, later).
            let _ =
                tokio::time::timeout(STANDALONE_OPEN_WAIT, open_standalone(inner, live, headers))
                    .await;
        } else if !initializes {
            // A session this instance loaded: its standalone stream may have lost its reader.
            let (inner, live, headers) = (inner.clone(), live.clone(), headers.clone());
            tokio::spawn(async move { open_standalone(&inner, &live, &headers).await });
        }
    }
    match reply {
        Reply::Full {
            status,
            headers: uh,
            body,
        } => {
            if status == StatusCode::NOT_FOUND && live.upstream_session_id.is_some() {
                // The upstream lost the session (e.g. it restarted): end ours too, so every
                // instance answers 404 and the client starts over.
                tracing::info!(session = %live.id, "upstream no longer knows the session; ending it");
                let _ = recording.send(record::Outcome::Nothing);
                let _ = inner.store.delete(&live.id).await;
                inner.evict(&live.id);
                return not_found();
            }
            let _ = recording.send(record::Outcome::Reply {
                body: body.clone(),
                success: status.is_success(),
            });
            if status.is_server_error() {
                inner.metrics.upstream_errors.inc();
            }
            let mut r = (status, body).into_response();
            copy_back(&uh, r.headers_mut());
            r
        }
        Reply::Stream { events, .. } => {
            // A follower on another instance needs the stream's pending requests: they are
            // recorded before the stream's first event id goes out.
            let (ack, recorded) = tokio::sync::oneshot::channel();
            if recording.send(record::Outcome::Stream(ack)).is_ok() {
                let _ = recorded.await;
            }
            let (tx, rx) = mpsc::channel(32);
            let first = stream::priming(inner, live, &stream);
            let wake = inner.register_pump(&live.id, &stream);
            stream::spawn_pump(
                inner,
                live,
                PumpSpec {
                    stream: stream.clone(),
                    kind: Kind::Post {
                        awaiting: requests.into_iter().map(|(id, _)| id).collect(),
                    },
                    events,
                    client: Some(tx),
                    client_headers: headers.clone(),
                    upstream_last: None,
                    lease_held: false,
                    wake,
                    bridged_request: bridged_request.cloned(),
                    listen_resources: None,
                },
            );
            stream::sse_response(inner, live, first, rx, false, HeaderMap::new())
        }
    }
}

/// `initialize`: forwarded without a session; on success a session is minted and stored, and
/// the reply carries its id.
async fn initialize(
    inner: &Arc<ProxyState>,
    headers: &HeaderMap,
    body: Bytes,
    parsed: Body,
    addr: ClientAddr,
) -> Response {
    let msg = &parsed.messages[0];
    let Some(init_id) = msg.get("id").and_then(protocol::request_id) else {
        return refuse(StatusCode::BAD_REQUEST, -32600, "Invalid Request");
    };
    // The quotas come before any upstream request or process start.
    let id = SessionId::generate();
    let owner = principal(inner, headers);
    let admitted = match admission::admit(inner, &id, addr, owner.as_deref()).await {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    let response =
        create_session(inner, headers, body, parsed, &id, init_id, owner, &admitted).await;
    if response.is_err() {
        admission::give_back(inner, &id, &admitted, false).await;
    }
    response.unwrap_or_else(|r| r)
}

/// `initialize` once admitted: asks the upstream, stores the session under `id`. `Err` is a
/// response sent without a session having been created.
#[allow(clippy::too_many_arguments)]
async fn create_session(
    inner: &Arc<ProxyState>,
    headers: &HeaderMap,
    body: Bytes,
    parsed: Body,
    id: &SessionId,
    init_id: RequestId,
    owner: Option<String>,
    admitted: &[String],
) -> Result<Response, Response> {
    let msg = &parsed.messages[0];
    let id = id.clone();
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    let mut stdio: Option<Arc<StdioProc>> = None;
    let bridged = inner.cfg.bridge == crate::BridgeMode::LegacyClientsToModernUpstream;
    let reply = match &inner.http {
        Some(http) if bridged => crate::bridge::modern_upstream::initialize(http, msg).await,
        Some(http) => http.post(headers, None, body.clone()).await,
        None => match StdioProc::spawn(&inner.cfg.upstream, inner.cfg.stdio_cwd.as_deref()) {
            Ok(p) => {
                let r = p.post(&parsed.messages).await;
                stdio = Some(p);
                r
            }
            Err(e) => Err(e),
        },
    };
    let reply = match reply {
        Ok(r) => r,
        Err(e) => return Err(bad_gateway(inner, &e)),
    };
    // Collect the whole answer: the session must exist before the reply's headers go out.
    let (status, uh, messages, was_stream) = match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            if !status.is_success() {
                let mut r = (status, body).into_response();
                copy_back(&headers, r.headers_mut());
                return Err(r);
            }
            (status, headers, vec![body], false)
        }
        Reply::Stream {
            status,
            headers,
            mut events,
        } => {
            let mut out = Vec::new();
            let collect = async {
                while let Some(ev) = events.next().await {
                    let ev = ev?;
                    if ev.data.trim().is_empty() {
                        continue;
                    }
                    let answered = serde_json::from_str::<Value>(&ev.data)
                        .map(|v| protocol::response_ids(&v).contains(&init_id))
                        .unwrap_or(false);
                    out.push(Bytes::from(ev.data));
                    if answered {
                        return Ok(());
                    }
                }
                Err(UpstreamError(
                    "upstream ended before answering initialize".into(),
                ))
            };
            match tokio::time::timeout(inner.cfg.upstream_timeout, collect).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(bad_gateway(inner, &e)),
                Err(_) => {
                    return Err(bad_gateway(
                        inner,
                        &UpstreamError("initialize timed out".into()),
                    ));
                }
            }
            (status, headers, out, true)
        }
    };
    let result = messages.iter().rev().find_map(|m| {
        let v: Value = serde_json::from_slice(m).ok()?;
        let ids = protocol::response_ids(&v);
        if !ids.contains(&init_id) {
            return None;
        }
        let one = match v {
            Value::Array(items) => items
                .into_iter()
                .find(|i| i.get("id").and_then(protocol::request_id).as_ref() == Some(&init_id))?,
            v => v,
        };
        Some(one)
    });
    let Some(result) = result.and_then(|v| v.get("result").cloned()) else {
        // An error answer (or none): pass it on; no session.
        return Err(if was_stream {
            let (tx, rx) = mpsc::channel(messages.len().max(1));
            for m in &messages {
                let _ = tx.try_send(sse::encode(None, None, None, m));
            }
            drop(tx);
            sse_plain(rx)
        } else {
            let mut r = (status, messages.into_iter().next().unwrap_or_default()).into_response();
            copy_back(&uh, r.headers_mut());
            r
        });
    };

    let mut s = Session::new(id.clone(), Transport::StreamableHttp);
    s.protocol_version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    s.server_info = Some(result.clone());
    s.client_info = Some(serde_json::json!({
        "clientInfo": params.get("clientInfo").cloned().unwrap_or(Value::Null),
        "capabilities": params.get("capabilities").cloned().unwrap_or(Value::Null),
    }));
    s.initialize_params = Some(params);
    s.upstream_session_id = uh
        .get(h::SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    s.principal = owner;
    if bridged && inner.http.is_some() {
        s.metadata.insert(
            crate::bridge::legacy_upstream::BRIDGE_KEY.to_owned(),
            crate::bridge::modern_upstream::MARK.to_owned(),
        );
    }
    if !admitted.is_empty() {
        s.metadata
            .insert(admission::ADMITTED_KEY.to_owned(), admitted.join("\n"));
    }
    let stored = match inner.store.create(s).await {
        Ok(s) => s,
        Err(e) => {
            if let Some(p) = &stdio {
                p.kill();
            }
            if e.is_transient() {
                forget_in_doubt_session(inner, &id);
            }
            return Err(unavailable(&e.to_string()));
        }
    };
    inner.metrics.sessions_created.inc();
    let live = Arc::new(live_from(&stored, stdio));
    tracing::info!(session = %id, protocol = ?live.protocol_version, "session created");

    let stream = stream::new_stream_id('p');
    let mut frames = vec![
        NewFrame::new(Direction::ClientToServer, body)
            .with_stream(stream.clone())
            .with_content_type("application/json"),
    ];
    for m in &messages {
        frames.push(
            NewFrame::new(Direction::ServerToClient, m.clone())
                .with_stream(stream.clone())
                .with_content_type("application/json"),
        );
    }
    let appended = match crate::retention::append_frames(inner, &id, frames).await {
        Ok(a) => {
            inner.metrics.frames_recorded.add(a.seqs.len() as u64);
            a
        }
        Err(e) => {
            inner.metrics.frame_errors.inc();
            tracing::warn!(session = %id, error = %e, "could not record the handshake");
            AppendedFrames::default()
        }
    };
    inner.insert(live.clone());
    let mut extra = stream::session_header(&live);
    if was_stream {
        let (tx, rx) = mpsc::channel(messages.len() + 1);
        for (i, m) in messages.iter().enumerate() {
            let eid = appended.seqs.get(i + 1).map(|seq| {
                inner
                    .codec
                    .encode(id.as_str(), &stream, *seq, appended.epoch)
            });
            let _ = tx.try_send(sse::encode(eid.as_deref(), None, None, m));
        }
        drop(tx);
        let first = stream::priming(inner, &live, &stream);
        return Ok(stream::sse_response(inner, &live, first, rx, false, extra));
    }
    let body = messages.into_iter().next().unwrap_or_default();
    let mut r = (status, body).into_response();
    copy_back(&uh, r.headers_mut());
    for (k, v) in extra.drain() {
        if let Some(k) = k {
            r.headers_mut().insert(k, v);
        }
    }
    Ok(r)
}

/// An SSE response with no session bookkeeping.
pub(crate) fn sse_plain(rx: mpsc::Receiver<Bytes>) -> Response {
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    let mut r = axum::body::Body::from_stream(s).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A sessionless (2026-07-28) request: passed through to an HTTP upstream as it is.
async fn passthrough(inner: &Arc<ProxyState>, headers: &HeaderMap, body: Bytes) -> Response {
    let Some(http) = &inner.http else {
        return refuse(
            StatusCode::BAD_REQUEST,
            -32600,
            "Bad Request: sessionless requests need an HTTP upstream",
        );
    };
    match http.post(headers, None, body).await {
        Err(e) => bad_gateway(inner, &e),
        Ok(Reply::Full {
            status,
            headers: uh,
            body,
        }) => {
            let mut r = (status, body).into_response();
            copy_back(&uh, r.headers_mut());
            r
        }
        Ok(Reply::Stream { mut events, .. }) => {
            let (tx, rx) = mpsc::channel(32);
            let cancel = inner.shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let ev = tokio::select! {
                        _ = cancel.cancelled() => break,
                        ev = events.next() => ev,
                    };
                    let Some(Ok(ev)) = ev else { break };
                    let chunk = sse::encode(
                        ev.id.as_deref(),
                        ev.event.as_deref(),
                        ev.retry,
                        ev.data.as_bytes(),
                    );
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                }
            });
            sse_plain(rx)
        }
    }
}

/// Opens the session's standalone stream upstream (see [`stream::ensure_standalone`]); a
/// failure is logged: the client's own GET tries again.
async fn open_standalone(inner: &Arc<ProxyState>, live: &Arc<Live>, headers: &HeaderMap) {
    match stream::ensure_standalone(inner, live, headers).await {
        Ok(Standalone::Open) => {}
        Ok(Standalone::Refused(reply)) => {
            tracing::debug!(session = %live.id, status = %reply.status(), "the upstream has no standalone stream");
        }
        Err(e) => {
            tracing::warn!(session = %live.id, error = %e, "could not open the standalone stream");
        }
    }
}

/// GET: the session's standalone stream. A new GET replays it from its start (the proxy
/// records it from the session's `notifications/initialized` on) and continues live; one
/// with `Last-Event-ID` resumes any stream of the session after that event, on any instance.
async fn get_stream(inner: Arc<ProxyState>, headers: HeaderMap) -> Response {
    if matches!(version_header(&headers), VersionHeader::Known(r) if !r.has_sessions()) {
        return method_not_allowed();
    }
    if !accepts(&headers, "text/event-stream") {
        return refuse(
            StatusCode::NOT_ACCEPTABLE,
            -32000,
            "Not Acceptable: Accept must include text/event-stream",
        );
    }
    let live = match session_of(&inner, &headers).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let from = match headers.get(h::LAST_EVENT_ID) {
        None => Follow {
            stream: STANDALONE.to_owned(),
            after: 0,
            epoch: 0,
        },
        Some(raw) => match raw
            .to_str()
            .map(|r| inner.codec.decode(live.id.as_str(), r))
        {
            Ok(Ok(eid)) => Follow {
                stream: eid.stream,
                after: eid.seq,
                epoch: eid.epoch,
            },
            Ok(Err(e)) => {
                tracing::debug!(session = %live.id, error = %e, "Last-Event-ID refused");
                return refuse(
                    StatusCode::BAD_REQUEST,
                    -32000,
                    "Bad Request: Last-Event-ID does not belong to this session",
                );
            }
            Err(_) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    -32000,
                    "Bad Request: malformed Last-Event-ID",
                );
            }
        },
    };
    if !stream::try_open_slot(&inner, &live) {
        return too_many();
    }
    let release = || {
        live.open_streams.fetch_sub(1, Relaxed);
    };
    // The session may have been deleted by another instance since this one cached it; that
    // check runs beside opening the upstream stream, never before it.
    let touch = inner.store.touch(&live.id);
    let opened = async {
        if from.stream == STANDALONE {
            stream::ensure_standalone(&inner, &live, &headers)
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    };
    let (touched, opened) = tokio::join!(touch, opened);
    match touched {
        Ok(_) => {}
        Err(Error::NotFound { .. }) => {
            release();
            inner.evict(&live.id);
            return not_found();
        }
        Err(e) => tracing::debug!(session = %live.id, error = %e, "touch failed"),
    }
    match opened {
        Ok(None | Some(Standalone::Open)) => {}
        Ok(Some(Standalone::Refused(reply))) => {
            release();
            return match reply {
                Reply::Full {
                    status,
                    headers: uh,
                    body,
                } => {
                    let mut r = (status, body).into_response();
                    copy_back(&uh, r.headers_mut());
                    r
                }
                Reply::Stream { status, .. } => status.into_response(),
            };
        }
        Err(e) => {
            release();
            return bad_gateway(&inner, &e);
        }
    }
    tracing::debug!(session = %live.id, stream = from.stream, after = from.after, "following a stream");
    let first = (headers.get(h::LAST_EVENT_ID).is_none())
        .then(|| stream::priming(&inner, &live, STANDALONE))
        .flatten();
    let (tx, rx) = mpsc::channel(32);
    tokio::spawn(stream::follow(
        inner.clone(),
        live.clone(),
        from,
        tx,
        headers.clone(),
    ));
    stream::sse_response(&inner, &live, first, rx, true, HeaderMap::new())
}

fn too_many() -> Response {
    refuse(
        StatusCode::TOO_MANY_REQUESTS,
        -32000,
        "Too Many Requests: too many open streams for this session",
    )
}

fn method_not_allowed() -> Response {
    let mut r = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        -32000,
        "Method Not Allowed: this protocol revision has no sessions",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

async fn delete(inner: Arc<ProxyState>, headers: HeaderMap) -> Response {
    if matches!(version_header(&headers), VersionHeader::Known(r) if !r.has_sessions()) {
        return method_not_allowed();
    }
    let live = match session_of(&inner, &headers).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    match (&inner.http, &live.stdio) {
        (Some(http), _) => {
            match http
                .delete(&headers, live.upstream_session_id.as_deref())
                .await
            {
                Ok(st) => {
                    tracing::debug!(session = %live.id, status = %st, "upstream session ended")
                }
                Err(e) => {
                    tracing::warn!(session = %live.id, error = %e, "upstream DELETE failed")
                }
            }
        }
        (None, Some(p)) => p.kill(),
        (None, None) => {}
    }
    let existed = inner.store.delete(&live.id).await;
    inner.evict(&live.id);
    if matches!(existed, Ok(true)) {
        admission::give_back(&inner, &live.id, &live.admitted, false).await;
    }
    match existed {
        Ok(true) => {
            inner.metrics.sessions_deleted.inc();
            tracing::info!(session = %live.id, "session deleted");
            StatusCode::OK.into_response()
        }
        Ok(false) => not_found(),
        Err(e) => unavailable(&e.to_string()),
    }
}

/// A `create` that failed without a clear answer may have been applied: the session would
/// then hold a place (and memory) until its TTL, though its id was never handed out. Delete it
/// in the background once the in-flight create has had time to land; nobody else knows the
/// id, so this can only remove that orphan.
fn forget_in_doubt_session(inner: &ProxyState, id: &SessionId) {
    let store = Arc::clone(&inner.store);
    let id = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        match store.delete(&id).await {
            Ok(true) => {
                tracing::info!(session = %id, "an in-doubt create had been applied; removed");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(session = %id, error = %e, "in-doubt create not cleaned up");
            }
        }
    });
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz(State(inner): S) -> Response {
    if inner.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match inner.store.health().await {
        Ok(hl) if hl.status != shoal_core::HealthStatus::Unhealthy => {
            (StatusCode::OK, "ready\n").into_response()
        }
        Ok(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unhealthy\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "store health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n").into_response()
        }
    }
}

async fn metrics(State(inner): S) -> Response {
    let mut r = inner.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
