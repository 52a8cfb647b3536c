//! The [`SessionStore`] contract and the small types its methods take and return.

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    AppendedFrames, Error, Frame, FrameEpochs, LeaseReply, LeaseRequest, NewFrame, PendingRequest,
    QuotaReply, QuotaRequest, RequestId, Result, Session, SessionId, SessionStatus, Timestamp,
    Transport,
};

/// The largest page a `list` or `frames` call returns.
pub const MAX_PAGE_LIMIT: usize = 10_000;

/// Which sessions a `list` or `count` call considers. `None` fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionFilter {
    /// Only sessions with this status.
    pub status: Option<SessionStatus>,
    /// Only sessions with this transport.
    pub transport: Option<Transport>,
    /// Only sessions owned by this principal.
    pub principal: Option<String>,
}

impl SessionFilter {
    /// Whether `s` passes the filter.
    pub fn matches(&self, s: &Session) -> bool {
        self.status.is_none_or(|st| st == s.status)
            && self.transport.is_none_or(|t| t == s.transport)
            && self
                .principal
                .as_deref()
                .is_none_or(|p| s.principal.as_deref() == Some(p))
    }

    /// Only sessions with `status`.
    pub fn with_status(mut self, status: SessionStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only sessions with `transport`.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Only sessions owned by `principal`.
    pub fn with_principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }
}

/// One page of a session listing.
///
/// Pass the `next_cursor` of one page as the `cursor` of the next. A full scan returns every
/// session that existed for the whole scan exactly once, even while others are created or
/// deleted; sessions created or deleted during the scan may or may not appear.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListQuery {
    /// Which sessions.
    pub filter: SessionFilter,
    /// Where to continue; `None` starts at the beginning. Opaque: only pass back what a page gave.
    pub cursor: Option<String>,
    /// Most sessions per page, 1..=[`MAX_PAGE_LIMIT`].
    pub limit: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            filter: SessionFilter::default(),
            cursor: None,
            limit: 100,
        }
    }
}

impl ListQuery {
    /// The first page of at most `limit` sessions.
    pub fn first(limit: usize) -> Self {
        ListQuery {
            limit,
            ..ListQuery::default()
        }
    }

    /// Sets the filter.
    pub fn with_filter(mut self, filter: SessionFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets the cursor.
    pub fn with_cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }

    /// Checks the limit.
    pub fn validate(&self) -> Result<()> {
        check_limit(self.limit)
    }
}

pub(crate) fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE_LIMIT {
        return Err(Error::invalid(format!(
            "page limit {limit} is out of range 1..={MAX_PAGE_LIMIT}"
        )));
    }
    Ok(())
}

/// A stored item that could not be read, reported beside the items that could.
#[derive(Debug)]
#[non_exhaustive]
pub struct ItemError {
    /// The session the item belongs to.
    pub id: SessionId,
    /// What went wrong (usually [`Error::Corrupt`]).
    pub error: Error,
}

impl ItemError {
    /// The error `error` about the session `id`.
    pub fn new(id: SessionId, error: Error) -> Self {
        ItemError { id, error }
    }
}

/// A page of sessions.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ListPage {
    /// The sessions, in the backend's listing order.
    pub sessions: Vec<Session>,
    /// Sessions in this page's range that exist but could not be read.
    pub errors: Vec<ItemError>,
    /// The cursor for the next page; `None` when the scan is complete.
    pub next_cursor: Option<String>,
}

/// The result of [`SessionStore::get_many`].
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct GetMany {
    /// Sessions found, in the order asked for.
    pub found: Vec<Session>,
    /// Ids that do not exist (or have expired).
    pub missing: Vec<SessionId>,
    /// Ids that exist but could not be read.
    pub errors: Vec<ItemError>,
}

/// Which frames a [`SessionStore::frames`] call returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameQuery {
    /// Only frames with `seq > after_seq` (0: from the start).
    pub after_seq: u64,
    /// Most frames returned, 1..=[`MAX_PAGE_LIMIT`].
    pub limit: usize,
    /// Only frames of this stream.
    pub stream_id: Option<String>,
}

impl Default for FrameQuery {
    /// From the start, 100 frames, any stream.
    fn default() -> Self {
        FrameQuery::after(0, 100)
    }
}

impl FrameQuery {
    /// Frames after `after_seq`, at most `limit`, any stream.
    pub fn after(after_seq: u64, limit: usize) -> Self {
        FrameQuery {
            after_seq,
            limit,
            stream_id: None,
        }
    }

    /// Only frames of `stream_id`.
    pub fn in_stream(mut self, stream_id: impl Into<String>) -> Self {
        self.stream_id = Some(stream_id.into());
        self
    }

    /// Checks the limit.
    pub fn validate(&self) -> Result<()> {
        check_limit(self.limit)
    }
}

/// A page of frames.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FramePage {
    /// Frames in seq order.
    pub frames: Vec<Frame>,
    /// True when frames with `seq > after_seq` existed but were trimmed, so the page does not
    /// start right after `after_seq`. A replaying client has a gap it cannot fill.
    pub trimmed: bool,
    /// Whether more frames match after this page.
    pub has_more: bool,
    /// The session's newest seq when the page was read.
    pub last_seq: u64,
    /// The epochs of the session's frames when the page was read (empty for a backend
    /// without epochs): a frame's SSE event id carries `epochs.of(frame.seq)`.
    pub epochs: FrameEpochs,
}

impl FramePage {
    /// The `after_seq` to ask for next: the last frame's seq, or `after` when the page is empty.
    pub fn next_after(&self, after: u64) -> u64 {
        self.frames.last().map_or(after, |f| f.seq)
    }
}

/// What one expiry pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SweepReport {
    /// Expired sessions removed (with their frames and pending requests).
    pub removed: u64,
    /// Stale index entries repaired (backends with indices).
    pub repaired: u64,
}

/// How a backend feels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthStatus {
    /// Serving normally.
    Healthy,
    /// Serving, but not as configured (e.g. from a fallback).
    Degraded,
    /// Not serving.
    Unhealthy,
}

/// The answer of [`SessionStore::health`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Health {
    /// Backend name, e.g. `memory`.
    pub backend: String,
    /// Overall status.
    pub status: HealthStatus,
    /// How long the check took.
    #[serde(with = "duration_micros")]
    pub latency: Duration,
    /// Backend-specific facts (session count, server version, breaker state, …).
    pub details: BTreeMap<String, String>,
}

impl Health {
    /// A healthy report for `backend`.
    pub fn healthy(backend: impl Into<String>, latency: Duration) -> Self {
        Health {
            backend: backend.into(),
            status: HealthStatus::Healthy,
            latency,
            details: BTreeMap::new(),
        }
    }

    /// Adds a detail.
    pub fn with_detail(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.details.insert(key.into(), value.to_string());
        self
    }
}

mod duration_micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}

/// Everything a store holds about one session: what export writes and restore reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionRecord {
    /// The session, bookkeeping fields included.
    pub session: Session,
    /// Its retained frames, in seq order.
    pub frames: Vec<Frame>,
    /// Its pending requests.
    pub pending: Vec<PendingRequest>,
}

impl SessionRecord {
    /// Bundles the parts.
    pub fn new(session: Session, frames: Vec<Frame>, pending: Vec<PendingRequest>) -> Self {
        SessionRecord {
            session,
            frames,
            pending,
        }
    }

    /// Checks that the record is internally consistent and within `limits`: frames belong to
    /// the session, seqs strictly increase within `first_seq..=last_seq`, `frame_count` matches,
    /// sizes are within limits, pending ids are unique.
    pub fn validate(&self, limits: &crate::Limits) -> Result<()> {
        let s = &self.session;
        s.check_metadata(limits)?;
        if self.frames.len() > limits.max_frames_per_session {
            return Err(Error::LimitExceeded {
                what: "frames per session",
                limit: limits.max_frames_per_session as u64,
            });
        }
        if self.pending.len() > limits.max_pending_per_session {
            return Err(Error::LimitExceeded {
                what: "pending requests per session",
                limit: limits.max_pending_per_session as u64,
            });
        }
        if s.first_seq == 0 || s.first_seq > s.last_seq.saturating_add(1) {
            return Err(Error::invalid(format!(
                "session {}: first_seq {} does not fit last_seq {}",
                s.id, s.first_seq, s.last_seq
            )));
        }
        if s.frame_count != self.frames.len() as u64 {
            return Err(Error::invalid(format!(
                "session {}: frame_count {} but {} frames",
                s.id,
                s.frame_count,
                self.frames.len()
            )));
        }
        // Retained frames are always the contiguous run first_seq..=last_seq.
        let mut expected = s.first_seq;
        for f in &self.frames {
            if f.session_id != s.id {
                return Err(Error::invalid(format!(
                    "frame {} belongs to session {}, not {}",
                    f.seq, f.session_id, s.id
                )));
            }
            if f.seq != expected {
                return Err(Error::invalid(format!(
                    "session {}: frame seq {} where {expected} was expected (frames must be \
                     contiguous from first_seq {})",
                    s.id, f.seq, s.first_seq
                )));
            }
            if f.size() > limits.max_frame_bytes {
                return Err(Error::LimitExceeded {
                    what: "frame bytes",
                    limit: limits.max_frame_bytes as u64,
                });
            }
            expected += 1;
        }
        if expected != s.last_seq.saturating_add(1) {
            return Err(Error::invalid(format!(
                "session {}: frames end at seq {} but last_seq is {}",
                s.id,
                expected - 1,
                s.last_seq
            )));
        }
        let mut bytes = s.metadata_bytes();
        for p in &self.pending {
            check_pending(limits, p)?;
            bytes = bytes.saturating_add(p.size());
        }
        for f in &self.frames {
            bytes = bytes.saturating_add(f.size());
        }
        if bytes > limits.max_session_bytes {
            return Err(session_bytes_exceeded(limits));
        }
        let mut ids = std::collections::HashSet::new();
        for p in &self.pending {
            if !ids.insert(&p.request_id) {
                return Err(Error::invalid(format!(
                    "session {}: pending request {} appears twice",
                    s.id, p.request_id
                )));
            }
        }
        Ok(())
    }
}

/// [`Error::LimitExceeded`] when `request` is larger than
/// [`Limits::max_pending_bytes`](crate::Limits::max_pending_bytes).
pub fn check_pending(limits: &crate::Limits, request: &PendingRequest) -> Result<()> {
    if request.size() > limits.max_pending_bytes {
        return Err(Error::LimitExceeded {
            what: "pending request bytes",
            limit: limits.max_pending_bytes as u64,
        });
    }
    Ok(())
}

/// The error of a write that would pass
/// [`Limits::max_session_bytes`](crate::Limits::max_session_bytes).
pub fn session_bytes_exceeded(limits: &crate::Limits) -> Error {
    Error::LimitExceeded {
        what: "session bytes",
        limit: limits.max_session_bytes as u64,
    }
}

/// Shared, durable storage for MCP sessions, their frames and pending requests.
///
/// Every backend (memory, Redis) and every wrapper (cache, resilience) implements this one
/// trait, and everything above it — proxy, CLI, export — is written against it. It is
/// object-safe: hosts usually hold an `Arc<dyn SessionStore>`.
///
/// # The contract, in short
/// - **No resurrection.** `update`, `touch`, `append_*` and `add_pending` act only on a session
///   that exists and has not expired; otherwise they return [`Error::NotFound`] and write nothing.
/// - **Seqs.** Each appended frame gets the next seq of its session (1, 2, …), assigned by the
///   store, so appends from many tasks or instances are totally ordered. Seqs are never reused,
///   also not after trimming or `delete_frames`.
/// - **Limits** ([`Limits`](crate::Limits)) are checked before anything is written.
/// - **Expiry** is sliding: create, update, touch and append move `expires_at` to
///   `now + session_ttl`. An expired session behaves as deleted.
///
/// # Example
/// ```
/// use shoal_core::{Direction, FrameQuery, MemoryStore, NewFrame, Session, SessionId,
///                  SessionStore, Transport};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let id = SessionId::generate();
/// store.create(Session::new(id.clone(), Transport::StreamableHttp)).await?;
///
/// let seq = store.append_frame(&id, NewFrame::new(Direction::ClientToServer, "{}")).await?;
/// assert_eq!(seq, 1);
///
/// let page = store.frames(&id, &FrameQuery::after(0, 100)).await?;
/// assert_eq!(page.frames.len(), 1);
/// assert!(store.delete(&id).await?);
/// assert!(store.get(&id).await?.is_none());
/// # Ok::<(), shoal_core::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and metrics, e.g. `memory`.
    fn backend_name(&self) -> &'static str;

    /// The limits this store enforces.
    fn limits(&self) -> &crate::Limits;

    /// The store's change feed (see [`feed`](crate::feed)), when it writes one. Wrappers
    /// return their inner (primary) store's. The default has none.
    fn change_feed(&self) -> Option<Arc<dyn crate::feed::ChangeFeed>> {
        None
    }

    /// Stores a new session. The store sets `created_at`, `last_activity`, `expires_at`,
    /// `frame_count = 0`, `last_seq = 0`, `first_seq = 1` and `revision = 1`, and returns what
    /// it stored. [`Error::AlreadyExists`] if the id is taken.
    async fn create(&self, session: Session) -> Result<Session>;

    /// The session, or `None` if it does not exist or has expired.
    async fn get(&self, id: &SessionId) -> Result<Option<Session>>;

    /// Several sessions in one call (one round trip where the backend allows).
    async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany>;

    /// Replaces the caller-owned fields of a session (see [`Session`]) if `session.revision`
    /// equals the stored revision; bumps the revision and refreshes activity and expiry.
    /// [`Error::NotFound`] if gone, [`Error::Conflict`] if someone else updated it first.
    async fn update(&self, session: &Session) -> Result<Session>;

    /// Records activity: `last_activity = now`, `expires_at = now + ttl`. Returns the new
    /// `expires_at`. [`Error::NotFound`] if gone.
    async fn touch(&self, id: &SessionId) -> Result<Timestamp>;

    /// Deletes a session with its frames and pending requests. Returns whether it existed.
    async fn delete(&self, id: &SessionId) -> Result<bool>;

    /// One page of sessions matching `query.filter`.
    async fn list(&self, query: &ListQuery) -> Result<ListPage>;

    /// How many sessions match `filter`.
    async fn count(&self, filter: &SessionFilter) -> Result<u64>;

    /// Appends frames atomically (all or none) and returns their seqs. Trims the oldest frames
    /// beyond `max_frames_per_session`. [`Error::NotFound`] if the session is gone;
    /// [`Error::LimitExceeded`] if a frame is too large.
    async fn append_frames(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>>;

    /// [`append_frames`](Self::append_frames), also saying the epoch the frames were
    /// appended in (see [`crate::epoch`]). The default answers epoch 0 (not known): a backend
    /// whose writes can be rolled back overrides it, and so does every wrapper.
    async fn append_frames_with_epoch(
        &self,
        id: &SessionId,
        frames: Vec<NewFrame>,
    ) -> Result<AppendedFrames> {
        Ok(AppendedFrames::new(
            self.append_frames(id, frames).await?,
            0,
        ))
    }

    /// Appends one frame and returns its seq.
    async fn append_frame(&self, id: &SessionId, frame: NewFrame) -> Result<u64> {
        let seqs = self.append_frames(id, vec![frame]).await?;
        seqs.first().copied().ok_or_else(|| {
            Error::backend(format!(
                "{}: append returned no seq for session {id}",
                self.backend_name()
            ))
        })
    }

    /// A page of frames, oldest first. [`Error::NotFound`] if the session is gone.
    async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage>;

    /// How many frames the session retains. [`Error::NotFound`] if the session is gone.
    async fn count_frames(&self, id: &SessionId) -> Result<u64>;

    /// Deletes retained frames with `seq <= through_seq` (all when `None`). Returns how many were
    /// removed. Seqs keep counting. [`Error::NotFound`] if the session is gone.
    async fn delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64>;

    /// Records a pending request. [`Error::AlreadyExists`] if its id is already pending.
    async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()>;

    /// Removes and returns a pending request; of several concurrent callers exactly one gets it.
    /// `Ok(None)` if it is not pending; [`Error::NotFound`] if the session is gone.
    async fn take_pending(
        &self,
        id: &SessionId,
        request_id: &RequestId,
    ) -> Result<Option<PendingRequest>>;

    /// The pending requests of a session, oldest first.
    async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>>;

    /// Removes expired sessions now (backends also expire lazily and in the background).
    async fn sweep_expired(&self) -> Result<SweepReport>;

    /// Checks the backend and reports how it is.
    async fn health(&self) -> Result<Health>;

    /// Writes a whole session as it was exported (bookkeeping fields, seqs and frames kept as
    /// they are), atomically. [`Error::AlreadyExists`] if the id is taken; the record is checked
    /// with [`SessionRecord::validate`] first.
    async fn restore(&self, record: SessionRecord) -> Result<()>;

    /// Takes, renews, releases or reads a named lease of the session (see
    /// [`lease`](crate::lease) for the rules, [`lease::apply`](crate::lease::apply) for their
    /// reference implementation). [`Error::NotFound`] if the session does not exist;
    /// [`Error::InvalidInput`] for a bad name, owner or ttl. Leases end with their session.
    ///
    /// Stores shared by several processes implement it; the default refuses every request.
    async fn lease(&self, id: &SessionId, request: LeaseRequest<'_>) -> Result<LeaseReply> {
        let _ = (id, request);
        Err(Error::backend(format!(
            "the {} store does not keep leases",
            self.backend_name()
        )))
    }

    /// The secret named `name` that every process using this store shares, created from
    /// `candidate` by the first caller (atomically: concurrent first callers all get the one
    /// that won). Used for settings a fleet must agree on without configuration, such as the
    /// key of the proxy's event ids. The secret is stored as given, next to the sessions:
    /// whoever can read the store can read it. `name`: 1-64 of `[A-Za-z0-9._-]`; `candidate`:
    /// 16-1024 bytes, else [`Error::InvalidInput`].
    ///
    /// The default refuses: a store that no other process shares has nothing to agree on.
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        check_secret(name, candidate)?;
        Err(Error::backend(format!(
            "the {} store does not keep shared secrets",
            self.backend_name()
        )))
    }

    /// Admits, releases or cancels a session under a subject's admission quota (see
    /// [`quota`](crate::quota) for the rules, [`QuotaLog::apply`](crate::quota::QuotaLog::apply)
    /// for their reference implementation), counted where every process sharing the store
    /// sees the same numbers. [`Error::InvalidInput`] for a bad subject, member or rule.
    ///
    /// The default refuses every request.
    async fn quota(&self, request: QuotaRequest<'_>) -> Result<QuotaReply> {
        request.validate()?;
        Err(Error::backend(format!(
            "the {} store does not keep quotas",
            self.backend_name()
        )))
    }
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for Arc<S> {
    fn backend_name(&self) -> &'static str {
        (**self).backend_name()
    }
    fn limits(&self) -> &crate::Limits {
        (**self).limits()
    }
    fn change_feed(&self) -> Option<Arc<dyn crate::feed::ChangeFeed>> {
        (**self).change_feed()
    }
    async fn create(&self, session: Session) -> Result<Session> {
        (**self).create(session).await
    }
    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        (**self).get(id).await
    }
    async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
        (**self).get_many(ids).await
    }
    async fn update(&self, session: &Session) -> Result<Session> {
        (**self).update(session).await
    }
    async fn touch(&self, id: &SessionId) -> Result<Timestamp> {
        (**self).touch(id).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool> {
        (**self).delete(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        (**self).list(query).await
    }
    async fn count(&self, filter: &SessionFilter) -> Result<u64> {
        (**self).count(filter).await
    }
    async fn append_frames(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
        (**self).append_frames(id, frames).await
    }
    async fn append_frames_with_epoch(
        &self,
        id: &SessionId,
        frames: Vec<NewFrame>,
    ) -> Result<AppendedFrames> {
        (**self).append_frames_with_epoch(id, frames).await
    }
    async fn append_frame(&self, id: &SessionId, frame: NewFrame) -> Result<u64> {
        (**self).append_frame(id, frame).await
    }
    async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage> {
        (**self).frames(id, query).await
    }
    async fn count_frames(&self, id: &SessionId) -> Result<u64> {
        (**self).count_frames(id).await
    }
    async fn delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64> {
        (**self).delete_frames(id, through_seq).await
    }
    async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()> {
        (**self).add_pending(id, request).await
    }
    async fn take_pending(
        &self,
        id: &SessionId,
        request_id: &RequestId,
    ) -> Result<Option<PendingRequest>> {
        (**self).take_pending(id, request_id).await
    }
    async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>> {
        (**self).list_pending(id).await
    }
    async fn sweep_expired(&self) -> Result<SweepReport> {
        (**self).sweep_expired().await
    }
    async fn health(&self) -> Result<Health> {
        (**self).health().await
    }
    async fn restore(&self, record: SessionRecord) -> Result<()> {
        (**self).restore(record).await
    }
    async fn lease(&self, id: &SessionId, request: LeaseRequest<'_>) -> Result<LeaseReply> {
        (**self).lease(id, request).await
    }
    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        (**self).shared_secret(name, candidate).await
    }
    async fn quota(&self, request: QuotaRequest<'_>) -> Result<QuotaReply> {
        (**self).quota(request).await
    }
}

/// Checks the arguments of [`SessionStore::shared_secret`]: the name is 1-64 of
/// `[A-Za-z0-9._-]`, the candidate 16-1024 bytes.
pub fn check_secret(name: &str, candidate: &[u8]) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Error::invalid(
            "shared secret name must be 1-64 of [A-Za-z0-9._-]",
        ));
    }
    if !(16..=1024).contains(&candidate.len()) {
        return Err(Error::invalid("shared secret must be 16-1024 bytes"));
    }
    Ok(())
}

/// Reads a session, applies `change`, and writes it back, retrying on [`Error::Conflict`] up to
/// `attempts` times. The usual way to change a session that others may change too.
///
/// ```
/// use shoal_core::{store::modify, MemoryStore, Session, SessionId, SessionStatus,
///                  SessionStore, Transport};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let id = SessionId::generate();
/// store.create(Session::new(id.clone(), Transport::Http)).await?;
/// let s = modify(&store, &id, 3, |s| s.status = SessionStatus::Completed).await?;
/// assert_eq!(s.revision, 2);
/// # Ok::<(), shoal_core::Error>(())
/// # }).unwrap();
/// ```
pub async fn modify<S, F>(
    store: &S,
    id: &SessionId,
    attempts: u32,
    mut change: F,
) -> Result<Session>
where
    S: SessionStore + ?Sized,
    F: FnMut(&mut Session) + Send,
{
    let mut last = None;
    for _ in 0..attempts.max(1) {
        let mut s = store
            .get(id)
            .await?
            .ok_or_else(|| Error::session_not_found(id))?;
        change(&mut s);
        match store.update(&s).await {
            Err(e @ Error::Conflict { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| Error::session_not_found(id)))
}
