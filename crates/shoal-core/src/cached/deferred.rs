//! Writes the cache acknowledges before the backend has them: coalesced touches and the
//! write-behind queue of updates.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
};

use crate::{Session, SessionId, Timestamp};

/// What the cache knows about the backend's copy of one session's activity.
#[derive(Debug)]
pub(super) struct TouchState {
    /// When the backend last recorded activity, in nanoseconds since the cache started.
    pub(super) last_write_ns: AtomicU64,
    /// The backend's `expires_at` after that write (ms).
    pub(super) backend_expires: AtomicU64,
    /// A touch was acknowledged after the last write and is not written yet.
    pub(super) dirty: AtomicBool,
    /// The session changed elsewhere since: no more coalescing on this state.
    pub(super) stale: AtomicBool,
}

impl TouchState {
    pub(super) fn new(now_ns: u64, backend_expires: Timestamp) -> Self {
        TouchState {
            last_write_ns: AtomicU64::new(now_ns),
            backend_expires: AtomicU64::new(backend_expires.0),
            dirty: AtomicBool::new(false),
            stale: AtomicBool::new(false),
        }
    }

    /// Records a backend write at `now_ns` that set `expires`.
    pub(super) fn written(&self, now_ns: u64, expires: Timestamp) {
        self.last_write_ns.fetch_max(now_ns, Ordering::AcqRel);
        self.backend_expires.fetch_max(expires.0, Ordering::AcqRel);
    }
}

/// The ids with an acknowledged, unwritten touch.
#[derive(Debug, Default)]
pub(super) struct DirtySet {
    ids: Mutex<HashSet<SessionId>>,
}

impl DirtySet {
    pub(super) fn insert(&self, id: &SessionId) {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone());
    }

    pub(super) fn take(&self) -> Vec<SessionId> {
        std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect()
    }

    pub(super) fn len(&self) -> usize {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Write-behind: updates acknowledged but not yet written, in order per session.
///
/// Each queued `Session` carries the caller's fields and the revision the update was based on
/// (what the backend must still hold for it to apply).
#[derive(Debug, Default)]
pub(super) struct WriteQueue {
    by_id: Mutex<HashMap<SessionId, VecDeque<Session>>>,
    len: AtomicUsize,
}

impl WriteQueue {
    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn push(&self, update: Session) {
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(update.id.clone()).or_default().push_back(update);
        self.len.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether `id` has queued updates.
    pub(super) fn contains(&self, id: &SessionId) -> bool {
        !self.is_empty()
            && self
                .by_id
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(id)
    }

    /// Takes the queued updates of `id`.
    pub(super) fn take(&self, id: &SessionId) -> VecDeque<Session> {
        let taken = self
            .by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
            .unwrap_or_default();
        self.len.fetch_sub(taken.len(), Ordering::AcqRel);
        taken
    }

    /// Takes everything.
    pub(super) fn take_all(&self) -> Vec<(SessionId, VecDeque<Session>)> {
        let map = std::mem::take(&mut *self.by_id.lock().unwrap_or_else(|e| e.into_inner()));
        let n: usize = map.values().map(VecDeque::len).sum();
        self.len.fetch_sub(n, Ordering::AcqRel);
        map.into_iter().collect()
    }

    /// Puts unwritten updates back in front of anything queued for `id` since.
    pub(super) fn requeue_front(&self, id: SessionId, mut updates: VecDeque<Session>) {
        if updates.is_empty() {
            return;
        }
        let n = updates.len();
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let slot = map.entry(id).or_default();
        updates.append(slot);
        *slot = updates;
        self.len.fetch_add(n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;

    fn upd(id: &str, rev: u64) -> Session {
        let mut s = Session::new(SessionId::new(id).unwrap(), Transport::Http);
        s.revision = rev;
        s
    }

    #[test]
    fn queue_keeps_order_per_session_and_counts() {
        let q = WriteQueue::default();
        q.push(upd("a", 1));
        q.push(upd("b", 1));
        q.push(upd("a", 2));
        assert_eq!(q.len(), 3);
        let a = SessionId::new("a").unwrap();
        assert!(q.contains(&a));
        let mut taken = q.take(&a);
        assert_eq!(taken.iter().map(|s| s.revision).collect::<Vec<_>>(), [1, 2]);
        q.push(upd("a", 3));
        taken.pop_front();
        q.requeue_front(a.clone(), taken);
        assert_eq!(
            q.take(&a).iter().map(|s| s.revision).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(q.take_all().len(), 1);
        assert!(q.is_empty());
    }

    #[test]
    fn touch_state_only_moves_forward() {
        let t = TouchState::new(10, Timestamp(100));
        t.written(5, Timestamp(90));
        assert_eq!(t.last_write_ns.load(Ordering::Acquire), 10);
        assert_eq!(t.backend_expires.load(Ordering::Acquire), 100);
        let d = DirtySet::default();
        d.insert(&SessionId::new("x").unwrap());
        assert_eq!(d.len(), 1);
        assert_eq!(d.take().len(), 1);
        assert_eq!(d.len(), 0);
    }
}
