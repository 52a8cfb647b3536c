//! Fences: how a load or write that raced with an invalidation knows not to cache its result.
//!
//! Every change to a session (a local write, an invalidation from another instance) first
//! raises the session's fence to a new sequence number, then drops the cached entry. A load
//! takes a [`Ticket`] (the current sequence number) before it reads the backend, inserts its
//! result, and then checks whether the session's fence rose past its ticket meanwhile; if so
//! it drops what it inserted. Either the invalidation's drop comes after the insert (and
//! removes it), or the fence was raised before the check (and the load removes it): a stale
//! value never stays.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use crate::SessionId;

use super::shard::ShardedMap;

/// How long a fence is remembered at least. Operations (and entries) older than half the
/// keep time count as fenced.
const MIN_KEEP: Duration = Duration::from_secs(120);

/// A point in the fence sequence, taken before reading the backend.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket {
    seq: u64,
    at: Instant,
}

impl Ticket {
    #[cfg(test)]
    pub(super) fn zero() -> Self {
        Ticket {
            seq: 0,
            at: Instant::now(),
        }
    }
}

/// The per-session fences and the global one (for "clear everything").
#[derive(Debug)]
pub(super) struct Fences {
    seq: AtomicU64,
    all: AtomicU64,
    /// Per session: the latest fence, the one before it, and when the latest was raised.
    map: ShardedMap<(u64, u64, Instant)>,
    raised: AtomicU64,
    keep: Duration,
}

impl Fences {
    /// Fences for a cache whose entries live `ttl`: kept at least four times as long.
    pub(super) fn new(ttl: Duration) -> Self {
        Fences {
            seq: AtomicU64::new(0),
            all: AtomicU64::new(0),
            map: ShardedMap::default(),
            raised: AtomicU64::new(0),
            keep: MIN_KEEP.max(ttl.saturating_mul(4)),
        }
    }

    /// The current point, to compare with later.
    pub(super) fn ticket(&self) -> Ticket {
        Ticket {
            seq: self.seq.load(Ordering::SeqCst),
            at: Instant::now(),
        }
    }

    /// Raises the fence of `id`; returns a ticket at the new point (which `id`'s own fence
    /// does not cross).
    pub(super) fn raise(&self, id: &SessionId) -> Ticket {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let at = Instant::now();
        self.map
            .upsert(id, |old| (seq, old.map_or(0, |(latest, _, _)| *latest), at));
        if self.raised.fetch_add(1, Ordering::Relaxed) % 4_096 == 4_095 {
            self.prune();
        }
        Ticket { seq, at }
    }

    /// Raises every fence at once.
    pub(super) fn raise_all(&self) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.all.fetch_max(seq, Ordering::SeqCst);
    }

    /// Whether `id` changed (or everything was cleared) after `t` was taken.
    pub(super) fn crossed(&self, id: &SessionId, t: Ticket) -> bool {
        if self.all.load(Ordering::SeqCst) > t.seq || t.at.elapsed() > self.keep / 2 {
            return true;
        }
        self.map.get(id).is_some_and(|(seq, _, _)| seq > t.seq)
    }

    /// [`Fences::crossed`] for a cached entry, without the age check: entries live at most
    /// the entry ttl (moka evicts them on real time), and fences are kept far longer.
    pub(super) fn crossed_entry(&self, id: &SessionId, t: Ticket) -> bool {
        self.all.load(Ordering::SeqCst) > t.seq
            || self.map.get(id).is_some_and(|(seq, _, _)| seq > t.seq)
    }

    /// Whether `id` changed after `since` by anything but the fence `own` (raised by the
    /// caller, which knows what its own change did). Conservative when unsure.
    pub(super) fn crossed_except(&self, id: &SessionId, since: Ticket, own: Ticket) -> bool {
        if self.all.load(Ordering::SeqCst) > since.seq || since.at.elapsed() > self.keep / 2 {
            return true;
        }
        match self.map.get(id) {
            Some((latest, prev, _)) if latest == own.seq => prev > since.seq,
            Some((latest, _, _)) => latest > since.seq,
            None => true,
        }
    }

    /// Forgets fences older than the keep time.
    pub(super) fn prune(&self) {
        let keep = self.keep;
        self.map.retain(|_, (_, _, at)| at.elapsed() < keep);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_crossed_by_later_fences_only() {
        let f = Fences::new(Duration::from_secs(5));
        let a = SessionId::new("a").unwrap();
        let b = SessionId::new("b").unwrap();
        let t = f.ticket();
        assert!(!f.crossed(&a, t));
        let own = f.raise(&a);
        assert!(f.crossed(&a, t), "a changed after t");
        assert!(!f.crossed(&b, t), "b did not");
        assert!(
            !f.crossed(&a, own),
            "a ticket is not crossed by its own fence"
        );
        f.raise_all();
        assert!(f.crossed(&b, own));
        f.prune();
        assert_eq!(f.len(), 1, "recent fences are kept");
    }
}
