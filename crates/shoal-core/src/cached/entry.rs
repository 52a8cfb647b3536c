//! What one cache entry holds: a session snapshot, newer activity, and an optional frame tail.

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::{Frame, FrameEpochs, FramePage, FrameQuery, Session, Timestamp};

use super::fence::Ticket;

/// A cached session. Immutable except for activity, which touches move forward in place.
#[derive(Debug)]
pub(super) struct Entry {
    /// The session as loaded or written (its activity fields may be older than `touched`).
    pub(super) session: Session,
    /// The newest activity recorded since (ms; 0: none). Every touch sets
    /// `last_activity = t, expires_at = t + session_ttl`, so one number says both.
    touched: AtomicU64,
    /// The store's session ttl in ms.
    session_ttl_ms: u64,
    /// When the entry was made, on the store's clock (for the entry ttl).
    pub(super) loaded_at: Timestamp,
    /// The fence ticket the entry was made under (re-checked after insertion).
    pub(super) ticket: Ticket,
    /// The newest frames, when known (`None`: unknown, nothing served from memory).
    pub(super) tail: Option<Tail>,
    /// Weight for the byte bound.
    pub(super) weight: u32,
}

impl Entry {
    pub(super) fn new(
        session: Session,
        loaded_at: Timestamp,
        ticket: Ticket,
        tail: Option<Tail>,
        sizes: Sizes,
    ) -> Self {
        let weight = weigh(&session, tail.as_ref(), sizes.min_weight);
        Entry {
            touched: AtomicU64::new(0),
            session_ttl_ms: sizes.session_ttl_ms,
            session,
            loaded_at,
            ticket,
            tail,
            weight,
        }
    }

    /// `(last_activity, expires_at)` as this entry knows them.
    fn activity(&self) -> (Timestamp, Timestamp) {
        let t = self.touched.load(Ordering::Acquire);
        if t > self.session.last_activity.0 {
            (
                Timestamp(t),
                Timestamp(t.saturating_add(self.session_ttl_ms)),
            )
        } else {
            (self.session.last_activity, self.session.expires_at)
        }
    }

    /// The session's last activity as this entry knows it.
    pub(super) fn last_activity(&self) -> Timestamp {
        self.activity().0
    }

    /// The session's current expiry as this entry knows it.
    pub(super) fn expires_at(&self) -> Timestamp {
        self.activity().1
    }

    /// Whether the entry may be served at `now`: the session has not expired and the entry
    /// is younger than `ttl_ms`.
    pub(super) fn usable(&self, now: Timestamp, ttl_ms: u64) -> bool {
        self.expires_at() > now && now.0 < self.loaded_at.0.saturating_add(ttl_ms)
    }

    /// The session with the newest activity.
    pub(super) fn snapshot(&self) -> Session {
        let (last_activity, expires_at) = self.activity();
        let mut s = self.session.clone();
        s.last_activity = last_activity;
        s.expires_at = expires_at;
        s
    }

    /// Records a touch at `at` (`expires_at = at + session_ttl`); only ever forward.
    pub(super) fn touched_at(&self, at: Timestamp) {
        self.touched.fetch_max(at.0, Ordering::AcqRel);
    }
}

/// What every entry of one cache needs to know about sizes and times.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sizes {
    /// Least weight of an entry.
    pub(super) min_weight: u32,
    /// The store's session ttl in ms.
    pub(super) session_ttl_ms: u64,
}

impl Sizes {
    #[cfg(test)]
    pub(super) fn test(min_weight: u32, session_ttl_ms: u64) -> Self {
        Sizes {
            min_weight,
            session_ttl_ms,
        }
    }
}

/// The estimated memory of an entry, at least `min_weight`.
fn weigh(session: &Session, tail: Option<&Tail>, min_weight: u32) -> u32 {
    let base = 320 + session.id.as_str().len() + session.metadata_bytes();
    let tail = tail.map_or(0, |t| t.bytes + 96 * t.frames.len());
    u32::try_from(base + tail)
        .unwrap_or(u32::MAX)
        .max(min_weight)
}

/// The newest frames of a session: a contiguous run ending at the session's `last_seq`, all
/// at or after its `first_seq`. Empty means "nothing before `last_seq + 1` is held", which
/// still answers queries past the end.
#[derive(Clone, Debug, Default)]
pub(super) struct Tail {
    frames: VecDeque<Frame>,
    bytes: usize,
    /// The session's frame epochs, as the page the tail was filled from and the appends
    /// since said (pages served from the tail carry them).
    epochs: FrameEpochs,
}

impl Tail {
    /// The seq of the first frame held (`last_seq + 1` when empty).
    fn start(&self, last_seq: u64) -> u64 {
        self.frames
            .front()
            .map_or(last_seq.saturating_add(1), |f| f.seq)
    }

    /// A tail of `frames` (contiguous, ending at the session's `last_seq`), cut to the caps.
    #[cfg(test)]
    pub(super) fn of(frames: &[Frame], max_frames: usize, max_bytes: usize) -> Tail {
        let mut t = Tail::default();
        t.extend(frames.iter().cloned(), 0, max_frames, max_bytes);
        t
    }

    /// This tail followed by `new` (the frames that come right after it, appended in
    /// `epoch`), without frames before `first_seq`, cut to the caps.
    pub(super) fn extended(
        &self,
        new: impl IntoIterator<Item = Frame>,
        epoch: u64,
        first_seq: u64,
        max_frames: usize,
        max_bytes: usize,
    ) -> Tail {
        let mut t = self.clone();
        let mut new = new.into_iter().peekable();
        if let Some(first_new) = new.peek() {
            t.epochs.record(epoch, first_new.seq);
        }
        t.extend(new, first_seq, max_frames, max_bytes);
        t
    }

    /// A tail of the frames of `page` (which ends at the session's newest frame), without
    /// frames before `first_seq`, cut to the caps.
    pub(super) fn from_page(
        page: &FramePage,
        first_seq: u64,
        max_frames: usize,
        max_bytes: usize,
    ) -> Tail {
        let mut t = Tail {
            epochs: page.epochs.clone(),
            ..Tail::default()
        };
        t.extend(
            page.frames.iter().cloned(),
            first_seq,
            max_frames,
            max_bytes,
        );
        t
    }

    fn extend(
        &mut self,
        new: impl IntoIterator<Item = Frame>,
        first_seq: u64,
        max_frames: usize,
        max_bytes: usize,
    ) {
        for f in new {
            self.bytes += f.size();
            self.frames.push_back(f);
        }
        while let Some(front) = self.frames.front() {
            if front.seq >= first_seq && self.frames.len() <= max_frames && self.bytes <= max_bytes
            {
                break;
            }
            self.bytes -= front.size();
            self.frames.pop_front();
        }
    }

    /// Frames from the first seq at or after `first_seq` (after a trim).
    #[cfg(test)]
    pub(super) fn since_seq(&self, first_seq: u64) -> Tail {
        let mut t = self.clone();
        t.extend(std::iter::empty(), first_seq, usize::MAX, usize::MAX);
        t
    }

    /// The page `query` asks for, at most `max_bytes` of frames (at least one frame), if this
    /// tail holds every frame it needs. `query` must already be validated.
    pub(super) fn page(
        &self,
        s: &Session,
        query: &FrameQuery,
        max_bytes: usize,
    ) -> Option<FramePage> {
        let (first, last) = (s.first_seq, s.last_seq);
        let mut page = FramePage {
            last_seq: last,
            trimmed: query.after_seq.saturating_add(1) < first,
            epochs: self.epochs.clone(),
            ..FramePage::default()
        };
        let start_seq = query.after_seq.saturating_add(1).max(first);
        if start_seq > last {
            return Some(page);
        }
        let tail_start = self.start(last);
        if tail_start > start_seq {
            return None;
        }
        let skip = usize::try_from(start_seq - tail_start).ok()?;
        let mut bytes = 0usize;
        for f in self.frames.iter().skip(skip) {
            if let Some(stream) = &query.stream_id
                && f.stream_id.as_ref() != Some(stream)
            {
                continue;
            }
            let size = f.size();
            if page.frames.len() == query.limit
                || (!page.frames.is_empty() && bytes + size > max_bytes)
            {
                page.has_more = true;
                break;
            }
            bytes += size;
            page.frames.push(f.clone());
        }
        Some(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, NewFrame, SessionId, Transport};

    fn session(first: u64, last: u64) -> Session {
        let mut s = Session::new(SessionId::new("t").unwrap(), Transport::Http);
        s.first_seq = first;
        s.last_seq = last;
        s.frame_count = last + 1 - first;
        s
    }

    fn frames(range: std::ops::RangeInclusive<u64>) -> Vec<Frame> {
        range
            .map(|seq| {
                NewFrame::new(Direction::ClientToServer, format!("f{seq}"))
                    .with_stream(if seq % 2 == 0 { "even" } else { "odd" })
                    .into_frame(SessionId::new("t").unwrap(), seq)
            })
            .collect()
    }

    #[test]
    fn pages_inside_the_tail_match_the_contract() {
        let s = session(1, 10);
        let tail = Tail::of(&frames(5..=10), 100, 1 << 20);
        assert!(
            tail.page(&s, &FrameQuery::after(0, 5), usize::MAX)
                .is_none(),
            "needs 1.."
        );
        assert!(
            tail.page(&s, &FrameQuery::after(3, 5), usize::MAX)
                .is_none(),
            "needs 4.."
        );
        let p = tail.page(&s, &FrameQuery::after(4, 3), usize::MAX).unwrap();
        assert_eq!(
            p.frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [5, 6, 7]
        );
        assert!(p.has_more && !p.trimmed);
        assert_eq!(p.last_seq, 10);
        let p = tail
            .page(&s, &FrameQuery::after(4, 10).in_stream("even"), usize::MAX)
            .unwrap();
        assert_eq!(
            p.frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [6, 8, 10]
        );
        assert!(!p.has_more);
        let p = tail
            .page(&s, &FrameQuery::after(10, 10), usize::MAX)
            .unwrap();
        assert!(p.frames.is_empty() && !p.has_more && !p.trimmed);
        let p = tail
            .page(&s, &FrameQuery::after(u64::MAX, 1), usize::MAX)
            .unwrap();
        assert!(p.frames.is_empty());
    }

    #[test]
    fn trimmed_sessions_report_trimmed() {
        let s = session(8, 10);
        let tail = Tail::of(&frames(8..=10), 100, 1 << 20);
        let p = tail
            .page(&s, &FrameQuery::after(0, 10), usize::MAX)
            .unwrap();
        assert!(p.trimmed);
        assert_eq!(p.frames.len(), 3);
        let empty = session(11, 10);
        let p = Tail::default()
            .page(&empty, &FrameQuery::after(0, 10), usize::MAX)
            .unwrap();
        assert!(p.trimmed && p.frames.is_empty());
    }

    #[test]
    fn pages_carry_the_epochs_the_tail_saw() {
        let s = session(1, 6);
        let t = Tail::of(&frames(1..=4), 100, 1 << 20).extended(frames(5..=5), 7, 1, 100, 1 << 20);
        // A later epoch starts at the first frame of the append that reported it.
        let t = t.extended(frames(6..=6), 9, 1, 100, 1 << 20);
        let p = t.page(&s, &FrameQuery::after(0, 10), usize::MAX).unwrap();
        assert_eq!(p.epochs.to_string(), "7@5,9@6");
        assert_eq!(p.epochs.of(4), 0);
        assert_eq!(p.epochs.of(5), 7);
        assert_eq!(p.epochs.of(6), 9);
        let from_page = Tail::from_page(&p, 1, 100, 1 << 20);
        let again = from_page
            .page(&s, &FrameQuery::after(3, 10), usize::MAX)
            .unwrap();
        assert_eq!(again.epochs, p.epochs);
        assert_eq!(seqs_of(&again), vec![4, 5, 6]);
    }

    fn seqs_of(p: &FramePage) -> Vec<u64> {
        p.frames.iter().map(|f| f.seq).collect()
    }

    #[test]
    fn caps_keep_the_newest_frames() {
        let t = Tail::of(&frames(1..=10), 3, 1 << 20);
        assert_eq!(t.start(10), 8);
        let t = t.extended(frames(11..=12), 0, 1, 3, 1 << 20);
        assert_eq!(t.start(12), 10);
        let t = t.since_seq(12);
        assert_eq!(t.start(12), 12);
        let small = Tail::of(&frames(1..=4), 100, 8);
        assert_eq!(
            small.frames.len(),
            1,
            "each frame is 2-3 bytes + 3-4 stream bytes"
        );
    }

    #[test]
    fn activity_only_moves_forward_and_weight_has_a_floor() {
        let s = session(1, 0);
        let e = Entry::new(
            s,
            Timestamp(0),
            Ticket::zero(),
            None,
            Sizes::test(5_000, 100),
        );
        assert_eq!(e.weight, 5_000);
        e.touched_at(Timestamp(10));
        e.touched_at(Timestamp(5));
        let snap = e.snapshot();
        assert_eq!(
            (snap.last_activity, snap.expires_at),
            (Timestamp(10), Timestamp(110))
        );
        assert!(e.usable(Timestamp(109), 1_000));
        assert!(!e.usable(Timestamp(110), 1_000));
        assert!(!e.usable(Timestamp(50), 50), "older than the ttl");
    }
}
