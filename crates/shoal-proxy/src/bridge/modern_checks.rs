//! What a 2026-07-28 server checks on every request, done by the proxy when it answers 2026
//! clients for a 2025 upstream (which knows none of it).
//!
//! - `_meta` must carry `io.modelcontextprotocol/protocolVersion` and
//!   `io.modelcontextprotocol/clientCapabilities`: else HTTP 400, -32602.
//! - The revision must be one the bridge speaks (2026-07-28): else HTTP 400, -32022
//!   (`UnsupportedProtocolVersion`, `data: {supported, requested}`); a `MCP-Protocol-Version`
//!   header that disagrees with `_meta` is HTTP 400, -32020 (`HeaderMismatch`).
//! - Methods 2026-07-28 removed (`initialize`, `ping`, `logging/setLevel`,
//!   `resources/subscribe`, `resources/unsubscribe`): HTTP 404, -32601.
//!
//! Every error carries the request's id. Log messages reach a 2026 client only at or above
//! the level its request opted in to (`_meta` logLevel; none without it): a 2025 upstream
//! sends them regardless.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::protocol::{HEADER_MISMATCH, headers as h};

/// The revision the bridge speaks to clients.
const MODERN_REVISION: &str = "2026-07-28";
/// The JSON-RPC error code of an unsupported protocol revision (2026-07-28).
pub(crate) const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// Methods of the 2025 revisions that 2026-07-28 removed.
const REMOVED_METHODS: [&str; 5] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// The log levels of the protocol, lowest first.
pub(crate) const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The log level a 2026 request opts in to (`_meta["io.modelcontextprotocol/logLevel"]`).
pub(crate) fn requested_log_level(msg: &Value) -> Option<String> {
    msg.get("params")?
        .get("_meta")?
        .get("io.modelcontextprotocol/logLevel")?
        .as_str()
        .filter(|l| LOG_LEVELS.contains(l))
        .map(str::to_owned)
}

/// Whether a message may go to a 2026 client that opted in to `requested` (`None`: no log
/// messages at all): anything but a `notifications/message` below that level.
pub(crate) fn log_allowed(requested: Option<&str>, v: &Value) -> bool {
    if v.get("method").and_then(Value::as_str) != Some("notifications/message") {
        return true;
    }
    let rank = |l: &str| LOG_LEVELS.iter().position(|x| *x == l);
    let level = v
        .get("params")
        .and_then(|p| p.get("level"))
        .and_then(Value::as_str)
        .and_then(rank);
    match (requested.and_then(rank), level) {
        (Some(min), Some(l)) => l >= min,
        _ => false,
    }
}

/// A JSON-RPC error response to `id` with HTTP `status` (and `data`, if any).
pub(crate) fn rpc_error(
    status: StatusCode,
    id: &Value,
    code: i64,
    message: &str,
    data: Option<Value>,
) -> Response {
    let mut error = json!({"code": code, "message": message});
    if let Some(d) = data {
        error["data"] = d;
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "error": error});
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Whether a request is meant as a 2026 one: it names a revision in `_meta`.
pub(crate) fn names_a_revision(msg: &Value) -> bool {
    msg.get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
        .is_some()
}

/// Checks one 2026 request; the error response a 2026 server would give, if any.
pub(crate) fn check(headers: &HeaderMap, msg: &Value) -> Result<(), Box<Response>> {
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let refuse = |status, code, message: &str, data| {
        Err(Box::new(rpc_error(status, &id, code, message, data)))
    };
    let meta = msg.get("params").and_then(|p| p.get("_meta"));
    let version = meta
        .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
        .and_then(Value::as_str);
    let capabilities = meta.and_then(|m| m.get("io.modelcontextprotocol/clientCapabilities"));
    let (Some(version), Some(_)) = (version, capabilities) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            -32602,
            "Invalid params: _meta must carry io.modelcontextprotocol/protocolVersion and \
             io.modelcontextprotocol/clientCapabilities",
            None,
        );
    };
    let header = headers
        .get(h::PROTOCOL_VERSION)
        .map(|v| v.to_str().unwrap_or("").trim());
    if let Some(hv) = header
        && hv != version
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            HEADER_MISMATCH,
            "Bad Request: MCP-Protocol-Version does not match _meta's protocolVersion",
            None,
        );
    }
    if version != MODERN_REVISION {
        return refuse(
            StatusCode::BAD_REQUEST,
            UNSUPPORTED_PROTOCOL_VERSION,
            &format!("Unsupported protocol version {version}"),
            Some(json!({"supported": [MODERN_REVISION], "requested": version})),
        );
    }
    if let Some(m) = msg.get("method").and_then(Value::as_str)
        && REMOVED_METHODS.contains(&m)
    {
        return refuse(
            StatusCode::NOT_FOUND,
            -32601,
            &format!("Method not found: {m} is not part of 2026-07-28"),
            None,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn status_and_body(r: Result<(), Box<Response>>) -> Option<(StatusCode, Value)> {
        let r = r.err()?;
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.ok()?;
        Some((status, serde_json::from_slice(&body).ok()?))
    }

    fn request(method: &str, meta: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": {"_meta": meta}})
    }

    #[tokio::test]
    async fn requests_are_checked_as_a_2026_server_would() {
        let good = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}});
        let mut hm = HeaderMap::new();
        hm.insert(h::PROTOCOL_VERSION, HeaderValue::from_static("2026-07-28"));
        assert!(check(&hm, &request("tools/list", good.clone())).is_ok());

        let (s, b) = status_and_body(check(&hm, &request("tools/list", json!({}))))
            .await
            .expect("refused");
        assert_eq!(
            (s, b["error"]["code"].clone(), b["id"].clone()),
            (StatusCode::BAD_REQUEST, json!(-32602), json!(9))
        );

        let old = json!({"io.modelcontextprotocol/protocolVersion": "v999",
            "io.modelcontextprotocol/clientCapabilities": {}});
        let (s, b) = status_and_body(check(
            &HeaderMap::new(),
            &request("server/discover", old.clone()),
        ))
        .await
        .expect("refused");
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["error"]["code"], json!(UNSUPPORTED_PROTOCOL_VERSION));
        assert_eq!(
            b["error"]["data"],
            json!({"supported": ["2026-07-28"], "requested": "v999"})
        );

        let (s, b) = status_and_body(check(&hm, &request("server/discover", old)))
            .await
            .expect("refused");
        assert_eq!(
            (s, b["error"]["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(HEADER_MISMATCH))
        );

        for m in REMOVED_METHODS {
            let (s, b) = status_and_body(check(&hm, &request(m, good.clone())))
                .await
                .expect("refused");
            assert_eq!(
                (s, b["error"]["code"].clone()),
                (StatusCode::NOT_FOUND, json!(-32601)),
                "{m}"
            );
        }
        assert!(names_a_revision(&request("x", good)));
        let log = |l: &str| json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": l, "data": "x"}});
        assert!(
            !log_allowed(None, &log("error")),
            "no opt-in, no log messages"
        );
        assert!(log_allowed(Some("warning"), &log("error")));
        assert!(!log_allowed(Some("warning"), &log("info")));
        assert!(log_allowed(
            None,
            &json!({"method": "notifications/progress"})
        ));
        assert_eq!(
            requested_log_level(&request(
                "tools/call",
                json!({"io.modelcontextprotocol/logLevel": "info"})
            )),
            Some("info".to_owned())
        );
        assert_eq!(
            requested_log_level(&request(
                "tools/call",
                json!({"io.modelcontextprotocol/logLevel": "loud"})
            )),
            None
        );
        assert!(!names_a_revision(&json!({"method": "x"})));
    }
}
