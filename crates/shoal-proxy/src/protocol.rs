//! MCP protocol revisions, header rules and JSON-RPC message classification.

use axum::http::{HeaderMap, HeaderValue, header};
use serde_json::Value;
use shoal_core::RequestId;

/// The MCP revisions the proxy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Revision {
    /// 2025-03-26: sessions, batches, resumability.
    V2025_03_26,
    /// 2025-06-18: no batches; `MCP-Protocol-Version` header.
    V2025_06_18,
    /// 2025-11-25: priming events and `retry` (SSE polling).
    V2025_11_25,
    /// 2026-07-28: sessionless; GET and DELETE are 405.
    V2026_07_28,
}

impl Revision {
    /// Every supported revision, oldest first.
    pub const ALL: [Revision; 4] = [
        Revision::V2025_03_26,
        Revision::V2025_06_18,
        Revision::V2025_11_25,
        Revision::V2026_07_28,
    ];

    /// The revision's date string.
    pub fn as_str(self) -> &'static str {
        match self {
            Revision::V2025_03_26 => "2025-03-26",
            Revision::V2025_06_18 => "2025-06-18",
            Revision::V2025_11_25 => "2025-11-25",
            Revision::V2026_07_28 => "2026-07-28",
        }
    }

    /// Parses a date string; `None` for unsupported revisions.
    pub fn parse(s: &str) -> Option<Revision> {
        Revision::ALL.into_iter().find(|r| r.as_str() == s.trim())
    }

    /// Whether this revision has sessions (`Mcp-Session-Id`).
    pub fn has_sessions(self) -> bool {
        self < Revision::V2026_07_28
    }

    /// Whether a POST body may be a JSON-RPC batch.
    pub fn allows_batches(self) -> bool {
        self == Revision::V2025_03_26
    }

    /// Whether SSE streams start with a priming event and a `retry` field.
    pub fn primes_streams(self) -> bool {
        self == Revision::V2025_11_25
    }
}

/// The header names the proxy reads or writes.
pub mod headers {
    /// The session id header.
    pub const SESSION_ID: &str = "mcp-session-id";
    /// The protocol revision header.
    pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
    /// The SSE resumption header.
    pub const LAST_EVENT_ID: &str = "last-event-id";
    /// 2026-07-28: mirrors the request's `method`.
    pub const MCP_METHOD: &str = "mcp-method";
    /// 2026-07-28: mirrors `params.name` (tools, prompts) or `params.uri` (resources).
    pub const MCP_NAME: &str = "mcp-name";
}

/// The JSON-RPC error code of a 2026-07-28 request whose mirrored headers are missing or
/// disagree with its body.
pub const HEADER_MISMATCH: i64 = -32020;

/// Checks a 2026-07-28 request's mirrored headers against its body: `Mcp-Method` must equal
/// the request's method, and `Mcp-Name` its target (`params.name` of `tools/call` and
/// `prompts/get`, `params.uri` of `resources/read`). The revision obliges the server to
/// refuse a mismatch; an intermediary refuses it before anything acts on the headers.
/// Messages without a method (responses) carry no mirrored headers.
pub fn check_mirrored_headers(h: &HeaderMap, body: &Body) -> Result<(), &'static str> {
    let [msg] = body.messages.as_slice() else {
        return Ok(());
    };
    let Some(method) = msg.get("method").and_then(Value::as_str) else {
        return Ok(());
    };
    let header_text = |name: &str| h.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    match header_text(headers::MCP_METHOD) {
        None => return Err("Mcp-Method header is required"),
        Some(v) if v != method => return Err("Mcp-Method header does not match the body"),
        Some(_) => {}
    }
    let target = match method {
        "tools/call" | "prompts/get" => msg.get("params").and_then(|p| p.get("name")),
        "resources/read" => msg.get("params").and_then(|p| p.get("uri")),
        _ => None,
    };
    if let Some(target) = target.and_then(Value::as_str) {
        match header_text(headers::MCP_NAME) {
            None => return Err("Mcp-Name header is required"),
            Some(v) if v != target => return Err("Mcp-Name header does not match the body"),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether a body is an empty JSON array (an empty batch: an invalid request).
pub fn is_empty_batch(bytes: &[u8]) -> bool {
    matches!(serde_json::from_slice::<Value>(bytes), Ok(Value::Array(a)) if a.is_empty())
}

/// Whether the `Accept` header lists `mime` (or a wildcard covering it).
pub fn accepts(h: &HeaderMap, mime: &str) -> bool {
    let (ty, _) = mime.split_once('/').unwrap_or((mime, ""));
    h.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|item| {
                let m = item.split(';').next().unwrap_or("").trim();
                m.eq_ignore_ascii_case(mime)
                    || m == "*/*"
                    || m.strip_suffix("/*")
                        .is_some_and(|t| t.eq_ignore_ascii_case(ty))
            })
        })
    })
}

/// Whether the `Content-Type` is `application/json` (parameters allowed).
pub fn is_json_content_type(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// Whether a content type is `text/event-stream`.
pub fn is_event_stream(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
    })
}

/// Whether an `Origin` is allowed: absent, a loopback origin, listed, or `*` is listed.
pub fn origin_allowed(h: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = h.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim();
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    is_loopback_origin(origin)
}

/// Whether the request's host (`Host`, or the URI's authority for HTTP/2) is allowed: an
/// entry `*`, an entry equal to the whole `host[:port]`, or an entry equal to the host part
/// (any port), case-insensitive. A request naming no host is refused.
pub fn host_allowed(h: &HeaderMap, authority: Option<&str>, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == "*") {
        return true;
    }
    let given = match h.get(header::HOST) {
        Some(v) => match v.to_str() {
            Ok(v) => v.trim(),
            Err(_) => return false,
        },
        None => match authority {
            Some(a) => a.trim(),
            None => return false,
        },
    };
    if given.is_empty() || given.contains('@') || given.contains('/') {
        return false;
    }
    let name = match given.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((inner, rest)) if rest.is_empty() || is_port(rest) => &given[..inner.len() + 2],
            _ => return false,
        },
        None => match given.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => given,
        },
    };
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(given) || a.eq_ignore_ascii_case(name))
}

/// The hosts allowed when none are configured and the proxy listens on loopback.
pub const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    if rest.contains('/') || rest.contains('@') {
        return false;
    }
    let host = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, port)) if port.is_empty() || is_port(port) => return h == "::1",
            _ => return false,
        }
    } else {
        match rest.split_once(':') {
            Some((h, port)) if is_port(port) => h,
            Some(_) => return false,
            None => rest,
        }
    };
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1"
}

fn is_port(p: &str) -> bool {
    let digits = p.strip_prefix(':').unwrap_or(p);
    !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// What the `MCP-Protocol-Version` header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionHeader {
    /// Absent.
    Absent,
    /// A supported revision.
    Known(Revision),
    /// Present but not a supported revision (→ 400).
    Invalid,
}

/// Reads `MCP-Protocol-Version`.
pub fn version_header(h: &HeaderMap) -> VersionHeader {
    match h.get(headers::PROTOCOL_VERSION) {
        None => VersionHeader::Absent,
        Some(v) => match v.to_str().ok().and_then(Revision::parse) {
            Some(r) => VersionHeader::Known(r),
            None => VersionHeader::Invalid,
        },
    }
}

/// The kind of one JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum MessageKind {
    /// A request: has `method` and `id`.
    Request {
        /// Its id.
        id: RequestId,
        /// Its method.
        method: String,
    },
    /// A notification: `method`, no `id`.
    Notification {
        /// Its method.
        method: String,
    },
    /// A response: `result` or `error` with an `id`.
    Response {
        /// The id it answers (`None` for an error about an unparseable request).
        id: Option<RequestId>,
    },
    /// Not a JSON-RPC 2.0 message.
    Invalid,
}

/// Classifies one JSON value.
pub fn classify(v: &Value) -> MessageKind {
    let Some(o) = v.as_object() else {
        return MessageKind::Invalid;
    };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return MessageKind::Invalid;
    }
    let id = o.get("id").and_then(request_id);
    if let Some(method) = o.get("method").and_then(Value::as_str) {
        return match (o.get("id"), id) {
            (None, _) => MessageKind::Notification {
                method: method.to_owned(),
            },
            (Some(_), Some(id)) => MessageKind::Request {
                id,
                method: method.to_owned(),
            },
            (Some(_), None) => MessageKind::Invalid,
        };
    }
    if o.contains_key("result") || o.contains_key("error") {
        return MessageKind::Response { id };
    }
    MessageKind::Invalid
}

/// A JSON-RPC id as a [`RequestId`] (integers and strings; other numbers are not ids).
pub fn request_id(v: &Value) -> Option<RequestId> {
    match v {
        Value::Number(n) => n.as_i64().map(RequestId::Number),
        Value::String(s) => Some(RequestId::String(s.clone())),
        _ => None,
    }
}

/// A request id back as JSON.
pub fn id_to_json(id: &RequestId) -> Value {
    match id {
        RequestId::Number(n) => Value::from(*n),
        RequestId::String(s) => Value::from(s.clone()),
    }
}

/// A parsed POST body: one message or a batch.
#[derive(Debug)]
pub struct Body {
    /// The messages in order.
    pub messages: Vec<Value>,
    /// Whether the body was a JSON array.
    pub batch: bool,
}

impl Body {
    /// Parses a body; `None` when it is not JSON or is an empty array.
    pub fn parse(bytes: &[u8]) -> Option<Body> {
        match serde_json::from_slice::<Value>(bytes).ok()? {
            Value::Array(messages) if !messages.is_empty() => Some(Body {
                messages,
                batch: true,
            }),
            Value::Array(_) => None,
            v => Some(Body {
                messages: vec![v],
                batch: false,
            }),
        }
    }

    /// The kinds of the messages.
    pub fn kinds(&self) -> Vec<MessageKind> {
        self.messages.iter().map(classify).collect()
    }
}

/// The revision a sessionless (2026-07-28) request names in `params._meta`, if any.
pub fn meta_revision(v: &Value) -> Option<Revision> {
    v.get("params")?
        .get("_meta")?
        .get("io.modelcontextprotocol/protocolVersion")?
        .as_str()
        .and_then(Revision::parse)
}

/// A JSON-RPC error body (`id` null) for HTTP-level refusals.
pub fn error_body(code: i64, message: &str) -> String {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": Value::Null,
        "error": {"code": code, "message": message},
    })
    .to_string()
}

/// The ids of the responses in a server message (one message or a batch).
pub fn response_ids(v: &Value) -> Vec<RequestId> {
    let one = |m: &Value| match classify(m) {
        MessageKind::Response { id: Some(id) } => Some(id),
        _ => None,
    };
    match v {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        m => one(m).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_headers_must_match_the_body() {
        let body = |v: Value| Body {
            messages: vec![v],
            batch: false,
        };
        let hm = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let call = body(
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}),
        );
        assert_eq!(
            check_mirrored_headers(
                &hm(&[("mcp-method", "tools/call"), ("mcp-name", "echo")]),
                &call
            ),
            Ok(())
        );
        assert!(
            check_mirrored_headers(
                &hm(&[("mcp-method", "tools/call"), ("mcp-name", "rm")]),
                &call
            )
            .is_err()
        );
        assert!(
            check_mirrored_headers(
                &hm(&[("mcp-method", "tools/list"), ("mcp-name", "echo")]),
                &call
            )
            .is_err()
        );
        assert!(check_mirrored_headers(&hm(&[("mcp-method", "tools/call")]), &call).is_err());
        assert!(check_mirrored_headers(&hm(&[]), &call).is_err());
        let read = body(
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}),
        );
        assert_eq!(
            check_mirrored_headers(
                &hm(&[("mcp-method", "resources/read"), ("mcp-name", "file:///a")]),
                &read
            ),
            Ok(())
        );
        let list = body(serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}));
        assert_eq!(
            check_mirrored_headers(&hm(&[("mcp-method", "tools/list")]), &list),
            Ok(())
        );
        let answer = body(serde_json::json!({"jsonrpc":"2.0","id":1,"result":{}}));
        assert_eq!(check_mirrored_headers(&hm(&[]), &answer), Ok(()));
        assert!(is_empty_batch(b" [ ] "));
        assert!(!is_empty_batch(b"[1]"));
    }
    use serde_json::json;

    fn hm(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn revisions() {
        assert_eq!(Revision::parse("2025-06-18"), Some(Revision::V2025_06_18));
        assert_eq!(Revision::parse("2024-11-05"), None);
        assert!(Revision::V2025_03_26.allows_batches());
        assert!(!Revision::V2025_06_18.allows_batches());
        assert!(!Revision::V2026_07_28.has_sessions());
        assert!(Revision::V2025_11_25.primes_streams());
    }

    #[test]
    fn accept_rules() {
        let h = hm(&[("accept", "application/json, text/event-stream")]);
        assert!(accepts(&h, "application/json") && accepts(&h, "text/event-stream"));
        let h = hm(&[("accept", "application/json;q=0.9"), ("accept", "text/*")]);
        assert!(accepts(&h, "application/json") && accepts(&h, "text/event-stream"));
        let h = hm(&[("accept", "*/*")]);
        assert!(accepts(&h, "text/event-stream"));
        let h = hm(&[("accept", "application/json")]);
        assert!(!accepts(&h, "text/event-stream"));
        assert!(!accepts(&HeaderMap::new(), "application/json"));
    }

    #[test]
    fn content_types() {
        let v = HeaderValue::from_static("application/json; charset=utf-8");
        assert!(is_json_content_type(Some(&v)));
        assert!(!is_json_content_type(Some(&HeaderValue::from_static(
            "text/plain"
        ))));
        assert!(!is_json_content_type(None));
        assert!(is_event_stream(Some(&HeaderValue::from_static(
            "text/event-stream"
        ))));
    }

    #[test]
    fn hosts() {
        let allowed: Vec<String> = LOOPBACK_HOSTS.iter().map(|s| (*s).to_owned()).collect();
        let with = |host: &'static str| hm(&[("host", host)]);
        for ok in ["localhost:8080", "127.0.0.1", "[::1]:9", "LOCALHOST:1"] {
            assert!(host_allowed(&with(ok), None, &allowed), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1:80:80",
            "[::1]x",
            "user@localhost",
            "",
        ] {
            assert!(!host_allowed(&with(bad), None, &allowed), "{bad}");
        }
        assert!(
            !host_allowed(&HeaderMap::new(), None, &allowed),
            "no host at all"
        );
        assert!(host_allowed(
            &HeaderMap::new(),
            Some("localhost:1"),
            &allowed
        ));
        let pinned = vec!["mcp.example.com:443".to_owned()];
        assert!(host_allowed(&with("mcp.example.com:443"), None, &pinned));
        assert!(!host_allowed(&with("mcp.example.com:8443"), None, &pinned));
        assert!(host_allowed(&with("anything"), None, &["*".to_owned()]));
    }

    #[test]
    fn origins() {
        assert!(origin_allowed(&HeaderMap::new(), &[]));
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "http://[::1]:80",
        ] {
            let mut h = HeaderMap::new();
            h.insert("origin", HeaderValue::from_str(ok).unwrap());
            assert!(origin_allowed(&h, &[]), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "http://localhost:3000/x",
            "http://user@localhost",
            "null",
            "http://[::2]",
            "http://localhost:abc",
        ] {
            let mut h = HeaderMap::new();
            h.insert("origin", HeaderValue::from_str(bad).unwrap());
            assert!(!origin_allowed(&h, &[]), "{bad}");
        }
        let mut h = HeaderMap::new();
        h.insert("origin", HeaderValue::from_static("https://app.example"));
        assert!(origin_allowed(&h, &["https://app.example".into()]));
        assert!(origin_allowed(&h, &["*".into()]));
    }

    #[test]
    fn version_headers() {
        assert_eq!(version_header(&HeaderMap::new()), VersionHeader::Absent);
        assert_eq!(
            version_header(&hm(&[("mcp-protocol-version", "2025-11-25")])),
            VersionHeader::Known(Revision::V2025_11_25)
        );
        assert_eq!(
            version_header(&hm(&[("mcp-protocol-version", "1999-01-01")])),
            VersionHeader::Invalid
        );
    }

    #[test]
    fn classifies_messages() {
        assert_eq!(
            classify(&json!({"jsonrpc":"2.0","id":1,"method":"ping"})),
            MessageKind::Request {
                id: RequestId::Number(1),
                method: "ping".into()
            }
        );
        assert_eq!(
            classify(&json!({"jsonrpc":"2.0","method":"notifications/initialized"})),
            MessageKind::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert_eq!(
            classify(&json!({"jsonrpc":"2.0","id":"a","result":{}})),
            MessageKind::Response {
                id: Some(RequestId::String("a".into()))
            }
        );
        assert_eq!(
            classify(&json!({"id":1,"method":"x"})),
            MessageKind::Invalid
        );
        assert_eq!(
            classify(&json!({"jsonrpc":"2.0","id":1.5,"method":"x"})),
            MessageKind::Invalid
        );
        assert_eq!(classify(&json!([1])), MessageKind::Invalid);
        let b = Body::parse(br#"[{"jsonrpc":"2.0","method":"a"}]"#).unwrap();
        assert!(b.batch);
        assert!(Body::parse(b"[]").is_none());
        assert!(Body::parse(b"{").is_none());
        assert_eq!(
            response_ids(
                &json!([{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","method":"x"}])
            ),
            vec![RequestId::Number(1)]
        );
        assert_eq!(
            meta_revision(
                &json!({"params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}})
            ),
            Some(Revision::V2026_07_28)
        );
    }
}
