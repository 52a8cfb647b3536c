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
    journal::{Entry, Journal, MarkKind, Op},
    metrics,
    state::lock,
    wrapper::Resilient,
};
use crate::{
    Error, Frame, FrameQuery, NewFrame, Result, SessionId, SessionRecord, SessionStore,
    store::MAX_PAGE_LIMIT,
};

/// What one [`Resilient::drain_journal`] did (or, in [`ResilienceStats::drain_totals`](super::ResilienceStats::drain_totals),
/// every drain summed).
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
struct Stop {
    error: Error,
    trip: bool,
}

impl Stop {
    fn primary(error: Error) -> Self {
        let trip = retryable(&error);
        Stop { error, trip }
    }

    fn other(error: Error) -> Self {
        Stop { error, trip: false }
    }
}

/// Entries taken out of the journal for one session's drain. Whatever is still here when
/// this is dropped (an error, or the drain future was cancelled) goes back to the journal in
/// front of newer entries, so nothing is lost.
struct Taken<'a> {
    journal: &'a Mutex<Journal>,
    id: SessionId,
    entries: VecDeque<Entry>,
    done: u64,
}

impl<'a> Taken<'a> {
    fn new(journal: &'a Mutex<Journal>, id: &SessionId) -> Self {
        let entries = lock(journal).take(id);
        Taken {
            journal,
            id: id.clone(),
            entries: entries.into(),
            done: 0,
        }
    }

    fn complete_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            lock(self.journal).finish(&self.id, 1, e.bytes);
            self.done += 1;
        }
    }

    fn complete(&mut self, n: usize) {
        for _ in 0..n {
            self.complete_front();
        }
    }

    fn complete_all(&mut self) {
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

/// Most frames one drained append carries.
const MAX_BATCH_FRAMES: usize = 256;
/// Most frame bytes one drained append carries (a larger single entry still goes alone).
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Consecutive journaled appends at the front, drained as one `append_frames` (one round
/// trip, one atomic script). An in-doubt batch is exactly the entries marked with the same
/// `ambiguous_after`, so a retry looks for and re-sends the very same run of frames.
struct Batch {
    entries: usize,
    frames: Vec<NewFrame>,
    provisional: Vec<u64>,
    ambiguous_after: Option<u64>,
}

impl Batch {
    fn from_front(entries: &VecDeque<Entry>) -> Self {
        let mut b = Batch {
            entries: 0,
            frames: Vec::new(),
            provisional: Vec::new(),
            ambiguous_after: None,
        };
        let mut bytes = 0;
        for (i, e) in entries.iter().enumerate() {
            let Op::Append {
                frames,
                provisional,
                ambiguous_after,
            } = &e.op
            else {
                break;
            };
            if i == 0 {
                b.ambiguous_after = *ambiguous_after;
            } else if *ambiguous_after != b.ambiguous_after
                || (b.ambiguous_after.is_none()
                    && (b.frames.len() + frames.len() > MAX_BATCH_FRAMES
                        || bytes + e.bytes > MAX_BATCH_BYTES))
            {
                break;
            }
            b.entries += 1;
            bytes += e.bytes;
            b.frames.extend(frames.iter().cloned());
            b.provisional.extend(provisional.iter().copied());
        }
        b
    }
}

/// Whether a failed drain write may nevertheless have been applied. `Unavailable` and
/// `Timeout` mean no answer; `Backend` means an answer that could not be read (e.g. a reply
/// truncated by a lost connection parses as garbage), which says nothing either way. The
/// other errors are definite answers: nothing was written.
fn outcome_unknown(e: &Error) -> bool {
    retryable(e) || matches!(e, Error::Backend(_))
}

/// How a drain stops after a write whose outcome is unknown: a lost answer says the primary
/// is failing (the breaker trips); an unreadable one does not (the next drain, at the next
/// monitor tick, reads the primary back first).
fn in_doubt_stop(e: Error) -> Stop {
    if retryable(&e) {
        Stop::primary(e)
    } else {
        Stop::other(e)
    }
}

fn same(stored: &Frame, sent: &NewFrame) -> bool {
    stored.content == sent.content
        && stored.direction == sent.direction
        && stored.timestamp == sent.timestamp
        && stored.stream_id == sent.stream_id
        && stored.content_type == sent.content_type
        && stored.headers == sent.headers
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
        rep.duration = started.elapsed();
        self.with_journal(|_| ());
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

    /// Reads a local session whole from the fallback. `None` when it is gone (expired).
    async fn local_snapshot(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
        let fb = &self.state.fallback;
        let Some(session) = self.on_fallback("replay_read", fb.get(id)).await? else {
            return Ok(None);
        };
        let mut frames = Vec::new();
        let mut after = 0;
        loop {
            let q = FrameQuery::after(after, MAX_PAGE_LIMIT);
            let page = match self.on_fallback("replay_read", fb.frames(id, &q)).await {
                Err(Error::NotFound { .. }) => return Ok(None),
                r => r?,
            };
            after = page.next_after(after);
            let more = page.has_more && !page.frames.is_empty();
            frames.extend(page.frames);
            if !more {
                break;
            }
        }
        let pending = match self.on_fallback("replay_read", fb.list_pending(id)).await {
            Err(Error::NotFound { .. }) => return Ok(None),
            r => r?,
        };
        Ok(Some(SessionRecord::new(session, frames, pending)))
    }

    /// The primary's copy of `id`, for drain decisions.
    async fn primary_get(
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

    /// Copies a local session into the primary with `restore` (keeping its seqs).
    async fn drain_local(
        &self,
        id: &SessionId,
        in_doubt: bool,
        rep: &mut DrainReport,
    ) -> std::result::Result<(), Stop> {
        let mut taken = Taken::new(&self.state.journal, id);
        let record = match self.local_snapshot(id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                // Expired (or removed) in the fallback before it could be drained.
                ::metrics::counter!(metrics::DRAIN_DROPPED, "reason" => "expired").increment(1);
                rep.dropped_sessions += 1;
                taken.complete_all();
                return self.settle(id, taken, rep);
            }
            Err(e) => return Err(Stop::other(e)),
        };
        let n = record.frames.len() as u64;
        // Only a restore that failed without an answer can have left our copy in the
        // primary; for any other session an existing id is someone else's.
        let ours = if in_doubt {
            match self.primary_get(id).await? {
                Some(p) if self.is_our_copy(id, &p, &record).await? => {
                    ::metrics::counter!(metrics::DRAIN_AMBIGUOUS, "outcome" => "already_applied")
                        .increment(1);
                    rep.ambiguous_applied += 1;
                    return self.local_done(id, taken, n, rep).await;
                }
                Some(_) => return self.local_conflict(id, taken, n, rep).await,
                None => {
                    ::metrics::counter!(metrics::DRAIN_AMBIGUOUS, "outcome" => "not_applied")
                        .increment(1);
                    Some(record.clone())
                }
            }
        } else {
            None
        };
        match self
            .once("replay_restore", self.bulk(), || {
                self.state.primary.restore(record)
            })
            .await
        {
            Call::Done(Ok(())) => self.local_done(id, taken, n, rep).await,
            Call::Done(Err(Error::AlreadyExists { .. })) => {
                // Our earlier restore may have landed between the check and this one.
                let landed = match &ours {
                    Some(copy) => match self.primary_get(id).await? {
                        Some(p) => self.is_our_copy(id, &p, copy).await?,
                        None => false,
                    },
                    None => false,
                };
                if landed {
                    self.local_done(id, taken, n, rep).await
                } else {
                    self.local_conflict(id, taken, n, rep).await
                }
            }
            // The restore may or may not have been applied: settle it at the next drain.
            // When this one was already in doubt, the primary was just read back without our
            // copy; a second unreadable answer is then taken as a refusal (below), so a
            // primary that keeps failing this one session cannot hold the journal forever.
            Call::Done(Err(e)) if retryable(&e) || (outcome_unknown(&e) && !in_doubt) => {
                lock(&self.state.journal).set_kind(id, MarkKind::Local { in_doubt: true });
                Err(in_doubt_stop(e))
            }
            Call::Done(Err(e)) => {
                tracing::error!(
                    session = %id,
                    frames = n,
                    error = %e,
                    "resilient: the primary refused a session created during the outage; \
                     it is dropped"
                );
                ::metrics::counter!(metrics::DRAIN_DROPPED, "reason" => "refused").increment(1);
                rep.dropped_sessions += 1;
                rep.dropped_frames += n;
                let _ = self.state.fallback.delete(id).await;
                taken.complete_all();
                self.settle(id, taken, rep)
            }
            Call::Rejected => Err(Stop::other(self.refused("replay"))),
        }
    }

    /// Whether the primary's session `p` is the copy an earlier, unanswered restore of
    /// `record` wrote: same creation time and transport, at least as far in seqs, and the
    /// restored frames at the start of its retained frames.
    async fn is_our_copy(
        &self,
        id: &SessionId,
        p: &crate::Session,
        record: &SessionRecord,
    ) -> std::result::Result<bool, Stop> {
        let s = &record.session;
        if p.created_at != s.created_at || p.transport != s.transport || p.last_seq < s.last_seq {
            return Ok(false);
        }
        let want = record.frames.len().min(MAX_PAGE_LIMIT);
        if want == 0 {
            return Ok(true);
        }
        let q = FrameQuery::after(s.first_seq.saturating_sub(1), want);
        match self
            .retrying("replay_check", self.bulk(), || {
                self.state.primary.frames(id, &q)
            })
            .await
        {
            Call::Done(Ok(page)) => Ok(page.frames.len() == want
                && page.frames.iter().zip(&record.frames).all(|(a, b)| a == b)),
            Call::Done(Err(e)) => Err(Stop::primary(e)),
            Call::Rejected => Err(Stop::other(self.refused("replay"))),
        }
    }

    async fn local_done(
        &self,
        id: &SessionId,
        mut taken: Taken<'_>,
        frames: u64,
        rep: &mut DrainReport,
    ) -> std::result::Result<(), Stop> {
        ::metrics::counter!(metrics::DRAINED, "kind" => "session").increment(1);
        ::metrics::counter!(metrics::DRAINED, "kind" => "frames").increment(frames);
        rep.restored += 1;
        rep.frames += frames;
        // The primary holds it now; the fallback copy goes. A failure here only leaves an
        // unreachable copy that expires with its TTL.
        let _ = self
            .on_fallback("replay_cleanup", self.state.fallback.delete(id))
            .await;
        taken.complete_all();
        self.settle(id, taken, rep)
    }

    async fn local_conflict(
        &self,
        id: &SessionId,
        mut taken: Taken<'_>,
        frames: u64,
        rep: &mut DrainReport,
    ) -> std::result::Result<(), Stop> {
        tracing::error!(
            session = %id,
            frames,
            "resilient: a session created during the outage has an id the primary already \
             holds for another session; the primary's session wins and the local copy is \
             dropped"
        );
        ::metrics::counter!(metrics::DRAIN_DROPPED, "reason" => "conflict").increment(1);
        rep.conflicts += 1;
        rep.dropped_sessions += 1;
        rep.dropped_frames += frames;
        let _ = self
            .on_fallback("replay_cleanup", self.state.fallback.delete(id))
            .await;
        taken.complete_all();
        self.settle(id, taken, rep)
    }

    /// The session is fully drained: unmark it.
    fn settle(
        &self,
        id: &SessionId,
        taken: Taken<'_>,
        rep: &mut DrainReport,
    ) -> std::result::Result<(), Stop> {
        rep.entries += taken.done;
        rep.sessions += 1;
        drop(taken);
        self.with_journal(|j| j.unmark(id));
        Ok(())
    }

    /// Applies the journaled writes of a session held by the primary.
    async fn drain_shadow(
        &self,
        id: &SessionId,
        rep: &mut DrainReport,
    ) -> std::result::Result<(), Stop> {
        let mut taken = Taken::new(&self.state.journal, id);
        let r = self.drain_shadow_entries(id, &mut taken, rep).await;
        rep.entries += taken.done;
        taken.done = 0;
        r?;
        rep.sessions += 1;
        drop(taken);
        self.with_journal(|j| j.unmark(id));
        Ok(())
    }

    async fn drain_shadow_entries(
        &self,
        id: &SessionId,
        taken: &mut Taken<'_>,
        rep: &mut DrainReport,
    ) -> std::result::Result<(), Stop> {
        let mut gone = false;
        let mut last: u64 = 0;
        if taken
            .entries
            .iter()
            .any(|e| matches!(e.op, Op::Append { .. }))
        {
            match self.primary_get(id).await? {
                Some(s) => last = s.last_seq,
                None => gone = true,
            }
        }
        loop {
            let Some(front) = taken.entries.front() else {
                return Ok(());
            };
            match &front.op {
                Op::Append { .. } => {
                    let batch = Batch::from_front(&taken.entries);
                    let n = batch.frames.len() as u64;
                    if gone {
                        self.drop_frames(id, n, rep);
                        taken.complete(batch.entries);
                        continue;
                    }
                    if let Some(after) = batch.ambiguous_after {
                        match self.find_applied(id, after, &batch.frames).await {
                            Ok(Some(seqs)) => {
                                ::metrics::counter!(
                                    metrics::DRAIN_AMBIGUOUS,
                                    "outcome" => "already_applied"
                                )
                                .increment(1);
                                rep.ambiguous_applied += 1;
                                rep.frames += n;
                                last = last.max(seqs.last().copied().unwrap_or(last));
                                self.map_seqs(id, &batch.provisional, &seqs);
                                taken.complete(batch.entries);
                                continue;
                            }
                            Ok(None) => {
                                ::metrics::counter!(
                                    metrics::DRAIN_AMBIGUOUS,
                                    "outcome" => "not_applied"
                                )
                                .increment(1);
                            }
                            Err(Stop {
                                error: Error::NotFound { .. },
                                ..
                            }) => {
                                gone = true;
                                continue;
                            }
                            Err(stop) => return Err(stop),
                        }
                    }
                    // Reaching here with a marked batch means the primary was just read back
                    // without it.
                    let verified_absent = batch.ambiguous_after.is_some();
                    let before = last;
                    let frames = batch.frames;
                    match self
                        .once("replay_append", self.point(), || {
                            self.state.primary.append_frames(id, frames)
                        })
                        .await
                    {
                        Call::Done(Ok(seqs)) => {
                            ::metrics::counter!(metrics::DRAINED, "kind" => "frames").increment(n);
                            rep.frames += n;
                            last = seqs.last().copied().unwrap_or(last);
                            self.map_seqs(id, &batch.provisional, &seqs);
                            taken.complete(batch.entries);
                        }
                        Call::Done(Err(Error::NotFound { .. })) => gone = true,
                        // Applied or not: the next attempt looks for exactly this batch after
                        // `before` before appending it again. An unreadable answer (`Backend`)
                        // is as unknown as a lost one, unless the batch was just found absent:
                        // a second failure is then taken as a refusal (below), so one batch
                        // the primary keeps failing cannot hold the journal forever.
                        Call::Done(Err(e))
                            if retryable(&e) || (outcome_unknown(&e) && !verified_absent) =>
                        {
                            for entry in taken.entries.iter_mut().take(batch.entries) {
                                if let Op::Append {
                                    ambiguous_after, ..
                                } = &mut entry.op
                                {
                                    *ambiguous_after = Some(before);
                                }
                            }
                            return Err(in_doubt_stop(e));
                        }
                        Call::Done(Err(e)) => {
                            tracing::error!(
                                session = %id,
                                frames = n,
                                error = %e,
                                "resilient: the primary refused frames journaled during the \
                                 outage; they are dropped"
                            );
                            ::metrics::counter!(metrics::DRAIN_DROPPED, "reason" => "refused")
                                .increment(n);
                            rep.dropped_frames += n;
                            taken.complete(batch.entries);
                        }
                        Call::Rejected => return Err(Stop::other(self.refused("replay"))),
                    }
                }
                Op::Touch => {
                    if gone {
                        taken.complete_front();
                        continue;
                    }
                    match self
                        .retrying("replay_touch", self.point(), || {
                            self.state.primary.touch(id)
                        })
                        .await
                    {
                        Call::Done(Ok(_)) => {
                            ::metrics::counter!(metrics::DRAINED, "kind" => "touch").increment(1);
                            rep.touches += 1;
                            taken.complete_front();
                        }
                        Call::Done(Err(Error::NotFound { .. })) => {
                            gone = true;
                            taken.complete_front();
                        }
                        Call::Done(Err(e)) if retryable(&e) => return Err(Stop::primary(e)),
                        Call::Done(Err(e)) => {
                            tracing::warn!(session = %id, error = %e, "resilient: journaled touch refused");
                            taken.complete_front();
                        }
                        Call::Rejected => return Err(Stop::other(self.refused("replay"))),
                    }
                }
                Op::Delete => {
                    // Deleting is idempotent in effect, so drain may retry it.
                    match self
                        .retrying("replay_delete", self.point(), || {
                            self.state.primary.delete(id)
                        })
                        .await
                    {
                        Call::Done(Ok(_)) => {
                            ::metrics::counter!(metrics::DRAINED, "kind" => "delete").increment(1);
                            rep.deletes += 1;
                            gone = true;
                            lock(&self.state.seqs).forget_session(id);
                            taken.complete_front();
                        }
                        Call::Done(Err(e)) if retryable(&e) => return Err(Stop::primary(e)),
                        Call::Done(Err(e)) => {
                            tracing::warn!(session = %id, error = %e, "resilient: journaled delete refused");
                            taken.complete_front();
                        }
                        Call::Rejected => return Err(Stop::other(self.refused("replay"))),
                    }
                }
                Op::Created | Op::LocalWrite => taken.complete_front(),
            }
        }
    }

    fn drop_frames(&self, id: &SessionId, n: u64, rep: &mut DrainReport) {
        tracing::warn!(
            session = %id,
            frames = n,
            "resilient: frames journaled during the outage are dropped: the session no longer \
             exists in the primary (deleted or expired elsewhere)"
        );
        ::metrics::counter!(metrics::DRAIN_DROPPED, "reason" => "session_gone").increment(n);
        rep.dropped_frames += n;
    }

    fn map_seqs(&self, id: &SessionId, provisional: &[u64], finals: &[u64]) {
        let mut m = lock(&self.state.seqs);
        for (p, f) in provisional.iter().zip(finals) {
            m.insert(id, *p, *f);
        }
    }

    /// Looks for `frames` as one contiguous run among the primary's frames after `after`;
    /// returns their seqs when found.
    async fn find_applied(
        &self,
        id: &SessionId,
        after: u64,
        frames: &[NewFrame],
    ) -> std::result::Result<Option<Vec<u64>>, Stop> {
        let n = frames.len();
        if n == 0 {
            return Ok(Some(Vec::new()));
        }
        let cap = self.state.primary.limits().max_frames_per_session + n;
        let mut window: Vec<Frame> = Vec::new();
        let mut cursor = after;
        loop {
            let q = FrameQuery::after(cursor, MAX_PAGE_LIMIT);
            let page = match self
                .retrying("replay_check", self.bulk(), || {
                    self.state.primary.frames(id, &q)
                })
                .await
            {
                Call::Done(Ok(p)) => p,
                Call::Done(Err(e)) => return Err(Stop::primary(e)),
                Call::Rejected => return Err(Stop::other(self.refused("replay"))),
            };
            cursor = page.next_after(cursor);
            let more = page.has_more && !page.frames.is_empty();
            window.extend(page.frames);
            if !more || window.len() >= cap {
                break;
            }
        }
        if window.len() < n {
            return Ok(None);
        }
        for start in 0..=window.len() - n {
            if (0..n).all(|k| same(&window[start + k], &frames[k])) {
                return Ok(Some(
                    window[start..start + n].iter().map(|f| f.seq).collect(),
                ));
            }
        }
        Ok(None)
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
        Direction, GetMany, Health, ListPage, ListQuery, MemoryStore, PendingRequest, RequestId,
        Session, SessionFilter, SessionStore, SweepReport, Timestamp, Transport,
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

    fn append(n: usize, marker: Option<u64>) -> Entry {
        Entry {
            op: Op::Append {
                frames: (0..n)
                    .map(|i| NewFrame::new(Direction::ClientToServer, format!("f{i}")))
                    .collect(),
                provisional: (0..n as u64).collect(),
                ambiguous_after: marker,
            },
            bytes: 2 * n,
        }
    }

    #[test]
    fn batches_join_consecutive_appends_with_the_same_marker_within_caps() {
        let q: VecDeque<Entry> = vec![
            append(2, None),
            append(3, None),
            Entry {
                op: Op::Touch,
                bytes: 0,
            },
            append(1, None),
        ]
        .into();
        let b = Batch::from_front(&q);
        assert_eq!((b.entries, b.frames.len(), b.provisional.len()), (2, 5, 5));
        assert_eq!(b.ambiguous_after, None);

        // An in-doubt batch is exactly the marked run, never extended by newer entries.
        let q: VecDeque<Entry> =
            vec![append(2, Some(7)), append(1, Some(7)), append(4, None)].into();
        let b = Batch::from_front(&q);
        assert_eq!(
            (b.entries, b.frames.len(), b.ambiguous_after),
            (2, 3, Some(7))
        );

        let q: VecDeque<Entry> = vec![append(200, None), append(100, None)].into();
        assert_eq!(Batch::from_front(&q).entries, 1, "frame cap");
        let q: VecDeque<Entry> = vec![append(300, None)].into();
        assert_eq!(
            Batch::from_front(&q).frames.len(),
            300,
            "one entry always goes"
        );
    }
}
