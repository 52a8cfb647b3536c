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
}

pub(crate) use crate::error::UpstreamError;
