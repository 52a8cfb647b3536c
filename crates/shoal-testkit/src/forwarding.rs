//! A store that forwards every call to another store and lets a test act around each one:
//! [`ForwardingStore`] with a [`Hooks`] implementation.
//!
//! Tests put it in front of a real store to count calls, delay them, refuse them, hang them,
//! or let a write be applied and then lose its reply. A hook sees each call twice:
//!
//! - [`Hooks::before`] gets the call with its arguments ([`Call`]) before it reaches the
//!   inner store. An `Err` fails the call without forwarding it (a refused connection); a
//!   delay or a never-ending future here delays or hangs it. What it returns (the hook's
//!   [`Hooks::Ticket`]) is handed to `after`, so a decision taken before the call (e.g. "lose
//!   this reply") is applied after it.
//! - [`Hooks::after`] gets the ticket and the inner store's answer ([`Outcome`]) once the inner
//!   call has finished. `Some(error)` replaces the answer: the call was applied (or failed) in
//!   the inner store, and the caller gets `error` instead (a reply lost mid-way).
//!
//! If the caller drops the call while the inner store works on it, the ticket is dropped
//! without `after` running.
//!
//! ```
//! use async_trait::async_trait;
//! use shoal_core::{Error, MemoryStore, Result, SessionId, SessionStore};
//! use shoal_testkit::forwarding::{Call, ForwardingStore, Hooks};
//!
//! /// Refuses every write: the inner store stays as it was.
//! #[derive(Debug)]
//! struct ReadOnly;
//!
//! #[async_trait]
//! impl Hooks for ReadOnly {
//!     type Ticket = ();
//!     async fn before(&self, call: Call<'_>) -> Result<()> {
//!         if call.op().is_write() {
//!             return Err(Error::unavailable("injected: read-only"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = ForwardingStore::new(MemoryStore::new(), ReadOnly);
//! let id = SessionId::generate();
//! assert!(store.delete(&id).await.is_err());
//! assert_eq!(store.get(&id).await?, None);
//! # Ok::<(), Error>(())
//! # }).unwrap();
//! ```

use std::{any::Any, fmt};

use async_trait::async_trait;
use shoal_core::{
    AppendedFrames, Error, FramePage, FrameQuery, GetMany, Health, LeaseReply, LeaseRequest,
    Limits, ListPage, ListQuery, NewFrame, PendingRequest, QuotaReply, QuotaRequest, RequestId,
    Result, Session, SessionFilter, SessionId, SessionRecord, SessionStore, SweepReport, Timestamp,
};

/// A [`SessionStore`] method that a [`ForwardingStore`] forwards.
///
/// Every required method of the trait has one. The provided `append_frame` is not forwarded
/// as such: the trait's own implementation calls `append_frames` with one frame, so the hooks
/// see it as [`Op::AppendFrames`] (as every store of the workspace handles it too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Op {
    /// [`SessionStore::create`].
    Create,
    /// [`SessionStore::get`].
    Get,
    /// [`SessionStore::get_many`].
    GetMany,
    /// [`SessionStore::update`].
    Update,
    /// [`SessionStore::touch`].
    Touch,
    /// [`SessionStore::delete`].
    Delete,
    /// [`SessionStore::list`].
    List,
    /// [`SessionStore::count`].
    Count,
    /// [`SessionStore::append_frames`] (and `append_frame`, through it).
    AppendFrames,
    /// [`SessionStore::frames`].
    Frames,
    /// [`SessionStore::count_frames`].
    CountFrames,
    /// [`SessionStore::delete_frames`].
    DeleteFrames,
    /// [`SessionStore::add_pending`].
    AddPending,
    /// [`SessionStore::take_pending`].
    TakePending,
    /// [`SessionStore::list_pending`].
    ListPending,
    /// [`SessionStore::sweep_expired`].
    SweepExpired,
    /// [`SessionStore::health`].
    Health,
    /// [`SessionStore::restore`].
    Restore,
    /// [`SessionStore::lease`].
    Lease,
    /// [`SessionStore::shared_secret`].
    SharedSecret,
    /// [`SessionStore::quota`].
    Quota,
}

impl Op {
    /// Every operation, in the trait's order.
    pub const ALL: [Op; 21] = [
        Op::Create,
        Op::Get,
        Op::GetMany,
        Op::Update,
        Op::Touch,
        Op::Delete,
        Op::List,
        Op::Count,
        Op::AppendFrames,
        Op::Frames,
        Op::CountFrames,
        Op::DeleteFrames,
        Op::AddPending,
        Op::TakePending,
        Op::ListPending,
        Op::SweepExpired,
        Op::Health,
        Op::Restore,
        Op::Lease,
        Op::SharedSecret,
        Op::Quota,
    ];

    /// The method's name, e.g. `append_frames`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Get => "get",
            Op::GetMany => "get_many",
            Op::Update => "update",
            Op::Touch => "touch",
            Op::Delete => "delete",
            Op::List => "list",
            Op::Count => "count",
            Op::AppendFrames => "append_frames",
            Op::Frames => "frames",
            Op::CountFrames => "count_frames",
            Op::DeleteFrames => "delete_frames",
            Op::AddPending => "add_pending",
            Op::TakePending => "take_pending",
            Op::ListPending => "list_pending",
            Op::SweepExpired => "sweep_expired",
            Op::Health => "health",
            Op::Restore => "restore",
            Op::Lease => "lease",
            Op::SharedSecret => "shared_secret",
            Op::Quota => "quota",
        }
    }

    /// Whether the method changes what the store holds (`take_pending` and `sweep_expired`
    /// remove entries, so they count); `false` for reads and `health`.
    pub fn is_write(self) -> bool {
        match self {
            Op::Create
            | Op::Update
            | Op::Touch
            | Op::Delete
            | Op::AppendFrames
            | Op::DeleteFrames
            | Op::AddPending
            | Op::TakePending
            | Op::SweepExpired
            | Op::Restore
            | Op::Lease
            | Op::SharedSecret
            | Op::Quota => true,
            Op::Get
            | Op::GetMany
            | Op::List
            | Op::Count
            | Op::Frames
            | Op::CountFrames
            | Op::ListPending
            | Op::Health => false,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One call with its arguments, as [`Hooks::before`] sees it before it is forwarded.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Call<'a> {
    /// `create(session)`.
    Create(&'a Session),
    /// `get(id)`.
    Get(&'a SessionId),
    /// `get_many(ids)`.
    GetMany(&'a [SessionId]),
    /// `update(session)`.
    Update(&'a Session),
    /// `touch(id)`.
    Touch(&'a SessionId),
    /// `delete(id)`.
    Delete(&'a SessionId),
    /// `list(query)`.
    List(&'a ListQuery),
    /// `count(filter)`.
    Count(&'a SessionFilter),
    /// `append_frames(id, frames)`.
    AppendFrames(&'a SessionId, &'a [NewFrame]),
    /// `frames(id, query)`.
    Frames(&'a SessionId, &'a FrameQuery),
    /// `count_frames(id)`.
    CountFrames(&'a SessionId),
    /// `delete_frames(id, through_seq)`.
    DeleteFrames(&'a SessionId, Option<u64>),
    /// `add_pending(id, request)`.
    AddPending(&'a SessionId, &'a PendingRequest),
    /// `take_pending(id, request_id)`.
    TakePending(&'a SessionId, &'a RequestId),
    /// `list_pending(id)`.
    ListPending(&'a SessionId),
    /// `sweep_expired()`.
    SweepExpired,
    /// `health()`.
    Health,
    /// `restore(record)`.
    Restore(&'a SessionRecord),
    /// `lease(id, request)`.
    Lease(&'a SessionId, LeaseRequest<'a>),
    /// `shared_secret(name, candidate)` (the name only: the candidate is a secret).
    SharedSecret(&'a str),
    /// `quota(request)`.
    Quota(QuotaRequest<'a>),
}

impl<'a> Call<'a> {
    /// Which method this is.
    pub fn op(&self) -> Op {
        match self {
            Call::Create(_) => Op::Create,
            Call::Get(_) => Op::Get,
            Call::GetMany(_) => Op::GetMany,
            Call::Update(_) => Op::Update,
            Call::Touch(_) => Op::Touch,
            Call::Delete(_) => Op::Delete,
            Call::List(_) => Op::List,
            Call::Count(_) => Op::Count,
            Call::AppendFrames(..) => Op::AppendFrames,
            Call::Frames(..) => Op::Frames,
            Call::CountFrames(_) => Op::CountFrames,
            Call::DeleteFrames(..) => Op::DeleteFrames,
            Call::AddPending(..) => Op::AddPending,
            Call::TakePending(..) => Op::TakePending,
            Call::ListPending(_) => Op::ListPending,
            Call::SweepExpired => Op::SweepExpired,
            Call::Health => Op::Health,
            Call::Restore(_) => Op::Restore,
            Call::Lease(..) => Op::Lease,
            Call::SharedSecret(_) => Op::SharedSecret,
            Call::Quota(_) => Op::Quota,
        }
    }

    /// The one session the call names (the session's or the record's id for `create`,
    /// `update` and `restore`); `None` for `get_many`, `list`, `count`, `sweep_expired` and
    /// `health`.
    pub fn session_id(&self) -> Option<&'a SessionId> {
        match *self {
            Call::Create(session) | Call::Update(session) => Some(&session.id),
            Call::Restore(record) => Some(&record.session.id),
            Call::Get(id)
            | Call::Touch(id)
            | Call::Delete(id)
            | Call::AppendFrames(id, _)
            | Call::Frames(id, _)
            | Call::CountFrames(id)
            | Call::DeleteFrames(id, _)
            | Call::AddPending(id, _)
            | Call::TakePending(id, _)
            | Call::ListPending(id)
            | Call::Lease(id, _) => Some(id),
            Call::GetMany(_)
            | Call::List(_)
            | Call::Count(_)
            | Call::SweepExpired
            | Call::Health
            | Call::SharedSecret(_)
            | Call::Quota(_) => None,
        }
    }
}

/// What the inner store answered, as [`Hooks::after`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct Outcome<'a> {
    answer: std::result::Result<&'a (dyn Any + Send + Sync), &'a Error>,
}

impl<'a> Outcome<'a> {
    fn of<T: Any + Send + Sync>(answer: &'a Result<T>) -> Self {
        Outcome {
            answer: match answer {
                Ok(value) => Ok(value),
                Err(error) => Err(error),
            },
        }
    }

    /// Whether the inner store succeeded.
    pub fn is_ok(&self) -> bool {
        self.answer.is_ok()
    }

    /// The inner store's error, if it failed.
    pub fn error(&self) -> Option<&'a Error> {
        self.answer.err()
    }

    /// The inner store's value if it succeeded with a `T` (the method's return type inside
    /// `Result`, e.g. `Vec<u64>` for `append_frames`, `Option<Session>` for `get`); `None` if
    /// it failed or answered another type.
    pub fn value<T: Any>(&self) -> Option<&'a T> {
        let value: &'a dyn Any = self.answer.ok()?;
        value.downcast_ref()
    }
}

/// What a [`ForwardingStore`] does around each call it forwards (see the
/// [module docs](self)).
#[async_trait]
pub trait Hooks: Send + Sync + fmt::Debug + 'static {
    /// What [`Hooks::before`] hands to [`Hooks::after`] for the same call (`()` when nothing).
    /// It is held while the inner store works, and dropped unused if the caller drops the call.
    type Ticket: Send;

    /// Runs before `call` is forwarded. `Err` fails the call without forwarding it.
    async fn before(&self, call: Call<'_>) -> Result<Self::Ticket>;

    /// Runs after the inner store answered `op` with `outcome`. `Some(error)` makes the call
    /// fail with `error` instead. The default does nothing.
    async fn after(&self, op: Op, ticket: Self::Ticket, outcome: Outcome<'_>) -> Option<Error> {
        let _ = (op, ticket, outcome);
        None
    }
}

/// A [`SessionStore`] that forwards every call to `S`, running the hooks `H` around each (see
/// the [module docs](self)). Its `backend_name` is the inner store's unless set with
/// [`ForwardingStore::with_backend_name`].
#[derive(Clone, Debug)]
pub struct ForwardingStore<S, H> {
    inner: S,
    hooks: H,
    backend_name: Option<&'static str>,
}

impl<S, H> ForwardingStore<S, H> {
    /// Forwards to `inner`, with `hooks` around each call.
    pub fn new(inner: S, hooks: H) -> Self {
        ForwardingStore {
            inner,
            hooks,
            backend_name: None,
        }
    }

    /// Reports `name` as the backend name instead of the inner store's.
    pub fn with_backend_name(mut self, name: &'static str) -> Self {
        self.backend_name = Some(name);
        self
    }

    /// The store calls are forwarded to (to read or write it without the hooks).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The hooks (to steer or read them from the test).
    pub fn hooks(&self) -> &H {
        &self.hooks
    }
}

impl<S: SessionStore, H: Hooks> ForwardingStore<S, H> {
    /// Ends a forwarded call: the hooks' `after`, then the inner answer or their error.
    async fn finish<T: Any + Send + Sync>(
        &self,
        op: Op,
        ticket: H::Ticket,
        answer: Result<T>,
    ) -> Result<T> {
        match self.hooks.after(op, ticket, Outcome::of(&answer)).await {
            Some(error) => Err(error),
            None => answer,
        }
    }
}

#[async_trait]
impl<S: SessionStore, H: Hooks> SessionStore for ForwardingStore<S, H> {
    fn backend_name(&self) -> &'static str {
        self.backend_name
            .unwrap_or_else(|| self.inner.backend_name())
    }

    fn limits(&self) -> &Limits {
        self.inner.limits()
    }

    fn change_feed(&self) -> Option<std::sync::Arc<dyn shoal_core::feed::ChangeFeed>> {
        self.inner.change_feed()
    }

    async fn create(&self, session: Session) -> Result<Session> {
        let ticket = self.hooks.before(Call::Create(&session)).await?;
        let answer = self.inner.create(session).await;
        self.finish(Op::Create, ticket, answer).await
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        let ticket = self.hooks.before(Call::Get(id)).await?;
        let answer = self.inner.get(id).await;
        self.finish(Op::Get, ticket, answer).await
    }

    async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
        let ticket = self.hooks.before(Call::GetMany(ids)).await?;
        let answer = self.inner.get_many(ids).await;
        self.finish(Op::GetMany, ticket, answer).await
    }

    async fn update(&self, session: &Session) -> Result<Session> {
        let ticket = self.hooks.before(Call::Update(session)).await?;
        let answer = self.inner.update(session).await;
        self.finish(Op::Update, ticket, answer).await
    }

    async fn touch(&self, id: &SessionId) -> Result<Timestamp> {
        let ticket = self.hooks.before(Call::Touch(id)).await?;
        let answer = self.inner.touch(id).await;
        self.finish(Op::Touch, ticket, answer).await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let ticket = self.hooks.before(Call::Delete(id)).await?;
        let answer = self.inner.delete(id).await;
        self.finish(Op::Delete, ticket, answer).await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        let ticket = self.hooks.before(Call::List(query)).await?;
        let answer = self.inner.list(query).await;
        self.finish(Op::List, ticket, answer).await
    }

    async fn count(&self, filter: &SessionFilter) -> Result<u64> {
        let ticket = self.hooks.before(Call::Count(filter)).await?;
        let answer = self.inner.count(filter).await;
        self.finish(Op::Count, ticket, answer).await
    }

    async fn append_frames(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
        let ticket = self.hooks.before(Call::AppendFrames(id, &frames)).await?;
        let answer = self.inner.append_frames(id, frames).await;
        self.finish(Op::AppendFrames, ticket, answer).await
    }

    async fn append_frames_with_epoch(
        &self,
        id: &SessionId,
        frames: Vec<NewFrame>,
    ) -> Result<AppendedFrames> {
        let ticket = self.hooks.before(Call::AppendFrames(id, &frames)).await?;
        let answer = self.inner.append_frames_with_epoch(id, frames).await;
        self.finish(Op::AppendFrames, ticket, answer).await
    }

    async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage> {
        let ticket = self.hooks.before(Call::Frames(id, query)).await?;
        let answer = self.inner.frames(id, query).await;
        self.finish(Op::Frames, ticket, answer).await
    }

    async fn count_frames(&self, id: &SessionId) -> Result<u64> {
        let ticket = self.hooks.before(Call::CountFrames(id)).await?;
        let answer = self.inner.count_frames(id).await;
        self.finish(Op::CountFrames, ticket, answer).await
    }

    async fn delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64> {
        let ticket = self
            .hooks
            .before(Call::DeleteFrames(id, through_seq))
            .await?;
        let answer = self.inner.delete_frames(id, through_seq).await;
        self.finish(Op::DeleteFrames, ticket, answer).await
    }

    async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()> {
        let ticket = self.hooks.before(Call::AddPending(id, &request)).await?;
        let answer = self.inner.add_pending(id, request).await;
        self.finish(Op::AddPending, ticket, answer).await
    }

    async fn take_pending(
        &self,
        id: &SessionId,
        request_id: &RequestId,
    ) -> Result<Option<PendingRequest>> {
        let ticket = self.hooks.before(Call::TakePending(id, request_id)).await?;
        let answer = self.inner.take_pending(id, request_id).await;
        self.finish(Op::TakePending, ticket, answer).await
    }

    async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>> {
        let ticket = self.hooks.before(Call::ListPending(id)).await?;
        let answer = self.inner.list_pending(id).await;
        self.finish(Op::ListPending, ticket, answer).await
    }

    async fn sweep_expired(&self) -> Result<SweepReport> {
        let ticket = self.hooks.before(Call::SweepExpired).await?;
        let answer = self.inner.sweep_expired().await;
        self.finish(Op::SweepExpired, ticket, answer).await
    }

    async fn health(&self) -> Result<Health> {
        let ticket = self.hooks.before(Call::Health).await?;
        let answer = self.inner.health().await;
        self.finish(Op::Health, ticket, answer).await
    }

    async fn restore(&self, record: SessionRecord) -> Result<()> {
        let ticket = self.hooks.before(Call::Restore(&record)).await?;
        let answer = self.inner.restore(record).await;
        self.finish(Op::Restore, ticket, answer).await
    }

    async fn lease(&self, id: &SessionId, request: LeaseRequest<'_>) -> Result<LeaseReply> {
        let ticket = self.hooks.before(Call::Lease(id, request)).await?;
        let answer = self.inner.lease(id, request).await;
        self.finish(Op::Lease, ticket, answer).await
    }

    async fn shared_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        let ticket = self.hooks.before(Call::SharedSecret(name)).await?;
        let answer = self.inner.shared_secret(name, candidate).await;
        self.finish(Op::SharedSecret, ticket, answer).await
    }

    async fn quota(&self, request: QuotaRequest<'_>) -> Result<QuotaReply> {
        let ticket = self.hooks.before(Call::Quota(request)).await?;
        let answer = self.inner.quota(request).await;
        self.finish(Op::Quota, ticket, answer).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use shoal_core::{Direction, MemoryStore, Transport};

    use super::*;

    /// What the recorder saw of one call.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Seen {
        op: Op,
        id: Option<SessionId>,
    }

    /// Records every call before and after; fails the ops it is told to.
    #[derive(Debug, Default)]
    struct Recorder {
        before: Mutex<Vec<Seen>>,
        after: Mutex<Vec<(Op, bool)>>,
        refuse: Mutex<Option<Op>>,
        lose_reply: Mutex<Option<Op>>,
        appended: Mutex<Vec<Vec<u64>>>,
    }

    impl Recorder {
        fn refuse(&self, op: Option<Op>) {
            *self.refuse.lock().unwrap_or_else(|e| e.into_inner()) = op;
        }

        fn lose_reply(&self, op: Option<Op>) {
            *self.lose_reply.lock().unwrap_or_else(|e| e.into_inner()) = op;
        }

        fn before_ops(&self) -> Vec<Op> {
            let seen = self.before.lock().unwrap_or_else(|e| e.into_inner());
            seen.iter().map(|s| s.op).collect()
        }

        fn after_ops(&self) -> Vec<(Op, bool)> {
            self.after.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }
    }

    #[async_trait]
    impl Hooks for Recorder {
        /// The op, checked in `after`.
        type Ticket = Op;

        async fn before(&self, call: Call<'_>) -> Result<Op> {
            let op = call.op();
            self.before
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Seen {
                    op,
                    id: call.session_id().cloned(),
                });
            if *self.refuse.lock().unwrap_or_else(|e| e.into_inner()) == Some(op) {
                return Err(Error::unavailable("injected: refused"));
            }
            Ok(op)
        }

        async fn after(&self, op: Op, ticket: Op, outcome: Outcome<'_>) -> Option<Error> {
            assert_eq!(op, ticket, "the ticket of the same call");
            if let Some(seqs) = outcome.value::<Vec<u64>>() {
                self.appended
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(seqs.clone());
            }
            self.after
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((op, outcome.is_ok()));
            let lose = *self.lose_reply.lock().unwrap_or_else(|e| e.into_inner()) == Some(op);
            lose.then(|| Error::unavailable("injected: reply lost"))
        }
    }

    fn sid(s: &str) -> SessionId {
        SessionId::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn frame(content: &str) -> NewFrame {
        NewFrame::new(Direction::ServerToClient, content.to_owned())
    }

    fn store() -> ForwardingStore<MemoryStore, Recorder> {
        ForwardingStore::new(MemoryStore::new(), Recorder::default())
    }

    fn ok<T>(r: Result<T>, what: &str) -> T {
        r.unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    #[tokio::test]
    async fn every_method_is_forwarded_between_its_hooks() {
        let store = store();
        let id = sid("every");
        let created = ok(
            store
                .create(Session::new(id.clone(), Transport::Http))
                .await,
            "create",
        );
        assert!(ok(store.get(&id).await, "get").is_some());
        ok(store.get_many(std::slice::from_ref(&id)).await, "get_many");
        ok(store.update(&created).await, "update");
        ok(store.touch(&id).await, "touch");
        ok(store.delete(&id).await, "delete");
        ok(store.list(&ListQuery::first(10)).await, "list");
        ok(store.count(&SessionFilter::default()).await, "count");
        let other = sid("every-other");
        ok(
            store
                .create(Session::new(other.clone(), Transport::Http))
                .await,
            "create other",
        );
        let before_rest = store.hooks().before_ops().len();
        assert_eq!(
            ok(
                store
                    .append_frames(&other, vec![frame("a"), frame("b")])
                    .await,
                "append_frames"
            ),
            vec![1, 2]
        );
        ok(
            store.frames(&other, &FrameQuery::after(0, 10)).await,
            "frames",
        );
        ok(store.count_frames(&other).await, "count_frames");
        ok(store.delete_frames(&other, Some(1)).await, "delete_frames");
        ok(
            store
                .add_pending(&other, PendingRequest::new(1, "tools/call"))
                .await,
            "add_pending",
        );
        ok(
            store.take_pending(&other, &RequestId::from(1)).await,
            "take_pending",
        );
        ok(store.list_pending(&other).await, "list_pending");
        ok(store.sweep_expired().await, "sweep_expired");
        ok(store.health().await, "health");
        let restored = sid("every-restored");
        let record = SessionRecord::new(
            Session::new(restored.clone(), Transport::Http),
            Vec::new(),
            Vec::new(),
        );
        ok(store.restore(record).await, "restore");
        let lease = LeaseRequest::Read { name: "g0" };
        ok(store.lease(&other, lease).await, "lease");
        ok(
            store.shared_secret("k", b"0123456789abcdef").await,
            "shared_secret",
        );
        let release = QuotaRequest::Release {
            subject: "addr:192.0.2.1",
            member: "m",
        };
        ok(store.quota(release).await, "quota");

        let mut ops = store.hooks().before_ops();
        ops.remove(before_rest - 1); // the second create
        assert_eq!(ops, Op::ALL.to_vec(), "before: every op once, in order");
        let after: Vec<Op> = store
            .hooks()
            .after_ops()
            .iter()
            .map(|(op, _)| *op)
            .collect();
        assert_eq!(
            after,
            store.hooks().before_ops(),
            "after: the same calls in the same order"
        );
        assert!(store.hooks().after_ops().iter().all(|(_, ok)| *ok));

        let seen = store
            .hooks()
            .before
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let id_of = |op: Op| {
            seen.iter()
                .rfind(|s| s.op == op)
                .map(|s| s.id.clone())
                .unwrap_or_else(|| panic!("{op} seen"))
        };
        assert_eq!(id_of(Op::Create), Some(other.clone()));
        assert_eq!(id_of(Op::Update), Some(id.clone()));
        assert_eq!(id_of(Op::Restore), Some(restored));
        assert_eq!(id_of(Op::Lease), Some(other.clone()));
        assert_eq!(id_of(Op::TakePending), Some(other));
        assert_eq!(id_of(Op::GetMany), None);
        assert_eq!(id_of(Op::Health), None);
    }

    #[tokio::test]
    async fn before_can_fail_a_call_without_forwarding_it() {
        let store = store();
        let id = sid("refused");
        store.hooks().refuse(Some(Op::Create));
        let refused = store
            .create(Session::new(id.clone(), Transport::Http))
            .await;
        assert!(
            matches!(refused, Err(Error::Unavailable { .. })),
            "{refused:?}"
        );
        assert_eq!(ok(store.inner().get(&id).await, "inner get"), None);
        assert!(store.hooks().after_ops().is_empty(), "after did not run");

        store.hooks().refuse(None);
        ok(
            store
                .create(Session::new(id.clone(), Transport::Http))
                .await,
            "create",
        );
        assert!(ok(store.inner().get(&id).await, "inner get").is_some());
    }

    #[tokio::test]
    async fn after_can_fail_a_call_that_was_applied() {
        let store = store();
        let id = sid("lost");
        ok(
            store
                .create(Session::new(id.clone(), Transport::Http))
                .await,
            "create",
        );
        store.hooks().lose_reply(Some(Op::AppendFrames));
        let lost = store.append_frames(&id, vec![frame("x")]).await;
        assert!(matches!(lost, Err(Error::Unavailable { .. })), "{lost:?}");
        assert_eq!(ok(store.inner().count_frames(&id).await, "count"), 1);
        assert_eq!(
            *store
                .hooks()
                .appended
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
            vec![vec![1]],
            "after saw the inner answer"
        );
    }

    #[tokio::test]
    async fn after_sees_the_inner_error() {
        let store = store();
        let gone = store.touch(&sid("gone")).await;
        assert!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");
        assert_eq!(store.hooks().after_ops(), vec![(Op::Touch, false)]);
    }

    #[tokio::test]
    async fn append_frame_reaches_the_hooks_as_append_frames() {
        let store = store();
        let id = sid("one-frame");
        ok(
            store
                .create(Session::new(id.clone(), Transport::Http))
                .await,
            "create",
        );
        assert_eq!(ok(store.append_frame(&id, frame("x")).await, "append"), 1);
        assert_eq!(
            store.hooks().before_ops(),
            vec![Op::Create, Op::AppendFrames]
        );
    }

    #[test]
    fn backend_name_is_the_inner_one_unless_set() {
        assert_eq!(store().backend_name(), MemoryStore::new().backend_name());
        assert_eq!(
            store().with_backend_name("recorded").backend_name(),
            "recorded"
        );
    }
}
