//! The follower: replays a stream from the store and continues live.

use std::{collections::HashSet, sync::Arc, time::Duration};

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::Value;
use shoal_core::{Direction, Error, FrameQuery, RequestId, Timestamp};
use tokio::{
    sync::{broadcast, mpsc},
    time::Instant,
};

use super::{Kind, PumpSpec, STANDALONE, UPSTREAM_EVENT_ID, pump::server_requests, spawn_pump};
use crate::{
    protocol::response_ids,
    record, sse,
    state::{Live, ProxyState},
    upstream::Reply,
};

/// Frames read per store call.
const PAGE: usize = 100;
/// The longest pause between retries of a failing store.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where a follower starts.
#[derive(Debug, Clone)]
pub(crate) struct Follow {
    /// The stream.
    pub(crate) stream: String,
    /// Replays frames after this seq (0: from the stream's start; on the standalone stream,
    /// leaving out the server's requests that were answered already).
    pub(crate) after: u64,
    /// The epoch of the frame `after` names (0: not known): a resume starts earlier when the
    /// store gave seqs up to `after` to frames of a later epoch (see `shoal_core::epoch`).
    pub(crate) epoch: u64,
}

/// Why a follower ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The stream is complete, the client left, the session ended or the proxy stops.
    Done,
    /// The store failed past the deadline, or the position cannot be resolved.
    Failed,
}

/// Retries of a failing store: backs off from the poll interval, gives up at the deadline.
struct Retry {
    since: Option<Instant>,
    delay: Duration,
    base: Duration,
    deadline: Duration,
}

impl Retry {
    fn new(base: Duration, deadline: Duration) -> Self {
        let base = base.max(Duration::from_millis(1));
        Retry {
            since: None,
            delay: base,
            base,
            deadline,
        }
    }

    fn ok(&mut self) {
        self.since = None;
        self.delay = self.base;
    }

    /// The pause before the next try, or `None` when the store failed for too long.
    fn failed(&mut self) -> Option<Duration> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.deadline {
            return None;
        }
        let d = self.delay;
        self.delay = (d * 2).min(MAX_BACKOFF.max(self.base));
        Some(d)
    }
}

/// Errors that retrying cannot fix: the position or the data is bad.
fn is_permanent(e: &Error) -> bool {
    matches!(e, Error::InvalidInput { .. } | Error::Corrupt { .. })
}

/// Replays a stream from the store to `tx`, then follows it live: woken by a local pump, by
/// a wake-up from another instance, or polling the store. Takes the stream over when its
/// holder's lease ran out. Ends the client's stream (drops `tx`) when the stream is complete
/// or the store cannot serve it (the client then resumes or starts over).
pub(crate) async fn follow(
    inner: Arc<ProxyState>,
    live: Arc<Live>,
    from: Follow,
    tx: mpsc::Sender<Bytes>,
    client_headers: HeaderMap,
) {
    let stream = from.stream.clone();
    let mut f = Follower::new(inner, live, from, tx, client_headers);
    if f.run().await == End::Failed {
        f.inner.metrics.streams_ended_on_error.inc();
        tracing::warn!(session = %f.live.id, stream, "the store could not serve this stream; ended it (the client resumes or starts over)");
    }
}

struct Follower {
    inner: Arc<ProxyState>,
    live: Arc<Live>,
    stream: String,
    tx: mpsc::Sender<Bytes>,
    client_headers: HeaderMap,
    /// Every frame up to this seq was looked at.
    cursor: u64,
    /// The epoch of the `Last-Event-ID` frame, checked against the first page read (0: none
    /// to check).
    resume_epoch: u64,
    /// The requests of a POST stream still unanswered (`None` for a GET stream).
    awaiting: Option<HashSet<RequestId>>,
    /// Server requests on the standalone stream up to this seq that are no longer pending
    /// were answered: a fresh GET leaves them out.
    answered_before: Option<(u64, HashSet<RequestId>)>,
    last_seen_ms: u64,
    last_upstream: Option<String>,
    retry: Retry,
}

impl Follower {
    fn new(
        inner: Arc<ProxyState>,
        live: Arc<Live>,
        from: Follow,
        tx: mpsc::Sender<Bytes>,
        client_headers: HeaderMap,
    ) -> Self {
        let retry = Retry::new(inner.cfg.poll_interval, inner.cfg.stream_error_deadline);
        Follower {
            inner,
            live,
            stream: from.stream,
            tx,
            client_headers,
            cursor: from.after,
            resume_epoch: from.epoch,
            awaiting: None,
            answered_before: None,
            last_seen_ms: Timestamp::now().as_millis(),
            last_upstream: None,
            retry,
        }
    }

    /// Waits `d`, unless the client leaves or the proxy stops first (`false` then).
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.inner.shutdown.cancelled() => false,
            _ = self.tx.closed() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// Handles a store error: `Some(end)` stops the follower, `None` retries after a pause.
    async fn on_error(&mut self, what: &str, e: &Error) -> Option<End> {
        if let Error::NotFound { .. } = e {
            self.inner.evict(&self.live.id);
            return Some(End::Done);
        }
        if is_permanent(e) {
            tracing::warn!(session = %self.live.id, stream = self.stream, error = %e, "{what}: cannot continue");
            return Some(End::Failed);
        }
        tracing::warn!(session = %self.live.id, stream = self.stream, error = %e, "{what} failed; retrying");
        match self.retry.failed() {
            None => Some(End::Failed),
            Some(d) if self.pause(d).await => None,
            Some(_) => Some(End::Done),
        }
    }

    /// Reads what a new follower needs to know before replaying.
    async fn prepare(&mut self, fresh: bool) -> Result<(), End> {
        let is_post = self.stream.starts_with('p');
        if !is_post && !fresh {
            return Ok(());
        }
        loop {
            // For a fresh GET: the newest seq first, then the pending set, so every server
            // request at or before that seq has its pending entry (the pump adds it before
            // the frame) unless it was answered.
            let newest = if fresh {
                match self.inner.store.get(&self.live.id).await {
                    Ok(Some(s)) => Some(s.last_seq),
                    Ok(None) => return Err(End::Done),
                    Err(e) => match self.on_error("reading the session", &e).await {
                        Some(end) => return Err(end),
                        None => continue,
                    },
                }
            } else {
                None
            };
            let pending = match self.inner.store.list_pending(&self.live.id).await {
                Ok(p) => p,
                Err(e) => match self.on_error("reading pending requests", &e).await {
                    Some(end) => return Err(end),
                    None => continue,
                },
            };
            self.retry.ok();
            let (s2c, c2s): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .filter(|r| r.stream_id.as_deref() == Some(self.stream.as_str()))
                .map(|r| r.request_id)
                .partition(record::is_s2c);
            if is_post {
                self.awaiting = Some(c2s.into_iter().collect());
            }
            if let Some(newest) = newest {
                self.answered_before = Some((newest, s2c.into_iter().collect()));
            }
            return Ok(());
        }
    }

    /// Whether a replayed frame is a server request that was answered already.
    fn answered(&self, seq: u64, v: &Value) -> bool {
        let Some((upto, pending)) = &self.answered_before else {
            return false;
        };
        if seq > *upto {
            return false;
        }
        let asked = server_requests(v);
        !asked.is_empty()
            && asked
                .iter()
                .all(|(id, _)| !pending.contains(&record::s2c_id(id)))
    }

    /// Sends every recorded frame after the cursor. `Ok(true)`: the stream is complete.
    async fn drain(&mut self) -> Result<bool, End> {
        loop {
            let q = FrameQuery::after(self.cursor, PAGE).in_stream(self.stream.clone());
            let page = match self.inner.store.frames(&self.live.id, &q).await {
                Ok(p) => p,
                Err(e) => match self.on_error("replay read", &e).await {
                    Some(end) => return Err(end),
                    None => continue,
                },
            };
            self.retry.ok();
            if self.resume_epoch != 0 {
                let epoch = std::mem::take(&mut self.resume_epoch);
                let from = page.epochs.resume_after(epoch, self.cursor);
                if from < self.cursor {
                    self.inner.metrics.resumes_rewound.inc();
                    tracing::warn!(session = %self.live.id, stream = self.stream, after = self.cursor, epoch, from, epochs = %page.epochs, "Last-Event-ID names a frame the store rolled back (failover or restart); replaying after the last frame the client can have");
                    self.cursor = from;
                    continue;
                }
            }
            if page.trimmed {
                tracing::warn!(session = %self.live.id, stream = self.stream, after = self.cursor, "frames were trimmed; the replay has a gap");
            }
            for f in &page.frames {
                self.cursor = f.seq;
                if f.direction != Direction::ServerToClient || f.content.is_empty() {
                    continue;
                }
                self.last_seen_ms = self.last_seen_ms.max(f.timestamp.as_millis());
                if let Some((_, v)) = f.headers.iter().find(|(k, _)| k == UPSTREAM_EVENT_ID) {
                    self.last_upstream = Some(v.clone());
                }
                let parsed = serde_json::from_slice::<Value>(&f.content).ok();
                if parsed.as_ref().is_some_and(|v| self.answered(f.seq, v)) {
                    continue;
                }
                let eid = self.inner.codec.encode(
                    self.live.id.as_str(),
                    &self.stream,
                    f.seq,
                    page.epochs.of(f.seq),
                );
                if self
                    .tx
                    .send(sse::encode(Some(&eid), None, None, &f.content))
                    .await
                    .is_err()
                {
                    return Err(End::Done);
                }
                self.inner.metrics.sse_replayed.inc();
                if let (Some(aw), Some(v)) = (&mut self.awaiting, &parsed) {
                    for id in response_ids(v) {
                        aw.remove(&id);
                    }
                }
            }
            if !page.has_more {
                // Everything recorded was sent: a POST stream whose requests are all answered
                // is complete.
                if self.awaiting.as_ref().is_some_and(HashSet::is_empty) {
                    return Ok(true);
                }
                // Every frame up to the session's newest seq was looked at: the next read
                // starts after it, whatever other streams wrote in between.
                self.cursor = self.cursor.max(page.last_seq);
                return Ok(false);
            }
        }
    }

    async fn run(&mut self) -> End {
        let fresh = self.stream == STANDALONE && self.cursor == 0;
        if let Err(end) = self.prepare(fresh).await {
            return end;
        }
        let inner = self.inner.clone();
        let mut sub = inner.subscribe_pump(&self.live.id, &self.stream);
        // Wake-ups from the instance holding the stream, when a bus is on; the store is polled
        // every `poll_interval` without them (or while the bus is down), every lease check with
        // them (a fallback).
        let mut wake = inner
            .wakeups
            .as_ref()
            .map(|w| w.follow(&self.live.id, &self.stream));
        let lease_ms = u64::try_from(inner.cfg.stream_lease.as_millis()).unwrap_or(u64::MAX);
        let check_every = (inner.cfg.stream_lease / 3).max(Duration::from_millis(10));
        let mut last_check = Instant::now();
        loop {
            match self.drain().await {
                Ok(true) => return End::Done,
                Ok(false) => {}
                Err(end) => return end,
            }
            if sub.is_none() {
                sub = inner.subscribe_pump(&self.live.id, &self.stream);
            }
            let nap = if wake.is_some() && inner.wakeups.as_ref().is_some_and(|w| w.is_up()) {
                check_every.max(inner.cfg.poll_interval)
            } else {
                inner.cfg.poll_interval
            };
            let pump_ended = tokio::select! {
                biased;
                _ = inner.shutdown.cancelled() => return End::Done,
                _ = self.tx.closed() => return End::Done,
                r = next_local(&mut sub) => r,
                _ = next_wake(&mut wake) => false,
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
            let holder = match inner.lease_holder(&self.live.id, &self.stream).await {
                Ok(holder) => holder,
                Err(shoal_core::Error::NotFound { .. }) => {
                    inner.evict(&self.live.id);
                    return End::Done;
                }
                Err(e) => match self.on_error("lease check", &e).await {
                    Some(end) => return end,
                    None => continue,
                },
            };
            let now = Timestamp::now();
            if holder.is_some() || now.as_millis().saturating_sub(self.last_seen_ms) < lease_ms {
                continue;
            }
            // The holder is gone. Take the stream over if the upstream lets us continue it,
            // from the last upstream event recorded (possibly before this follower's start).
            if self.last_upstream.is_none() && self.awaiting.is_some() {
                self.last_upstream = last_upstream_id(&inner, &self.live, &self.stream).await;
            }
            if !self.take_over().await {
                tracing::debug!(session = %self.live.id, stream = self.stream, "stream holder gone; ending the stream");
                return End::Done;
            }
            sub = inner.subscribe_pump(&self.live.id, &self.stream);
            self.last_seen_ms = Timestamp::now().as_millis();
        }
    }

    /// Opens the upstream stream again on this instance and records it. `false` when the
    /// stream cannot continue (the follower then ends its client's stream).
    async fn take_over(&self) -> bool {
        let (inner, live, stream) = (&self.inner, &self.live, self.stream.as_str());
        let kind = match &self.awaiting {
            Some(aw) => Kind::Post {
                awaiting: aw.clone(),
            },
            None => Kind::Get,
        };
        // A POST stream can only continue where the upstream can resume it.
        if matches!(kind, Kind::Post { .. })
            && (self.last_upstream.is_none() || inner.http.is_none())
        {
            return false;
        }
        let Some(wake) = inner.try_register_pump(&live.id, stream) else {
            return true; // this instance reads it already
        };
        match inner.claim_lease(&live.id, stream).await {
            Ok(true) => {}
            Ok(false) => {
                inner.unregister_pump(&live.id, stream);
                return true; // someone else took it; keep following
            }
            Err(_) => {
                inner.unregister_pump(&live.id, stream);
                return false;
            }
        }
        let reply = match (&inner.http, &live.stdio) {
            (Some(http), _) => {
                http.get(
                    &self.client_headers,
                    live.upstream_session_id.as_deref(),
                    self.last_upstream.as_deref(),
                )
                .await
            }
            (None, Some(p)) => p.get(),
            (None, None) => Err(crate::upstream::UpstreamError("no upstream".into())),
        };
        match reply {
            Ok(Reply::Stream { events, .. }) => {
                inner.metrics.stream_takeovers.inc();
                tracing::info!(session = %live.id, stream, "took over a stream whose holder is gone");
                spawn_pump(
                    inner,
                    live,
                    PumpSpec {
                        stream: stream.to_owned(),
                        kind,
                        events,
                        client: None,
                        client_headers: self.client_headers.clone(),
                        upstream_last: self.last_upstream.clone(),
                        lease_held: true,
                        wake,
                        bridged_request: None,
                        listen_resources: None,
                    },
                );
                true
            }
            _ => {
                inner.unregister_pump(&live.id, stream);
                let _ = inner.release_lease(&live.id, stream).await;
                false
            }
        }
    }
}

/// The next seq from this instance's pump of the stream; `true` when that pump finished.
async fn next_local(sub: &mut Option<broadcast::Receiver<u64>>) -> bool {
    match sub {
        Some(rx) => matches!(rx.recv().await, Err(broadcast::error::RecvError::Closed)),
        None => std::future::pending().await,
    }
}

/// The next wake-up from another instance.
async fn next_wake(wake: &mut Option<broadcast::Receiver<()>>) {
    match wake {
        Some(rx) => {
            let _ = rx.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// The upstream's own id of the last event recorded on `stream`, read from the store.
async fn last_upstream_id(inner: &ProxyState, live: &Live, stream: &str) -> Option<String> {
    let mut after = 0;
    let mut last = None;
    loop {
        let q = FrameQuery::after(after, PAGE).in_stream(stream.to_owned());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_then_give_up_at_the_deadline() {
        let mut r = Retry::new(Duration::from_millis(50), Duration::from_secs(1));
        assert_eq!(r.failed(), Some(Duration::from_millis(50)));
        assert_eq!(r.failed(), Some(Duration::from_millis(100)));
        r.ok();
        assert_eq!(r.failed(), Some(Duration::from_millis(50)));
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(r.failed(), None);
        assert!(is_permanent(&Error::invalid("x")));
        assert!(!is_permanent(&Error::Timeout {
            op: "x",
            after: Duration::from_secs(1)
        }));
    }
}
