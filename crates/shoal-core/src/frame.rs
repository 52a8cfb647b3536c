//! Message frames (the design's `MessageEnvelope`) and pending requests.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{SessionId, Timestamp};

/// Which way a frame crossed the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Direction {
    /// Client → server (requests, notifications and responses the client sent).
    ClientToServer,
    /// Server → client.
    ServerToClient,
}

impl Direction {
    /// `client_to_server` or `server_to_client`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToServer => "client_to_server",
            Direction::ServerToClient => "server_to_client",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame as the caller hands it to [`SessionStore::append_frames`](crate::SessionStore::append_frames):
/// everything except the sequence number, which only the store assigns.
///
/// ```
/// use shoal_core::{Direction, NewFrame};
///
/// let f = NewFrame::new(Direction::ClientToServer, r#"{"jsonrpc":"2.0","method":"ping","id":1}"#)
///     .with_stream("post-1")
///     .with_content_type("application/json");
/// assert_eq!(f.content.len(), 40);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewFrame {
    /// The SSE stream or request this frame belongs to (`None`: no stream).
    pub stream_id: Option<String>,
    /// Which way it went.
    pub direction: Direction,
    /// When it crossed the proxy.
    pub timestamp: crate::Timestamp,
    /// Its content type, e.g. `application/json` or `text/event-stream`.
    pub content_type: Option<String>,
    /// Transport headers worth keeping (never credentials).
    pub headers: Vec<(String, String)>,
    /// The exact bytes that crossed the wire.
    pub content: Bytes,
}

impl NewFrame {
    /// A frame with `content`, stamped now, no stream, no headers.
    pub fn new(direction: Direction, content: impl Into<Bytes>) -> Self {
        NewFrame {
            stream_id: None,
            direction,
            timestamp: Timestamp::now(),
            content_type: None,
            headers: Vec::new(),
            content: content.into(),
        }
    }

    /// Sets the stream id.
    pub fn with_stream(mut self, stream_id: impl Into<String>) -> Self {
        self.stream_id = Some(stream_id.into());
        self
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Turns this into a stored [`Frame`] of `session_id` with `seq`.
    pub fn into_frame(self, session_id: SessionId, seq: u64) -> Frame {
        Frame {
            session_id,
            seq,
            stream_id: self.stream_id,
            direction: self.direction,
            timestamp: self.timestamp,
            content_type: self.content_type,
            headers: self.headers,
            content: self.content,
        }
    }
}

/// A stored frame. `seq` is unique and strictly increasing within its session and never reused,
/// also across trimming; it is what SSE event ids are built from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Frame {
    /// The session it belongs to.
    pub session_id: SessionId,
    /// Its sequence number within the session (1, 2, 3, …).
    pub seq: u64,
    /// The SSE stream or request it belongs to.
    pub stream_id: Option<String>,
    /// Which way it went.
    pub direction: Direction,
    /// When it crossed the proxy.
    pub timestamp: Timestamp,
    /// Its content type.
    pub content_type: Option<String>,
    /// Selected transport headers.
    pub headers: Vec<(String, String)>,
    /// The exact original bytes; cloning shares them.
    pub content: Bytes,
}

impl Frame {
    /// The parts a caller supplied, without session id and seq.
    pub fn to_new_frame(&self) -> NewFrame {
        NewFrame {
            stream_id: self.stream_id.clone(),
            direction: self.direction,
            timestamp: self.timestamp,
            content_type: self.content_type.clone(),
            headers: self.headers.clone(),
            content: self.content.clone(),
        }
    }

    /// Bytes this frame counts against [`Limits::max_frame_bytes`](crate::Limits::max_frame_bytes).
    pub fn size(&self) -> usize {
        frame_size(
            &self.content,
            self.stream_id.as_deref(),
            self.content_type.as_deref(),
            &self.headers,
        )
    }
}

pub(crate) fn frame_size(
    content: &[u8],
    stream_id: Option<&str>,
    content_type: Option<&str>,
    headers: &[(String, String)],
) -> usize {
    content.len()
        + stream_id.map_or(0, str::len)
        + content_type.map_or(0, str::len)
        + headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

impl NewFrame {
    /// Bytes this frame counts against [`Limits::max_frame_bytes`](crate::Limits::max_frame_bytes):
    /// content plus stream id, content type and headers.
    pub fn size(&self) -> usize {
        frame_size(
            &self.content,
            self.stream_id.as_deref(),
            self.content_type.as_deref(),
            &self.headers,
        )
    }
}

/// A JSON-RPC request id: a number or a string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// A numeric id.
    Number(i64),
    /// A string id.
    String(String),
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<i64> for RequestId {
    fn from(n: i64) -> Self {
        RequestId::Number(n)
    }
}

impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        RequestId::String(s.to_owned())
    }
}

impl From<String> for RequestId {
    fn from(s: String) -> Self {
        RequestId::String(s)
    }
}

/// A request that went upstream and has not been answered yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingRequest {
    /// The JSON-RPC id.
    pub request_id: RequestId,
    /// The JSON-RPC method.
    pub method: String,
    /// When it was sent.
    pub started_at: Timestamp,
    /// The stream its answer will go to, if known.
    pub stream_id: Option<String>,
}

impl PendingRequest {
    /// A pending request started now.
    pub fn new(request_id: impl Into<RequestId>, method: impl Into<String>) -> Self {
        PendingRequest {
            request_id: request_id.into(),
            method: method.into(),
            started_at: Timestamp::now(),
            stream_id: None,
        }
    }

    /// Bytes this request counts against
    /// [`Limits::max_pending_bytes`](crate::Limits::max_pending_bytes) and the session's byte
    /// budget: its id (a number counts 20), method and stream id, plus 8 for the start time.
    pub fn size(&self) -> usize {
        let id = match &self.request_id {
            RequestId::Number(_) => 20,
            RequestId::String(s) => s.len(),
        };
        id + self.method.len() + self.stream_id.as_deref().map_or(0, str::len) + 8
    }

    /// Sets the stream id.
    pub fn with_stream(mut self, stream_id: impl Into<String>) -> Self {
        self.stream_id = Some(stream_id.into());
        self
    }

    /// Sets the start time.
    pub fn with_started_at(mut self, at: Timestamp) -> Self {
        self.started_at = at;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_serialize_as_plain_json_rpc_ids() {
        assert_eq!(serde_json::to_string(&RequestId::from(7)).unwrap(), "7");
        assert_eq!(
            serde_json::to_string(&RequestId::from("a")).unwrap(),
            "\"a\""
        );
        let back: RequestId = serde_json::from_str("\"x\"").unwrap();
        assert_eq!(back, RequestId::from("x"));
    }

    #[test]
    fn size_counts_content_and_metadata() {
        let f = NewFrame::new(Direction::ServerToClient, "abcd")
            .with_stream("s1")
            .with_header("k", "v");
        assert_eq!(f.size(), 4 + 2 + 2);
    }
}
