//! A 2026 upstream's response stream that broke before it answered a 2025 client's request.
//!
//! 2026-07-28 has no stream resumption: "a broken response stream loses the in-flight request;
//! clients MUST re-issue it as a new request with a new request ID". The proxy is that client
//! for a bridged 2025 client, whose own stream stays resumable through the proxy's record. It
//! re-issues only what cannot do harm twice, and never silently (logged, counted in
//! `shoal_proxy_bridge_reissues_total`):
//!
//! - requests without side effects (`tools/list`, `prompts/list`, `prompts/get`,
//!   `resources/list`, `resources/templates/list`, `resources/read`, `completion/complete`,
//!   `ping`) — re-issued;
//! - `tools/call` of a tool the upstream annotates `readOnlyHint: true` or
//!   `idempotentHint: true` (read from the upstream's `tools/list` at the moment of the
//!   decision) — re-issued;
//! - anything else ends with a JSON-RPC error saying the upstream's stream broke, the request
//!   was not re-issued and may or may not have taken effect.
//!
//! A re-issue gets a new id (`shoal-reissue-<n>-<original id>`); its response goes to the
//! client under the original id. At most [`MAX_REISSUES`] per request.

use axum::http::HeaderMap;
use serde_json::{Value, json};
use shoal_core::RequestId;

use crate::{
    protocol::{id_to_json, request_id},
    upstream::http::HttpUpstream,
};

/// Most re-issues of one request.
pub(crate) const MAX_REISSUES: u32 = 2;
/// Most `tools/list` pages read to find a tool's annotations.
const MAX_PAGES: usize = 20;

/// Methods whose requests have no side effects.
const SAFE_METHODS: [&str; 8] = [
    "tools/list",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
    "ping",
];

/// Whether a request may be sent again: a method without side effects, or a `tools/call`
/// of a tool annotated read-only or idempotent by the upstream.
pub(crate) async fn may_reissue(
    http: &HttpUpstream,
    client: &HeaderMap,
    meta: &Value,
    request: &Value,
) -> bool {
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    if SAFE_METHODS.contains(&method) {
        return true;
    }
    if method != "tools/call" {
        return false;
    }
    let Some(name) = request
        .get("params")
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
    else {
        return false;
    };
    tool_annotations(http, client, meta, name)
        .await
        .is_some_and(|a| retryable(&a))
}

/// Whether annotations say a call can run twice.
pub(crate) fn retryable(annotations: &Value) -> bool {
    let on = |k: &str| annotations.get(k).and_then(Value::as_bool) == Some(true);
    on("readOnlyHint") || on("idempotentHint")
}

/// The upstream's annotations of tool `name`, read from its `tools/list`.
async fn tool_annotations(
    http: &HttpUpstream,
    client: &HeaderMap,
    meta: &Value,
    name: &str,
) -> Option<Value> {
    let mut cursor: Option<Value> = None;
    for page in 0..MAX_PAGES {
        let id = format!("shoal-reissue-tools-{page}");
        let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}});
        if let Some(c) = &cursor {
            msg["params"]["cursor"] = c.clone();
        }
        let (hm, body) = super::modern_upstream::modern_request(client, &msg, meta);
        let reply = http.post(&hm, None, body).await.ok()?;
        let answer = reply.response_to(&id).await?;
        let result = answer.get("result")?;
        let tools = result.get("tools").and_then(Value::as_array)?;
        if let Some(t) = tools
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
        {
            return Some(t.get("annotations").cloned().unwrap_or(Value::Null));
        }
        cursor = result.get("nextCursor").filter(|c| !c.is_null()).cloned();
        cursor.as_ref()?;
    }
    None
}

/// The id of the `n`th re-issue of `original`.
pub(crate) fn reissue_id(original: &RequestId, n: u32) -> RequestId {
    RequestId::String(format!("shoal-reissue-{n}-{}", id_to_json(original)))
}

/// `request` under a new id.
pub(crate) fn with_id(request: &Value, id: &RequestId) -> Value {
    let mut m = request.clone();
    m["id"] = id_to_json(id);
    m
}

/// A response to `reissued` put back under `original`'s id; `None` for any other message.
pub(crate) fn as_original(v: &Value, reissued: &RequestId, original: &RequestId) -> Option<Value> {
    if v.get("method").is_some() || v.get("id").and_then(request_id).as_ref() != Some(reissued) {
        return None;
    }
    let mut m = v.clone();
    m["id"] = id_to_json(original);
    Some(m)
}

/// The error ending a request that was not re-issued.
pub(crate) fn not_reissued(original: &RequestId, request: &Value, why: &str) -> Value {
    let method = request.get("method").and_then(Value::as_str).unwrap_or("?");
    let what = match request
        .get("params")
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
    {
        Some(name) if method == "tools/call" => format!("tools/call of {name}"),
        _ => method.to_owned(),
    };
    json!({"jsonrpc": "2.0", "id": id_to_json(original), "error": {"code": -32603, "message": format!(
        "the 2026 upstream's response stream broke before it answered; {what} was not re-issued \
         ({why}) and may or may not have taken effect"
    )}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_new_and_mapped_back() {
        let original = RequestId::Number(5);
        let r = reissue_id(&original, 1);
        assert_eq!(r, RequestId::String("shoal-reissue-1-5".into()));
        let sent = with_id(
            &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}),
            &r,
        );
        assert_eq!(sent["id"], json!("shoal-reissue-1-5"));
        let back = as_original(
            &json!({"jsonrpc": "2.0", "id": "shoal-reissue-1-5", "result": {}}),
            &r,
            &original,
        );
        assert_eq!(back.map(|b| b["id"].clone()), Some(json!(5)));
        assert!(as_original(&json!({"id": 5, "result": {}}), &r, &original).is_none());
        assert!(
            as_original(
                &json!({"method": "notifications/progress", "id": "shoal-reissue-1-5"}),
                &r,
                &original
            )
            .is_none()
        );
    }

    #[test]
    fn only_read_only_or_idempotent_tools_are_retryable() {
        assert!(retryable(&json!({"readOnlyHint": true})));
        assert!(retryable(
            &json!({"idempotentHint": true, "readOnlyHint": false})
        ));
        assert!(!retryable(&json!({"destructiveHint": false})));
        assert!(!retryable(&Value::Null));
        let e = not_reissued(
            &RequestId::Number(1),
            &json!({"method": "tools/call", "params": {"name": "pay"}}),
            "not annotated read-only or idempotent",
        );
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("tools/call of pay") && m.contains("not re-issued"))
        );
    }
}
