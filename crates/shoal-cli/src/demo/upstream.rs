//! The demo's built-in MCP server: a small Streamable HTTP server (revision 2025-11-25) on
//! loopback with two tools.
//!
//! - `echo {text}` answers at once with a JSON response;
//! - `countdown {steps, interval_ms}` answers on an SSE stream: one `notifications/progress`
//!   per step (when the call carries a `progressToken`), then the result.
//!
//! It mints its own upstream session id on `initialize` (as real servers do) and checks it on
//! every later request, so the demo shows the proxy carrying the upstream's session across its
//! instances. Everything it keeps is per process; it is the stateful upstream the proxies share.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse as _, Response},
    routing::post,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The protocol revision the server speaks.
pub(crate) const PROTOCOL_VERSION: &str = "2025-11-25";
/// The server's name in `serverInfo`.
pub(crate) const SERVER_NAME: &str = "shoal-demo-server";
/// Most steps a countdown may take (bounds the demo's run time).
const MAX_STEPS: u64 = 50;
/// Longest pause between two steps.
const MAX_INTERVAL_MS: u64 = 2_000;

/// The server's state: the upstream session ids it minted and not yet deleted.
#[derive(Debug, Default)]
struct ServerState {
    sessions: Mutex<HashSet<String>>,
}

/// A running demo server.
#[derive(Debug)]
pub(crate) struct DemoServer {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    stop: CancellationToken,
}

impl DemoServer {
    /// Binds 127.0.0.1 on a free port and serves until [`DemoServer::stop`] or drop.
    pub(crate) async fn start() -> std::io::Result<DemoServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let app = Router::new()
            .route(
                "/mcp",
                post(handle_post).get(handle_get).delete(handle_delete),
            )
            .with_state(Arc::new(ServerState::default()));
        let token = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "demo MCP server stopped with an error");
            }
        });
        Ok(DemoServer { addr, stop })
    }

    /// The MCP endpoint's URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Stops serving.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A JSON-RPC error response.
fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// A JSON-RPC result response.
fn rpc_result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A JSON body with `status`.
fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The session id a request carries, if the server knows it.
fn known_session(state: &ServerState, headers: &HeaderMap) -> Option<String> {
    let sid = headers.get("mcp-session-id")?.to_str().ok()?.to_owned();
    let sessions = state.sessions.lock().unwrap_or_else(|e| e.into_inner());
    sessions.contains(&sid).then_some(sid)
}

/// A fresh random upstream session id.
fn new_session_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // The demo server only needs ids distinct within one run.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = nanos.to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn handle_post(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &rpc_error(&Value::Null, -32700, "Parse error"),
        );
    };
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    if method == "initialize" {
        let sid = new_session_id();
        state
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sid.clone());
        let mut r = json_response(
            StatusCode::OK,
            &rpc_result(
                &id,
                json!({
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION")},
                }),
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&sid) {
            r.headers_mut().insert("mcp-session-id", v);
        }
        return r;
    }
    if known_session(&state, &headers).is_none() {
        return json_response(
            StatusCode::NOT_FOUND,
            &rpc_error(&id, -32001, "Session not found"),
        );
    }
    match method {
        // Notifications and responses: accepted, no body.
        _ if msg.get("id").is_none() || msg.get("method").is_none() => {
            StatusCode::ACCEPTED.into_response()
        }
        "ping" => json_response(StatusCode::OK, &rpc_result(&id, json!({}))),
        "tools/list" => json_response(StatusCode::OK, &rpc_result(&id, tools())),
        "tools/call" => call_tool(&id, msg.get("params").unwrap_or(&Value::Null)),
        _ => json_response(
            StatusCode::OK,
            &rpc_error(&id, -32601, &format!("Method not found: {method}")),
        ),
    }
}

/// This server offers no standalone GET stream.
async fn handle_get() -> Response {
    StatusCode::METHOD_NOT_ALLOWED.into_response()
}

async fn handle_delete(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    match known_session(&state, &headers) {
        Some(sid) => {
            state
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&sid);
            StatusCode::OK.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The `tools/list` result.
fn tools() -> Value {
    json!({"tools": [
        {
            "name": "echo",
            "description": "Returns its text",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
        },
        {
            "name": "countdown",
            "description": "Counts down, one progress notification per step, on an SSE stream",
            "inputSchema": {"type": "object", "properties": {
                "steps": {"type": "integer", "minimum": 1, "maximum": MAX_STEPS},
                "interval_ms": {"type": "integer", "minimum": 0, "maximum": MAX_INTERVAL_MS},
            }},
        },
    ]})
}

fn call_tool(id: &Value, params: &Value) -> Response {
    let args = params.get("arguments").unwrap_or(&Value::Null);
    match params.get("name").and_then(Value::as_str) {
        Some("echo") => {
            let text = args.get("text").and_then(Value::as_str).unwrap_or("");
            json_response(
                StatusCode::OK,
                &rpc_result(id, json!({"content": [{"type": "text", "text": text}]})),
            )
        }
        Some("countdown") => {
            let steps = args
                .get("steps")
                .and_then(Value::as_u64)
                .unwrap_or(5)
                .clamp(1, MAX_STEPS);
            let interval = args
                .get("interval_ms")
                .and_then(Value::as_u64)
                .unwrap_or(300)
                .min(MAX_INTERVAL_MS);
            let token = params.pointer("/_meta/progressToken").cloned();
            countdown(id.clone(), steps, Duration::from_millis(interval), token)
        }
        other => json_response(
            StatusCode::OK,
            &rpc_error(id, -32602, &format!("Unknown tool: {other:?}")),
        ),
    }
}

/// An SSE response: one progress notification per step, then the result.
fn countdown(id: Value, steps: u64, interval: Duration, token: Option<Value>) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        for step in 1..=steps {
            tokio::time::sleep(interval).await;
            if let Some(token) = &token {
                let note = json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {
                        "progressToken": token,
                        "progress": step,
                        "total": steps,
                        "message": format!("{} left", steps - step),
                    },
                });
                if tx.send(sse_event(&note)).await.is_err() {
                    return;
                }
            }
        }
        let done = rpc_result(
            &id,
            json!({"content": [{"type": "text", "text": format!("counted down from {steps}")}]}),
        );
        let _ = tx.send(sse_event(&done)).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// One SSE `message` event carrying `msg`.
fn sse_event(msg: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {msg}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_one_data_line() {
        let b = sse_event(&json!({"a": "x\ny"}));
        let s = std::str::from_utf8(&b).unwrap_or_default();
        assert_eq!(s, "event: message\ndata: {\"a\":\"x\\ny\"}\n\n");
    }

    #[test]
    fn lists_both_tools() {
        let list = tools();
        let names: Vec<_> = list["tools"]
            .as_array()
            .map(|t| t.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(names, ["echo", "countdown"]);
    }
}
