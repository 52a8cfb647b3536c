//! The outage journal: which sessions were written while the primary was out, and what to
//! drain for each, in order, within fixed bounds.
//!
//! Sessions are *marked* when the first write during an outage touches them:
//! - **local**: created (or restored) during the outage; the fallback store holds the whole
//!   session, and the drain copies it into the primary in one `restore`;
//! - **shadow**: held by the primary (or unknown); the journal holds the writes themselves
//!   (appends with their frames, touches, deletes) and the drain applies them.
//!
//! Every write accepted during the outage is one entry. Entries are kept per session, in the
//! order they were accepted, and drained in that order; sessions are started in the order
//! of their first entry (several at a time, so they may finish in any order). The
//! bounds (`max_entries`, `max_bytes`) are reserved before a write happens, so a full journal
//! refuses the write and nothing is written anywhere.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use crate::{Error, NewFrame, SessionId};

/// What kind of marked session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MarkKind {
    /// Created during the outage; lives in the fallback until drained. `in_doubt`: a drain
    /// `restore` failed without an answer, so writes wait until the next drain settles it.
    Local { in_doubt: bool },
    /// Held by the primary; writes are journaled. `deleted`: a delete is journaled.
    Shadow { deleted: bool },
}

/// One journaled write.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// The local session was created (or restored) in the fallback.
    Created,
    /// A write to a local session (already in the fallback; the drain copies the session whole).
    LocalWrite,
    /// Frames appended to a shadow session, with the provisional seqs handed out for them.
    Append {
        frames: Vec<NewFrame>,
        provisional: Vec<u64>,
        /// Set when a drain attempt of this append failed without an answer: the primary's
        /// `last_seq` before that attempt, so the next attempt can look for the frames after it
        /// instead of appending them twice.
        ambiguous_after: Option<u64>,
    },
    /// `touch` of a shadow session.
    Touch,
    /// `delete` of a shadow session.
    Delete,
}

/// An entry with the bytes it holds against the bound.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) op: Op,
    pub(crate) bytes: usize,
}

#[derive(Debug)]
struct SessionLog {
    kind: MarkKind,
    lock: Arc<tokio::sync::Mutex<()>>,
    order: u64,
    entries: Vec<Entry>,
    /// Entries taken out by a drain in progress (still counted against the bounds).
    taken: usize,
    taken_bytes: usize,
}

/// Why a reservation failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct JournalFull {
    pub(crate) entries: usize,
    pub(crate) bytes: usize,
    pub(crate) max_entries: usize,
    pub(crate) max_bytes: usize,
}

impl JournalFull {
    pub(crate) fn into_error(self) -> Error {
        Error::unavailable(format!(
            "resilient: the outage journal is full ({} of {} entries, {} of {} bytes); the \
             write was refused and nothing was written",
            self.entries, self.max_entries, self.bytes, self.max_bytes
        ))
    }
}

/// The journal. Callers hold it behind a `std::sync::Mutex` and never across an `.await`.
#[derive(Debug)]
pub(crate) struct Journal {
    sessions: HashMap<SessionId, SessionLog>,
    order: BTreeMap<u64, SessionId>,
    next_order: u64,
    entries: usize,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Journal {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Journal {
            sessions: HashMap::new(),
            order: BTreeMap::new(),
            next_order: 0,
            entries: 0,
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// Entries held (including those a drain has taken out but not finished).
    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Marked sessions.
    pub(crate) fn marked(&self) -> usize {
        self.sessions.len()
    }

    /// Marked local sessions.
    pub(crate) fn local(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| matches!(s.kind, MarkKind::Local { .. }))
            .count()
    }

    /// The mark of `id` and its lock.
    pub(crate) fn lookup(&self, id: &SessionId) -> Option<(MarkKind, Arc<tokio::sync::Mutex<()>>)> {
        self.sessions.get(id).map(|s| (s.kind, Arc::clone(&s.lock)))
    }

    /// The mark of `id`.
    pub(crate) fn kind(&self, id: &SessionId) -> Option<MarkKind> {
        self.sessions.get(id).map(|s| s.kind)
    }

    /// Marks `id` as `kind` unless it is marked already; returns its current kind and lock.
    pub(crate) fn mark(
        &mut self,
        id: &SessionId,
        kind: MarkKind,
    ) -> (MarkKind, Arc<tokio::sync::Mutex<()>>) {
        if let Some(s) = self.sessions.get(id) {
            return (s.kind, Arc::clone(&s.lock));
        }
        let order = self.next_order;
        self.next_order += 1;
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        self.sessions.insert(
            id.clone(),
            SessionLog {
                kind,
                lock: Arc::clone(&lock),
                order,
                entries: Vec::new(),
                taken: 0,
                taken_bytes: 0,
            },
        );
        self.order.insert(order, id.clone());
        (kind, lock)
    }

    /// Changes the kind of a marked session.
    pub(crate) fn set_kind(&mut self, id: &SessionId, kind: MarkKind) {
        if let Some(s) = self.sessions.get_mut(id) {
            s.kind = kind;
        }
    }

    /// Reserves room for one entry of `bytes`.
    pub(crate) fn reserve(&mut self, bytes: usize) -> Result<(), JournalFull> {
        if self.entries + 1 > self.max_entries || self.bytes.saturating_add(bytes) > self.max_bytes
        {
            return Err(JournalFull {
                entries: self.entries,
                bytes: self.bytes,
                max_entries: self.max_entries,
                max_bytes: self.max_bytes,
            });
        }
        self.entries += 1;
        self.bytes += bytes;
        Ok(())
    }

    /// Gives back a reservation whose write failed.
    pub(crate) fn release(&mut self, bytes: usize) {
        self.entries = self.entries.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    /// Records a reserved entry for a marked session. If the session is no longer marked the
    /// reservation is given back.
    pub(crate) fn push(&mut self, id: &SessionId, op: Op, bytes: usize) {
        match self.sessions.get_mut(id) {
            Some(s) => s.entries.push(Entry { op, bytes }),
            None => self.release(bytes),
        }
    }

    /// Drops a marked session with all its entries (a local session deleted before it was
    /// drained, or a session whose drain is complete).
    pub(crate) fn unmark(&mut self, id: &SessionId) {
        if let Some(s) = self.sessions.remove(id) {
            self.order.remove(&s.order);
            let n = s.entries.len() + s.taken;
            let b = s.entries.iter().map(|e| e.bytes).sum::<usize>() + s.taken_bytes;
            self.entries = self.entries.saturating_sub(n);
            self.bytes = self.bytes.saturating_sub(b);
        }
    }

    /// After a restart: the drain of `id` had started (the primary's `last_seq` was `after`)
    /// when the process died, so its writes may be in the primary already. A local session
    /// becomes in doubt; a shadow session's appends are read back after `after` first.
    pub(crate) fn mark_in_doubt(&mut self, id: &SessionId, after: u64) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        match s.kind {
            MarkKind::Local { .. } => s.kind = MarkKind::Local { in_doubt: true },
            MarkKind::Shadow { .. } => {
                for e in &mut s.entries {
                    if let Op::Append {
                        ambiguous_after, ..
                    } = &mut e.op
                    {
                        *ambiguous_after = Some(after);
                    }
                }
            }
        }
    }

    /// Removes the pending entries of `id` that match `pred` (e.g. appends before a delete).
    pub(crate) fn remove_entries(&mut self, id: &SessionId, pred: impl Fn(&Op) -> bool) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let mut removed = 0;
        let mut removed_bytes = 0;
        s.entries.retain(|e| {
            if pred(&e.op) {
                removed += 1;
                removed_bytes += e.bytes;
                false
            } else {
                true
            }
        });
        self.entries = self.entries.saturating_sub(removed);
        self.bytes = self.bytes.saturating_sub(removed_bytes);
    }

    /// The first marked session (in order of marking) after `after` (exclusive), if any.
    pub(crate) fn next_session(&self, after: Option<u64>) -> Option<(u64, SessionId)> {
        let range = match after {
            Some(a) => self.order.range(a + 1..),
            None => self.order.range(..),
        };
        range.map(|(o, id)| (*o, id.clone())).next()
    }

    /// Takes the pending entries of `id` out for draining. They stay counted until
    /// [`Journal::finish`] or [`Journal::put_back`].
    pub(crate) fn take(&mut self, id: &SessionId) -> Vec<Entry> {
        let Some(s) = self.sessions.get_mut(id) else {
            return Vec::new();
        };
        let entries = std::mem::take(&mut s.entries);
        s.taken += entries.len();
        s.taken_bytes += entries.iter().map(|e| e.bytes).sum::<usize>();
        entries
    }

    /// The drain is done with `done` taken entries of `bytes` bytes.
    pub(crate) fn finish(&mut self, id: &SessionId, done: usize, bytes: usize) {
        if let Some(s) = self.sessions.get_mut(id) {
            s.taken = s.taken.saturating_sub(done);
            s.taken_bytes = s.taken_bytes.saturating_sub(bytes);
        }
        self.entries = self.entries.saturating_sub(done);
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    /// Puts taken entries that were not drained back in front of any newer ones.
    pub(crate) fn put_back(&mut self, id: &SessionId, mut rest: Vec<Entry>) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let n = rest.len();
        let b: usize = rest.iter().map(|e| e.bytes).sum();
        s.taken = s.taken.saturating_sub(n);
        s.taken_bytes = s.taken_bytes.saturating_sub(b);
        rest.append(&mut s.entries);
        s.entries = rest;
    }

    /// Whether `id` is marked with no entries, pending or taken.
    pub(crate) fn is_idle(&self, id: &SessionId) -> bool {
        self.sessions
            .get(id)
            .is_some_and(|s| s.entries.is_empty() && s.taken == 0)
    }

    /// Whether `id` has entries that are not taken out.
    #[cfg(test)]
    pub(crate) fn has_pending(&self, id: &SessionId) -> bool {
        self.sessions.get(id).is_some_and(|s| !s.entries.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Direction;

    fn sid(s: &str) -> SessionId {
        SessionId::new(s).expect("valid id")
    }

    fn append(n: usize) -> Op {
        Op::Append {
            frames: (0..n)
                .map(|i| NewFrame::new(Direction::ClientToServer, format!("f{i}")))
                .collect(),
            provisional: (0..n as u64).collect(),
            ambiguous_after: None,
        }
    }

    #[test]
    fn entry_bound_refuses_and_releases() {
        let mut j = Journal::new(2, 1_000);
        let a = sid("a");
        j.mark(&a, MarkKind::Shadow { deleted: false });
        assert!(j.reserve(10).is_ok());
        j.push(&a, append(1), 10);
        assert!(j.reserve(10).is_ok());
        j.push(&a, Op::Touch, 10);
        let full = j.reserve(0).expect_err("full");
        assert_eq!(full.entries, 2);
        assert!(full.into_error().to_string().contains("journal is full"));
        assert_eq!((j.len(), j.bytes()), (2, 20));
        j.unmark(&a);
        assert_eq!((j.len(), j.bytes(), j.marked()), (0, 0, 0));
        assert!(j.reserve(0).is_ok());
        j.release(0);
        assert_eq!(j.len(), 0);
    }

    #[test]
    fn byte_bound_refuses() {
        let mut j = Journal::new(100, 100);
        assert!(j.reserve(60).is_ok());
        let full = j.reserve(41).expect_err("bytes");
        assert_eq!((full.bytes, full.max_bytes), (60, 100));
        assert!(j.reserve(40).is_ok());
        assert_eq!(j.bytes(), 100);
    }

    #[test]
    fn push_to_an_unmarked_session_gives_the_reservation_back() {
        let mut j = Journal::new(10, 100);
        assert!(j.reserve(5).is_ok());
        j.push(&sid("gone"), Op::Touch, 5);
        assert_eq!((j.len(), j.bytes()), (0, 0));
    }

    #[test]
    fn sessions_drain_in_marking_order_and_entries_keep_theirs() {
        let mut j = Journal::new(100, 1_000);
        let (a, b, c) = (sid("a"), sid("b"), sid("c"));
        for id in [&b, &a, &c] {
            j.mark(id, MarkKind::Shadow { deleted: false });
        }
        // Marking again keeps the first kind and order.
        assert_eq!(
            j.mark(&b, MarkKind::Local { in_doubt: false }).0,
            MarkKind::Shadow { deleted: false }
        );
        let mut seen = Vec::new();
        let mut after = None;
        while let Some((o, id)) = j.next_session(after) {
            seen.push(id.as_str().to_owned());
            after = Some(o);
        }
        assert_eq!(seen, ["b", "a", "c"]);

        for op in [append(1), Op::Touch, append(2)] {
            assert!(j.reserve(1).is_ok());
            j.push(&a, op, 1);
        }
        let taken = j.take(&a);
        assert_eq!(taken.len(), 3);
        assert!(!j.has_pending(&a));
        assert_eq!(j.len(), 3, "taken entries still count");
        // A write arrives meanwhile, then the drain finishes one entry and puts two back.
        assert!(j.reserve(1).is_ok());
        j.push(&a, Op::Delete, 1);
        j.finish(&a, 1, 1);
        j.put_back(&a, taken.into_iter().skip(1).collect());
        let again = j.take(&a);
        let kinds: Vec<&str> = again
            .iter()
            .map(|e| match e.op {
                Op::Append { .. } => "append",
                Op::Touch => "touch",
                Op::Delete => "delete",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["touch", "append", "delete"]);
        assert_eq!(j.len(), 3);
        j.unmark(&a);
        assert_eq!(j.len(), 0);
    }

    #[test]
    fn remove_entries_adjusts_the_totals() {
        let mut j = Journal::new(100, 1_000);
        let a = sid("a");
        j.mark(&a, MarkKind::Shadow { deleted: false });
        for (op, b) in [(append(1), 7), (Op::Touch, 0), (append(1), 5)] {
            assert!(j.reserve(b).is_ok());
            j.push(&a, op, b);
        }
        j.remove_entries(&a, |op| matches!(op, Op::Append { .. }));
        assert_eq!((j.len(), j.bytes()), (1, 0));
        assert_eq!(j.local(), 0);
        j.set_kind(&a, MarkKind::Local { in_doubt: false });
        assert_eq!(j.local(), 1);
        assert_eq!(j.kind(&a), Some(MarkKind::Local { in_doubt: false }));
    }
}
