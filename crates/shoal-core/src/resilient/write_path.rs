//! The fallback write path (fallback mode `memory`): writes to local sessions go to the
//! fallback and the journal, writes to sessions the primary holds are journaled (appends get
//! provisional seqs), every one within the journal's bounds.

use std::{
    future::Future,
    sync::{Arc, MutexGuard, atomic::Ordering},
};

use super::{
    durable::Record,
    journal::{self, Journal, MarkKind, Op},
    metrics,
    state::lock,
    wrapper::Resilient,
};
use crate::{Error, NewFrame, Result, SessionId, SessionRecord, SessionStore};

/// Bytes of `frames` counted against the journal.
pub(super) fn frames_bytes(frames: &[NewFrame]) -> usize {
    frames.iter().map(NewFrame::size).sum()
}

/// Bytes of `r` counted against the journal.
pub(super) fn record_bytes(r: &SessionRecord) -> usize {
    r.session.metadata_bytes() + r.frames.iter().map(crate::Frame::size).sum::<usize>()
}

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    pub(super) fn journal(&self) -> MutexGuard<'_, Journal> {
        lock(&self.state.journal)
    }

    /// Runs `f` on the journal and refreshes the gauges and the fast-path counter.
    pub(super) fn with_journal<R>(&self, f: impl FnOnce(&mut Journal) -> R) -> R {
        let mut j = self.journal();
        let r = f(&mut j);
        self.state.marked.store(j.marked(), Ordering::Release);
        let b = self.primary_name();
        ::metrics::gauge!(metrics::JOURNAL_ENTRIES, "backend" => b).set(j.len() as f64);
        ::metrics::gauge!(metrics::JOURNAL_BYTES, "backend" => b).set(j.bytes() as f64);
        ::metrics::gauge!(metrics::MARKED_SESSIONS, "backend" => b).set(j.marked() as f64);
        r
    }

    pub(super) fn mark_shadow(&self, id: &SessionId) {
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

    pub(super) fn reserve(&self, bytes: usize) -> Result<()> {
        self.with_journal(|j| j.reserve(bytes))
            .map_err(|full| self.journal_full(full))
    }

    pub(super) fn journal_full(&self, full: journal::JournalFull) -> Error {
        self.state.journal_full.fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!(metrics::JOURNAL_FULL).increment(1);
        tracing::warn!(
            entries = full.entries,
            bytes = full.bytes,
            "resilient: outage journal full; write refused"
        );
        full.into_error()
    }

    /// A write to a local session: reserve, write to the fallback, journal it, log `record`
    /// to the journal file (if any) before answering.
    pub(super) async fn local_write<T>(
        &self,
        id: &SessionId,
        op: &'static str,
        bytes: usize,
        entry: Op,
        fut: impl Future<Output = Result<T>>,
        record: impl FnOnce() -> Record,
    ) -> Result<T> {
        self.reserve(bytes)?;
        let r = self.on_fallback(op, fut).await;
        self.with_journal(|j| match &r {
            Ok(_) => j.push(id, entry, bytes),
            Err(_) => j.release(bytes),
        });
        self.log_after(r, record).await
    }

    /// Creates (or restores) a session in the fallback during an outage and marks it local.
    pub(super) async fn create_local<T, Fut>(
        &self,
        id: &SessionId,
        op: &'static str,
        bytes: usize,
        make: impl FnOnce() -> Fut,
        record: impl FnOnce() -> Record,
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
        let r = self
            .local_write(id, op, bytes, Op::Created, make(), record)
            .await;
        if r.is_err() {
            self.unmark_if_idle(id);
        }
        drop(guard);
        r
    }

    /// Journals a write to a session held by the primary (the caller holds its lock).
    pub(super) fn shadow_write(&self, id: &SessionId, op: Op, bytes: usize) -> Result<()> {
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
    pub(super) fn shadow_append(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
        let max = self.state.primary.limits().max_frame_bytes;
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
            let base = self.state.next_provisional.fetch_add(n, Ordering::Relaxed);
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

    /// Journals a delete of a session the primary may hold, dropping the appends and touches
    /// journaled before it (the delete removes them anyway). The caller holds its lock.
    pub(super) fn journal_delete(&self, id: &SessionId) -> Result<()> {
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
