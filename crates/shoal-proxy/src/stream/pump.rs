//! The pump: reads one upstream stream and records it.

use std::{
    collections::HashSet,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use axum::http::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::future::join_all;
use serde_json::Value;
use shoal_core::{Direction, Error, NewFrame, PendingRequest, RequestId};
use tokio::{
    sync::{broadcast, mpsc},
    time::{Instant, MissedTickBehavior},
};

use super::{STANDALONE, UPSTREAM_EVENT_ID};
use crate::{
    bridge::{input_requests, reissue},
    protocol::{MessageKind, classify, request_id, response_ids},
    record, sse,
    state::{Live, ProxyState},
    upstream::{EventStream, Reply},
};

/// What ends a stream.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A POST stream ends when every request it carried is answered.
    Post { awaiting: HashSet<RequestId> },
    /// A GET stream lasts until the upstream closes it.
    Get,
}

impl Kind {
    fn done(&self) -> bool {
        matches!(self, Kind::Post { awaiting } if awaiting.is_empty())
    }
}

/// Everything a pump needs.
pub(crate) struct PumpSpec {
    pub(crate) stream: String,
    pub(crate) kind: Kind,
    pub(crate) events: EventStream,
    /// The client the events go to live, if one is attached.
    pub(crate) client: Option<mpsc::Sender<Bytes>>,
    pub(crate) client_headers: HeaderMap,
    /// The upstream's own id of the last event recorded, for resuming the upstream.
    pub(crate) upstream_last: Option<String>,
    /// Whether the caller already holds the stream's lease. Otherwise it is taken at the
    /// first renewal (a short POST stream then never writes one).
    pub(crate) lease_held: bool,
    /// Wakes this instance's followers of the stream (from [`ProxyState::register_pump`]).
    pub(crate) wake: broadcast::Sender<u64>,
    /// For a session bridged to a 2026 upstream: the client's request the stream answers,
    /// retried upstream with the client's answers when the upstream asks for input.
    pub(crate) bridged_request: Option<Value>,
    /// For the standalone stream of a session bridged to a 2026 upstream: the resources its
    /// listen stream was opened for (opened again when the session's list changes).
    pub(crate) listen_resources: Option<Vec<String>>,
}

/// Starts reading an upstream stream: every event is recorded (seq = event id), answered
/// requests leave the pending set, and the event goes to the attached client while it is
/// there. The pump keeps recording after the client went away (bounded by
/// `orphan_stream_timeout` and `max_orphan_streams`), so a client can resume on any instance;
/// the session's standalone stream is recorded for as long as the session lives.
pub(crate) fn spawn_pump(inner: &Arc<ProxyState>, live: &Arc<Live>, spec: PumpSpec) {
    inner.metrics.open_pumps.up();
    let standalone = spec.stream == STANDALONE;
    if standalone {
        inner.metrics.standalone_streams.up();
    }
    let inner = inner.clone();
    let live = live.clone();
    tokio::spawn(async move {
        let stream = spec.stream.clone();
        let mut pump = Pump::new(&inner, &live, spec);
        pump.run().await;
        let lease_held = pump.renewed_at.is_some();
        let orphan = pump.orphan;
        drop(pump);
        inner.unregister_pump(&live.id, &stream);
        if lease_held && let Err(e) = inner.release_lease(&live.id, &stream).await {
            tracing::debug!(session = %live.id, stream, error = %e, "could not release the lease");
        }
        if orphan {
            inner.metrics.orphan_streams.down();
        }
        if standalone {
            inner.metrics.standalone_streams.down();
            // The next request of the session (on this instance) makes sure some instance
            // reads the standalone stream again, e.g. after this pump lost its lease.
            live.standalone_checked.store(false, Relaxed);
        }
        inner.metrics.open_pumps.down();
        tracing::debug!(session = %live.id, stream, "upstream stream finished");
    });
}

/// Whether the pump goes on after a step.
enum Step {
    Continue,
    Stop,
}

struct Pump<'a> {
    inner: &'a Arc<ProxyState>,
    live: &'a Arc<Live>,
    stream: String,
    kind: Kind,
    events: EventStream,
    client: Option<mpsc::Sender<Bytes>>,
    client_headers: HeaderMap,
    upstream_last: Option<String>,
    wake: broadcast::Sender<u64>,
    standalone: bool,
    /// When this instance last took or renewed the lease (`None`: it holds none).
    renewed_at: Option<Instant>,
    /// Counted in `orphan_streams` (no client attached).
    orphan: bool,
    detached_at: Option<Instant>,
    last_event: Instant,
    retry_hint: Duration,
    reconnects: u32,
    bridged_request: Option<Value>,
    /// Input rounds the bridged request took so far.
    input_rounds: u32,
    /// Times the bridged request was re-issued, and the id of the latest re-issue.
    reissues: u32,
    reissued_id: Option<RequestId>,
    listen_resources: Option<Vec<String>>,
}

impl<'a> Pump<'a> {
    fn new(inner: &'a Arc<ProxyState>, live: &'a Arc<Live>, spec: PumpSpec) -> Self {
        let standalone = spec.stream == STANDALONE;
        let now = Instant::now();
        let mut pump = Pump {
            inner,
            live,
            standalone,
            renewed_at: spec.lease_held.then_some(now),
            orphan: false,
            detached_at: None,
            last_event: now,
            retry_hint: Duration::from_millis(100),
            reconnects: 0,
            stream: spec.stream,
            kind: spec.kind,
            events: spec.events,
            client: spec.client,
            client_headers: spec.client_headers,
            upstream_last: spec.upstream_last,
            wake: spec.wake,
            bridged_request: spec.bridged_request,
            input_rounds: 0,
            reissues: 0,
            reissued_id: None,
            listen_resources: spec.listen_resources,
        };
        if pump.client.is_none() {
            pump.detach();
        }
        pump
    }

    async fn run(&mut self) {
        let lease = self.inner.cfg.stream_lease;
        let every = (lease / 3).max(Duration::from_millis(10));
        let now = Instant::now();
        let mut tick = tokio::time::interval_at(now.checked_add(every).unwrap_or(now), every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                biased;
                _ = self.inner.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    match self.on_tick().await {
                        Step::Continue => continue,
                        Step::Stop => return,
                    }
                }
                ev = self.events.next() => ev,
            };
            let step = match next {
                Some(Ok(ev)) => self.on_event(ev).await,
                end => {
                    if let Some(Err(e)) = end {
                        tracing::debug!(session = %self.live.id, stream = self.stream, error = %e, "upstream stream failed");
                    }
                    self.on_upstream_end().await
                }
            };
            if let Step::Stop = step {
                return;
            }
        }
    }

    /// Renews the lease and enforces the orphan and idle limits.
    async fn on_tick(&mut self) -> Step {
        let cfg = &self.inner.cfg;
        if !self.standalone
            && self
                .detached_at
                .is_some_and(|t| t.elapsed() > cfg.orphan_stream_timeout)
        {
            tracing::debug!(session = %self.live.id, stream = self.stream, "no client for too long; stream dropped");
            return Step::Stop;
        }
        if matches!(self.kind, Kind::Post { .. })
            && self.last_event.elapsed() > cfg.upstream_idle_timeout
        {
            tracing::info!(session = %self.live.id, stream = self.stream, "upstream sent nothing for too long; stream ended");
            return Step::Stop;
        }
        let step = self.renew().await;
        if let (Step::Continue, Some(_)) = (&step, &self.listen_resources) {
            self.follow_subscriptions().await;
        }
        step
    }

    /// The standalone stream of a session bridged to a 2026 upstream: when the session's
    /// resource subscriptions changed (on any instance), listens again with the new list.
    async fn follow_subscriptions(&mut self) {
        let (Some(http), Some(meta), Some(current)) = (
            &self.inner.http,
            &self.live.modern_meta,
            &self.listen_resources,
        ) else {
            return;
        };
        let wanted = match self.inner.store.get(&self.live.id).await {
            Ok(Some(s)) => crate::bridge::modern_upstream::subscribed(&s),
            _ => return,
        };
        if wanted == *current {
            return;
        }
        match crate::bridge::modern_upstream::listen(
            http,
            &self.client_headers,
            meta,
            self.live.id.as_str(),
            &wanted,
        )
        .await
        {
            Ok(Reply::Stream { events, .. }) => {
                tracing::debug!(session = %self.live.id, resources = wanted.len(), "bridge: listening again for the session's resource subscriptions");
                self.events = events;
                self.listen_resources = Some(wanted);
            }
            Ok(other) => {
                tracing::info!(session = %self.live.id, status = %other.status(), "bridge: the upstream refused the new listen stream; the old one stays");
            }
            Err(e) => {
                tracing::info!(session = %self.live.id, error = %e, "bridge: could not listen again; the old stream stays");
            }
        }
    }

    /// Renews the lease (takes it the first time); stops when it ran out or another instance
    /// holds it, or the session is gone. The renewal's start time is kept: the lease lasts at
    /// least `stream_lease` from then, whatever the store's reply took.
    async fn renew(&mut self) -> Step {
        let started = Instant::now();
        let held = self.renewed_at.is_some();
        let r = if held {
            self.inner.renew_lease(&self.live.id, &self.stream).await
        } else {
            self.inner.claim_lease(&self.live.id, &self.stream).await
        };
        match r {
            Ok(true) => {
                self.renewed_at = Some(started);
                Step::Continue
            }
            Ok(false) => {
                self.inner.metrics.leases_lost.inc();
                tracing::info!(session = %self.live.id, stream = self.stream, "this instance no longer holds the stream (its lease ran out or another instance took it); stopping");
                // Not ours: nothing to release.
                self.renewed_at = None;
                Step::Stop
            }
            Err(Error::NotFound { .. }) => {
                self.inner.evict(&self.live.id);
                Step::Stop
            }
            Err(e) => {
                tracing::warn!(session = %self.live.id, stream = self.stream, error = %e, "lease renewal failed");
                Step::Continue
            }
        }
    }

    /// Counts this stream as recorded with no client attached; stops it when too many are.
    fn detach(&mut self) -> Step {
        self.client = None;
        self.detached_at = Some(Instant::now());
        if self.standalone || self.orphan {
            return Step::Continue;
        }
        self.orphan = true;
        let n = self.inner.metrics.orphan_streams.up();
        if usize::try_from(n).unwrap_or(0) > self.inner.cfg.max_orphan_streams {
            tracing::warn!(session = %self.live.id, stream = self.stream, orphans = n, "too many streams without a client; this one stops recording");
            return Step::Stop;
        }
        Step::Continue
    }

    async fn on_event(&mut self, ev: crate::sse::SseEvent) -> Step {
        self.last_event = Instant::now();
        if let Some(ms) = ev.retry {
            self.retry_hint = Duration::from_millis(ms.min(10_000));
        }
        if ev.id.is_some() {
            self.upstream_last.clone_from(&ev.id);
        }
        if ev.data.trim().is_empty() {
            // The upstream's own priming event or a keep-alive: nothing to forward.
            return Step::Continue;
        }
        self.reconnects = 0;
        // Nothing is recorded without the lease: a pump takes it before its first event (a
        // pump held up before its first renewal could otherwise take it back after another
        // instance took the stream over and released it, and record events twice), and one
        // that was held up (a slow store, a slow client) proves it still owns the stream.
        let lease = self.inner.cfg.stream_lease;
        if self.renewed_at.is_none_or(|t| t.elapsed() >= lease / 2)
            && let Step::Stop = self.renew().await
        {
            return Step::Stop;
        }
        let mut data = Bytes::from(ev.data);
        if let (Some(reissued), Some(original)) = (&self.reissued_id, &self.bridged_request)
            && let Some(oid) = original.get("id").and_then(request_id)
            && let Ok(v) = serde_json::from_slice::<Value>(&data)
            && let Some(back) = reissue::as_original(&v, reissued, &oid)
        {
            data = Bytes::from(back.to_string());
        }
        if let Some(step) = self.input_asked(&data).await {
            return step;
        }
        if self.deliver(&data, ev.id).await.is_none() {
            return Step::Stop;
        }
        self.settle(&data)
    }

    /// Takes the requests `data` answers off the awaited set; stops once none is left.
    fn settle(&mut self, data: &Bytes) -> Step {
        if let Kind::Post { awaiting } = &mut self.kind
            && let Ok(v) = serde_json::from_slice::<Value>(data)
        {
            for id in response_ids(&v) {
                awaiting.remove(&id);
            }
        }
        if self.kind.done() {
            Step::Stop
        } else {
            Step::Continue
        }
    }

    /// Records `data` and sends it to the attached client (detaching a client that is gone
    /// or too slow). `None`: the pump stops; else the frame's seq, when it was recorded.
    async fn deliver(&mut self, data: &Bytes, upstream_id: Option<String>) -> Option<Option<u64>> {
        let seq = self.record(data, upstream_id).await?;
        if let Some(tx) = &self.client {
            let eid = seq.map(|(s, epoch)| {
                self.inner
                    .codec
                    .encode(self.live.id.as_str(), &self.stream, s, epoch)
            });
            let chunk = sse::encode(eid.as_deref(), None, None, data);
            match tokio::time::timeout(self.inner.cfg.client_send_timeout, tx.send(chunk)).await {
                Ok(Ok(())) => {
                    self.inner.metrics.sse_events.inc();
                }
                Ok(Err(_)) => {
                    tracing::debug!(session = %self.live.id, stream = self.stream, "client went away; still recording");
                    if let Step::Stop = self.detach() {
                        return None;
                    }
                }
                Err(_) => {
                    self.inner.metrics.clients_detached.inc();
                    tracing::info!(session = %self.live.id, stream = self.stream, "client did not read in time; detached (it resumes with Last-Event-ID)");
                    if let Step::Stop = self.detach() {
                        return None;
                    }
                }
            }
        }
        Some(seq.map(|(s, _)| s))
    }

    /// For a request bridged to a 2026 upstream: when `data` is the upstream's
    /// `input_required` result, asks the client (see [`input_requests`]) and reads the retried
    /// request's stream next. `None`: `data` is an ordinary event.
    async fn input_asked(&mut self, data: &Bytes) -> Option<Step> {
        let original = self.bridged_request.as_ref()?;
        let meta = self.live.modern_meta_now()?;
        let original_id = original.get("id").and_then(request_id)?;
        let v = serde_json::from_slice::<Value>(data).ok()?;
        let ask = input_requests::ask_of(&v, &original_id)?;
        let original = original.clone();
        let round = self.input_rounds;
        self.input_rounds += 1;
        let refused = if ask.requests.is_empty() {
            Some("the upstream asked for a retry without input requests (not bridged)".to_owned())
        } else if ask
            .requests
            .iter()
            .any(|(_, r)| r.get("method").and_then(Value::as_str).is_none())
        {
            Some("the upstream sent an input request without a method".to_owned())
        } else if round >= input_requests::MAX_ROUNDS {
            Some(format!(
                "the upstream asked for input more than {} times",
                input_requests::MAX_ROUNDS
            ))
        } else {
            None
        };
        let mut asked = Vec::new();
        let mut first_seq = None;
        if refused.is_none() {
            for (key, input) in &ask.requests {
                let id = input_requests::asked_id(&self.stream, round, key);
                let method = input
                    .get("method")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let Some(msg) = input_requests::server_request(&id, input) else {
                    continue;
                };
                match self.deliver(&msg, None).await {
                    None => return Some(Step::Stop),
                    Some(seq) => {
                        first_seq = first_seq.or(seq);
                    }
                }
                asked.push((id, key.clone(), method));
            }
        }
        if let Some(why) = refused {
            let ev = input_requests::error_event(&original_id, -32603, &why);
            let data = Bytes::from(ev.data);
            if self.deliver(&data, None).await.is_none() {
                return Some(Step::Stop);
            }
            return Some(self.settle(&data));
        }
        tracing::debug!(session = %self.live.id, stream = self.stream, round, asked = asked.len(), "bridge: the upstream asked for input; asking the client");
        self.upstream_last = None;
        self.events = input_requests::answer_then_retry(
            self.inner,
            self.live,
            input_requests::Round {
                original,
                original_id,
                asked,
                state: ask.state,
                after_seq: first_seq.unwrap_or(0).saturating_sub(1),
                client_headers: self.client_headers.clone(),
                meta,
            },
        );
        Some(Step::Continue)
    }

    /// Records one event: the pending entries of requests the upstream sends the client
    /// (sampling, elicitation, roots: the client may answer on any instance) before its frame,
    /// so a frame that is visible has its pending entry; then the frame (its seq is the event
    /// id) together with the settlement of the requests it answers. `None`: the session is
    /// gone; `Some(None)`: forwarded without an event id (the store failed); else the frame's
    /// seq and epoch.
    async fn record(
        &mut self,
        data: &Bytes,
        upstream_id: Option<String>,
    ) -> Option<Option<(u64, u64)>> {
        let (inner, live, stream) = (self.inner, self.live, &self.stream);
        let (answered, asked) = match serde_json::from_slice::<Value>(data) {
            Ok(v) => (response_ids(&v), server_requests(&v)),
            Err(_) => (Vec::new(), Vec::new()),
        };
        if !asked.is_empty() {
            let added = join_all(asked.iter().map(|(id, method)| {
                let p = PendingRequest::new(record::s2c_id(id), method.clone())
                    .with_stream(stream.clone());
                crate::retention::add_pending(inner, &live.id, p)
            }))
            .await;
            for r in added {
                if let Err(e) = r
                    && !matches!(e, Error::AlreadyExists { .. } | Error::NotFound { .. })
                {
                    tracing::debug!(session = %live.id, stream, error = %e, "could not record a server request as pending");
                }
            }
        }
        let mut nf = NewFrame::new(Direction::ServerToClient, data.clone())
            .with_stream(stream.clone())
            .with_content_type("application/json");
        if let Some(id) = upstream_id {
            nf = nf.with_header(UPSTREAM_EVENT_ID, id);
        }
        let takes = join_all(
            answered
                .iter()
                .map(|id| inner.store.take_pending(&live.id, id)),
        );
        let append = async {
            crate::retention::append_frames(inner, &live.id, vec![nf])
                .await
                .and_then(|a| {
                    a.seqs
                        .first()
                        .map(|&seq| (seq, a.epoch))
                        .ok_or_else(|| Error::backend("append returned no seq"))
                })
        };
        let (appended, _) = tokio::join!(append, takes);
        match appended {
            Ok((seq, epoch)) => {
                inner.metrics.frames_recorded.inc();
                let _ = self.wake.send(seq);
                if let Some(w) = &inner.wakeups {
                    w.publish(&live.id, stream);
                }
                Some(Some((seq, epoch)))
            }
            Err(Error::NotFound { .. }) => {
                inner.evict(&live.id);
                None
            }
            Err(e) => {
                inner.metrics.frame_errors.inc();
                tracing::warn!(session = %live.id, stream, error = %e, "could not record a frame; forwarded without an event id");
                Some(None)
            }
        }
    }

    /// A 2026 upstream's response stream ended before it answered the bridged request:
    /// re-issued under a new id when that is safe, else the request ends with an error saying
    /// so (see [`reissue`]).
    async fn reissue(&mut self) -> Step {
        let meta = self.live.modern_meta_now();
        let (Some(http), Some(original), Some(meta)) =
            (&self.inner.http, &self.bridged_request, &meta)
        else {
            return Step::Stop;
        };
        let Some(oid) = original.get("id").and_then(request_id) else {
            return Step::Stop;
        };
        let method = original
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let mut why = "not annotated read-only or idempotent";
        if self.reissues >= reissue::MAX_REISSUES {
            why = "re-issued too often already";
        } else if reissue::may_reissue(http, &self.client_headers, meta, original).await {
            why = "re-issuing it failed";
            self.reissues += 1;
            let rid = reissue::reissue_id(&oid, self.reissues);
            let again = reissue::with_id(original, &rid);
            let (mut hm, body) =
                crate::bridge::modern_upstream::modern_request(&self.client_headers, &again, meta);
            crate::bridge::modern_upstream::mirror_params(
                self.inner,
                &self.client_headers,
                meta,
                &again,
                &mut hm,
            )
            .await;
            match http.post(&hm, None, body).await {
                Ok(reply) => {
                    if let Reply::Stream { events, .. } = input_requests::as_stream(reply) {
                        self.inner.metrics.bridge_reissues.inc();
                        tracing::info!(session = %self.live.id, stream = self.stream, method, attempt = self.reissues, "bridge: the upstream's response stream broke before it answered; request re-issued");
                        self.events = events;
                        self.reissued_id = Some(rid);
                        self.upstream_last = None;
                        return Step::Continue;
                    }
                }
                Err(e) => {
                    tracing::info!(session = %self.live.id, stream = self.stream, method, error = %e, "bridge: re-issuing a request failed");
                }
            }
        }
        self.inner.metrics.bridge_not_reissued.inc();
        tracing::warn!(session = %self.live.id, stream = self.stream, method, "bridge: the upstream's response stream broke before it answered; not re-issued, the client gets an error");
        let data = Bytes::from(reissue::not_reissued(&oid, original, why).to_string());
        if self.deliver(&data, None).await.is_none() {
            return Step::Stop;
        }
        self.settle(&data)
    }

    /// The upstream stream ended: a POST stream closed before its answers (e.g. 2025-11-25
    /// SSE polling) or the standalone stream is resumed upstream; anything else stops.
    async fn on_upstream_end(&mut self) -> Step {
        let Some(http) = &self.inner.http else {
            return Step::Stop;
        };
        if self.kind.done() || self.reconnects >= 5 {
            return Step::Stop;
        }
        if matches!(self.kind, Kind::Post { .. })
            && self.bridged_request.is_some()
            && self.live.modern_meta.is_some()
        {
            return self.reissue().await;
        }
        let resumable = self.upstream_last.is_some();
        match self.kind {
            Kind::Post { .. } if !resumable => return Step::Stop,
            Kind::Get if self.reconnects >= 1 || !(resumable || self.standalone) => {
                return Step::Stop;
            }
            _ => {}
        }
        self.reconnects += 1;
        tokio::select! {
            _ = self.inner.shutdown.cancelled() => return Step::Stop,
            _ = tokio::time::sleep(self.retry_hint) => {}
        }
        let reply = match (&self.live.modern_meta, &self.kind) {
            // A 2026 upstream's listen stream is listened to again (nothing is replayed).
            (Some(meta), Kind::Get) => {
                crate::bridge::modern_upstream::listen(
                    http,
                    &self.client_headers,
                    meta,
                    self.live.id.as_str(),
                    self.listen_resources.as_deref().unwrap_or_default(),
                )
                .await
            }
            _ => {
                http.get(
                    &self.client_headers,
                    self.live.upstream_session_id.as_deref(),
                    self.upstream_last.as_deref(),
                )
                .await
            }
        };
        match reply {
            Ok(Reply::Stream { events, .. }) => {
                self.events = events;
                Step::Continue
            }
            Ok(other) => {
                tracing::debug!(session = %self.live.id, stream = self.stream, status = %other.status(), "upstream refused to resume");
                Step::Stop
            }
            Err(e) => {
                tracing::debug!(session = %self.live.id, stream = self.stream, error = %e, "upstream resume failed");
                Step::Continue
            }
        }
    }
}

/// The requests (id, method) in a message or batch the upstream sends the client.
pub(super) fn server_requests(v: &Value) -> Vec<(RequestId, String)> {
    let one = |m: &Value| match classify(m) {
        MessageKind::Request { id, method } => Some((id, method)),
        _ => None,
    };
    match v {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        m => one(m).into_iter().collect(),
    }
}
