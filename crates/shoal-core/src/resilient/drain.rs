//! Draining the outage journal into the primary: in order, idempotently, under the same
//! per-session locks the writers take.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::Poll,
    time::Duration,
};

use tokio::time::Instant;

use super::{
    breaker::BreakerState,
    call::{Call, retryable},
    journal::{Entry, Journal, MarkKind},
    state::lock,
    wrapper::Resilient,
};
use crate::{Error, SessionId, SessionStore};

/// What one [`Resilient::drain_journal`] did (or, in
/// [`ResilienceStats::drain_totals`](super::ResilienceStats::drain_totals), every drain
/// summed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Marked sessions settled (drained, or dropped by a conflict rule).
    pub sessions: u64,
    /// Local sessions copied into the primary.
    pub restored: u64,
    /// Journal entries settled.
    pub entries: u64,
    /// Frames written into the primary (appended, or inside restored sessions).
    pub frames: u64,
    /// Journaled touches applied.
    pub touches: u64,
    /// Journaled deletes applied.
    pub deletes: u64,
    /// Frames dropped because their session was gone or the primary refused them.
    pub dropped_frames: u64,
    /// Local sessions dropped (expired, conflicting id, refused by the primary).
    pub dropped_sessions: u64,
    /// Local sessions whose id the primary already held for another session.
    pub conflicts: u64,
    /// In-doubt writes found already applied (not written again).
    pub ambiguous_applied: u64,
    /// Whether the journal was empty when the drain ended.
    pub complete: bool,
    /// How long it took.
    pub duration: Duration,
    /// Why it stopped early, if it did (the first failure, when sessions drained
    /// concurrently failed).
    pub error: Option<String>,
}

impl DrainReport {
    /// Settled entries per second (0 when nothing was drained).
    pub fn entries_per_sec(&self) -> f64 {
        let s = self.duration.as_secs_f64();
        if s > 0.0 {
            self.entries as f64 / s
        } else {
            0.0
        }
    }

    /// Frames written per second (0 when nothing was drained).
    pub fn frames_per_sec(&self) -> f64 {
        let s = self.duration.as_secs_f64();
        if s > 0.0 { self.frames as f64 / s } else { 0.0 }
    }

    fn add(&mut self, o: &DrainReport) {
        self.add_counts(o);
        self.complete = o.complete;
        self.duration += o.duration;
        if o.error.is_some() {
            self.error.clone_from(&o.error);
        }
    }

    /// Adds the counters of `o` (one session's part of a drain).
    fn add_counts(&mut self, o: &DrainReport) {
        self.sessions += o.sessions;
        self.restored += o.restored;
        self.entries += o.entries;
        self.frames += o.frames;
        self.touches += o.touches;
        self.deletes += o.deletes;
        self.dropped_frames += o.dropped_frames;
        self.dropped_sessions += o.dropped_sessions;
        self.conflicts += o.conflicts;
        self.ambiguous_applied += o.ambiguous_applied;
    }
}

/// Waits until at least one of `running` is finished; removes and returns every finished
/// one. The futures run concurrently on the caller's task (no spawning: dropping the caller
/// drops them, and each session's taken entries go back to the journal).
async fn next_finished<T, F>(running: &mut Vec<Pin<Box<F>>>) -> Vec<T>
where
    F: Future<Output = T>,
{
    std::future::poll_fn(|cx| {
        let mut done = Vec::new();
        let mut i = 0;
        while i < running.len() {
            if let Poll::Ready(out) = running[i].as_mut().poll(cx) {
                // Order among those still running does not matter.
                drop(running.swap_remove(i));
                done.push(out);
            } else {
                i += 1;
            }
        }
        if done.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(done)
        }
    })
    .await
}

/// Why a session's drain stopped: the error, and whether it says the primary is failing
/// (then the breaker is tripped so live calls stop waiting for it).
pub(super) struct Stop {
    pub(super) error: Error,
    pub(super) trip: bool,
}

impl Stop {
    pub(super) fn primary(error: Error) -> Self {
        let trip = retryable(&error);
        Stop { error, trip }
    }

    pub(super) fn other(error: Error) -> Self {
        Stop { error, trip: false }
    }
}

/// Entries taken out of the journal for one session's drain. Whatever is still here when
/// this is dropped (an error, or the drain future was cancelled) goes back to the journal in
/// front of newer entries, so nothing is lost.
pub(super) struct Taken<'a> {
    journal: &'a Mutex<Journal>,
    id: SessionId,
    pub(super) entries: VecDeque<Entry>,
    pub(super) done: u64,
}

impl<'a> Taken<'a> {
    pub(super) fn new(journal: &'a Mutex<Journal>, id: &SessionId) -> Self {
        let entries = lock(journal).take(id);
        Taken {
            journal,
            id: id.clone(),
            entries: entries.into(),
            done: 0,
        }
    }

    pub(super) fn complete_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            lock(self.journal).finish(&self.id, 1, e.bytes);
            self.done += 1;
        }
    }

    pub(super) fn complete(&mut self, n: usize) {
        for _ in 0..n {
            self.complete_front();
        }
    }

    pub(super) fn complete_all(&mut self) {
        let n = self.entries.len();
        let bytes: usize = self.entries.iter().map(|e| e.bytes).sum();
        self.entries.clear();
        lock(self.journal).finish(&self.id, n, bytes);
        self.done += n as u64;
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if !self.entries.is_empty() {
            let rest: Vec<Entry> = self.entries.drain(..).collect();
            lock(self.journal).put_back(&self.id, rest);
        }
    }
}

/// Whether a failed drain write may nevertheless have been applied. `Unavailable` and
/// `Timeout` mean no answer; `Backend` means an answer that could not be read (e.g. a reply
/// truncated by a lost connection parses as garbage), which says nothing either way. The
/// other errors are definite answers: nothing was written.
pub(super) fn outcome_unknown(e: &Error) -> bool {
    retryable(e) || matches!(e, Error::Backend(_))
}

/// How a drain stops after a write whose outcome is unknown: a lost answer says the primary
/// is failing (the breaker trips); an unreadable one does not (the next drain, at the next
/// monitor tick, reads the primary back first).
pub(super) fn in_doubt_stop(e: Error) -> Stop {
    if retryable(&e) {
        Stop::primary(e)
    } else {
        Stop::other(e)
    }
}

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    /// Drains the journal into the primary if the breaker is closed. Sessions are started
    /// in the order of their first journaled write, up to
    /// [`journal.replay_concurrency`](super::JournalConfig::replay_concurrency) at a time;
    /// each session's writes are drained in order, one after another, under the session's
    /// lock (writes to that session wait meanwhile). Order holds within a session, not across
    /// sessions. At the first failure, no further session is started; sessions in progress
    /// finish, or stop at their next call once the breaker refuses it. A failure that says
    /// the primary is failing opens the breaker (once). The rest stays journaled for the next
    /// drain. The health monitor calls this; call it yourself when you run without one.
    pub async fn drain_journal(&self) -> DrainReport {
        let _one = self.state.drain_lock.lock().await;
        let started = Instant::now();
        let width = self.state.config.journal.replay_concurrency.max(1);
        let stopped = AtomicBool::new(false);
        let mut rep = DrainReport::default();
        let mut tripped = false;
        let mut after = None;
        let mut running = Vec::with_capacity(width);
        loop {
            while running.len() < width && !stopped.load(Ordering::Acquire) {
                if self.breaker_state() != BreakerState::Closed {
                    stopped.store(true, Ordering::Release);
                    rep.error
                        .get_or_insert_with(|| "the circuit breaker is not closed".into());
                    break;
                }
                let next = self.journal().next_session(after);
                let Some((order, id)) = next else { break };
                after = Some(order);
                running.push(Box::pin(self.drain_session(id, &stopped)));
            }
            if running.is_empty() {
                break;
            }
            for (id, session, r) in next_finished(&mut running).await {
                rep.add_counts(&session);
                let Err(stop) = r else { continue };
                stopped.store(true, Ordering::Release);
                if stop.trip && !tripped {
                    tripped = true;
                    self.on_transition(self.state.breaker.trip());
                }
                tracing::warn!(
                    session = %id,
                    error = %stop.error,
                    "resilient: journal replay stopped; the rest waits for the next replay"
                );
                rep.error.get_or_insert_with(|| stop.error.to_string());
            }
        }
        rep.complete = self.journal().len() == 0;
        if rep.complete {
            self.compact_durable().await;
        }
        rep.duration = started.elapsed();
        self.with_journal(|_| ());
        if rep.dropped_frames > 0 {
            tracing::warn!(
                dropped_frames = rep.dropped_frames,
                "resilient: frames journaled during the outage were dropped because their \
                 sessions no longer exist in the primary: deleted or expired elsewhere, or the \
                 primary lost its data (its health then reports data_loss)"
            );
        }
        if rep.entries > 0 || rep.error.is_some() {
            tracing::info!(
                sessions = rep.sessions,
                restored = rep.restored,
                entries = rep.entries,
                frames = rep.frames,
                dropped_frames = rep.dropped_frames,
                dropped_sessions = rep.dropped_sessions,
                complete = rep.complete,
                took_ms = rep.duration.as_millis() as u64,
                "resilient: journal replay"
            );
            *lock(&self.state.last_drain) = Some(rep.clone());
            lock(&self.state.drain_totals).add(&rep);
        }
        rep
    }

    /// Drains one marked session under its lock, into a report of its own. Does nothing
    /// when the session was settled meanwhile, or when the drain stopped (or the breaker
    /// left Closed) while this waited for the lock.
    async fn drain_session(
        &self,
        id: SessionId,
        stopped: &AtomicBool,
    ) -> (SessionId, DrainReport, std::result::Result<(), Stop>) {
        let mut rep = DrainReport::default();
        let found = self.journal().lookup(&id);
        let Some((_, session_lock)) = found else {
            return (id, rep, Ok(()));
        };
        let guard = Arc::clone(&session_lock).lock_owned().await;
        if stopped.load(Ordering::Acquire) || self.breaker_state() != BreakerState::Closed {
            return (id, rep, Ok(()));
        }
        let now = self.journal().lookup(&id);
        let kind = match now {
            Some((kind, l)) if Arc::ptr_eq(&l, &session_lock) => kind,
            _ => return (id, rep, Ok(())),
        };
        let r = match kind {
            MarkKind::Local { in_doubt } => self.drain_local(&id, in_doubt, &mut rep).await,
            MarkKind::Shadow { .. } => self.drain_shadow(&id, &mut rep).await,
        };
        drop(guard);
        (id, rep, r)
    }

    /// The primary's copy of `id`, for drain decisions.
    pub(super) async fn primary_get(
        &self,
        id: &SessionId,
    ) -> std::result::Result<Option<crate::Session>, Stop> {
        match self
            .retrying("replay_get", self.point(), || self.state.primary.get(id))
            .await
        {
            Call::Done(Ok(s)) => Ok(s),
            Call::Done(Err(e)) => Err(Stop::primary(e)),
            Call::Rejected => Err(Stop::other(self.refused("replay"))),
        }
    }

    /// The session is fully drained: unmark it.
    pub(super) fn settle(
        &self,
        id: &SessionId,
        taken: Taken<'_>,
        rep: &mut DrainReport,
    ) -> std::result::Result<(), Stop> {
        rep.entries += taken.done;
        rep.sessions += 1;
        drop(taken);
        self.with_journal(|j| j.unmark(id));
        self.log_settled(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    };

    use async_trait::async_trait;

    use super::*;
    use crate::{
        Direction, FrameQuery, GetMany, Health, ListPage, ListQuery, MemoryStore, NewFrame,
        PendingRequest, RequestId, Result, Session, SessionFilter, SessionRecord, SessionStore,
        SweepReport, Timestamp, Transport,
        resilient::{FallbackMode, ResilienceConfig},
    };

    /// Writes pass.
    const PASS: u8 = 0;
    /// The next append or restore is applied, then answered with an unreadable reply (what a
    /// Redis reply truncated by a lost connection comes back as).
    const APPLY_THEN_GARBLE: u8 = 1;
    /// Every append and restore is answered with an unreadable reply and not applied.
    const GARBLE: u8 = 2;

    /// A memory primary whose appends and restores can come back as `Error::Backend`.
    #[derive(Clone, Debug, Default)]
    struct Garbled {
        memory: MemoryStore,
        mode: Arc<AtomicU8>,
    }

    impl Garbled {
        fn set(&self, mode: u8) {
            self.mode.store(mode, Ordering::SeqCst);
        }

        /// Applies `write` or not per the mode; the answer per the mode.
        async fn write<T>(&self, write: impl Future<Output = Result<T>>) -> Result<T> {
            let garbled = || Error::backend("redis append: Parse error: Unexpected end of input");
            match self.mode.load(Ordering::SeqCst) {
                APPLY_THEN_GARBLE => {
                    self.set(PASS);
                    write.await?;
                    Err(garbled())
                }
                GARBLE => Err(garbled()),
                _ => write.await,
            }
        }
    }

    #[async_trait]
    impl SessionStore for Garbled {
        fn backend_name(&self) -> &'static str {
            "garbled"
        }
        fn limits(&self) -> &crate::Limits {
            self.memory.limits()
        }
        async fn create(&self, session: Session) -> Result<Session> {
            self.memory.create(session).await
        }
        async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
            self.memory.get(id).await
        }
        async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
            self.memory.get_many(ids).await
        }
        async fn update(&self, session: &Session) -> Result<Session> {
            self.memory.update(session).await
        }
        async fn touch(&self, id: &SessionId) -> Result<Timestamp> {
            self.memory.touch(id).await
        }
        async fn delete(&self, id: &SessionId) -> Result<bool> {
            self.memory.delete(id).await
        }
        async fn list(&self, query: &ListQuery) -> Result<ListPage> {
            self.memory.list(query).await
        }
        async fn count(&self, filter: &SessionFilter) -> Result<u64> {
            self.memory.count(filter).await
        }
        async fn append_frames(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
            self.write(self.memory.append_frames(id, frames)).await
        }
        async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<crate::FramePage> {
            self.memory.frames(id, query).await
        }
        async fn count_frames(&self, id: &SessionId) -> Result<u64> {
            self.memory.count_frames(id).await
        }
        async fn delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64> {
            self.memory.delete_frames(id, through_seq).await
        }
        async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()> {
            self.memory.add_pending(id, request).await
        }
        async fn take_pending(
            &self,
            id: &SessionId,
            request_id: &RequestId,
        ) -> Result<Option<PendingRequest>> {
            self.memory.take_pending(id, request_id).await
        }
        async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>> {
            self.memory.list_pending(id).await
        }
        async fn sweep_expired(&self) -> Result<SweepReport> {
            self.memory.sweep_expired().await
        }
        async fn health(&self) -> Result<Health> {
            self.memory.health().await
        }
        async fn restore(&self, record: SessionRecord) -> Result<()> {
            self.write(self.memory.restore(record)).await
        }
    }

    type Store = Resilient<Garbled, MemoryStore>;

    fn setup() -> (Store, Garbled) {
        let primary = Garbled::default();
        let mut c = ResilienceConfig::default().with_fallback(FallbackMode::Memory);
        c.breaker.cooldown = Duration::from_secs(1);
        c.breaker.close_after = 1;
        let store = Resilient::new(primary.clone(), MemoryStore::new(), c)
            .unwrap_or_else(|e| panic!("config: {e}"));
        (store, primary)
    }

    fn frame(content: &str) -> NewFrame {
        NewFrame::new(Direction::ServerToClient, content.to_owned())
    }

    /// Opens the breaker (as a failed drain would), so writes are journaled.
    fn open(store: &Store) {
        store.on_transition(store.state.breaker.trip());
        assert_eq!(store.breaker_state(), BreakerState::Open);
    }

    /// Lets the cooldown pass and probes until closed.
    async fn close(store: &Store) {
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(store.probe().await.ok);
        assert_eq!(store.breaker_state(), BreakerState::Closed);
    }

    async fn contents(primary: &Garbled, id: &SessionId) -> Vec<(u64, String)> {
        let page = primary
            .memory
            .frames(id, &FrameQuery::after(0, 1_000))
            .await
            .unwrap_or_else(|e| panic!("frames: {e}"));
        page.frames
            .iter()
            .map(|f| (f.seq, String::from_utf8_lossy(&f.content).into_owned()))
            .collect()
    }

    async fn held_session(store: &Store) -> SessionId {
        let id = SessionId::generate();
        store
            .create(Session::new(id.clone(), Transport::StreamableHttp))
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
        store
            .append_frame(&id, frame("live"))
            .await
            .unwrap_or_else(|e| panic!("append: {e}"));
        id
    }

    #[tokio::test(start_paused = true)]
    async fn an_append_applied_with_an_unreadable_answer_is_found_not_dropped() {
        let (store, primary) = setup();
        let id = held_session(&store).await;
        open(&store);
        let p = store
            .append_frames(&id, vec![frame("a"), frame("b")])
            .await
            .unwrap_or_else(|e| panic!("journaled: {e}"));
        close(&store).await;

        primary.set(APPLY_THEN_GARBLE);
        let rep = store.drain_journal().await;
        assert!(!rep.complete, "in doubt, not dropped: {rep:?}");
        assert_eq!((rep.dropped_frames, rep.frames), (0, 0), "{rep:?}");
        assert!(rep.error.is_some());
        // An unreadable answer says nothing about the primary's health.
        assert_eq!(store.breaker_state(), BreakerState::Closed);
        assert_eq!(store.stats().journal_entries, 1);

        let rep = store.drain_journal().await;
        assert!(rep.complete, "{rep:?}");
        assert_eq!((rep.ambiguous_applied, rep.dropped_frames), (1, 0));
        let held = contents(&primary, &id).await;
        assert_eq!(
            held,
            [(1, "live".into()), (2, "a".into()), (3, "b".into())],
            "stored once"
        );
        assert_eq!(store.resolve_seq(&id, p[0]), Some(2));
        assert_eq!(store.resolve_seq(&id, p[1]), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn an_append_that_keeps_failing_unreadably_is_dropped_after_a_read_back() {
        let (store, primary) = setup();
        let id = held_session(&store).await;
        open(&store);
        store
            .append_frame(&id, frame("a"))
            .await
            .unwrap_or_else(|e| panic!("journaled: {e}"));
        close(&store).await;

        primary.set(GARBLE);
        let rep = store.drain_journal().await;
        assert!(!rep.complete, "first failure: in doubt: {rep:?}");
        // Read back (absent), sent again, failed again: a refusal, so the journal drains.
        let rep = store.drain_journal().await;
        assert!(rep.complete, "{rep:?}");
        assert_eq!((rep.ambiguous_applied, rep.dropped_frames), (0, 1));
        assert_eq!(store.stats().marked_sessions, 0);
        assert_eq!(contents(&primary, &id).await, [(1, "live".into())]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restore_applied_with_an_unreadable_answer_is_settled_once() {
        let (store, primary) = setup();
        open(&store);
        let id = SessionId::generate();
        store
            .create(Session::new(id.clone(), Transport::StreamableHttp))
            .await
            .unwrap_or_else(|e| panic!("local create: {e}"));
        store
            .append_frame(&id, frame("a"))
            .await
            .unwrap_or_else(|e| panic!("local append: {e}"));
        assert!(store.is_local(&id));
        close(&store).await;

        primary.set(APPLY_THEN_GARBLE);
        let rep = store.drain_journal().await;
        assert!(!rep.complete, "in doubt, not dropped: {rep:?}");
        assert_eq!((rep.dropped_sessions, rep.restored), (0, 0), "{rep:?}");
        assert!(
            store.state.fallback.get(&id).await.ok().flatten().is_some(),
            "the local copy is kept"
        );

        let rep = store.drain_journal().await;
        assert!(rep.complete, "{rep:?}");
        assert_eq!((rep.ambiguous_applied, rep.conflicts), (1, 0), "{rep:?}");
        assert_eq!(contents(&primary, &id).await, [(1, "a".into())]);
        assert!(!store.is_local(&id));
    }
}
