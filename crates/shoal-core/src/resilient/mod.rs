//! The resilience wrapper [`Resilient<P, F>`]: a [`SessionStore`] over a *primary* store (usually
//! Redis) and a *fallback* store (usually [`MemoryStore`](crate::MemoryStore)) that keeps the
//! proxy serving while the primary is in trouble.
//!
//! # What it does to every call
//! - **Deadline.** Every attempt on the primary is bounded by
//!   [`op_timeout`](ResilienceConfig::op_timeout) (point operations) or
//!   [`bulk_timeout`](ResilienceConfig::bulk_timeout) (get_many, list, count, frames,
//!   sweep_expired, restore); a late answer is [`Error::Timeout`].
//! - **Retries** (backoff with jitter, [`RetryConfig`]) only for idempotent operations — the
//!   reads, `touch` and `sweep_expired` — after `Unavailable` or `Timeout`, and only while the
//!   breaker lets calls through. `create`, `update`, `delete`, `append_frames`,
//!   `delete_frames`, `add_pending`, `take_pending` and `restore` are never retried: their
//!   effect after a timeout is unknown, and the caller gets the error.
//! - **Circuit breaker** ([`BreakerConfig`]): `Unavailable` and `Timeout` are failures; any
//!   other answer (also `NotFound`, `Conflict`) is a success. Closed → Open after
//!   `failure_threshold` consecutive failures or a failure ratio over a sliding window;
//!   Open → HalfOpen after `cooldown`; in HalfOpen a few live calls and the health monitor's
//!   probes reach the primary, `close_after` consecutive successes close it, a failure opens
//!   it again. While open, calls do not wait for the primary at all: they take the fallback
//!   path at once (fail fast).
//! - **Health monitor** ([`Resilient::spawn_monitor`]): probes `primary.health()` every
//!   [`interval`](HealthConfig::interval) under its own deadline, feeds the breaker, and once
//!   the breaker is closed replays the journal.
//!
//! # The fallback path (breaker open), per [`FallbackMode`]
//! - **`none`**: every call is [`Error::Unavailable`].
//! - **`read-only`**: reads (`get`, `get_many`, `frames`, `count_frames`, `list_pending`) are
//!   served from the fallback store when it holds the session — point it at a replica or a
//!   snapshot; a session it does not hold is `Unavailable`, never `NotFound`. `list`, `count`
//!   and every write are `Unavailable`.
//! - **`memory`**: writes are accepted into the fallback store and a bounded journal:
//!   - a session **created** (or restored) during the outage lives in the fallback and is
//!     marked *local*; every operation on it works, and its seqs are the ones it will keep;
//!   - for a session **held by the primary**, `append_frames`, `touch` and `delete` are
//!     journaled and acknowledged (appends get *provisional* seqs, see below); `get`,
//!     `frames`, `count_frames`, `list_pending`, `update`, `delete_frames`, `add_pending` and
//!     `take_pending` need the primary and are `Unavailable`;
//!   - a read of a session the fallback does not hold is `Unavailable`, never `NotFound`;
//!     `list` and `count` are `Unavailable` (a partial listing would look complete);
//!   - `touch` of a session held by the primary answers `now + session_ttl` by the wall
//!     clock (the primary's own answer is not available);
//!   - a full journal ([`JournalConfig`]) refuses the write with `Unavailable` ("journal is
//!     full", nothing written) and counts `shoal_resilient_journal_full_total`.
//!
//! # Guarantees
//! - **An acknowledged frame is stored in the primary exactly once, in the order it was
//!   acknowledged within its session**, also across an outage: frames acknowledged by the
//!   primary are there; frames acknowledged during an outage are replayed after the frames the
//!   session had, in order. The one exception is a session that no longer exists at replay
//!   (deleted or expired elsewhere, or never existed): its journaled frames are dropped,
//!   exactly as if they had been appended just before the delete, and counted in
//!   `shoal_resilient_replay_dropped_total{reason="session_gone"}` with a warning.
//! - **A write that returned an error may or may not have been applied** — the caller was
//!   told. This is the case for a non-idempotent write that reached the primary and timed out
//!   or lost its connection (it is not retried, so it is applied at most once).
//! - **Replay is idempotent.** A replayed append that fails without an answer
//!   (`Unavailable`, `Timeout`: the breaker trips) or with an unreadable one (`Backend`, e.g. a
//!   reply truncated by a lost connection: the breaker stays as it is) is marked in doubt;
//!   the next attempt first reads the primary's frames after the `last_seq` it saw before,
//!   and appends only if the exact frames (content, stream, direction, timestamp, content
//!   type, headers) are not there as one contiguous run. (The only way this can wrongly skip a
//!   frame is another writer appending byte-identical frames with the same millisecond
//!   timestamp in that window.) A local session whose `restore` failed the same way refuses
//!   writes (reads still work) until the next replay settles it. A write found absent by that
//!   read-back and failing with `Backend` again is taken as refused (below), so one batch the
//!   primary keeps failing cannot hold the journal forever.
//! - **Order.** While a session has journaled writes not yet replayed, later writes to it are
//!   journaled too, even once the breaker has closed, so they reach the primary after them.
//!   A session's journaled writes are replayed in the order they were accepted, one after
//!   another, under its lock. Sessions are started in the order of their first journaled
//!   write, up to [`JournalConfig::replay_concurrency`] at a time, so order holds within a
//!   session but not across sessions (as for live writes to different sessions). Until a
//!   local session is replayed, `list` and `count` (served by the primary) do not include it.
//! - **Scope.** The journal lives in process memory: an instance that dies during an outage
//!   loses what it journaled (those writes were acknowledged). Use fallback mode `none` or
//!   `read-only` where that is not acceptable.
//!
//! # Conflict rules at replay
//! - **Session deleted (or expired) elsewhere during the outage**: journaled appends and
//!   touches are dropped (metric + warning); a journaled delete is applied (idempotent).
//! - **Other instances appended meanwhile**: replayed frames get the next seqs after theirs;
//!   the primary's per-session seq order is the truth.
//! - **A local session's id exists in the primary** (another instance created the same id —
//!   with random ids this means an id was reused on purpose): the primary's session wins and
//!   the local copy is dropped with an error log and
//!   `shoal_resilient_replay_dropped_total{reason="conflict"}`. A session the primary
//!   refuses (e.g. `max_sessions` reached) is dropped the same way (`reason="refused"`), and
//!   so are journaled frames it refuses. A refusal is a definite answer (`LimitExceeded`,
//!   `InvalidInput`, …), or a second `Backend` error after a read-back found the write absent.
//!
//! # Seqs and SSE event ids
//! - Frames of a **local** session keep their seqs: replay copies the session with `restore`,
//!   which keeps seqs, so event ids issued during the outage stay valid.
//! - Frames appended during the outage to a session **held by the primary** get provisional
//!   seqs in `2^52 + 1 .. 2^53` ([`is_provisional`]; unique on this instance), because only the
//!   primary can assign the final ones. After replay, [`Resilient::resolve_seq`] maps a
//!   provisional seq to its final seq, and `frames(after_seq = provisional)` /
//!   `delete_frames(through = provisional)` translate it automatically while the mapping is
//!   kept ([`JournalConfig::seq_map_capacity`]). A provisional seq this instance does not know
//!   (another instance, a restart, an evicted mapping) is `InvalidInput`: the proxy must then
//!   restart the stream instead of resuming it. Before replay, `frames` of such a session is
//!   `Unavailable`.
//!
//! # Example
//! ```
//! use shoal_core::resilient::{FallbackMode, ResilienceConfig, Resilient};
//! use shoal_core::{Direction, MemoryStore, NewFrame, Session, SessionId, SessionStore, Transport};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // In production the primary is a `shoal_redis::RedisStore`.
//! let store = Resilient::new(
//!     MemoryStore::new(),
//!     MemoryStore::new(),
//!     ResilienceConfig::default().with_fallback(FallbackMode::Memory),
//! )?;
//! let _monitor = store.spawn_monitor(); // probes, closes the breaker, replays; stops on drop
//!
//! let id = SessionId::generate();
//! store.create(Session::new(id.clone(), Transport::StreamableHttp)).await?;
//! let seq = store.append_frame(&id, NewFrame::new(Direction::ClientToServer, "{}")).await?;
//! assert_eq!(seq, 1);
//! let health = store.health().await?;
//! assert_eq!(health.details["breaker_state"], "closed");
//! # Ok::<(), shoal_core::Error>(())
//! # }).unwrap();
//! ```

mod breaker;
mod config;
mod journal;
mod metrics;
mod monitor;
mod replay;
mod seqmap;

use std::{
    borrow::Cow,
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use backon::BackoffBuilder;
use tokio::time::Instant;

pub use breaker::BreakerState;
pub use config::{
    BreakerConfig, FallbackMode, HealthConfig, JournalConfig, ResilienceConfig, RetryConfig,
};
pub use monitor::{MonitorHandle, ProbeReport};
pub use replay::ReplayReport;
pub use seqmap::{PROVISIONAL_SEQ_BASE, PROVISIONAL_SEQ_END, is_provisional};

use self::{
    breaker::{Breaker, Outcome, Ticket, Transition},
    journal::{Journal, MarkKind, Op},
    seqmap::SeqMap,
};
use crate::{
    Error, FramePage, FrameQuery, GetMany, Health, HealthStatus, ItemError, Limits, ListPage,
    ListQuery, NewFrame, PendingRequest, RequestId, Result, Session, SessionFilter, SessionId,
    SessionRecord, SessionStore, SweepReport, Timestamp,
};

/// A [`SessionStore`] that bounds, retries and breaks calls to a primary store and falls back
/// to a second store while the primary is out. See the [module docs](self) for the exact
/// guarantees. Cloning shares the same state.
///
/// ```
/// use shoal_core::resilient::{BreakerState, ResilienceConfig, Resilient};
/// use shoal_core::{MemoryStore, Session, SessionId, SessionStore, Transport};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = Resilient::new(MemoryStore::new(), MemoryStore::new(), ResilienceConfig::default())?;
/// let s = store.create(Session::new(SessionId::generate(), Transport::Stdio)).await?;
/// assert_eq!(store.get(&s.id).await?.map(|s| s.revision), Some(1));
/// assert_eq!(store.breaker_state(), BreakerState::Closed);
/// assert_eq!(store.stats().journal_entries, 0);
/// # Ok::<(), shoal_core::Error>(())
/// # }).unwrap();
/// ```
pub struct Resilient<P, F> {
    inner: Arc<Inner<P, F>>,
}

impl<P, F> Clone for Resilient<P, F> {
    fn clone(&self) -> Self {
        Resilient {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P: SessionStore, F: SessionStore> std::fmt::Debug for Resilient<P, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resilient")
            .field("primary", &self.inner.primary)
            .field("fallback", &self.inner.fallback)
            .field("mode", &self.inner.config.fallback)
            .field("breaker", &self.inner.breaker.state())
            .finish_non_exhaustive()
    }
}

struct Inner<P, F> {
    primary: P,
    fallback: F,
    config: ResilienceConfig,
    breaker: Breaker,
    journal: Mutex<Journal>,
    /// Mirror of `journal.marked()`, read without the lock on the hot path.
    marked: AtomicUsize,
    next_provisional: AtomicU64,
    seqs: Mutex<SeqMap>,
    probe: Mutex<Option<ProbeReport>>,
    replay_lock: tokio::sync::Mutex<()>,
    last_replay: Mutex<Option<ReplayReport>>,
    totals: Mutex<ReplayReport>,
    journal_full: AtomicU64,
    primary_metrics: metrics::Handles,
    fallback_metrics: metrics::Handles,
}

/// Counters and state for tests, `shoal health` and dashboards.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ResilienceStats {
    /// The breaker's state now.
    pub breaker: BreakerState,
    /// How long it has been in that state.
    pub breaker_for: Duration,
    /// How many times it has opened since the wrapper was built.
    pub breaker_opened: u64,
    /// Journal entries not yet replayed.
    pub journal_entries: usize,
    /// Journal bytes not yet replayed.
    pub journal_bytes: usize,
    /// Sessions with journaled writes (local or held by the primary).
    pub marked_sessions: usize,
    /// Sessions created during an outage and not yet copied to the primary.
    pub local_sessions: usize,
    /// Writes refused because the journal was full.
    pub journal_full_rejections: u64,
    /// Provisional seq mappings kept.
    pub seq_mappings: usize,
    /// The last health probe.
    pub last_probe: Option<ProbeReport>,
    /// The last replay that did any work.
    pub last_replay: Option<ReplayReport>,
    /// Every replay so far, summed (durations too).
    pub replay_totals: ReplayReport,
}

enum Call<T> {
    /// The primary was called (perhaps several times); its last answer.
    Done(Result<T>),
    /// The breaker refused the call; the primary was not called (or, for retried idempotent
    /// calls, refused a retry).
    Rejected,
}

enum Route {
    /// The session has nothing journaled: the call goes to the primary.
    Direct,
    /// The session is marked; the guard serialises it with replay and other marked writes.
    Marked(MarkKind, tokio::sync::OwnedMutexGuard<()>),
}

fn classify<T>(r: &Result<T>) -> Outcome {
    match r {
        Ok(_) => Outcome::Success,
        Err(Error::Unavailable { .. } | Error::Timeout { .. }) => Outcome::Failure,
        Err(Error::Backend(_)) => Outcome::Neutral,
        Err(_) => Outcome::Success,
    }
}

fn retryable(e: &Error) -> bool {
    matches!(e, Error::Unavailable { .. } | Error::Timeout { .. })
}

fn frames_bytes(frames: &[NewFrame]) -> usize {
    frames.iter().map(NewFrame::size).sum()
}

fn record_bytes(r: &SessionRecord) -> usize {
    r.session.metadata_bytes() + r.frames.iter().map(crate::Frame::size).sum::<usize>()
}

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    /// Wraps `primary` with `fallback` behind it. Fails with `InvalidInput` for an invalid
    /// `config`. Needs no runtime; start the health monitor with [`Resilient::spawn_monitor`].
    pub fn new(primary: P, fallback: F, config: ResilienceConfig) -> Result<Self> {
        config.validate()?;
        let breaker = Breaker::new(config.breaker.clone());
        let journal = Journal::new(config.journal.max_entries, config.journal.max_bytes);
        let seqs = SeqMap::new(config.journal.seq_map_capacity);
        let primary_metrics = metrics::Handles::new(primary.backend_name());
        let fallback_metrics = metrics::Handles::new(fallback.backend_name());
        ::metrics::gauge!(metrics::BREAKER_STATE, "backend" => primary.backend_name())
            .set(BreakerState::Closed.gauge_value());
        Ok(Resilient {
            inner: Arc::new(Inner {
                primary,
                fallback,
                config,
                breaker,
                journal: Mutex::new(journal),
                marked: AtomicUsize::new(0),
                next_provisional: AtomicU64::new(PROVISIONAL_SEQ_BASE),
                seqs: Mutex::new(seqs),
                probe: Mutex::new(None),
                replay_lock: tokio::sync::Mutex::new(()),
                last_replay: Mutex::new(None),
                totals: Mutex::new(ReplayReport::default()),
                journal_full: AtomicU64::new(0),
                primary_metrics,
                fallback_metrics,
            }),
        })
    }

    /// The primary store.
    pub fn primary(&self) -> &P {
        &self.inner.primary
    }

    /// The fallback store.
    pub fn fallback(&self) -> &F {
        &self.inner.fallback
    }

    /// The configuration.
    pub fn config(&self) -> &ResilienceConfig {
        &self.inner.config
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// Whether `id` is a session created during an outage that is not yet in the primary.
    pub fn is_local(&self, id: &SessionId) -> bool {
        matches!(self.journal().kind(id), Some(MarkKind::Local { .. }))
    }

    /// The final seq of a provisional seq handed out for `id` during an outage, once the
    /// journal has been replayed (and while the mapping is kept). A seq that is not
    /// provisional is returned as it is.
    pub fn resolve_seq(&self, id: &SessionId, seq: u64) -> Option<u64> {
        if !is_provisional(seq) {
            return Some(seq);
        }
        lock(&self.inner.seqs).get(id, seq)
    }

    /// A snapshot of the counters and state.
    pub fn stats(&self) -> ResilienceStats {
        let (since, opened) = self.inner.breaker.since();
        let (entries, bytes, marked, local) = {
            let j = self.journal();
            (j.len(), j.bytes(), j.marked(), j.local())
        };
        ResilienceStats {
            breaker: self.inner.breaker.state(),
            breaker_for: since.elapsed(),
            breaker_opened: opened,
            journal_entries: entries,
            journal_bytes: bytes,
            marked_sessions: marked,
            local_sessions: local,
            journal_full_rejections: self.inner.journal_full.load(Ordering::Relaxed),
            seq_mappings: lock(&self.inner.seqs).len(),
            last_probe: lock(&self.inner.probe).clone(),
            last_replay: lock(&self.inner.last_replay).clone(),
            replay_totals: lock(&self.inner.totals).clone(),
        }
    }

    // ------------------------------------------------------------------------------------
    // Plumbing
    // ------------------------------------------------------------------------------------

    fn journal(&self) -> MutexGuard<'_, Journal> {
        lock(&self.inner.journal)
    }

    /// Runs `f` on the journal and refreshes the gauges and the fast-path counter.
    fn with_journal<R>(&self, f: impl FnOnce(&mut Journal) -> R) -> R {
        let mut j = self.journal();
        let r = f(&mut j);
        self.inner.marked.store(j.marked(), Ordering::Release);
        let b = self.primary_name();
        ::metrics::gauge!(metrics::JOURNAL_ENTRIES, "backend" => b).set(j.len() as f64);
        ::metrics::gauge!(metrics::JOURNAL_BYTES, "backend" => b).set(j.bytes() as f64);
        ::metrics::gauge!(metrics::MARKED_SESSIONS, "backend" => b).set(j.marked() as f64);
        r
    }

    fn mode(&self) -> FallbackMode {
        self.inner.config.fallback
    }

    fn point(&self) -> Duration {
        self.inner.config.op_timeout
    }

    fn bulk(&self) -> Duration {
        self.inner.config.bulk_timeout
    }

    fn primary_name(&self) -> &'static str {
        self.inner.primary.backend_name()
    }

    fn fallback_name(&self) -> &'static str {
        self.inner.fallback.backend_name()
    }

    fn on_transition(&self, t: Option<Transition>) {
        let Some(t) = t else { return };
        let b = self.primary_name();
        ::metrics::gauge!(metrics::BREAKER_STATE, "backend" => b).set(t.to.gauge_value());
        ::metrics::counter!(
            metrics::BREAKER_TRANSITIONS,
            "backend" => b,
            "to" => t.to.as_str()
        )
        .increment(1);
        match t.to {
            BreakerState::Open => tracing::warn!(
                primary = self.primary_name(),
                from = t.from.as_str(),
                mode = self.mode().as_str(),
                "resilient: circuit breaker opened; calls take the fallback path"
            ),
            BreakerState::HalfOpen => tracing::info!(
                primary = self.primary_name(),
                "resilient: circuit breaker half-open; probing the primary"
            ),
            BreakerState::Closed => tracing::info!(
                primary = self.primary_name(),
                "resilient: circuit breaker closed; the primary is back"
            ),
        }
    }

    /// Asks the breaker for a ticket; counts a refusal.
    fn admit(&self, op: &'static str) -> Option<Ticket<'_>> {
        let (ticket, t) = self.inner.breaker.admit();
        self.on_transition(t);
        if ticket.is_none() {
            metrics::rejected(self.primary_name(), op);
        }
        ticket
    }

    /// One attempt on the primary under `timeout`, reported to the breaker and the metrics.
    async fn run<T>(
        &self,
        op: &'static str,
        timeout: Duration,
        ticket: Ticket<'_>,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let r = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout { op, after: timeout }),
        };
        self.inner.primary_metrics.record(op, &r, started.elapsed());
        self.on_transition(ticket.finish(classify(&r)));
        r
    }

    /// A non-idempotent call: one attempt, if the breaker allows it.
    async fn once<T, Fut>(
        &self,
        op: &'static str,
        timeout: Duration,
        make: impl FnOnce() -> Fut,
    ) -> Call<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        match self.admit(op) {
            Some(t) => Call::Done(self.run(op, timeout, t, make()).await),
            None => Call::Rejected,
        }
    }

    /// An idempotent call: retried with backoff after `Unavailable`/`Timeout` while the
    /// breaker allows it.
    async fn retrying<T, Fut>(
        &self,
        op: &'static str,
        timeout: Duration,
        mut make: impl FnMut() -> Fut,
    ) -> Call<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        // Built at the first failure only: the common case never needs it.
        let mut backoff: Option<backon::ExponentialBackoff> = None;
        loop {
            let Some(ticket) = self.admit(op) else {
                return Call::Rejected;
            };
            match self.run(op, timeout, ticket, make()).await {
                Err(e) if retryable(&e) => {
                    let delays = backoff.get_or_insert_with(|| {
                        let r = &self.inner.config.retry;
                        backon::ExponentialBuilder::default()
                            .with_min_delay(r.min_delay)
                            .with_max_delay(r.max_delay)
                            .with_max_times(r.max_retries)
                            .with_jitter()
                            .build()
                    });
                    match delays.next() {
                        Some(delay) => {
                            ::metrics::counter!(metrics::RETRIES, "op" => op).increment(1);
                            tokio::time::sleep(delay).await;
                        }
                        None => return Call::Done(Err(e)),
                    }
                }
                r => return Call::Done(r),
            }
        }
    }

    /// One call on the fallback store under the point deadline.
    async fn on_fallback<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let timeout = self.point();
        let r = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout { op, after: timeout }),
        };
        self.inner
            .fallback_metrics
            .record(op, &r, started.elapsed());
        ::metrics::counter!(metrics::FALLBACK_OPS, "mode" => self.mode().as_str(), "op" => op)
            .increment(1);
        r
    }

    /// Where a call on `id` goes. Takes the session's lock when it is marked.
    async fn route(&self, id: &SessionId) -> Route {
        if self.inner.marked.load(Ordering::Acquire) == 0 {
            return Route::Direct;
        }
        loop {
            let Some((_, lock)) = self.journal().lookup(id) else {
                return Route::Direct;
            };
            let guard = Arc::clone(&lock).lock_owned().await;
            match self.journal().lookup(id) {
                Some((kind, l)) if Arc::ptr_eq(&l, &lock) => return Route::Marked(kind, guard),
                Some(_) => continue,
                None => return Route::Direct,
            }
        }
    }

    fn mark_shadow(&self, id: &SessionId) {
        self.with_journal(|j| {
            j.mark(id, MarkKind::Shadow { deleted: false });
        });
    }

    fn unmark_if_idle(&self, id: &SessionId) {
        self.with_journal(|j| {
            if j.is_idle(id) {
                j.unmark(id);
            }
        });
    }

    fn reserve(&self, bytes: usize) -> Result<()> {
        self.with_journal(|j| j.reserve(bytes))
            .map_err(|full| self.journal_full(full))
    }

    fn journal_full(&self, full: journal::JournalFull) -> Error {
        self.inner.journal_full.fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(metrics::JOURNAL_FULL).increment(1);
        tracing::warn!(
            entries = full.entries,
            bytes = full.bytes,
            "resilient: outage journal full; write refused"
        );
        full.into_error()
    }

    /// A write to a local session: reserve, write to the fallback, journal it.
    async fn local_write<T>(
        &self,
        id: &SessionId,
        op: &'static str,
        bytes: usize,
        entry: Op,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.reserve(bytes)?;
        let r = self.on_fallback(op, fut).await;
        self.with_journal(|j| match &r {
            Ok(_) => j.push(id, entry, bytes),
            Err(_) => j.release(bytes),
        });
        r
    }

    /// Creates (or restores) a session in the fallback during an outage and marks it local.
    async fn create_local<T, Fut>(
        &self,
        id: &SessionId,
        op: &'static str,
        bytes: usize,
        make: impl FnOnce() -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<T>>,
    {
        let (kind, lock) = self.with_journal(|j| j.mark(id, MarkKind::Local { in_doubt: false }));
        match kind {
            MarkKind::Local { in_doubt: false } => {}
            MarkKind::Local { in_doubt: true } => return Err(self.in_doubt_error(id, op)),
            MarkKind::Shadow { .. } => return Err(self.pending_error(id, op)),
        }
        let guard = Arc::clone(&lock).lock_owned().await;
        let still = matches!(
            self.journal().lookup(id),
            Some((MarkKind::Local { in_doubt: false }, l)) if Arc::ptr_eq(&l, &lock)
        );
        if !still {
            drop(guard);
            return Err(Error::unavailable(format!(
                "resilient: session {id} changed state during {op}; try again"
            )));
        }
        let r = self.local_write(id, op, bytes, Op::Created, make()).await;
        if r.is_err() {
            self.unmark_if_idle(id);
        }
        drop(guard);
        r
    }

    /// Journals a write to a session held by the primary (the caller holds its lock).
    fn shadow_write(&self, id: &SessionId, op: Op, bytes: usize) -> Result<()> {
        let r = self.with_journal(|j| {
            j.reserve(bytes)?;
            j.push(id, op, bytes);
            Ok(())
        });
        r.map_err(|full| {
            self.unmark_if_idle(id);
            self.journal_full(full)
        })
    }

    /// Journals an append to a session held by the primary and hands out provisional seqs.
    fn shadow_append(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
        let max = self.inner.primary.limits().max_frame_bytes;
        if frames.iter().any(|f| f.size() > max) {
            self.unmark_if_idle(id);
            return Err(Error::LimitExceeded {
                what: "frame bytes",
                limit: max as u64,
            });
        }
        if frames.is_empty() {
            self.shadow_write(id, Op::Touch, 0)?;
            return Ok(Vec::new());
        }
        let n = frames.len() as u64;
        let bytes = frames_bytes(&frames);
        let r = self.with_journal(|j| {
            j.reserve(bytes)?;
            let base = self.inner.next_provisional.fetch_add(n, Ordering::Relaxed);
            let provisional: Vec<u64> = (1..=n).map(|k| base + k).collect();
            j.push(
                id,
                Op::Append {
                    frames,
                    provisional: provisional.clone(),
                    ambiguous_after: None,
                },
                bytes,
            );
            Ok(provisional)
        });
        r.map_err(|full| {
            self.unmark_if_idle(id);
            self.journal_full(full)
        })
    }

    /// Maps a provisional seq in a query to its final seq.
    fn translate(&self, id: &SessionId, seq: u64, what: &str) -> Result<u64> {
        if !is_provisional(seq) {
            return Ok(seq);
        }
        if matches!(self.journal().kind(id), Some(MarkKind::Shadow { .. })) {
            return Err(self.pending_error(id, what));
        }
        lock(&self.inner.seqs).get(id, seq).ok_or_else(|| {
            Error::invalid(format!(
                "seq {seq} of session {id} is a provisional seq handed out during a store \
                 outage and is not known here (another instance, a restart, or an evicted \
                 mapping); restart the stream instead of resuming it"
            ))
        })
    }

    // ------------------------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------------------------

    fn refused(&self, op: &str) -> Error {
        let primary = self.primary_name();
        match self.mode() {
            FallbackMode::None => Error::unavailable(format!(
                "resilient: {primary} is unavailable (circuit breaker open); {op} refused \
                 (fallback mode none)"
            )),
            FallbackMode::ReadOnly => Error::unavailable(format!(
                "resilient: {primary} is unavailable (circuit breaker open) and the store is \
                 read-only meanwhile; {op} refused"
            )),
            FallbackMode::Memory => Error::unavailable(format!(
                "resilient: {primary} is unavailable (circuit breaker open); {op} needs it \
                 and cannot be served from the fallback"
            )),
        }
    }

    fn not_held(&self, id: &SessionId, op: &str) -> Error {
        Error::unavailable(format!(
            "resilient: {} is unavailable (circuit breaker open) and the fallback does not \
             hold session {id}; {op} refused",
            self.primary_name()
        ))
    }

    fn pending_error(&self, id: &SessionId, op: &str) -> Error {
        Error::unavailable(format!(
            "resilient: session {id} has writes journaled during a {} outage that are not \
             replayed yet; {op} needs them replayed first",
            self.primary_name()
        ))
    }

    fn in_doubt_error(&self, id: &SessionId, op: &str) -> Error {
        Error::unavailable(format!(
            "resilient: session {id} was being copied to {} when it failed; {op} waits until \
             the next replay settles it",
            self.primary_name()
        ))
    }

    fn not_found(id: &SessionId) -> Error {
        Error::session_not_found(id)
    }

    // ------------------------------------------------------------------------------------
    // Shared read paths
    // ------------------------------------------------------------------------------------

    /// A read of a session the primary holds: primary, else (read-only mode) the fallback,
    /// else `Unavailable`. `held` tells whether the fallback's answer means it holds the
    /// session.
    async fn read<T, PF, FF>(
        &self,
        id: &SessionId,
        op: &'static str,
        timeout: Duration,
        primary: impl FnMut() -> PF,
        fallback: impl FnOnce() -> FF,
        held: impl FnOnce(&Result<T>) -> bool,
    ) -> Result<T>
    where
        PF: Future<Output = Result<T>>,
        FF: Future<Output = Result<T>>,
    {
        match self.retrying(op, timeout, primary).await {
            Call::Done(r) => r,
            Call::Rejected if self.mode() == FallbackMode::ReadOnly => {
                let r = self.on_fallback(op, fallback()).await;
                if held(&r) {
                    r
                } else {
                    Err(self.not_held(id, op))
                }
            }
            Call::Rejected => Err(self.not_held(id, op)),
        }
    }

    async fn health_closed(&self) -> Health {
        let started = Instant::now();
        let timeout = self.inner.config.health.timeout;
        match tokio::time::timeout(timeout, self.inner.primary.health()).await {
            Ok(Ok(h)) => {
                let mut out = Health::healthy("resilient", started.elapsed());
                // An unhealthy primary behind a closed breaker: calls will soon take the
                // fallback path, so the wrapper is as degraded as its fallback mode allows.
                out.status = match h.status {
                    HealthStatus::Unhealthy => self.degraded_status(),
                    other => other,
                };
                for (k, v) in h.details {
                    out.details.insert(format!("primary.{k}"), v);
                }
                out
            }
            Ok(Err(e)) => {
                let mut out =
                    Health::healthy("resilient", started.elapsed()).with_detail("primary.error", e);
                out.status = self.degraded_status();
                out
            }
            Err(_) => {
                let mut out = Health::healthy("resilient", started.elapsed())
                    .with_detail("primary.error", format!("no answer within {timeout:?}"));
                out.status = self.degraded_status();
                out
            }
        }
    }

    fn degraded_status(&self) -> HealthStatus {
        match self.mode() {
            FallbackMode::None => HealthStatus::Unhealthy,
            _ => HealthStatus::Degraded,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; a poisoned guard carries no broken invariant.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl<P: SessionStore, F: SessionStore> SessionStore for Resilient<P, F> {
    fn backend_name(&self) -> &'static str {
        "resilient"
    }

    fn limits(&self) -> &Limits {
        self.inner.primary.limits()
    }

    async fn create(&self, session: Session) -> Result<Session> {
        let id = session.id.clone();
        match self.route(&id).await {
            Route::Marked(kind, guard) => {
                let r = match kind {
                    MarkKind::Local { in_doubt: false } => {
                        let b = session.metadata_bytes();
                        let fut = self.inner.fallback.create(session);
                        self.local_write(&id, "create", b, Op::Created, fut).await
                    }
                    MarkKind::Local { in_doubt: true } => Err(self.in_doubt_error(&id, "create")),
                    MarkKind::Shadow { .. } => Err(self.pending_error(&id, "create")),
                };
                drop(guard);
                r
            }
            Route::Direct => {
                if let Some(t) = self.admit("create") {
                    let fut = self.inner.primary.create(session);
                    return self.run("create", self.point(), t, fut).await;
                }
                if self.mode() != FallbackMode::Memory {
                    return Err(self.refused("create"));
                }
                let b = session.metadata_bytes();
                self.create_local(&id, "create", b, || self.inner.fallback.create(session))
                    .await
            }
        }
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        match self.route(id).await {
            Route::Marked(MarkKind::Local { .. }, guard) => {
                let r = self.on_fallback("get", self.inner.fallback.get(id)).await;
                drop(guard);
                r
            }
            Route::Marked(MarkKind::Shadow { deleted: true }, _) => Ok(None),
            Route::Marked(MarkKind::Shadow { .. }, guard) => {
                drop(guard);
                match self
                    .retrying("get", self.point(), || self.inner.primary.get(id))
                    .await
                {
                    Call::Done(r) => r,
                    Call::Rejected => Err(self.not_held(id, "get")),
                }
            }
            Route::Direct => {
                self.read(
                    id,
                    "get",
                    self.point(),
                    || self.inner.primary.get(id),
                    || self.inner.fallback.get(id),
                    |r| matches!(r, Ok(Some(_))),
                )
                .await
            }
        }
    }

    async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
        if self.inner.marked.load(Ordering::Acquire) == 0 {
            return match self
                .retrying("get_many", self.bulk(), || self.inner.primary.get_many(ids))
                .await
            {
                Call::Done(r) => r,
                Call::Rejected if self.mode() == FallbackMode::ReadOnly => {
                    let mut r = self
                        .on_fallback("get_many", self.inner.fallback.get_many(ids))
                        .await?;
                    for id in std::mem::take(&mut r.missing) {
                        let e = self.not_held(&id, "get_many");
                        r.errors.push(ItemError::new(id, e));
                    }
                    Ok(r)
                }
                Call::Rejected => Err(self.refused("get_many")),
            };
        }
        // Some sessions are marked: those go one by one through `get`, the rest in one call.
        let (marked, plain): (Vec<&SessionId>, Vec<&SessionId>) = {
            let j = self.journal();
            ids.iter().partition(|id| j.kind(id).is_some())
        };
        let mut answers: HashMap<SessionId, Result<Option<Session>>> = HashMap::new();
        let mut extra_errors = Vec::new();
        if !plain.is_empty() {
            let plain_ids: Vec<SessionId> = plain.iter().map(|id| (*id).clone()).collect();
            match self
                .retrying("get_many", self.bulk(), || {
                    self.inner.primary.get_many(&plain_ids)
                })
                .await
            {
                Call::Done(Ok(gm)) => {
                    for s in gm.found {
                        answers.insert(s.id.clone(), Ok(Some(s)));
                    }
                    for id in gm.missing {
                        answers.insert(id, Ok(None));
                    }
                    extra_errors = gm.errors;
                }
                Call::Done(Err(e)) => return Err(e),
                Call::Rejected => {
                    for id in plain_ids {
                        let r = self.get(&id).await;
                        answers.insert(id, r);
                    }
                }
            }
        }
        for id in marked {
            let r = self.get(id).await;
            answers.insert(id.clone(), r);
        }
        let mut out = GetMany::default();
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            if !seen.insert(id) {
                continue;
            }
            match answers.remove(id) {
                Some(Ok(Some(s))) => out.found.push(s),
                Some(Ok(None)) => out.missing.push(id.clone()),
                Some(Err(e)) => out.errors.push(ItemError::new(id.clone(), e)),
                None => {}
            }
        }
        out.errors.extend(extra_errors);
        Ok(out)
    }

    async fn update(&self, session: &Session) -> Result<Session> {
        let id = &session.id;
        match self.route(id).await {
            Route::Marked(kind, guard) => {
                let r = match kind {
                    MarkKind::Local { in_doubt: false } => {
                        let fut = self.inner.fallback.update(session);
                        self.local_write(
                            id,
                            "update",
                            session.metadata_bytes(),
                            Op::LocalWrite,
                            fut,
                        )
                        .await
                    }
                    MarkKind::Local { in_doubt: true } => Err(self.in_doubt_error(id, "update")),
                    MarkKind::Shadow { deleted: true } => Err(Self::not_found(id)),
                    MarkKind::Shadow { .. } => Err(self.pending_error(id, "update")),
                };
                drop(guard);
                r
            }
            Route::Direct => match self
                .once("update", self.point(), || {
                    self.inner.primary.update(session)
                })
                .await
            {
                Call::Done(r) => r,
                Call::Rejected => Err(self.refused("update")),
            },
        }
    }

    async fn touch(&self, id: &SessionId) -> Result<Timestamp> {
        loop {
            match self.route(id).await {
                Route::Marked(kind, guard) => {
                    let r = match kind {
                        MarkKind::Local { in_doubt: false } => {
                            let fut = self.inner.fallback.touch(id);
                            self.local_write(id, "touch", 0, Op::LocalWrite, fut).await
                        }
                        MarkKind::Local { in_doubt: true } => Err(self.in_doubt_error(id, "touch")),
                        MarkKind::Shadow { deleted: true } => Err(Self::not_found(id)),
                        MarkKind::Shadow { .. } => self
                            .shadow_write(id, Op::Touch, 0)
                            .map(|()| Timestamp::now().saturating_add(self.limits().session_ttl)),
                    };
                    drop(guard);
                    return r;
                }
                Route::Direct => match self
                    .retrying("touch", self.point(), || self.inner.primary.touch(id))
                    .await
                {
                    Call::Done(r) => return r,
                    Call::Rejected if self.mode() == FallbackMode::Memory => self.mark_shadow(id),
                    Call::Rejected => return Err(self.refused("touch")),
                },
            }
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        loop {
            match self.route(id).await {
                Route::Marked(kind, guard) => {
                    let r = match kind {
                        MarkKind::Local { in_doubt: false } => {
                            let r = self
                                .on_fallback("delete", self.inner.fallback.delete(id))
                                .await;
                            if r.is_ok() {
                                self.with_journal(|j| j.unmark(id));
                            }
                            r
                        }
                        MarkKind::Local { in_doubt: true } => {
                            // The primary may hold a copy: journal a delete for it.
                            let _ = self
                                .on_fallback("delete", self.inner.fallback.delete(id))
                                .await;
                            self.journal_delete(id).map(|()| true)
                        }
                        MarkKind::Shadow { deleted: true } => Ok(false),
                        MarkKind::Shadow { .. } => self.journal_delete(id).map(|()| true),
                    };
                    drop(guard);
                    return r;
                }
                Route::Direct => match self
                    .once("delete", self.point(), || self.inner.primary.delete(id))
                    .await
                {
                    Call::Done(r) => return r,
                    Call::Rejected if self.mode() == FallbackMode::Memory => self.mark_shadow(id),
                    Call::Rejected => return Err(self.refused("delete")),
                },
            }
        }
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        query.validate()?;
        match self
            .retrying("list", self.bulk(), || self.inner.primary.list(query))
            .await
        {
            Call::Done(r) => r,
            Call::Rejected => Err(self.refused("list")),
        }
    }

    async fn count(&self, filter: &SessionFilter) -> Result<u64> {
        match self
            .retrying("count", self.bulk(), || self.inner.primary.count(filter))
            .await
        {
            Call::Done(r) => r,
            Call::Rejected => Err(self.refused("count")),
        }
    }

    async fn append_frames(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
        loop {
            match self.route(id).await {
                Route::Marked(kind, guard) => {
                    let r = match kind {
                        MarkKind::Local { in_doubt: false } => {
                            let b = frames_bytes(&frames);
                            let fut = self.inner.fallback.append_frames(id, frames);
                            self.local_write(id, "append_frames", b, Op::LocalWrite, fut)
                                .await
                        }
                        MarkKind::Local { in_doubt: true } => {
                            Err(self.in_doubt_error(id, "append_frames"))
                        }
                        MarkKind::Shadow { deleted: true } => Err(Self::not_found(id)),
                        MarkKind::Shadow { .. } => self.shadow_append(id, frames),
                    };
                    drop(guard);
                    return r;
                }
                Route::Direct => {
                    if let Some(t) = self.admit("append_frames") {
                        let fut = self.inner.primary.append_frames(id, frames);
                        return self.run("append_frames", self.point(), t, fut).await;
                    }
                    if self.mode() != FallbackMode::Memory {
                        return Err(self.refused("append_frames"));
                    }
                    self.mark_shadow(id);
                }
            }
        }
    }

    async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage> {
        query.validate()?;
        let query: Cow<'_, FrameQuery> = if is_provisional(query.after_seq) {
            let mut q = query.clone();
            q.after_seq = self.translate(id, query.after_seq, "frames")?;
            Cow::Owned(q)
        } else {
            Cow::Borrowed(query)
        };
        let query = &*query;
        match self.route(id).await {
            Route::Marked(MarkKind::Local { .. }, guard) => {
                let r = self
                    .on_fallback("frames", self.inner.fallback.frames(id, query))
                    .await;
                drop(guard);
                r
            }
            Route::Marked(MarkKind::Shadow { deleted: true }, _) => Err(Self::not_found(id)),
            Route::Marked(MarkKind::Shadow { .. }, _) => Err(self.pending_error(id, "frames")),
            Route::Direct => {
                self.read(
                    id,
                    "frames",
                    self.bulk(),
                    || self.inner.primary.frames(id, query),
                    || self.inner.fallback.frames(id, query),
                    |r| !matches!(r, Err(Error::NotFound { .. })),
                )
                .await
            }
        }
    }

    async fn count_frames(&self, id: &SessionId) -> Result<u64> {
        match self.route(id).await {
            Route::Marked(MarkKind::Local { .. }, guard) => {
                let r = self
                    .on_fallback("count_frames", self.inner.fallback.count_frames(id))
                    .await;
                drop(guard);
                r
            }
            Route::Marked(MarkKind::Shadow { deleted: true }, _) => Err(Self::not_found(id)),
            Route::Marked(MarkKind::Shadow { .. }, _) => {
                Err(self.pending_error(id, "count_frames"))
            }
            Route::Direct => {
                self.read(
                    id,
                    "count_frames",
                    self.point(),
                    || self.inner.primary.count_frames(id),
                    || self.inner.fallback.count_frames(id),
                    |r| !matches!(r, Err(Error::NotFound { .. })),
                )
                .await
            }
        }
    }

    async fn delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64> {
        let through_seq = match through_seq {
            Some(s) => Some(self.translate(id, s, "delete_frames")?),
            None => None,
        };
        match self.route(id).await {
            Route::Marked(kind, guard) => {
                let r = match kind {
                    MarkKind::Local { in_doubt: false } => {
                        let fut = self.inner.fallback.delete_frames(id, through_seq);
                        self.local_write(id, "delete_frames", 0, Op::LocalWrite, fut)
                            .await
                    }
                    MarkKind::Local { in_doubt: true } => {
                        Err(self.in_doubt_error(id, "delete_frames"))
                    }
                    MarkKind::Shadow { deleted: true } => Err(Self::not_found(id)),
                    MarkKind::Shadow { .. } => Err(self.pending_error(id, "delete_frames")),
                };
                drop(guard);
                r
            }
            Route::Direct => match self
                .once("delete_frames", self.point(), || {
                    self.inner.primary.delete_frames(id, through_seq)
                })
                .await
            {
                Call::Done(r) => r,
                Call::Rejected => Err(self.refused("delete_frames")),
            },
        }
    }

    async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()> {
        match self.route(id).await {
            Route::Marked(kind, guard) => {
                let r = match kind {
                    MarkKind::Local { in_doubt: false } => {
                        let b = request.method.len();
                        let fut = self.inner.fallback.add_pending(id, request);
                        self.local_write(id, "add_pending", b, Op::LocalWrite, fut)
                            .await
                    }
                    MarkKind::Local { in_doubt: true } => {
                        Err(self.in_doubt_error(id, "add_pending"))
                    }
                    MarkKind::Shadow { deleted: true } => Err(Self::not_found(id)),
                    MarkKind::Shadow { .. } => Err(self.pending_error(id, "add_pending")),
                };
                drop(guard);
                r
            }
            Route::Direct => {
                if let Some(t) = self.admit("add_pending") {
                    let fut = self.inner.primary.add_pending(id, request);
                    return self.run("add_pending", self.point(), t, fut).await;
                }
                Err(self.refused("add_pending"))
            }
        }
    }

    async fn take_pending(
        &self,
        id: &SessionId,
        request_id: &RequestId,
    ) -> Result<Option<PendingRequest>> {
        match self.route(id).await {
            Route::Marked(kind, guard) => {
                let r = match kind {
                    MarkKind::Local { in_doubt: false } => {
                        let fut = self.inner.fallback.take_pending(id, request_id);
                        self.local_write(id, "take_pending", 0, Op::LocalWrite, fut)
                            .await
                    }
                    MarkKind::Local { in_doubt: true } => {
                        Err(self.in_doubt_error(id, "take_pending"))
                    }
                    MarkKind::Shadow { deleted: true } => Err(Self::not_found(id)),
                    MarkKind::Shadow { .. } => Err(self.pending_error(id, "take_pending")),
                };
                drop(guard);
                r
            }
            Route::Direct => match self
                .once("take_pending", self.point(), || {
                    self.inner.primary.take_pending(id, request_id)
                })
                .await
            {
                Call::Done(r) => r,
                Call::Rejected => Err(self.refused("take_pending")),
            },
        }
    }

    async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>> {
        match self.route(id).await {
            Route::Marked(MarkKind::Local { .. }, guard) => {
                let r = self
                    .on_fallback("list_pending", self.inner.fallback.list_pending(id))
                    .await;
                drop(guard);
                r
            }
            Route::Marked(MarkKind::Shadow { deleted: true }, _) => Err(Self::not_found(id)),
            Route::Marked(MarkKind::Shadow { .. }, guard) => {
                drop(guard);
                match self
                    .retrying("list_pending", self.point(), || {
                        self.inner.primary.list_pending(id)
                    })
                    .await
                {
                    Call::Done(r) => r,
                    Call::Rejected => Err(self.not_held(id, "list_pending")),
                }
            }
            Route::Direct => {
                self.read(
                    id,
                    "list_pending",
                    self.point(),
                    || self.inner.primary.list_pending(id),
                    || self.inner.fallback.list_pending(id),
                    |r| !matches!(r, Err(Error::NotFound { .. })),
                )
                .await
            }
        }
    }

    async fn sweep_expired(&self) -> Result<SweepReport> {
        let local = self.journal().local() > 0;
        match self
            .retrying("sweep_expired", self.bulk(), || {
                self.inner.primary.sweep_expired()
            })
            .await
        {
            Call::Done(Ok(mut report)) => {
                if local
                    && let Ok(f) = self
                        .on_fallback("sweep_expired", self.inner.fallback.sweep_expired())
                        .await
                {
                    report.removed += f.removed;
                }
                Ok(report)
            }
            Call::Done(Err(e)) => Err(e),
            Call::Rejected if self.mode() == FallbackMode::Memory => {
                self.on_fallback("sweep_expired", self.inner.fallback.sweep_expired())
                    .await
            }
            Call::Rejected => Err(self.refused("sweep_expired")),
        }
    }

    async fn health(&self) -> Result<Health> {
        let state = self.breaker_state();
        let mut h = if state == BreakerState::Closed {
            self.health_closed().await
        } else {
            let mut h = Health::healthy("resilient", Duration::ZERO);
            h.status = self.degraded_status();
            h
        };
        let stats = self.stats();
        if h.status == HealthStatus::Healthy && stats.journal_entries > 0 {
            h.status = HealthStatus::Degraded;
        }
        h = h
            .with_detail("breaker_state", state)
            .with_detail(
                "breaker_for",
                humantime::format_duration(Duration::from_millis(
                    stats.breaker_for.as_millis() as u64
                )),
            )
            .with_detail("breaker_opened", stats.breaker_opened)
            .with_detail("fallback_mode", self.mode())
            .with_detail("primary", self.primary_name())
            .with_detail("fallback", self.fallback_name())
            .with_detail("journal_entries", stats.journal_entries)
            .with_detail("journal_bytes", stats.journal_bytes)
            .with_detail("marked_sessions", stats.marked_sessions)
            .with_detail("local_sessions", stats.local_sessions)
            .with_detail("journal_full_rejections", stats.journal_full_rejections);
        match &stats.last_probe {
            Some(p) => {
                h = h
                    .with_detail("last_probe_at", p.at)
                    .with_detail("last_probe_ok", p.ok)
                    .with_detail("last_probe_latency_us", p.latency.as_micros());
                if let Some(e) = &p.error {
                    h = h.with_detail("last_probe_error", e);
                }
            }
            None => h = h.with_detail("last_probe_at", "never"),
        }
        if let Some(r) = &stats.last_replay {
            h = h
                .with_detail("last_replay_entries", r.entries)
                .with_detail("last_replay_complete", r.complete);
        }
        Ok(h)
    }

    async fn restore(&self, record: SessionRecord) -> Result<()> {
        let id = record.session.id.clone();
        match self.route(&id).await {
            Route::Marked(kind, guard) => {
                let r = match kind {
                    MarkKind::Local { in_doubt: false } => {
                        let b = record_bytes(&record);
                        let fut = self.inner.fallback.restore(record);
                        self.local_write(&id, "restore", b, Op::Created, fut).await
                    }
                    MarkKind::Local { in_doubt: true } => Err(self.in_doubt_error(&id, "restore")),
                    MarkKind::Shadow { .. } => Err(self.pending_error(&id, "restore")),
                };
                drop(guard);
                r
            }
            Route::Direct => {
                if let Some(t) = self.admit("restore") {
                    let fut = self.inner.primary.restore(record);
                    return self.run("restore", self.bulk(), t, fut).await;
                }
                if self.mode() != FallbackMode::Memory {
                    return Err(self.refused("restore"));
                }
                let b = record_bytes(&record);
                self.create_local(&id, "restore", b, || self.inner.fallback.restore(record))
                    .await
            }
        }
    }
}

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    /// Journals a delete of a session the primary may hold, dropping the appends and touches
    /// journaled before it (the delete removes them anyway). The caller holds its lock.
    fn journal_delete(&self, id: &SessionId) -> Result<()> {
        let r = self.with_journal(|j| {
            j.remove_entries(id, |op| !matches!(op, Op::Delete));
            j.reserve(0)?;
            j.set_kind(id, MarkKind::Shadow { deleted: true });
            j.push(id, Op::Delete, 0);
            Ok(())
        });
        r.map_err(|full| {
            self.unmark_if_idle(id);
            self.journal_full(full)
        })
    }
}
