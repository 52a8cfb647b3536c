//! What the feed says about a session ([`SessionSummary`], in `created` entries) and about a
//! frame ([`FrameSummary`], in `frame` entries): small, bounded, never the payload.
//!
//! A frame's summary comes from reading only the JSON-RPC fields it needs (`method`, `id`,
//! `error`, `params.name`, `result.isError`); every other value is skipped without being
//! built. Strings are cut to [`MAX_FIELD_BYTES`] and tabs and line breaks become spaces, so a
//! hostile client cannot bloat the feed or break its format.

use std::fmt;

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{IgnoredAny, MapAccess, Visitor},
};

use crate::{Direction, NewFrame, Session, Timestamp};

/// The longest string (in bytes) a summary keeps of a method, tool, id, client name, ….
pub const MAX_FIELD_BYTES: usize = 128;

/// `s` cut to [`MAX_FIELD_BYTES`] (on a char boundary) with tabs, line breaks and other
/// control characters replaced by spaces.
pub fn clean(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Who a session's client is and how it talks: the detail of a `created` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionSummary {
    /// The transport (`streamable_http`, `stdio`, …).
    pub transport: String,
    /// The negotiated protocol version, when known at create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// `clientInfo.name`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// `clientInfo.version`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// The principal the session belongs to, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

impl SessionSummary {
    /// The summary of `session`.
    pub fn of(session: &Session) -> Self {
        let info = |k: &str| session.client_field(k).map(clean);
        SessionSummary {
            transport: session.transport.as_str().to_string(),
            protocol_version: session.protocol_version.as_deref().map(clean),
            client_name: info("name"),
            client_version: info("version"),
            principal: session.principal.as_deref().map(clean),
        }
    }

    /// `transport \t protocol \t client name \t client version \t principal` (absent: empty).
    pub fn to_detail(&self) -> String {
        [
            Some(self.transport.as_str()),
            self.protocol_version.as_deref(),
            self.client_name.as_deref(),
            self.client_version.as_deref(),
            self.principal.as_deref(),
        ]
        .map(|v| v.unwrap_or(""))
        .join("\t")
    }

    /// Reads [`to_detail`](Self::to_detail)'s form; missing parts are absent.
    pub fn from_detail(x: &str) -> Self {
        let mut p = x.split('\t');
        let mut next = || p.next().unwrap_or("");
        SessionSummary {
            transport: next().to_string(),
            protocol_version: opt(next()),
            client_name: opt(next()),
            client_version: opt(next()),
            principal: opt(next()),
        }
    }
}

/// How a response reported failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FrameError {
    /// A JSON-RPC `error` member.
    Rpc,
    /// A tool result with `isError: true`.
    Tool,
}

/// What a frame is, without its payload: the detail of a `frame` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FrameSummary {
    /// Which way it went.
    pub direction: Direction,
    /// Its stream, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    /// Requests and notifications: the JSON-RPC method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Requests and responses: the JSON-RPC id as JSON text (`7`, `"abc"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_id: Option<String>,
    /// `tools/call`, `prompts/get`: `params.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Responses that report a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<FrameError>,
    /// The content's size in bytes.
    pub size: u64,
    /// When the frame crossed (the writer's clock).
    pub timestamp: Timestamp,
}

impl FrameSummary {
    /// The summary of `frame`: its JSON-RPC fields when its content is one JSON-RPC message
    /// (anything else, a batch included, has none).
    pub fn of(frame: &NewFrame) -> Self {
        let peek: Peek = serde_json::from_slice(&frame.content).unwrap_or_default();
        let error = if peek.error.is_some() {
            Some(FrameError::Rpc)
        } else if peek.result.is_error {
            Some(FrameError::Tool)
        } else {
            None
        };
        FrameSummary {
            direction: frame.direction,
            stream_id: frame.stream_id.as_deref().map(clean),
            method: peek.method.as_deref().map(clean),
            rpc_id: peek.id.map(|v| clean(&v.to_string())),
            tool: peek.params.name.as_deref().map(clean),
            error,
            size: frame.content.len() as u64,
            timestamp: frame.timestamp,
        }
    }

    /// Whether this frame is a request (a method and an id).
    pub fn is_request(&self) -> bool {
        self.method.is_some() && self.rpc_id.is_some()
    }

    /// Whether this frame is a response (an id, no method).
    pub fn is_response(&self) -> bool {
        self.method.is_none() && self.rpc_id.is_some()
    }

    /// `dir \t stream \t method \t id \t tool \t error \t size \t timestamp`, with `dir` `c`
    /// (client to server) or `s`, `error` `e` (JSON-RPC), `t` (tool) or empty.
    pub fn to_detail(&self) -> String {
        let dir = match self.direction {
            Direction::ServerToClient => "s",
            _ => "c",
        };
        let error = match self.error {
            Some(FrameError::Rpc) => "e",
            Some(FrameError::Tool) => "t",
            None => "",
        };
        format!(
            "{dir}\t{}\t{}\t{}\t{}\t{error}\t{}\t{}",
            self.stream_id.as_deref().unwrap_or(""),
            self.method.as_deref().unwrap_or(""),
            self.rpc_id.as_deref().unwrap_or(""),
            self.tool.as_deref().unwrap_or(""),
            self.size,
            self.timestamp.as_millis()
        )
    }

    /// Reads [`to_detail`](Self::to_detail)'s form; unreadable parts are absent or zero.
    pub fn from_detail(x: &str) -> Self {
        let mut p = x.split('\t');
        let mut next = || p.next().unwrap_or("");
        let direction = if next() == "s" {
            Direction::ServerToClient
        } else {
            Direction::ClientToServer
        };
        let stream_id = opt(next());
        let method = opt(next());
        let rpc_id = opt(next());
        let tool = opt(next());
        let error = match next() {
            "e" => Some(FrameError::Rpc),
            "t" => Some(FrameError::Tool),
            _ => None,
        };
        let size = next().parse().unwrap_or(0);
        let timestamp = Timestamp(next().parse().unwrap_or(0));
        FrameSummary {
            direction,
            stream_id,
            method,
            rpc_id,
            tool,
            error,
            size,
            timestamp,
        }
    }
}

/// The JSON-RPC members a summary reads; everything else is skipped.
#[derive(Default, Deserialize)]
struct Peek {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(default)]
    params: Members,
    #[serde(default)]
    result: Members,
}

/// `name` and `isError` of an object member (`params`, `result`); any other shape has none.
#[derive(Default)]
struct Members {
    name: Option<String>,
    is_error: bool,
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members, A::Error> {
                let mut out = Members::default();
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    match k.as_ref() {
                        "name" => {
                            out.name = m
                                .next_value::<serde_json::Value>()?
                                .as_str()
                                .map(str::to_string)
                        }
                        "isError" => {
                            out.is_error = m.next_value::<serde_json::Value>()?
                                == serde_json::Value::Bool(true)
                        }
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<Members, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Members::default())
            }
            fn visit_unit<E>(self) -> Result<Members, E> {
                Ok(Members::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Members, E> {
                Ok(Members::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Members, E> {
                Ok(Members::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Members, E> {
                Ok(Members::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Members, E> {
                Ok(Members::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Members, E> {
                Ok(Members::default())
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(json: &str) -> FrameSummary {
        FrameSummary::of(&NewFrame::new(Direction::ServerToClient, json.to_string()))
    }

    #[test]
    fn reads_requests_responses_and_errors() {
        let r = summary(
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"arguments":{"name":"x"},"name":"add"}}"#,
        );
        assert_eq!(r.method.as_deref(), Some("tools/call"));
        assert_eq!(r.rpc_id.as_deref(), Some("\"a\""));
        assert_eq!(r.tool.as_deref(), Some("add"));
        assert!(r.is_request());
        let ok = summary(r#"{"jsonrpc":"2.0","id":"a","result":{"content":[],"isError":false}}"#);
        assert!(ok.is_response() && ok.error.is_none());
        let tool_err = summary(r#"{"jsonrpc":"2.0","id":3,"result":{"isError":true}}"#);
        assert_eq!(tool_err.error, Some(FrameError::Tool));
        assert_eq!(tool_err.rpc_id.as_deref(), Some("3"));
        let rpc_err = summary(r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no"}}"#);
        assert_eq!(rpc_err.error, Some(FrameError::Rpc));
        let note = summary(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":[1,2]}"#);
        assert!(!note.is_request() && !note.is_response());
        assert_eq!(note.tool, None);
    }

    #[test]
    fn anything_else_has_no_fields_and_hostile_strings_are_cut() {
        for junk in [
            "",
            "not json",
            "[1,2]",
            r#"[{"method":"x","id":1}]"#,
            "{\"method\":5}",
        ] {
            let s = summary(junk);
            assert_eq!((s.method, s.rpc_id), (None, None), "{junk:?}");
            assert_eq!(s.size, junk.len() as u64);
        }
        let long = "m\t\n".repeat(200);
        let s = summary(&format!(
            r#"{{"method":{},"id":1}}"#,
            serde_json::json!(long)
        ));
        let m = s.method.unwrap_or_default();
        assert!(
            m.len() <= MAX_FIELD_BYTES && !m.contains(['\t', '\n']),
            "{m:?}"
        );
        assert_eq!(clean("é".repeat(100).as_str()).len(), 128);
    }

    #[test]
    fn client_info_in_either_shape() {
        let mut s = Session::new(
            crate::SessionId::generate(),
            crate::Transport::StreamableHttp,
        );
        s.client_info = Some(serde_json::json!({"name": "direct", "version": "1"}));
        assert_eq!(
            SessionSummary::of(&s).client_name.as_deref(),
            Some("direct")
        );
        // The proxy keeps the whole initialize: {"clientInfo": {...}, "capabilities": {...}}.
        s.client_info = Some(serde_json::json!({
            "clientInfo": {"name": "via-proxy", "version": "2.0"},
            "capabilities": {}
        }));
        let summary = SessionSummary::of(&s);
        assert_eq!(summary.client_name.as_deref(), Some("via-proxy"));
        assert_eq!(summary.client_version.as_deref(), Some("2.0"));
    }

    #[test]
    fn details_round_trip() {
        let s = summary(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        assert_eq!(FrameSummary::from_detail(&s.to_detail()), s);
        let empty = SessionSummary {
            transport: "stdio".into(),
            ..Default::default()
        };
        assert_eq!(SessionSummary::from_detail(&empty.to_detail()), empty);
    }
}
