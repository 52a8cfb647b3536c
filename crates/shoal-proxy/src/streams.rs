//! SSE streams: the pump that reads an upstream stream and records it, the follower that
//! replays a stream from the store and continues live, and the client-facing body.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::Ordering::{Relaxed, SeqCst},
    },
    time::Duration,
};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse as _, Response},
};
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::future::join_all;
use serde_json::Value;
use shoal_core::{Direction, Error, FrameQuery, NewFrame, PendingRequest, RequestId, Timestamp};
use tokio::{sync::mpsc, time::Instant};

use crate::{
    protocol::{MessageKind, classify, headers as h, response_ids},
    record, sse,
    state::{Live, ProxyState, lease_holder_alive},
    upstream::{EventStream, Reply},
};

/// The frame header that keeps the upstream's own event id, for resuming the upstream.
pub(crate) const UPSTREAM_EVENT_ID: &str = "upstream-event-id";

/// What ends a stream.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A POST stream ends when every request it carried is answered.
    Post { awaiting: HashSet<RequestId> },
    /// The GET stream lasts until the upstream closes it.
    Get,
}

impl Kind {
    fn done(&self) -> bool {
        matches!(self, Kind::Post { awaiting } if awaiting.is_empty())
    }
}

/// A new stream id: `p`/`g` and 16 random hex digits.
pub(crate) fn new_stream_id(prefix: char) -> String {
    let mut b = [0u8; 8];
    crate::fill_random(&mut b);
    format!("{prefix}{}", crate::state::hex(&b))
}

/// Releases a per-session stream slot when the client's body is dropped.
struct StreamGuard {
    live: Arc<Live>,
    inner: Arc<ProxyState>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.live.open_streams.fetch_sub(1, SeqCst);
        self.inner.metrics.open_streams.fetch_sub(1, Relaxed);
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

/// The SSE response whose events arrive on `rx` (already encoded). `slot_taken` says a slot
/// was taken with [`try_open_slot`]; otherwise one is taken unconditionally.
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
    inner.metrics.open_streams.fetch_add(1, Relaxed);
    let guard = StreamGuard {
        live: live.clone(),
        inner: inner.clone(),
    };
    let cancel = inner.shutdown.clone();
    let head = futures_util::stream::iter(first.map(Ok::<Bytes, std::convert::Infallible>));
    let tail = futures_util::stream::unfold((rx, guard, cancel), |(mut rx, g, c)| async move {
        tokio::select! {
            biased;
            _ = c.cancelled() => None,
            item = rx.recv() => item.map(|b| (Ok(b), (rx, g, c))),
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
        let id = inner.codec.encode(live.id.as_str(), stream, 0);
        let retry = u64::try_from(inner.cfg.sse_retry.as_millis()).unwrap_or(u64::MAX);
        sse::encode(Some(&id), None, Some(retry), b"")
    })
}

/// Everything a pump needs.
pub(crate) struct PumpSpec {
    pub(crate) stream: String,
    pub(crate) kind: Kind,
    pub(crate) events: EventStream,
    pub(crate) client: Option<mpsc::Sender<Bytes>>,
    pub(crate) client_headers: HeaderMap,
    pub(crate) upstream_last: Option<String>,
    pub(crate) lease_now: bool,
}

/// Starts reading an upstream stream: every event is recorded (seq = event id), answered
/// requests leave the pending set, and the event goes to the attached client while it is
/// there. The pump keeps recording after the client went away (bounded by
/// `orphan_stream_timeout`), so a client can resume on any instance.
pub(crate) fn spawn_pump(inner: &Arc<ProxyState>, live: &Arc<Live>, spec: PumpSpec) {
    let btx = inner.register_pump(&live.id, &spec.stream);
    inner.metrics.open_pumps.fetch_add(1, Relaxed);
    let inner = inner.clone();
    let live = live.clone();
    tokio::spawn(async move {
        let stream = spec.stream.clone();
        let lease_written = pump(&inner, &live, spec, &btx).await;
        inner.unregister_pump(&live.id, &stream);
        if lease_written {
            let _ = inner.write_lease(&live.id, &stream, false).await;
        }
        inner.metrics.open_pumps.fetch_sub(1, Relaxed);
        tracing::debug!(session = %live.id, stream, "upstream stream finished");
    });
}

async fn pump(
    inner: &Arc<ProxyState>,
    live: &Arc<Live>,
    spec: PumpSpec,
    btx: &tokio::sync::broadcast::Sender<u64>,
) -> bool {
    let PumpSpec {
        stream,
        mut kind,
        mut events,
        mut client,
        client_headers,
        mut upstream_last,
        lease_now,
    } = spec;
    let mut lease_written = false;
    if lease_now && inner.write_lease(&live.id, &stream, true).await.is_ok() {
        lease_written = true;
    }
    let every = (inner.cfg.stream_lease / 3).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    let mut detached_at = client.is_none().then(Instant::now);
    let mut reconnects = 0u32;
    let mut retry_hint = Duration::from_millis(100);
    loop {
        let next = tokio::select! {
            biased;
            _ = inner.shutdown.cancelled() => break,
            ev = events.next() => ev,
            _ = tick.tick() => {
                if detached_at.is_some_and(|t| t.elapsed() > inner.cfg.orphan_stream_timeout) {
                    tracing::debug!(session = %live.id, stream, "no client for too long; stream dropped");
                    break;
                }
                match inner.write_lease(&live.id, &stream, true).await {
                    Ok(()) => lease_written = true,
                    Err(Error::NotFound { .. }) => break,
                    Err(e) => tracing::warn!(session = %live.id, stream, error = %e, "lease renewal failed"),
                }
                continue;
            }
        };
        match next {
            Some(Ok(ev)) => {
                if let Some(ms) = ev.retry {
                    retry_hint = Duration::from_millis(ms.min(10_000));
                }
                if ev.id.is_some() {
                    upstream_last.clone_from(&ev.id);
                }
                if ev.data.trim().is_empty() {
                    // The upstream's own priming event or a keep-alive: nothing to forward.
                    continue;
                }
                reconnects = 0;
                let data = Bytes::from(ev.data);
                let mut nf = NewFrame::new(Direction::ServerToClient, data.clone())
                    .with_stream(stream.clone())
                    .with_content_type("application/json");
                if let Some(id) = &ev.id {
                    nf = nf.with_header(UPSTREAM_EVENT_ID, id.clone());
                }
                // One wave of store calls before the event goes out: its frame (the seq is
                // its event id), the pending entries of requests the upstream sends the client
                // (sampling, elicitation, roots: the client may answer on any instance), and
                // the settlement of the requests it answers.
                let (answered, asked) = match serde_json::from_slice::<Value>(&data) {
                    Ok(v) => (response_ids(&v), server_requests(&v)),
                    Err(_) => (Vec::new(), Vec::new()),
                };
                let adds = join_all(asked.iter().map(|(id, method)| {
                    let p = PendingRequest::new(record::s2c_id(id), method.clone())
                        .with_stream(stream.clone());
                    inner.store.add_pending(&live.id, p)
                }));
                let takes = join_all(
                    answered
                        .iter()
                        .map(|id| inner.store.take_pending(&live.id, id)),
                );
                let (appended, added, _) =
                    tokio::join!(inner.store.append_frame(&live.id, nf), adds, takes);
                for r in added {
                    if let Err(e) = r
                        && !matches!(e, Error::AlreadyExists { .. } | Error::NotFound { .. })
                    {
                        tracing::debug!(session = %live.id, stream, error = %e, "could not record a server request as pending");
                    }
                }
                let seq = match appended {
                    Ok(seq) => {
                        inner.metrics.frames_recorded.fetch_add(1, Relaxed);
                        Some(seq)
                    }
                    Err(Error::NotFound { .. }) => {
                        inner.evict(&live.id);
                        break;
                    }
                    Err(e) => {
                        inner.metrics.frame_errors.fetch_add(1, Relaxed);
                        tracing::warn!(session = %live.id, stream, error = %e, "could not record a frame; forwarded without an event id");
                        None
                    }
                };
                if let Some(seq) = seq {
                    let _ = btx.send(seq);
                    if let Some(w) = &inner.wakeups {
                        w.publish(&live.id, &stream);
                    }
                }
                if let Kind::Post { awaiting } = &mut kind {
                    for id in &answered {
                        awaiting.remove(id);
                    }
                }
                if let Some(tx) = &client {
                    let eid = seq.map(|s| inner.codec.encode(live.id.as_str(), &stream, s));
                    if tx
                        .send(sse::encode(eid.as_deref(), None, None, &data))
                        .await
                        .is_err()
                    {
                        tracing::debug!(session = %live.id, stream, "client went away; still recording");
                        client = None;
                        detached_at = Some(Instant::now());
                    } else {
                        inner.metrics.sse_events.fetch_add(1, Relaxed);
                    }
                }
                if kind.done() {
                    break;
                }
            }
            end => {
                if let Some(Err(e)) = end {
                    tracing::debug!(session = %live.id, stream, error = %e, "upstream stream failed");
                }
                // A POST stream closed before its answers (e.g. 2025-11-25 SSE polling):
                // resume it upstream with the upstream's own last event id.
                let (Some(http), Some(last)) = (&inner.http, &upstream_last) else {
                    break;
                };
                if kind.done() || reconnects >= 5 {
                    break;
                }
                if matches!(kind, Kind::Get) && reconnects >= 1 {
                    break;
                }
                reconnects += 1;
                tokio::select! {
                    _ = inner.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(retry_hint) => {}
                }
                match http
                    .get(
                        &client_headers,
                        live.upstream_session_id.as_deref(),
                        Some(last),
                    )
                    .await
                {
                    Ok(Reply::Stream { events: e, .. }) => events = e,
                    Ok(other) => {
                        tracing::debug!(session = %live.id, stream, status = %other.status(), "upstream refused to resume");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(session = %live.id, stream, error = %e, "upstream resume failed");
                    }
                }
            }
        }
    }
    lease_written
}

/// Replays `stream` after `after` from the store to `tx`, then follows it live: woken by a
/// local pump, or polling the store when another instance holds the upstream stream. Takes the
/// stream over when its holder's lease ran out.
pub(crate) async fn follow(
    inner: Arc<ProxyState>,
    live: Arc<Live>,
    stream: String,
    after: u64,
    tx: mpsc::Sender<Bytes>,
    client_headers: HeaderMap,
) {
    let is_post = stream.starts_with('p');
    let mut sub = inner.subscribe_pump(&live.id, &stream);
    // Wake-ups from the instance holding the stream, when a bus is on; the store is polled
    // every `poll_interval` without them (or while the bus is down), every lease check with
    // them (a fallback).
    let mut wake = inner.wakeups.as_ref().map(|w| w.follow(&live.id, &stream));
    let mut awaiting: Option<HashSet<RequestId>> = if is_post {
        match inner.store.list_pending(&live.id).await {
            Ok(p) => Some(
                p.into_iter()
                    .filter(|r| {
                        r.stream_id.as_deref() == Some(stream.as_str())
                            && !record::is_s2c(&r.request_id)
                    })
                    .map(|r| r.request_id)
                    .collect(),
            ),
            Err(Error::NotFound { .. }) => return,
            Err(e) => {
                tracing::warn!(session = %live.id, stream, error = %e, "could not read pending requests");
                Some(HashSet::new())
            }
        }
    } else {
        None
    };
    let mut last = after;
    let mut last_seen_ms = Timestamp::now().as_millis();
    let mut last_upstream: Option<String> = None;
    let lease_ms = u64::try_from(inner.cfg.stream_lease.as_millis()).unwrap_or(u64::MAX);
    let check_every = (inner.cfg.stream_lease / 3).max(Duration::from_millis(10));
    let mut last_check = Instant::now();
    loop {
        // Drain what the store has.
        loop {
            let q = FrameQuery::after(last, 100).in_stream(stream.clone());
            let page = match inner.store.frames(&live.id, &q).await {
                Ok(p) => p,
                Err(Error::NotFound { .. }) => {
                    inner.evict(&live.id);
                    return;
                }
                Err(e) => {
                    tracing::warn!(session = %live.id, stream, error = %e, "replay read failed");
                    break;
                }
            };
            if page.trimmed {
                tracing::warn!(session = %live.id, stream, after = last, "frames were trimmed; the replay has a gap");
            }
            for f in &page.frames {
                last = f.seq;
                if f.direction != Direction::ServerToClient || f.content.is_empty() {
                    continue;
                }
                last_seen_ms = last_seen_ms.max(f.timestamp.as_millis());
                if let Some((_, v)) = f.headers.iter().find(|(k, _)| k == UPSTREAM_EVENT_ID) {
                    last_upstream = Some(v.clone());
                }
                let eid = inner.codec.encode(live.id.as_str(), &stream, f.seq);
                if tx
                    .send(sse::encode(Some(&eid), None, None, &f.content))
                    .await
                    .is_err()
                {
                    return;
                }
                inner.metrics.sse_replayed.fetch_add(1, Relaxed);
                if let Some(aw) = &mut awaiting
                    && let Ok(v) = serde_json::from_slice::<Value>(&f.content)
                {
                    for id in response_ids(&v) {
                        aw.remove(&id);
                    }
                }
            }
            if awaiting.as_ref().is_some_and(HashSet::is_empty) {
                return;
            }
            if !page.has_more {
                break;
            }
        }
        if sub.is_none() {
            sub = inner.subscribe_pump(&live.id, &stream);
        }
        // Wait for news.
        let nap = if wake.is_some() && inner.wakeups.as_ref().is_some_and(|w| w.is_up()) {
            check_every.max(inner.cfg.poll_interval)
        } else {
            inner.cfg.poll_interval
        };
        let pump_ended = tokio::select! {
            biased;
            _ = inner.shutdown.cancelled() => return,
            _ = tx.closed() => return,
            r = async {
                match &mut sub {
                    Some(rx) => rx.recv().await.map(|_| false).or_else(|e| match e {
                        tokio::sync::broadcast::error::RecvError::Lagged(_) => Ok(false),
                        tokio::sync::broadcast::error::RecvError::Closed => Err(()),
                    }),
                    None => std::future::pending().await,
                }
            } => r.is_err(),
            _ = async {
                match &mut wake {
                    Some(rx) => {
                        let _ = rx.recv().await;
                    }
                    None => std::future::pending().await,
                }
            } => false,
            _ = tokio::time::sleep(nap) => false,
        };
        if pump_ended {
            // The local pump finished: read what it wrote last, then judge by the lease.
            sub = None;
            continue;
        }
        if sub.is_some() || last_check.elapsed() < check_every {
            continue;
        }
        last_check = Instant::now();
        let session = match inner.store.get(&live.id).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                inner.evict(&live.id);
                return;
            }
            Err(_) => continue,
        };
        let now = Timestamp::now();
        if lease_holder_alive(&session, &stream, now).is_some()
            || now.as_millis().saturating_sub(last_seen_ms) < lease_ms
        {
            continue;
        }
        // The holder is gone. Take the stream over if the upstream lets us continue it, from
        // the last upstream event recorded (possibly before this follower's `after`).
        if last_upstream.is_none() && is_post {
            last_upstream = last_upstream_id(&inner, &live, &stream).await;
        }
        if !take_over(
            &inner,
            &live,
            &stream,
            &awaiting,
            last_upstream.clone(),
            &client_headers,
        )
        .await
        {
            tracing::debug!(session = %live.id, stream, "stream holder gone; ending the stream");
            return;
        }
        sub = inner.subscribe_pump(&live.id, &stream);
        last_seen_ms = Timestamp::now().as_millis();
    }
}

/// The upstream's own id of the last event recorded on `stream`, read from the store.
async fn last_upstream_id(inner: &ProxyState, live: &Live, stream: &str) -> Option<String> {
    let mut after = 0;
    let mut last = None;
    loop {
        let q = FrameQuery::after(after, 100).in_stream(stream.to_owned());
        let page = inner.store.frames(&live.id, &q).await.ok()?;
        for f in &page.frames {
            after = f.seq;
            if f.direction == Direction::ServerToClient
                && let Some((_, v)) = f.headers.iter().find(|(k, _)| k == UPSTREAM_EVENT_ID)
            {
                last = Some(v.clone());
            }
        }
        if !page.has_more || page.frames.is_empty() {
            return last;
        }
    }
}

async fn take_over(
    inner: &Arc<ProxyState>,
    live: &Arc<Live>,
    stream: &str,
    awaiting: &Option<HashSet<RequestId>>,
    last_upstream: Option<String>,
    client_headers: &HeaderMap,
) -> bool {
    let kind = match awaiting {
        Some(aw) => Kind::Post {
            awaiting: aw.clone(),
        },
        None => Kind::Get,
    };
    // A POST stream can only continue where the upstream can resume it.
    if matches!(kind, Kind::Post { .. }) && (last_upstream.is_none() || inner.http.is_none()) {
        return false;
    }
    match inner.claim_lease(&live.id, stream).await {
        Ok(true) => {}
        Ok(false) => return true, // someone else took it; keep following
        Err(_) => return false,
    }
    let reply = match (&inner.http, &live.stdio) {
        (Some(http), _) => {
            http.get(
                client_headers,
                live.upstream_session_id.as_deref(),
                last_upstream.as_deref(),
            )
            .await
        }
        (None, Some(p)) => p.get(),
        (None, None) => return false,
    };
    match reply {
        Ok(Reply::Stream { events, .. }) => {
            inner.metrics.stream_takeovers.fetch_add(1, Relaxed);
            tracing::info!(session = %live.id, stream, "took over a stream whose holder is gone");
            spawn_pump(
                inner,
                live,
                PumpSpec {
                    stream: stream.to_owned(),
                    kind,
                    events,
                    client: None,
                    client_headers: client_headers.clone(),
                    upstream_last: last_upstream,
                    lease_now: true,
                },
            );
            true
        }
        _ => {
            let _ = inner.write_lease(&live.id, stream, false).await;
            false
        }
    }
}

/// The requests (id, method) in a message or batch the upstream sends the client.
fn server_requests(v: &Value) -> Vec<(RequestId, String)> {
    let one = |m: &Value| match classify(m) {
        MessageKind::Request { id, method } => Some((id, method)),
        _ => None,
    };
    match v {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        m => one(m).into_iter().collect(),
    }
}

/// A header map with the session id set.
pub(crate) fn session_header(live: &Live) -> HeaderMap {
    let mut hm = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(live.id.as_str()) {
        hm.insert(h::SESSION_ID, v);
    }
    hm
}
