//! rmcp's [`EventStore`] on a Shoal store: events are frames, replays follow the store.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use rmcp::transport::streamable_http_server::session::{
    EventId, EventStore, EventStoreError, EventStream, ServerSseMessage,
};
use shoal_core::{
    FrameQuery, Session, SessionId, SessionStore, Transport, event_id::EventIdCodec,
    session::SessionState,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    error::{Error, Result},
    inbox::{Inbox, request_key},
    producer::{self, Producing},
    sse_frame,
    stateless_cleanup::StatelessCleanup,
    stream_ref::{StreamKind, StreamRef},
    wakeups::Wakeups,
};

/// How replays read and wait, and how a replica shows it still produces a request stream.
/// Defaults: pages of 256 frames, a poll every 100 ms when wake-ups cross instances (every
/// 25 ms when they cannot), a replay followed for at most 10 minutes; a request running for
/// 1 s takes a producer lease of 6 s (renewed every 2 s); a replay that saw no event for 8 s
/// ends when no replica holds that lease.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReplaySettings {
    /// How often a follower reads the store when no wake-up came.
    pub poll_interval: Duration,
    /// The poll interval without a bus that carries wake-ups between instances.
    pub poll_interval_without_bus: Duration,
    /// How long one replay follows its stream for events still to come (a request stream
    /// ends earlier, with its response; a standalone stream ends when the client leaves).
    pub follow_for: Duration,
    /// Frames read per store call.
    pub page_frames: usize,
    /// How long a request runs before its replica takes the producer lease.
    pub lease_after: Duration,
    /// The producer lease's time (renewed every third of it).
    pub lease_ttl: Duration,
    /// How long a replay waits without a new event before it asks whether the stream still
    /// has a producer (at least `lease_after + lease_ttl`).
    pub orphan_after: Duration,
    /// How long a stateless request's stream is kept after its response (for late resumes)
    /// before its session is deleted.
    pub stateless_keep: Duration,
}

impl Default for ReplaySettings {
    fn default() -> Self {
        ReplaySettings {
            poll_interval: Duration::from_millis(100),
            poll_interval_without_bus: Duration::from_millis(25),
            follow_for: Duration::from_secs(600),
            page_frames: 256,
            lease_after: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(6),
            orphan_after: Duration::from_secs(8),
            stateless_keep: Duration::from_secs(60),
        }
    }
}

/// What the event stores and their replays share.
#[derive(Debug)]
pub(crate) struct EventState {
    store: Arc<dyn SessionStore>,
    /// This replica's owner token for producer leases.
    owner: String,
    codec: EventIdCodec,
    wakeups: Wakeups,
    settings: ReplaySettings,
    stateless_cleanup: StatelessCleanup,
}

/// rmcp's [`EventStore`] over any Shoal [`SessionStore`]: each SSE event is committed as a
/// frame before its id is returned; ids are globally unique, tamper-evident and locate their
/// stream alone (see [`crate::stream_ref`]); a replay reads the store after the id and
/// follows it for events still being stored by any replica, so a stream cut on one replica
/// resumes on another with every event exactly once.
///
/// This one serves streams rmcp does not tie to a session (stateless requests) and replays
/// of any id; the [`ShoalSessionManager`](crate::ShoalSessionManager) gives each session an
/// event store that files its streams under it.
#[derive(Debug, Clone)]
pub struct ShoalEventStore {
    state: Arc<EventState>,
}

/// The event store of one session: its streams are frames of its Shoal session.
#[derive(Debug)]
pub(crate) struct SessionEvents {
    state: Arc<EventState>,
    session: Arc<OnceLock<SessionId>>,
    inbox: Arc<Inbox>,
    producing: Arc<Producing>,
}

impl SessionEvents {
    /// An event store for the session that `session` will name (set as soon as rmcp has
    /// made the id, before the session can send anything); requests the session's worker
    /// sends are awaited in `inbox`.
    pub(crate) fn new(
        events: &ShoalEventStore,
        session: Arc<OnceLock<SessionId>>,
        inbox: Arc<Inbox>,
    ) -> Self {
        SessionEvents {
            state: events.state.clone(),
            session,
            inbox,
            producing: Arc::new(Producing::default()),
        }
    }
}

#[async_trait::async_trait]
impl EventStore for SessionEvents {
    async fn store_event(
        &self,
        stream_id: &str,
        event: &ServerSseMessage,
    ) -> Result<EventId, EventStoreError> {
        let target = match self.session.get() {
            Some(session) => StreamRef::in_session(session, stream_id)?,
            None => StreamRef::of_rmcp(stream_id)?,
        };
        let (id, seq) = self.state.store_at(&target, stream_id, event).await?;
        if let Some(key) = event.message.as_deref().and_then(request_key) {
            self.inbox.sent(&self.state, &target.session, key, seq);
        }
        if target.kind == StreamKind::Request {
            let ends = sse_frame::ends_request(event);
            self.producing
                .event(&self.state, &target.session, &target.stream, ends);
        }
        Ok(id)
    }

    async fn replay_events_after(
        &self,
        last_event_id: &str,
    ) -> Result<EventStream, EventStoreError> {
        Ok(Box::pin(self.state.clone().replay(last_event_id).await?))
    }
}

impl ShoalEventStore {
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        codec: EventIdCodec,
        wakeups: Wakeups,
        settings: ReplaySettings,
    ) -> Self {
        ShoalEventStore {
            state: Arc::new(EventState {
                stateless_cleanup: StatelessCleanup::start(store.clone(), settings.stateless_keep),
                store,
                owner: format!("rmcp-{}", SessionId::generate()),
                codec,
                wakeups,
                settings,
            }),
        }
    }

    /// Stores `event` of rmcp stream `stream_id` (a standalone stream, or a stateless
    /// request's); returns its event id.
    pub async fn store(&self, stream_id: &str, event: &ServerSseMessage) -> Result<String> {
        let target = StreamRef::of_rmcp(stream_id)?;
        Ok(self.state.store_at(&target, stream_id, event).await?.0)
    }

    /// Stores `event` of rmcp stream `stream_id` of `session`; returns its event id.
    pub async fn store_in(
        &self,
        session: &SessionId,
        stream_id: &str,
        event: &ServerSseMessage,
    ) -> Result<String> {
        let target = StreamRef::in_session(session, stream_id)?;
        Ok(self.state.store_at(&target, stream_id, event).await?.0)
    }

    /// The events of the stream of `last_event_id` after it, followed as they are stored.
    pub async fn replay(&self, last_event_id: &str) -> Result<ReceiverStream<ServerSseMessage>> {
        self.state.clone().replay(last_event_id).await
    }

    /// The standalone stream of `session` from now on, served from the store (so it carries
    /// what every replica sends on it), until the session is gone or the client leaves;
    /// `guard` is dropped when it ends.
    pub(crate) async fn follow_common(
        &self,
        session: &SessionId,
        guard: tokio_util::sync::DropGuard,
    ) -> Result<ReceiverStream<ServerSseMessage>> {
        self.state.clone().follow_live(session, guard).await
    }

    /// Files a client's answer to a request another replica sent (see [`crate::inbox`]).
    pub(crate) async fn file_answer(
        &self,
        session: &SessionId,
        message: &rmcp::model::ClientJsonRpcMessage,
    ) -> Result<()> {
        crate::inbox::file(&self.state, session, message).await
    }

    /// The session an event id of this store belongs to, if it is one (verified).
    pub fn session_of(&self, event_id: &str) -> Result<SessionId> {
        Ok(StreamRef::parse_event_id(&self.state.codec, event_id)?
            .0
            .session)
    }
}

impl EventState {
    pub(crate) fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    pub(crate) fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    pub(crate) fn settings(&self) -> &ReplaySettings {
        &self.settings
    }

    /// How long a follower waits for a wake-up before it reads the store anyway.
    pub(crate) fn poll_interval(&self) -> Duration {
        if self.wakeups.crosses_instances() {
            self.settings.poll_interval
        } else {
            self.settings.poll_interval_without_bus
        }
    }

    /// Stores `event` at `target`: its event id and the frame's seq (0 for a position that
    /// needed no frame).
    async fn store_at(
        &self,
        target: &StreamRef,
        stream_id: &str,
        event: &ServerSseMessage,
    ) -> Result<(String, u64)> {
        if event.message.is_none() {
            match target.kind {
                // rmcp sends a message-less event (the priming event) only as the first of a
                // request stream: its id is the stream's position 0, nothing to store.
                StreamKind::Request => return Ok((target.event_id(&self.codec, 0, 0), 0)),
                // A stateless stream's priming event creates the stream's own session.
                StreamKind::Stateless => {
                    match self.store.create(stream_session(target, stream_id)).await {
                        Ok(_) => return Ok((target.event_id(&self.codec, 0, 0), 0)),
                        Err(shoal_core::Error::AlreadyExists { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                StreamKind::Common => {}
            }
        }
        let frame = sse_frame::to_frame(event, &target.stream)?;
        let appended = match self
            .store
            .append_frames_with_epoch(&target.session, vec![frame.clone()])
            .await
        {
            // Only a stateless stream makes its session; a session's streams never bring
            // back a session that was deleted or expired.
            Err(e) if e.is_not_found() && target.kind == StreamKind::Stateless => {
                match self.store.create(stream_session(target, stream_id)).await {
                    Ok(_) | Err(shoal_core::Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                self.store
                    .append_frames_with_epoch(&target.session, vec![frame])
                    .await?
            }
            other => other?,
        };
        let seq = appended.seqs.first().copied().ok_or_else(|| Error::Codec {
            what: format!("appending to {}", target.session),
            reason: "the store returned no seq".into(),
        })?;
        self.wakeups.notify(&target.session, &target.stream);
        if target.kind == StreamKind::Stateless && sse_frame::ends_request(event) {
            self.stateless_cleanup.finished(&target.session);
        }
        Ok((target.event_id(&self.codec, seq, appended.epoch), seq))
    }

    /// The events of the stream of `last_event_id` after it, followed as they are stored.
    async fn replay(
        self: Arc<Self>,
        last_event_id: &str,
    ) -> Result<ReceiverStream<ServerSseMessage>> {
        let st = &self;
        let (target, after) = StreamRef::parse_event_id(&st.codec, last_event_id)?;
        // The first page now, so an unknown or deleted stream is an error the client sees
        // rather than an empty stream that ends at once.
        let subscription = st.wakeups.subscribe(&target.session);
        let query =
            FrameQuery::after(after.seq, st.settings.page_frames).in_stream(target.stream.clone());
        let first = st.store.frames(&target.session, &query).await?;
        let start = first.epochs.resume_after(after.epoch, after.seq);
        let first = if start == after.seq {
            first
        } else {
            tracing::info!(
                session = %target.session,
                from = after.seq,
                to = start,
                "the store rolled back past the client's last event; resuming from before the frames it lost"
            );
            let q =
                FrameQuery::after(start, st.settings.page_frames).in_stream(target.stream.clone());
            st.store.frames(&target.session, &q).await?
        };
        Ok(self
            .clone()
            .spawn_follower(target, start, Some(first), subscription, None))
    }

    /// Follows `stream` of `session` from now on, without end (until the session is gone or
    /// the receiver is dropped): a standalone stream served from the store, so it carries
    /// what every replica's worker sends on it. `guard` is dropped when the follower ends.
    pub(crate) async fn follow_live(
        self: Arc<Self>,
        session: &SessionId,
        guard: tokio_util::sync::DropGuard,
    ) -> Result<ReceiverStream<ServerSseMessage>> {
        let subscription = self.wakeups.subscribe(session);
        let now = self
            .store
            .get(session)
            .await?
            .ok_or_else(|| Error::Store(shoal_core::Error::session_not_found(session)))?;
        let target = StreamRef {
            session: session.clone(),
            stream: crate::stream_ref::COMMON_STREAM.to_owned(),
            kind: StreamKind::Common,
        };
        Ok(self.spawn_follower(target, now.last_seq, None, subscription, Some(guard)))
    }

    /// The follower task of a replay or a live stream: delivers the frames of `target` after
    /// `start` (beginning with `first`, when read already) into the returned stream.
    fn spawn_follower(
        self: Arc<Self>,
        target: StreamRef,
        start: u64,
        first: Option<shoal_core::FramePage>,
        mut subscription: crate::wakeups::Subscription,
        guard: Option<tokio_util::sync::DropGuard>,
    ) -> ReceiverStream<ServerSseMessage> {
        let (tx, rx) = mpsc::channel(self.settings.page_frames.clamp(16, 1024));
        let state = self;
        tokio::spawn(async move {
            // A live standalone stream lasts as long as its client; a replay `follow_for`.
            let deadline = guard
                .is_none()
                .then(|| tokio::time::Instant::now() + state.settings.follow_for);
            let _guard = guard;
            let mut after_seq = start;
            let mut page = first;
            let mut last_event = tokio::time::Instant::now();
            let mut last_lease_check = tokio::time::Instant::now();
            let mut producer_gone = false;
            loop {
                let has_more = match page.take() {
                    Some(page) => {
                        if page.trimmed {
                            tracing::warn!(session = %target.session, "events after the client's last one were trimmed before it resumed; it has a gap");
                        }
                        if !page.frames.is_empty() {
                            last_event = tokio::time::Instant::now();
                        } else if producer_gone {
                            tracing::warn!(session = %target.session, stream = %target.stream, "no replica produces this stream any more (its replica stopped before the response); ending the replay");
                            return;
                        }
                        for frame in &page.frames {
                            after_seq = frame.seq;
                            let id =
                                target.event_id(&state.codec, frame.seq, page.epochs.of(frame.seq));
                            let event = match sse_frame::from_frame(frame, id) {
                                Ok(e) => e,
                                Err(e) => {
                                    tracing::warn!(error = %e, "skipping an event that cannot be decoded");
                                    continue;
                                }
                            };
                            let ends =
                                target.kind.ends_with_response() && sse_frame::ends_request(&event);
                            if tx.send(event).await.is_err() || ends {
                                return;
                            }
                        }
                        page.has_more
                    }
                    None => false,
                };
                producer_gone = false;
                if !has_more
                    && target.kind == StreamKind::Request
                    && last_event.elapsed() >= state.settings.orphan_after
                    && last_lease_check.elapsed() >= Duration::from_secs(1)
                {
                    last_lease_check = tokio::time::Instant::now();
                    // No holder: read once more (events stored before it let go), then end.
                    producer_gone =
                        !producer::has_producer(&state, &target.session, &target.stream).await;
                }
                if !has_more && !producer_gone {
                    let poll = state.poll_interval();
                    let wait = match deadline {
                        Some(d) => d
                            .saturating_duration_since(tokio::time::Instant::now())
                            .min(poll),
                        None => poll,
                    };
                    if wait.is_zero() {
                        return;
                    }
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = tokio::time::timeout(wait, subscription.changed()) => {}
                    }
                }
                let q = FrameQuery::after(after_seq, state.settings.page_frames)
                    .in_stream(target.stream.clone());
                page = match state.store.frames(&target.session, &q).await {
                    Ok(p) => Some(p),
                    // The session was deleted or expired: the stream is over.
                    Err(e) if e.is_not_found() => return,
                    // Retried from the same position after the next wait.
                    Err(e) => {
                        tracing::warn!(session = %target.session, error = %e, "reading events to replay failed; retrying");
                        None
                    }
                };
            }
        });
        ReceiverStream::new(rx)
    }
}

/// The Shoal session that holds a request stream's events.
fn stream_session(target: &StreamRef, stream_id: &str) -> Session {
    let mut s = Session::new(target.session.clone(), Transport::StreamableHttp);
    s.state = SessionState::Active;
    s.metadata
        .insert("rmcp.stream".into(), stream_id.to_owned());
    s
}

#[async_trait::async_trait]
impl EventStore for ShoalEventStore {
    async fn store_event(
        &self,
        stream_id: &str,
        event: &ServerSseMessage,
    ) -> Result<EventId, EventStoreError> {
        Ok(self.store(stream_id, event).await?)
    }

    async fn replay_events_after(
        &self,
        last_event_id: &str,
    ) -> Result<EventStream, EventStoreError> {
        Ok(Box::pin(self.state.clone().replay(last_event_id).await?))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt as _;
    use rmcp::model::ServerJsonRpcMessage;
    use serde_json::json;
    use shoal_core::{MemoryStore, event_id::EventIdKey};

    use super::*;

    fn fast() -> ReplaySettings {
        ReplaySettings {
            poll_interval: Duration::from_millis(20),
            poll_interval_without_bus: Duration::from_millis(20),
            lease_after: Duration::from_millis(50),
            lease_ttl: Duration::from_millis(300),
            orphan_after: Duration::from_millis(500),
            ..ReplaySettings::default()
        }
    }

    fn message(v: serde_json::Value) -> ServerSseMessage {
        ServerSseMessage::from_message(serde_json::from_value::<ServerJsonRpcMessage>(v).unwrap())
    }

    async fn setup() -> (ShoalEventStore, SessionEvents, SessionId) {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let sid = SessionId::new("s1").unwrap();
        store
            .create(Session::new(sid.clone(), Transport::StreamableHttp))
            .await
            .unwrap();
        let events = ShoalEventStore::new(
            store,
            EventIdCodec::new(&EventIdKey::new(vec![3u8; 32]).unwrap()),
            Wakeups::new(None),
            fast(),
        );
        let session = SessionEvents::new(
            &events,
            Arc::new(OnceLock::from(sid.clone())),
            Arc::new(Inbox::default()),
        );
        (events, session, sid)
    }

    const STREAM: &str = "9d1e6c1a-0000-4000-8000-0000000000f1";

    /// A request stream begun by `session`'s worker: its priming event (whose id is
    /// returned) and one progress notification.
    async fn begun(session: &SessionEvents) -> String {
        let first = session
            .store_event(STREAM, &ServerSseMessage::retry(Duration::from_secs(3)))
            .await
            .unwrap();
        let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}});
        session
            .store_event(STREAM, &message(progress))
            .await
            .unwrap();
        first
    }

    #[tokio::test]
    async fn a_replay_waits_for_a_live_producer_past_orphan_after() {
        let (events, session, _) = setup().await;
        let first = begun(&session).await;
        let mut replay = events.replay(&first).await.unwrap();
        assert!(replay.next().await.is_some(), "the stored progress");
        // Three times orphan_after without an event: the producer's lease keeps it open.
        let quiet = tokio::time::timeout(Duration::from_millis(1500), replay.next()).await;
        assert!(quiet.is_err(), "the replay must still wait: {quiet:?}");
        let done = json!({"jsonrpc": "2.0", "id": 1, "result": {}});
        session.store_event(STREAM, &message(done)).await.unwrap();
        let last = tokio::time::timeout(Duration::from_secs(5), replay.next())
            .await
            .unwrap();
        assert!(last.is_some_and(|e| sse_frame::ends_request(&e)));
        let end = tokio::time::timeout(Duration::from_secs(5), replay.next())
            .await
            .unwrap();
        assert!(end.is_none(), "ends after the response");
    }

    #[tokio::test]
    async fn a_replay_ends_when_its_producer_is_gone() {
        let (events, session, _) = setup().await;
        let first = begun(&session).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The replica stops (its session's event store goes, its lease with it).
        drop(session);
        let mut replay = events.replay(&first).await.unwrap();
        assert!(replay.next().await.is_some());
        let end = tokio::time::timeout(Duration::from_secs(5), replay.next()).await;
        assert!(matches!(end, Ok(None)), "the replay ends: {end:?}");
    }
}
