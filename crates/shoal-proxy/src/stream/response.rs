//! The client-facing SSE body: priming event, events from a channel, keep-alive comments,
//! and the per-session stream slot it holds while open.

use std::{
    sync::{Arc, atomic::Ordering::SeqCst},
    time::Duration,
};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse as _, Response},
};
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use crate::{
    protocol::headers as h,
    sse,
    state::{Live, ProxyState},
};

/// The comment sent on a quiet stream.
pub(crate) const KEEPALIVE: &[u8] = b": keep-alive\n\n";

/// Releases a per-session stream slot when the client's body is dropped.
struct StreamGuard {
    live: Arc<Live>,
    inner: Arc<ProxyState>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.live.open_streams.fetch_sub(1, SeqCst);
        self.inner.metrics.open_streams.down();
    }
}

/// Takes a stream slot of the session; `false` when the session is at its limit.
pub(crate) fn try_open_slot(inner: &ProxyState, live: &Live) -> bool {
    let n = live.open_streams.fetch_add(1, SeqCst);
    if n >= inner.cfg.max_streams_per_session {
        live.open_streams.fetch_sub(1, SeqCst);
        return false;
    }
    true
}

/// Sleeps for `d`, or forever when `d` is zero.
async fn quiet_for(d: Duration) {
    if d.is_zero() {
        std::future::pending::<()>().await;
    } else {
        tokio::time::sleep(d).await;
    }
}

/// The SSE response whose events arrive on `rx` (already encoded); it ends when the sender
/// is dropped (the stream's end, or the client detached) or the proxy shuts down. A comment
/// goes out whenever the stream was quiet for `sse_keepalive`. `slot_taken` says a slot was
/// taken with [`try_open_slot`]; otherwise one is taken unconditionally.
pub(crate) fn sse_response(
    inner: &Arc<ProxyState>,
    live: &Arc<Live>,
    first: Option<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    slot_taken: bool,
    extra: HeaderMap,
) -> Response {
    if !slot_taken {
        live.open_streams.fetch_add(1, SeqCst);
    }
    inner.metrics.open_streams.up();
    let guard = StreamGuard {
        live: live.clone(),
        inner: inner.clone(),
    };
    let cancel = inner.shutdown.clone();
    let keepalive = inner.cfg.sse_keepalive;
    let metrics = inner.metrics.clone();
    let head = futures_util::stream::iter(first.map(Ok::<Bytes, std::convert::Infallible>));
    let tail = futures_util::stream::unfold((rx, guard, cancel), move |(mut rx, g, c)| {
        let metrics = metrics.clone();
        async move {
            let item = tokio::select! {
                biased;
                _ = c.cancelled() => return None,
                item = rx.recv() => item?,
                _ = quiet_for(keepalive) => {
                    metrics.keepalives_sent.inc();
                    Bytes::from_static(KEEPALIVE)
                }
            };
            Some((Ok(item), (rx, g, c)))
        }
    });
    let mut resp = Body::from_stream(head.chain(tail)).into_response();
    let hm = resp.headers_mut();
    hm.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    hm.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    hm.insert("x-accel-buffering", HeaderValue::from_static("no"));
    for (k, v) in &extra {
        hm.insert(k.clone(), v.clone());
    }
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// The priming event of a new stream (2025-11-25): an id that replays the whole stream, an
/// empty data field and the `retry` hint.
pub(crate) fn priming(inner: &ProxyState, live: &Live, stream: &str) -> Option<Bytes> {
    live.revision.primes_streams().then(|| {
        let id = inner.codec.encode(live.id.as_str(), stream, 0, 0);
        let retry = u64::try_from(inner.cfg.sse_retry.as_millis()).unwrap_or(u64::MAX);
        sse::encode(Some(&id), None, Some(retry), b"")
    })
}

/// A header map with the session id set.
pub(crate) fn session_header(live: &Live) -> HeaderMap {
    let mut hm = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(live.id.as_str()) {
        hm.insert(h::SESSION_ID, v);
    }
    hm
}
