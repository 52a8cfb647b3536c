//! The upstream side: an MCP Streamable HTTP server, or a stdio server process per session.

use std::pin::Pin;

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures_util::Stream;

use crate::sse::SseEvent;

mod forward;
pub(crate) mod http;
pub(crate) mod stdio;

pub use forward::FORWARDED_HEADERS;
pub(crate) use forward::{ForwardPolicy, check_forwardable};

/// A stream of upstream SSE events; an `Err` ends it.
pub(crate) type EventStream = Pin<Box<dyn Stream<Item = Result<SseEvent, UpstreamError>> + Send>>;

/// What the upstream answered.
pub(crate) enum Reply {
    /// A complete body (JSON, an error, or an empty 202).
    Full {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    /// An SSE stream.
    Stream {
        status: StatusCode,
        headers: HeaderMap,
        events: EventStream,
    },
}

impl Reply {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Reply::Full { status, .. } | Reply::Stream { status, .. } => *status,
        }
    }

    /// The JSON-RPC response to the proxy's own request `id`: a complete body that answers
    /// it (or an error without an id, about the request itself), or the stream's first event
    /// that answers it.
    pub(crate) async fn response_to(self, id: &str) -> Option<serde_json::Value> {
        use futures_util::StreamExt as _;
        use serde_json::Value;
        let answers = |v: &Value| v.get("id").and_then(Value::as_str) == Some(id);
        match self {
            Reply::Full { body, .. } => serde_json::from_slice::<Value>(&body)
                .ok()
                .filter(|v| answers(v) || v.get("id").is_none_or(Value::is_null)),
            Reply::Stream { mut events, .. } => {
                while let Some(Ok(ev)) = events.next().await {
                    if let Ok(v) = serde_json::from_str::<Value>(&ev.data)
                        && answers(&v)
                    {
                        return Some(v);
                    }
                }
                None
            }
        }
    }
}

pub(crate) use crate::error::UpstreamError;
