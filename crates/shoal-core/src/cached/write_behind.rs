//! Write-behind: an `update` is checked against the cached entry, applied there and queued;
//! the queue is written in order per session (before anything else touches that session in
//! the backend, and in the background).

use std::{
    collections::VecDeque,
    future::ready,
    hash::BuildHasher,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use moka::ops::compute::Op;

use super::{
    cache_core::{CacheCore, UPDATE_LOCKS},
    config::WriteMode,
    entry::Entry,
    flush::{FLUSH_CONCURRENCY, run_concurrently},
    stats::FlushReport,
};
use crate::{Error, Result, Session, SessionId, SessionStore};

impl<S: SessionStore> CacheCore<S> {
    /// Write-behind: the lock that keeps updates of one session in order (one of
    /// [`UPDATE_LOCKS`] stripes). `None` in the other modes.
    pub(super) async fn update_lock(
        &self,
        id: &SessionId,
    ) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if self.config.write_mode != WriteMode::WriteBehind {
            return None;
        }
        let i = (self.lock_hasher.hash_one(id) as usize) % UPDATE_LOCKS;
        Some(self.update_locks[i].lock().await)
    }

    /// Write-behind `update`: checks the revision against the cached entry, applies the
    /// update there and queues it. `None` when it cannot (not cached, queue full): the caller
    /// writes through.
    pub(super) async fn update_behind(
        self: &Arc<Self>,
        session: &Session,
    ) -> Option<Result<Session>> {
        if let Err(e) = self.check_metadata(session) {
            return Some(Err(e));
        }
        let id = &session.id;
        match self.fresh(id).await {
            Ok(Some(_)) => {}
            Ok(None) => match self.load(id).await {
                Ok(Some(_)) => {}
                Ok(None) => return Some(Err(Error::session_not_found(id))),
                Err(e) => return Some(Err(e)),
            },
            Err(e) => return Some(Err(e)),
        }
        let now = self.now();
        let ttl = self.session_ttl;
        let (ttl_ms, sizes) = (self.ttl_ms, self.sizes);
        let max = self.config.max_queued_writes;
        let fences = &self.fences;
        let queue = &self.queue;
        let mut outcome: Option<Result<Session>> = None;
        self.entries
            .entry_by_ref(id)
            .and_compute_with(|cur| {
                let op = match cur.map(|c| c.into_value()) {
                    Some(c) if !c.usable(now, ttl_ms) || fences.crossed(id, c.ticket) => Op::Remove,
                    Some(c) if queue.len() < max => {
                        if c.session.revision != session.revision {
                            outcome = Some(Err(Error::Conflict {
                                what: format!("session {:?}", id.as_str()),
                                expected: session.revision,
                                actual: c.session.revision,
                            }));
                            Op::Nop
                        } else {
                            let mut next = c.snapshot();
                            next.apply_caller_fields(session);
                            next.revision += 1;
                            next.last_activity = next.last_activity.max(now);
                            next.expires_at = next.expires_at.max(now.saturating_add(ttl));
                            queue.push(session.clone());
                            outcome = Some(Ok(next.clone()));
                            // Loads racing with this change must not cache what they read.
                            let ticket = fences.raise(id);
                            Op::Put(Arc::new(Entry::new(
                                next,
                                c.loaded_at,
                                ticket,
                                c.tail.clone(),
                                sizes,
                            )))
                        }
                    }
                    _ => Op::Nop,
                };
                ready(op)
            })
            .await;
        if matches!(outcome, Some(Ok(_))) {
            self.stats.queued.inc();
            if self.queue.len() >= max / 2 {
                self.wake.notify_one();
            }
        }
        outcome
    }

    /// Writes the queued updates of one session in order. Transient failures put the rest
    /// back in front of the queue; a `Conflict` is read back (an earlier attempt that timed out
    /// may have been applied: then it counts as written); a refusal drops that update only
    /// (and the cached entry), and the later ones are still tried.
    async fn apply_updates(
        &self,
        id: &SessionId,
        mut ops: VecDeque<Session>,
    ) -> (FlushReport, Option<Error>) {
        let mut report = FlushReport::default();
        let mut err = None;
        while let Some(op) = ops.pop_front() {
            match self.store.update(&op).await {
                Ok(_) => {
                    report.updates_written += 1;
                    self.stats.flushed.inc();
                }
                Err(e) if e.is_transient() => {
                    ops.push_front(op);
                    report.pending = ops.len() as u64;
                    self.queue
                        .requeue_front(id.clone(), std::mem::take(&mut ops));
                    err = Some(e);
                    break;
                }
                Err(e @ Error::Conflict { .. }) => {
                    // An earlier attempt that timed out may have been applied: then the
                    // stored session is this update, one revision on. Read it back.
                    match self.already_applied(&op).await {
                        Ok(true) => {
                            report.updates_written += 1;
                            self.stats.flushed.inc();
                        }
                        Ok(false) => {
                            self.drop_update(id, &e, &mut report).await;
                        }
                        Err(read) if read.is_transient() => {
                            ops.push_front(op);
                            report.pending = ops.len() as u64;
                            self.queue
                                .requeue_front(id.clone(), std::mem::take(&mut ops));
                            err = Some(read);
                            break;
                        }
                        Err(_) => self.drop_update(id, &e, &mut report).await,
                    }
                }
                Err(e) => self.drop_update(id, &e, &mut report).await,
            }
        }
        if report.updates_written > 0 {
            self.publish(id);
        }
        (report, err)
    }

    /// Whether the backend already holds `op` applied: the stored session is one revision on
    /// from the one `op` expected and has `op`'s caller-owned fields.
    async fn already_applied(&self, op: &Session) -> Result<bool> {
        let Some(stored) = self.store.get(&op.id).await? else {
            return Ok(false);
        };
        if stored.revision != op.revision.saturating_add(1) {
            return Ok(false);
        }
        let mut with_op = stored.clone();
        with_op.apply_caller_fields(op);
        Ok(with_op == stored)
    }

    /// One acknowledged update the backend refused: counted, said, and the cached entry
    /// dropped (the next read loads what the backend holds). The session's later updates are
    /// still tried, each on its own.
    async fn drop_update(&self, id: &SessionId, e: &Error, report: &mut FlushReport) {
        report.updates_dropped += 1;
        self.stats.dropped.add(1);
        tracing::warn!(
            session = %id,
            error = %e,
            "write-behind: the backend refused an acknowledged update; dropped"
        );
        self.evict(id, false).await;
    }

    /// Writes the queued updates of `id` before anything else touches it in the backend.
    pub(super) async fn flush_id(self: &Arc<Self>, id: &SessionId) -> Result<()> {
        if !self.queue.contains(id) {
            self.await_flushes_in_flight().await;
            return Ok(());
        }
        let s = Arc::clone(self);
        let id = id.clone();
        let job = tokio::spawn(async move {
            let _serial = s.flush_lock.lock().await;
            let _in_flight = InFlight::new(&s.flushes_in_flight);
            let ops = s.queue.take(&id);
            s.apply_updates(&id, ops).await
        });
        match job.await {
            Ok((_, None)) => Ok(()),
            Ok((_, Some(e))) => Err(e),
            Err(e) => Err(Error::backend(format!("cache flush failed: {e}"))),
        }
    }

    /// Waits until no flush holds updates taken off the queue (another caller's, or the
    /// background task's): the queue can be empty while they are still being written.
    async fn await_flushes_in_flight(&self) {
        if self.flushes_in_flight.load(Ordering::SeqCst) > 0 {
            drop(self.flush_lock.lock().await);
        }
    }

    /// Writes every queued update (one session after another in order, sessions at once).
    pub(super) async fn flush_queue(self: &Arc<Self>) -> (FlushReport, Option<Error>) {
        if self.queue.is_empty() {
            self.await_flushes_in_flight().await;
            return (FlushReport::default(), None);
        }
        let s = Arc::clone(self);
        let job = tokio::spawn(async move {
            let _serial = s.flush_lock.lock().await;
            let _in_flight = InFlight::new(&s.flushes_in_flight);
            let all = s.queue.take_all();
            let results = run_concurrently(all, FLUSH_CONCURRENCY, |(id, ops)| {
                let s = Arc::clone(&s);
                async move { s.apply_updates(&id, ops).await }
            })
            .await;
            let mut report = FlushReport::default();
            let mut err = None;
            for (r, e) in results {
                report.updates_written += r.updates_written;
                report.updates_dropped += r.updates_dropped;
                report.pending += r.pending;
                if e.is_some() {
                    err = e;
                }
            }
            (report, err)
        });
        job.await.unwrap_or_else(|e| {
            (
                FlushReport::default(),
                Some(Error::backend(format!("cache flush failed: {e}"))),
            )
        })
    }
}

/// Counts a flush in [`CacheCore::flushes_in_flight`] from before it takes updates off the
/// queue until they are written (or it is cancelled).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
