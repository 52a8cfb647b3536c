//! A proptest state machine that checks a store against a `BTreeMap` reference model.
//!
//! [`StoreModel`] is a [`ReferenceStateMachine`]: its state ([`ModelState`]) is a map of
//! sessions with their frames and pending requests plus a model clock, and its transitions
//! ([`Transition`]) are every store operation (create, get, get_many, update with the right or
//! a stale revision, touch, delete, append batches that may hold an oversized frame, frame
//! pages, delete_frames, pending add/take/list, clock advances, sweep, full listings, count).
//! Limits are small so trimming and every limit are hit often.
//!
//! [`run`] (or [`model_test!`](crate::model_test)) generates transition sequences, applies each
//! to a fresh store from a factory and to the model, and compares every result: the error kind
//! for failures, the full value (sessions with all bookkeeping fields, frames, pages, seqs,
//! pending requests) for successes. A failing sequence is shrunk to a minimal one and
//! reported.
//!
//! The store is async, the state machine is not: operations run on a Tokio runtime owned by
//! the runner with `block_on`, so [`run`] must be called from a plain `#[test]`, not from
//! inside a runtime. The runner drives [`ReferenceStateMachine::sequential_strategy`] itself
//! rather than through `StateMachineTest`, whose `init_test` cannot be handed a factory; it
//! reports progress to the shrinker exactly as `StateMachineTest::test_sequential` does.
//!
//! # Contract choices the model makes
//! - Input checks come first: an oversized frame or metadata is `LimitExceeded` even when the
//!   session does not exist (the store need not look it up).
//! - When a `create` hits both a live id and `max_sessions`, or an `add_pending` hits both a
//!   duplicate id and `max_pending_per_session`, either error is accepted.
//! - `sweep_expired` reports at most the number of expired sessions, and at least those that
//!   nothing has looked at since they expired (a backend may drop expired sessions lazily when
//!   their id is used, may tidy up during `list` and `count`, and may reclaim them all when a
//!   `create` finds the store full counting expired sessions).
//! - Only create, update, touch and append refresh `last_activity`/`expires_at`.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::atomic::Ordering,
    time::Duration,
};

use bytes::Bytes;
use proptest::{
    prelude::*,
    strategy::Union,
    test_runner::{Config, TestCaseError, TestCaseResult, TestError, TestRunner},
};
use proptest_state_machine::ReferenceStateMachine;
use shoal_core::{
    Clock, Direction, Error, Frame, FrameQuery, Limits, ListQuery, ManualClock, NewFrame,
    PendingRequest, RequestId, Session, SessionFilter, SessionId, SessionStatus, SessionStore,
    Timestamp, Transport,
};

use crate::{Harness, StoreFactory};

/// Runs the model against `$factory` as one `#[test]` named `model_matches_reference`
/// (or the given name).
///
/// `$factory` is a path to an `async fn(Harness) -> Arc<dyn SessionStore>`. The number of
/// cases is 32 unless the `PROPTEST_CASES` environment variable says otherwise.
///
/// ```ignore
/// shoal_testkit::model_test!(memory);
/// shoal_testkit::model_test!(model_cached, cached);
/// ```
#[macro_export]
macro_rules! model_test {
    ($name:ident, $factory:path) => {
        #[test]
        fn $name() {
            $crate::model::run($factory);
        }
    };
    ($factory:path) => {
        $crate::model_test!(model_matches_reference, $factory);
    };
}

/// How many distinct session ids transitions draw from.
pub const ID_POOL: u8 = 4;
/// The stream ids frames and filters draw from.
const STREAMS: [&str; 2] = ["s0", "s1"];
/// The principals sessions and filters draw from.
const PRINCIPALS: [&str; 2] = ["alice", "bob"];
/// The timestamp every model frame and pending request carries.
const STAMP: Timestamp = Timestamp(1_700_000_000_000);

/// The small limits the model runs with: trimming after 5 frames, 3 sessions, 2 pending
/// requests, 40-byte frames, 24 bytes of metadata, a 60 s TTL.
pub fn model_limits() -> Limits {
    let mut l = Limits::default();
    l.max_frame_bytes = 40;
    l.max_frames_per_session = 5;
    l.max_sessions = 3;
    l.session_ttl = Duration::from_secs(60);
    l.max_metadata_bytes = 24;
    l.max_pending_per_session = 2;
    l
}

/// How many cases and transitions [`run_with`] generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelConfig {
    /// Test cases (transition sequences).
    pub cases: u32,
    /// Most transitions per case (at least 1).
    pub max_transitions: usize,
}

impl Default for ModelConfig {
    /// 32 cases (or `PROPTEST_CASES`) of up to 40 transitions.
    fn default() -> Self {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(32);
        ModelConfig {
            cases,
            max_transitions: 40,
        }
    }
}

// ----------------------------------------------------------------------------------------
// Transitions
// ----------------------------------------------------------------------------------------

/// A frame as the model generates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFrame {
    /// Index into the stream ids, or none.
    pub stream: Option<u8>,
    /// Server → client instead of client → server.
    pub from_server: bool,
    /// The content (may hold any bytes).
    pub content: Vec<u8>,
}

impl ModelFrame {
    /// The frame as handed to the store.
    pub fn to_new_frame(&self) -> NewFrame {
        let direction = if self.from_server {
            Direction::ServerToClient
        } else {
            Direction::ClientToServer
        };
        let f = NewFrame::new(direction, Bytes::from(self.content.clone())).with_timestamp(STAMP);
        match self.stream {
            Some(s) => f.with_stream(STREAMS[usize::from(s)]),
            None => f,
        }
    }
}

/// A session filter as the model generates it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelFilter {
    /// Only this status.
    pub status: Option<SessionStatus>,
    /// Only this transport.
    pub transport: Option<Transport>,
    /// Only this principal (index).
    pub principal: Option<u8>,
}

impl ModelFilter {
    /// The filter as handed to the store.
    pub fn to_filter(&self) -> SessionFilter {
        let mut f = SessionFilter::default();
        if let Some(s) = self.status {
            f = f.with_status(s);
        }
        if let Some(t) = self.transport {
            f = f.with_transport(t);
        }
        if let Some(p) = self.principal {
            f = f.with_principal(PRINCIPALS[usize::from(p)]);
        }
        f
    }
}

/// Which revision an update carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revision {
    /// The stored one: the update should succeed.
    Current,
    /// One less: a writer that lost a race.
    Stale,
    /// One more: a revision the store never handed out.
    Ahead,
}

/// One operation on the store (and the model). Ids are indices into a small pool.
#[derive(Clone, Debug)]
pub enum Transition {
    /// `create` with these caller-owned fields (`meta` bytes of metadata).
    Create {
        /// Session id index.
        id: u8,
        /// Transport.
        transport: Transport,
        /// Principal index.
        principal: Option<u8>,
        /// Metadata value length.
        meta: usize,
    },
    /// `get`.
    Get {
        /// Session id index.
        id: u8,
    },
    /// `get_many`.
    GetMany {
        /// Session id indices, in the order asked.
        ids: Vec<u8>,
    },
    /// `update` of status, principal and metadata.
    Update {
        /// Session id index.
        id: u8,
        /// Which revision the update carries.
        revision: Revision,
        /// New status.
        status: SessionStatus,
        /// New principal index.
        principal: Option<u8>,
        /// New metadata value length.
        meta: usize,
    },
    /// `touch`.
    Touch {
        /// Session id index.
        id: u8,
    },
    /// `delete`.
    Delete {
        /// Session id index.
        id: u8,
    },
    /// `append_frames` (one frame: also `append_frame`).
    Append {
        /// Session id index.
        id: u8,
        /// The batch.
        frames: Vec<ModelFrame>,
    },
    /// `frames`.
    Frames {
        /// Session id index.
        id: u8,
        /// `after_seq`.
        after_seq: u64,
        /// Page limit.
        limit: usize,
        /// Stream filter index.
        stream: Option<u8>,
    },
    /// `count_frames`.
    CountFrames {
        /// Session id index.
        id: u8,
    },
    /// `delete_frames`.
    DeleteFrames {
        /// Session id index.
        id: u8,
        /// `through_seq`.
        through: Option<u64>,
    },
    /// `add_pending`.
    AddPending {
        /// Session id index.
        id: u8,
        /// JSON-RPC id.
        request: i64,
    },
    /// `take_pending`.
    TakePending {
        /// Session id index.
        id: u8,
        /// JSON-RPC id.
        request: i64,
    },
    /// `list_pending`.
    ListPending {
        /// Session id index.
        id: u8,
    },
    /// Moves the clock forward.
    Advance {
        /// Milliseconds.
        ms: u64,
    },
    /// `sweep_expired`.
    Sweep,
    /// Every page of `list`.
    ListAll {
        /// Page limit.
        limit: usize,
        /// Filter.
        filter: ModelFilter,
    },
    /// `count`.
    Count {
        /// Filter.
        filter: ModelFilter,
    },
}

impl Transition {
    /// The one session this transition acts on, if it acts on exactly one.
    pub fn id(&self) -> Option<u8> {
        match self {
            Transition::Create { id, .. }
            | Transition::Get { id }
            | Transition::Update { id, .. }
            | Transition::Touch { id }
            | Transition::Delete { id }
            | Transition::Append { id, .. }
            | Transition::Frames { id, .. }
            | Transition::CountFrames { id }
            | Transition::DeleteFrames { id, .. }
            | Transition::AddPending { id, .. }
            | Transition::TakePending { id, .. }
            | Transition::ListPending { id } => Some(*id),
            Transition::GetMany { .. }
            | Transition::Advance { .. }
            | Transition::Sweep
            | Transition::ListAll { .. }
            | Transition::Count { .. } => None,
        }
    }
}

fn sid(i: u8) -> SessionId {
    SessionId::new(format!("m{i}")).unwrap_or_else(|e| panic!("model id m{i}: {e}"))
}

fn pending_request(request: i64) -> PendingRequest {
    PendingRequest::new(request, format!("method/{request}")).with_started_at(STAMP)
}

/// The caller-owned part of a session, built the same way for the model and the store.
fn caller_session(
    id: u8,
    transport: Transport,
    status: SessionStatus,
    principal: Option<u8>,
    meta: usize,
) -> Session {
    let mut s = Session::new(sid(id), transport);
    s.status = status;
    s.principal = principal.map(|p| PRINCIPALS[usize::from(p)].to_owned());
    if meta > 0 {
        s.metadata.insert("m".into(), "x".repeat(meta));
    }
    s
}

// ----------------------------------------------------------------------------------------
// The reference model
// ----------------------------------------------------------------------------------------

/// One session in the model. Times are milliseconds after the store's start.
#[derive(Clone, Debug)]
pub struct ModelSession {
    transport: Transport,
    status: SessionStatus,
    principal: Option<u8>,
    meta: usize,
    created_at: u64,
    last_activity: u64,
    expires_at: u64,
    revision: u64,
    last_seq: u64,
    frames: VecDeque<(u64, ModelFrame)>,
    pending: Vec<i64>,
    /// Expired and looked at since: a backend may already have removed it lazily.
    maybe_gone: bool,
}

impl ModelSession {
    fn first_seq(&self) -> u64 {
        self.frames
            .front()
            .map_or(self.last_seq + 1, |(seq, _)| *seq)
    }

    fn to_session(&self, id: u8, base: u64) -> Session {
        let mut s = caller_session(id, self.transport, self.status, self.principal, self.meta);
        s.created_at = Timestamp(base + self.created_at);
        s.last_activity = Timestamp(base + self.last_activity);
        s.expires_at = Timestamp(base + self.expires_at);
        s.frame_count = self.frames.len() as u64;
        s.last_seq = self.last_seq;
        s.first_seq = self.first_seq();
        s.revision = self.revision;
        s
    }

    fn matches(&self, f: &ModelFilter) -> bool {
        f.status.is_none_or(|s| s == self.status)
            && f.transport.is_none_or(|t| t == self.transport)
            && f.principal.is_none_or(|p| self.principal == Some(p))
    }
}

/// The model: sessions by id index (expired ones stay until swept, deleted or replaced, but
/// behave as absent) and the model clock.
#[derive(Clone, Debug, Default)]
pub struct ModelState {
    now: u64,
    sessions: BTreeMap<u8, ModelSession>,
}

/// The kind of an error, which is what the model predicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrKind {
    /// [`Error::NotFound`].
    NotFound,
    /// [`Error::AlreadyExists`].
    AlreadyExists,
    /// [`Error::Conflict`].
    Conflict,
    /// [`Error::InvalidInput`].
    InvalidInput,
    /// [`Error::LimitExceeded`].
    LimitExceeded,
    /// Anything else (never predicted), with its message.
    Other(String),
}

impl From<&Error> for ErrKind {
    fn from(e: &Error) -> Self {
        match e {
            Error::NotFound { .. } => ErrKind::NotFound,
            Error::AlreadyExists { .. } => ErrKind::AlreadyExists,
            Error::Conflict { .. } => ErrKind::Conflict,
            Error::InvalidInput { .. } => ErrKind::InvalidInput,
            Error::LimitExceeded { .. } => ErrKind::LimitExceeded,
            other => ErrKind::Other(other.to_string()),
        }
    }
}

/// What an operation returned, normalised so model and store answers compare with `==`.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// An error of this kind.
    Err(ErrKind),
    /// A session (create, update).
    Session(Session),
    /// A session or none (get).
    MaybeSession(Option<Session>),
    /// `get_many`.
    Many {
        /// Found, in order.
        found: Vec<Session>,
        /// Missing, in order.
        missing: Vec<SessionId>,
    },
    /// A timestamp (touch).
    Time(Timestamp),
    /// A boolean (delete).
    Bool(bool),
    /// Seqs (append).
    Seqs(Vec<u64>),
    /// A frame page.
    Page {
        /// Frames.
        frames: Vec<Frame>,
        /// `trimmed`.
        trimmed: bool,
        /// `has_more`.
        has_more: bool,
        /// `last_seq`.
        last_seq: u64,
    },
    /// A number (count, count_frames, delete_frames).
    Count(u64),
    /// Nothing (add_pending, advance).
    Unit,
    /// take_pending.
    Taken(Option<PendingRequest>),
    /// list_pending.
    Pending(Vec<PendingRequest>),
    /// sweep_expired's `removed`.
    Swept(u64),
    /// Every listed session, sorted by id.
    Listed(Vec<Session>),
    /// The store broke a rule no single value captures (e.g. a session listed twice).
    Broken(String),
}

/// What the model predicts for one operation.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one short-lived value per transition
pub enum Expected {
    /// Exactly this.
    Exactly(Outcome),
    /// An error of one of these kinds (where the contract does not order two checks).
    AnyErr(Vec<ErrKind>),
    /// A sweep removing between `min` and `max` sessions.
    SweptBetween {
        /// Expired sessions nothing looked at since they expired.
        min: u64,
        /// All expired sessions.
        max: u64,
    },
}

impl Expected {
    /// Whether `actual` is what the model predicted.
    pub fn accepts(&self, actual: &Outcome) -> bool {
        match (self, actual) {
            (Expected::Exactly(want), got) => want == got,
            (Expected::AnyErr(kinds), Outcome::Err(k)) => kinds.contains(k),
            (Expected::SweptBetween { min, max }, Outcome::Swept(n)) => min <= n && n <= max,
            _ => false,
        }
    }
}

fn err(kind: ErrKind) -> Expected {
    Expected::Exactly(Outcome::Err(kind))
}

impl ModelState {
    fn limits() -> Limits {
        model_limits()
    }

    fn ttl_ms() -> u64 {
        u64::try_from(Self::limits().session_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// The session `id` if it exists and has not expired.
    fn live(&self, id: u8) -> Option<&ModelSession> {
        self.sessions.get(&id).filter(|s| s.expires_at > self.now)
    }

    fn live_mut(&mut self, id: u8) -> Option<&mut ModelSession> {
        let now = self.now;
        self.sessions.get_mut(&id).filter(|s| s.expires_at > now)
    }

    fn live_count(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| s.expires_at > self.now)
            .count()
    }

    /// Marks the expired sessions `t` looks at as possibly removed already.
    fn mark_looked_at(&mut self, t: &Transition) {
        let now = self.now;
        // Full counting the expired sessions not yet removed: where a store reclaims them.
        let full = self.sessions.len() >= Self::limits().max_sessions;
        let ids: Vec<u8> = match t {
            Transition::Create { .. } if full => self.sessions.keys().copied().collect(),
            Transition::ListAll { .. } | Transition::Count { .. } => {
                self.sessions.keys().copied().collect()
            }
            Transition::GetMany { ids } => ids.clone(),
            Transition::Advance { .. } | Transition::Sweep => Vec::new(),
            other => other.id().into_iter().collect(),
        };
        for id in ids {
            if let Some(s) = self.sessions.get_mut(&id)
                && s.expires_at <= now
            {
                s.maybe_gone = true;
            }
        }
    }

    /// The session an `Update` transition hands to the store: the new caller fields, the
    /// chosen revision, and junk in every bookkeeping field (which the store must ignore).
    pub fn update_input(&self, t: &Transition, base: u64) -> Option<Session> {
        let Transition::Update {
            id,
            revision,
            status,
            principal,
            meta,
        } = t
        else {
            return None;
        };
        let (transport, stored) = self
            .live(*id)
            .map_or((Transport::Http, 1), |s| (s.transport, s.revision));
        let mut s = caller_session(*id, transport, *status, *principal, *meta);
        s.revision = match revision {
            Revision::Current => stored,
            Revision::Stale => stored.saturating_sub(1),
            Revision::Ahead => stored + 1,
        };
        s.created_at = Timestamp(base + 1);
        s.last_activity = Timestamp(base + 2);
        s.expires_at = Timestamp(base + 3);
        s.frame_count = 17;
        s.last_seq = 99;
        s.first_seq = 42;
        Some(s)
    }

    /// Applies `t` to the model and returns what the store should answer. `base` is the
    /// store clock's start, in ms since the epoch (0 when only the model runs).
    pub fn step(&mut self, t: &Transition, base: u64) -> Expected {
        self.mark_looked_at(t);
        let limits = Self::limits();
        let now = self.now;
        let expiry = now + Self::ttl_ms();
        let exactly = Expected::Exactly;
        match t {
            Transition::Create {
                id,
                transport,
                principal,
                meta,
            } => {
                let input =
                    caller_session(*id, *transport, SessionStatus::Active, *principal, *meta);
                if input.metadata_bytes() > limits.max_metadata_bytes {
                    return err(ErrKind::LimitExceeded);
                }
                let taken = self.live(*id).is_some();
                let full = self.live_count() >= limits.max_sessions;
                match (taken, full) {
                    (true, true) => {
                        return Expected::AnyErr(vec![
                            ErrKind::AlreadyExists,
                            ErrKind::LimitExceeded,
                        ]);
                    }
                    (true, false) => return err(ErrKind::AlreadyExists),
                    (false, true) => return err(ErrKind::LimitExceeded),
                    (false, false) => {}
                }
                let s = ModelSession {
                    transport: *transport,
                    status: SessionStatus::Active,
                    principal: *principal,
                    meta: *meta,
                    created_at: now,
                    last_activity: now,
                    expires_at: expiry,
                    revision: 1,
                    last_seq: 0,
                    frames: VecDeque::new(),
                    pending: Vec::new(),
                    maybe_gone: false,
                };
                let out = s.to_session(*id, base);
                self.sessions.insert(*id, s);
                exactly(Outcome::Session(out))
            }
            Transition::Get { id } => exactly(Outcome::MaybeSession(
                self.live(*id).map(|s| s.to_session(*id, base)),
            )),
            Transition::GetMany { ids } => {
                let mut found = Vec::new();
                let mut missing = Vec::new();
                for id in ids {
                    match self.live(*id) {
                        Some(s) => found.push(s.to_session(*id, base)),
                        None => missing.push(sid(*id)),
                    }
                }
                exactly(Outcome::Many { found, missing })
            }
            Transition::Update {
                id,
                status,
                principal,
                meta,
                ..
            } => {
                let Some(input) = self.update_input(t, base) else {
                    return err(ErrKind::Other("not an update".into()));
                };
                if input.metadata_bytes() > limits.max_metadata_bytes {
                    return err(ErrKind::LimitExceeded);
                }
                let Some(s) = self.live_mut(*id) else {
                    return err(ErrKind::NotFound);
                };
                if s.revision != input.revision {
                    return err(ErrKind::Conflict);
                }
                s.status = *status;
                s.principal = *principal;
                s.meta = *meta;
                s.revision += 1;
                s.last_activity = now;
                s.expires_at = expiry;
                exactly(Outcome::Session(s.to_session(*id, base)))
            }
            Transition::Touch { id } => match self.live_mut(*id) {
                None => err(ErrKind::NotFound),
                Some(s) => {
                    s.last_activity = now;
                    s.expires_at = expiry;
                    exactly(Outcome::Time(Timestamp(base + expiry)))
                }
            },
            Transition::Delete { id } => {
                let existed = self.live(*id).is_some();
                self.sessions.remove(id);
                exactly(Outcome::Bool(existed))
            }
            Transition::Append { id, frames } => {
                if frames
                    .iter()
                    .any(|f| f.to_new_frame().size() > limits.max_frame_bytes)
                {
                    return err(ErrKind::LimitExceeded);
                }
                let Some(s) = self.live_mut(*id) else {
                    return err(ErrKind::NotFound);
                };
                let mut seqs = Vec::new();
                for f in frames {
                    s.last_seq += 1;
                    s.frames.push_back((s.last_seq, f.clone()));
                    seqs.push(s.last_seq);
                }
                while s.frames.len() > limits.max_frames_per_session {
                    s.frames.pop_front();
                }
                s.last_activity = now;
                s.expires_at = expiry;
                exactly(Outcome::Seqs(seqs))
            }
            Transition::Frames {
                id,
                after_seq,
                limit,
                stream,
            } => {
                let Some(s) = self.live(*id) else {
                    return err(ErrKind::NotFound);
                };
                let matching: Vec<Frame> = s
                    .frames
                    .iter()
                    .filter(|(seq, f)| {
                        *seq > *after_seq && (stream.is_none() || f.stream == *stream)
                    })
                    .map(|(seq, f)| f.to_new_frame().into_frame(sid(*id), *seq))
                    .collect();
                exactly(Outcome::Page {
                    has_more: matching.len() > *limit,
                    frames: matching.into_iter().take(*limit).collect(),
                    trimmed: after_seq + 1 < s.first_seq(),
                    last_seq: s.last_seq,
                })
            }
            Transition::CountFrames { id } => match self.live(*id) {
                None => err(ErrKind::NotFound),
                Some(s) => exactly(Outcome::Count(s.frames.len() as u64)),
            },
            Transition::DeleteFrames { id, through } => match self.live_mut(*id) {
                None => err(ErrKind::NotFound),
                Some(s) => {
                    let before = s.frames.len();
                    let limit = through.unwrap_or(u64::MAX);
                    s.frames.retain(|(seq, _)| *seq > limit);
                    exactly(Outcome::Count((before - s.frames.len()) as u64))
                }
            },
            Transition::AddPending { id, request } => match self.live_mut(*id) {
                None => err(ErrKind::NotFound),
                Some(s) => {
                    let dup = s.pending.contains(request);
                    let full = s.pending.len() >= limits.max_pending_per_session;
                    match (dup, full) {
                        (true, true) => {
                            Expected::AnyErr(vec![ErrKind::AlreadyExists, ErrKind::LimitExceeded])
                        }
                        (true, false) => err(ErrKind::AlreadyExists),
                        (false, true) => err(ErrKind::LimitExceeded),
                        (false, false) => {
                            s.pending.push(*request);
                            exactly(Outcome::Unit)
                        }
                    }
                }
            },
            Transition::TakePending { id, request } => match self.live_mut(*id) {
                None => err(ErrKind::NotFound),
                Some(s) => {
                    let pos = s.pending.iter().position(|r| r == request);
                    let taken = pos.map(|i| pending_request(s.pending.remove(i)));
                    exactly(Outcome::Taken(taken))
                }
            },
            Transition::ListPending { id } => match self.live(*id) {
                None => err(ErrKind::NotFound),
                Some(s) => exactly(Outcome::Pending(
                    s.pending.iter().map(|r| pending_request(*r)).collect(),
                )),
            },
            Transition::Advance { ms } => {
                self.now += ms;
                exactly(Outcome::Unit)
            }
            Transition::Sweep => {
                let expired = self.sessions.values().filter(|s| s.expires_at <= now);
                let max = expired.clone().count() as u64;
                let min = expired.filter(|s| !s.maybe_gone).count() as u64;
                self.sessions.retain(|_, s| s.expires_at > now);
                Expected::SweptBetween { min, max }
            }
            Transition::ListAll { filter, .. } => exactly(Outcome::Listed(
                self.sessions
                    .iter()
                    .filter(|(_, s)| s.expires_at > now && s.matches(filter))
                    .map(|(id, s)| s.to_session(*id, base))
                    .collect(),
            )),
            Transition::Count { filter } => exactly(Outcome::Count(
                self.sessions
                    .values()
                    .filter(|s| s.expires_at > now && s.matches(filter))
                    .count() as u64,
            )),
        }
    }
}

// ----------------------------------------------------------------------------------------
// Generation
// ----------------------------------------------------------------------------------------

fn any_id() -> BoxedStrategy<u8> {
    (0..ID_POOL).boxed()
}

/// Mostly ids of live sessions (so operations usually find their session), sometimes any.
fn id_strategy(state: &ModelState) -> BoxedStrategy<u8> {
    let live: Vec<u8> = state
        .sessions
        .iter()
        .filter(|(_, s)| s.expires_at > state.now)
        .map(|(id, _)| *id)
        .collect();
    if live.is_empty() {
        any_id()
    } else {
        prop_oneof![4 => prop::sample::select(live), 1 => any_id()].boxed()
    }
}

fn opt_index(n: u8) -> BoxedStrategy<Option<u8>> {
    prop::option::weighted(0.7, 0..n).boxed()
}

fn status_strategy() -> BoxedStrategy<SessionStatus> {
    prop::sample::select(vec![
        SessionStatus::Active,
        SessionStatus::Completed,
        SessionStatus::Failed,
    ])
    .boxed()
}

fn transport_strategy() -> BoxedStrategy<Transport> {
    prop::sample::select(vec![Transport::Stdio, Transport::StreamableHttp]).boxed()
}

fn frame_strategy() -> BoxedStrategy<ModelFrame> {
    // Mostly small frames; now and then one over max_frame_bytes (40 with the stream id).
    let len = prop_oneof![9 => 0usize..=12, 1 => 36usize..=44];
    (opt_index(2), any::<bool>(), len, any::<u8>())
        .prop_map(|(stream, from_server, len, seed)| ModelFrame {
            stream,
            from_server,
            content: (0..len)
                .map(|i| seed.wrapping_add(u8::try_from(i % 256).unwrap_or(0)))
                .collect(),
        })
        .boxed()
}

fn filter_strategy() -> BoxedStrategy<ModelFilter> {
    (
        prop::option::weighted(0.25, status_strategy()),
        prop::option::weighted(0.25, transport_strategy()),
        prop::option::weighted(0.25, 0..2u8),
    )
        .prop_map(|(status, transport, principal)| ModelFilter {
            status,
            transport,
            principal,
        })
        .boxed()
}

/// Metadata lengths: usually within the 24-byte limit (with a principal), sometimes over.
fn meta_strategy() -> BoxedStrategy<usize> {
    prop_oneof![8 => 0usize..=12, 2 => 17usize..=30].boxed()
}

/// The reference state machine: generation of [`Transition`]s and the [`ModelState`] they act
/// on.
#[derive(Clone, Copy, Debug)]
pub struct StoreModel;

impl ReferenceStateMachine for StoreModel {
    type State = ModelState;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<ModelState> {
        Just(ModelState::default()).boxed()
    }

    fn transitions(state: &ModelState) -> BoxedStrategy<Transition> {
        let id_strategy = || id_strategy(state);
        let create = (
            any_id(),
            transport_strategy(),
            opt_index(2),
            meta_strategy(),
        )
            .prop_map(|(id, transport, principal, meta)| Transition::Create {
                id,
                transport,
                principal,
                meta,
            });
        let update = (
            id_strategy(),
            prop::sample::select(vec![
                Revision::Current,
                Revision::Current,
                Revision::Current,
                Revision::Stale,
                Revision::Ahead,
            ]),
            status_strategy(),
            opt_index(2),
            meta_strategy(),
        )
            .prop_map(
                |(id, revision, status, principal, meta)| Transition::Update {
                    id,
                    revision,
                    status,
                    principal,
                    meta,
                },
            );
        let append = (
            id_strategy(),
            prop::collection::vec(frame_strategy(), 1..=4),
        )
            .prop_map(|(id, frames)| Transition::Append { id, frames });
        // Seqs around what the sessions hold, so pages and deletions hit frames.
        let top = state
            .sessions
            .values()
            .map(|s| s.last_seq)
            .max()
            .unwrap_or(0)
            + 2;
        let frames = (id_strategy(), 0u64..=top, 1usize..=3, opt_index(2)).prop_map(
            |(id, after_seq, limit, stream)| Transition::Frames {
                id,
                after_seq,
                limit,
                stream,
            },
        );
        let delete_frames = (id_strategy(), prop::option::of(0u64..=top))
            .prop_map(|(id, through)| Transition::DeleteFrames { id, through });
        let advance = prop_oneof![
            6 => 0u64..=20_000,
            1 => 59_999u64..=60_001,
        ]
        .prop_map(|ms| Transition::Advance { ms });
        // Mostly requests that are pending, so takes succeed (and a second take must not).
        let pending: Vec<(u8, i64)> = state
            .sessions
            .iter()
            .flat_map(|(id, s)| s.pending.iter().map(move |r| (*id, *r)))
            .collect();
        let random_take = (id_strategy(), 0i64..3);
        let take_pending = if pending.is_empty() {
            random_take.boxed()
        } else {
            prop_oneof![3 => prop::sample::select(pending), 1 => random_take].boxed()
        }
        .prop_map(|(id, request)| Transition::TakePending { id, request });
        let list_all = (1usize..=3, filter_strategy())
            .prop_map(|(limit, filter)| Transition::ListAll { limit, filter });

        // An empty store mostly answers NotFound: create first.
        let create_weight = if state.live_count() == 0 { 40 } else { 6 };
        Union::new_weighted(vec![
            (create_weight, create.boxed()),
            (
                2,
                id_strategy().prop_map(|id| Transition::Get { id }).boxed(),
            ),
            (
                1,
                prop::collection::vec(id_strategy(), 0..=4)
                    .prop_map(|ids| Transition::GetMany { ids })
                    .boxed(),
            ),
            (4, update.boxed()),
            (
                2,
                id_strategy()
                    .prop_map(|id| Transition::Touch { id })
                    .boxed(),
            ),
            (
                2,
                id_strategy()
                    .prop_map(|id| Transition::Delete { id })
                    .boxed(),
            ),
            (7, append.boxed()),
            (4, frames.boxed()),
            (
                1,
                id_strategy()
                    .prop_map(|id| Transition::CountFrames { id })
                    .boxed(),
            ),
            (2, delete_frames.boxed()),
            (
                3,
                (id_strategy(), 0i64..3)
                    .prop_map(|(id, request)| Transition::AddPending { id, request })
                    .boxed(),
            ),
            (2, take_pending.boxed()),
            (
                2,
                id_strategy()
                    .prop_map(|id| Transition::ListPending { id })
                    .boxed(),
            ),
            (3, advance.boxed()),
            (2, Just(Transition::Sweep).boxed()),
            (3, list_all.boxed()),
            (
                1,
                filter_strategy()
                    .prop_map(|filter| Transition::Count { filter })
                    .boxed(),
            ),
        ])
        .boxed()
    }

    fn apply(mut state: ModelState, transition: &Transition) -> ModelState {
        state.step(transition, 0);
        state
    }
}

// ----------------------------------------------------------------------------------------
// Running against a store
// ----------------------------------------------------------------------------------------

fn outcome<T>(r: shoal_core::Result<T>, f: impl FnOnce(T) -> Outcome) -> Outcome {
    match r {
        Ok(v) => f(v),
        Err(e) => Outcome::Err(ErrKind::from(&e)),
    }
}

/// Applies `t` to the store and normalises the answer.
async fn execute(
    store: &dyn SessionStore,
    clock: &ManualClock,
    t: &Transition,
    update_input: Option<Session>,
) -> Outcome {
    match t {
        Transition::Create {
            id,
            transport,
            principal,
            meta,
        } => {
            let mut s = caller_session(*id, *transport, SessionStatus::Active, *principal, *meta);
            // Junk the store must overwrite.
            s.revision = 9;
            s.last_seq = 4;
            s.first_seq = 2;
            s.frame_count = 3;
            s.created_at = Timestamp(5);
            s.expires_at = Timestamp(6);
            outcome(store.create(s).await, Outcome::Session)
        }
        Transition::Get { id } => outcome(store.get(&sid(*id)).await, Outcome::MaybeSession),
        Transition::GetMany { ids } => {
            let ids: Vec<SessionId> = ids.iter().map(|i| sid(*i)).collect();
            match store.get_many(&ids).await {
                Ok(m) if !m.errors.is_empty() => {
                    Outcome::Broken(format!("get_many reported errors: {:?}", m.errors))
                }
                r => outcome(r, |m| Outcome::Many {
                    found: m.found,
                    missing: m.missing,
                }),
            }
        }
        Transition::Update { .. } => match update_input {
            Some(s) => outcome(store.update(&s).await, Outcome::Session),
            None => Outcome::Broken("update without input".into()),
        },
        Transition::Touch { id } => outcome(store.touch(&sid(*id)).await, Outcome::Time),
        Transition::Delete { id } => outcome(store.delete(&sid(*id)).await, Outcome::Bool),
        Transition::Append { id, frames } => {
            let id = sid(*id);
            if let [single] = frames.as_slice() {
                outcome(store.append_frame(&id, single.to_new_frame()).await, |s| {
                    Outcome::Seqs(vec![s])
                })
            } else {
                let batch = frames.iter().map(ModelFrame::to_new_frame).collect();
                outcome(store.append_frames(&id, batch).await, Outcome::Seqs)
            }
        }
        Transition::Frames {
            id,
            after_seq,
            limit,
            stream,
        } => {
            let mut q = FrameQuery::after(*after_seq, *limit);
            if let Some(s) = stream {
                q = q.in_stream(STREAMS[usize::from(*s)]);
            }
            outcome(store.frames(&sid(*id), &q).await, |p| Outcome::Page {
                frames: p.frames,
                trimmed: p.trimmed,
                has_more: p.has_more,
                last_seq: p.last_seq,
            })
        }
        Transition::CountFrames { id } => {
            outcome(store.count_frames(&sid(*id)).await, Outcome::Count)
        }
        Transition::DeleteFrames { id, through } => outcome(
            store.delete_frames(&sid(*id), *through).await,
            Outcome::Count,
        ),
        Transition::AddPending { id, request } => outcome(
            store
                .add_pending(&sid(*id), pending_request(*request))
                .await,
            |()| Outcome::Unit,
        ),
        Transition::TakePending { id, request } => outcome(
            store
                .take_pending(&sid(*id), &RequestId::from(*request))
                .await,
            Outcome::Taken,
        ),
        Transition::ListPending { id } => {
            outcome(store.list_pending(&sid(*id)).await, Outcome::Pending)
        }
        Transition::Advance { ms } => {
            clock.advance(Duration::from_millis(*ms));
            Outcome::Unit
        }
        Transition::Sweep => outcome(store.sweep_expired().await, |r| Outcome::Swept(r.removed)),
        Transition::ListAll { limit, filter } => list_all(store, *limit, filter).await,
        Transition::Count { filter } => {
            outcome(store.count(&filter.to_filter()).await, Outcome::Count)
        }
    }
}

async fn list_all(store: &dyn SessionStore, limit: usize, filter: &ModelFilter) -> Outcome {
    let filter = filter.to_filter();
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor = None;
    for _ in 0..1_000 {
        let q = ListQuery::first(limit)
            .with_filter(filter.clone())
            .with_cursor(cursor.take());
        let page = match store.list(&q).await {
            Ok(p) => p,
            Err(e) => return Outcome::Err(ErrKind::from(&e)),
        };
        if page.sessions.len() > limit {
            return Outcome::Broken(format!(
                "a page of limit {limit} held {} sessions",
                page.sessions.len()
            ));
        }
        if !page.errors.is_empty() {
            return Outcome::Broken(format!("list reported errors: {:?}", page.errors));
        }
        for s in page.sessions {
            if !seen.insert(s.id.clone()) {
                return Outcome::Broken(format!("session {} listed twice", s.id));
            }
            all.push(s);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => {
                all.sort_by(|a, b| a.id.cmp(&b.id));
                return Outcome::Listed(all);
            }
        }
    }
    Outcome::Broken("listing did not end within 1000 pages".into())
}

/// Runs one generated sequence against a fresh store. `Err` names the first transition whose
/// result differs from the model's.
fn check_sequence<F: StoreFactory>(
    rt: &tokio::runtime::Runtime,
    factory: &F,
    mut model: ModelState,
    transitions: Vec<Transition>,
    seen: Option<&std::sync::Arc<std::sync::atomic::AtomicUsize>>,
) -> TestCaseResult {
    let harness = Harness::new(model_limits());
    let clock = harness.clock.clone();
    let base = clock.now().0;
    // `make` is called inside the runtime too, for factories that spawn before their future.
    let store = rt.block_on(async { factory.make(harness).await });
    for (i, t) in transitions.iter().enumerate() {
        // Tell the shrinker how far this case got (as `StateMachineTest::test_sequential`).
        if let Some(seen) = seen {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        let input = model.update_input(t, base);
        let expected = model.step(t, base);
        let actual = rt.block_on(execute(&*store, &clock, t, input));
        if !expected.accepts(&actual) {
            return Err(TestCaseError::fail(format!(
                "transition {i} {t:?}\n  expected: {expected:?}\n  actual:   {actual:?}"
            )));
        }
    }
    Ok(())
}

/// Runs the model against `factory` with [`ModelConfig::default`]. Panics with the shrunk,
/// minimal failing transition sequence if the store disagrees with the model.
///
/// Call it from a plain `#[test]` (it owns a Tokio runtime and blocks on it).
pub fn run<F: StoreFactory>(factory: F) {
    run_with(factory, ModelConfig::default());
}

/// [`run`] with an explicit number of cases and transitions.
pub fn run_with<F: StoreFactory>(factory: F, config: ModelConfig) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start a Tokio runtime for the model test: {e}"));
    let mut runner = TestRunner::new(Config {
        cases: config.cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = StoreModel::sequential_strategy(1..=config.max_transitions.max(1));
    let result = runner.run(&strategy, |(initial, transitions, seen)| {
        check_sequence(&rt, &factory, initial, transitions, seen.as_ref())
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, (_, transitions, _))) => panic!(
            "the store disagrees with the reference model.\n{reason}\nminimal failing \
             sequence ({} transitions): {transitions:#?}",
            transitions.len()
        ),
        Err(e) => panic!("model test aborted: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_trims_and_keeps_counting() {
        let mut m = ModelState::default();
        let create = Transition::Create {
            id: 0,
            transport: Transport::Stdio,
            principal: None,
            meta: 0,
        };
        assert!(matches!(
            m.step(&create, 0),
            Expected::Exactly(Outcome::Session(_))
        ));
        let frame = ModelFrame {
            stream: None,
            from_server: false,
            content: vec![1],
        };
        let append = Transition::Append {
            id: 0,
            frames: vec![frame; 7],
        };
        assert_eq!(
            m.step(&append, 0),
            Expected::Exactly(Outcome::Seqs((1..=7).collect()))
        );
        let page = Transition::Frames {
            id: 0,
            after_seq: 0,
            limit: 4,
            stream: None,
        };
        match m.step(&page, 0) {
            Expected::Exactly(Outcome::Page {
                frames,
                trimmed,
                has_more,
                last_seq,
            }) => {
                assert_eq!(
                    frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
                    [3, 4, 5, 6]
                );
                assert!(trimmed && has_more);
                assert_eq!(last_seq, 7);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn model_expires_and_sweeps() {
        let mut m = ModelState::default();
        let create = |id| Transition::Create {
            id,
            transport: Transport::Stdio,
            principal: Some(0),
            meta: 3,
        };
        m.step(&create(0), 0);
        m.step(&Transition::Advance { ms: 30_000 }, 0);
        m.step(&create(1), 0);
        m.step(&Transition::Advance { ms: 30_000 }, 0);
        assert_eq!(
            m.step(&Transition::Get { id: 0 }, 0),
            Expected::Exactly(Outcome::MaybeSession(None)),
            "expired exactly at expires_at"
        );
        assert_eq!(
            m.step(&Transition::Sweep, 0),
            Expected::SweptBetween { min: 0, max: 1 },
            "the get looked at the expired session"
        );

        assert_eq!(
            m.step(
                &Transition::Count {
                    filter: ModelFilter::default()
                },
                0
            ),
            Expected::Exactly(Outcome::Count(1))
        );
        m.step(&Transition::Advance { ms: 60_000 }, 0);
        assert_eq!(
            m.step(&Transition::Sweep, 0),
            Expected::SweptBetween { min: 1, max: 1 },
            "nothing looked at the second one"
        );
    }

    #[test]
    fn expected_accepts_only_what_it_allows() {
        let any = Expected::AnyErr(vec![ErrKind::AlreadyExists, ErrKind::LimitExceeded]);
        assert!(any.accepts(&Outcome::Err(ErrKind::LimitExceeded)));
        assert!(!any.accepts(&Outcome::Err(ErrKind::NotFound)));
        assert!(!any.accepts(&Outcome::Unit));
        let swept = Expected::SweptBetween { min: 1, max: 2 };
        assert!(swept.accepts(&Outcome::Swept(2)));
        assert!(!swept.accepts(&Outcome::Swept(0)));
        assert!(!swept.accepts(&Outcome::Swept(3)));
    }
}
