//! Write-through: the backend's answer to a write made through this wrapper goes into the
//! cache (a whole session, an append applied to the cached entry, a frame tail filled from a
//! page read), unless the cached entry is newer or an invalidation came in between.

use std::{future::ready, sync::Arc};

use moka::ops::compute::Op;

use super::{
    cache_core::CacheCore,
    entry::{Entry, Tail},
    fence::Ticket,
};
use crate::{FramePage, NewFrame, Session, SessionId, SessionStore, Timestamp};

/// Whether `new` is at least as recent as `old` in every way a write moves a session.
fn dominates(new: &Session, old: &Session) -> bool {
    new.revision >= old.revision
        && new.last_seq >= old.last_seq
        && new.first_seq >= old.first_seq
        && new.created_at >= old.created_at
}

impl<S: SessionStore> CacheCore<S> {
    /// Caches `s`, the backend's answer to a write made under `ticket`, unless the cached
    /// entry is newer in some way (then drops it). `inherit_tail` keeps the cached frame tail
    /// when the frames did not change; otherwise `tail` is used.
    pub(super) async fn put(
        &self,
        s: Session,
        ticket: Ticket,
        inherit_tail: bool,
        tail: Option<Tail>,
    ) {
        let id = s.id.clone();
        let now = self.now();
        let sizes = self.sizes;
        let mut put: Option<Arc<Entry>> = None;
        let fences = &self.fences;
        self.entries
            .entry_by_ref(&id)
            .and_compute_with(|cur| {
                let old = cur
                    .map(|c| c.into_value())
                    .filter(|o| !fences.crossed_except(&id, o.ticket, ticket));
                let op = match old {
                    Some(old) if !dominates(&s, &old.session) => Op::Remove,
                    old => {
                        let tail = match old {
                            Some(o)
                                if inherit_tail
                                    && o.session.last_seq == s.last_seq
                                    && o.session.first_seq == s.first_seq =>
                            {
                                o.tail.clone()
                            }
                            _ => tail,
                        };
                        let e = Arc::new(Entry::new(s, now, ticket, tail, sizes));
                        put = Some(Arc::clone(&e));
                        Op::Put(e)
                    }
                };
                ready(op)
            })
            .await;
        if let Some(e) = put
            && (self.fences.crossed(&id, ticket) || !self.enabled())
        {
            self.remove_if_same(&id, &e).await;
        }
    }

    /// Applies an append the backend made (seqs `seqs` in `epoch`, frames `frames` when the
    /// tail is kept, at `now` or later) to the cached entry, or drops the entry when it
    /// cannot.
    pub(super) async fn apply_append(
        &self,
        id: &SessionId,
        seqs: &[u64],
        epoch: u64,
        frames: Option<Vec<NewFrame>>,
        now: Timestamp,
        ticket: Ticket,
    ) {
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            self.entries.invalidate(id).await;
            return;
        };
        let keep = self.store.limits().max_frames_per_session as u64;
        let ttl = self.session_ttl;
        let (max_frames, max_bytes) = (self.config.tail_frames, self.config.tail_bytes);
        let (ttl_ms, sizes) = (self.ttl_ms, self.sizes);
        let fences = &self.fences;
        let mut put: Option<Arc<Entry>> = None;
        self.entries
            .entry_by_ref(id)
            .and_compute_with(|cur| {
                let op = match cur.map(|c| c.into_value()) {
                    None => Op::Nop,
                    Some(c)
                        if !c.usable(now, ttl_ms)
                            || fences.crossed_except(id, c.ticket, ticket)
                            || c.session.last_seq.saturating_add(1) != first
                            || last - first + 1 != seqs.len() as u64 =>
                    {
                        Op::Remove
                    }
                    Some(c) => {
                        let mut s = c.snapshot();
                        s.last_seq = last;
                        s.frame_count = (c.session.frame_count + seqs.len() as u64).min(keep);
                        s.first_seq = last + 1 - s.frame_count;
                        s.last_activity = s.last_activity.max(now);
                        s.expires_at = s.expires_at.max(now.saturating_add(ttl));
                        let tail = match (&c.tail, frames) {
                            (Some(t), Some(new)) => Some(
                                t.extended(
                                    new.into_iter()
                                        .zip(seqs)
                                        .map(|(f, seq)| f.into_frame(id.clone(), *seq)),
                                    epoch,
                                    s.first_seq,
                                    max_frames,
                                    max_bytes,
                                ),
                            ),
                            _ => None,
                        };
                        let e = Arc::new(Entry::new(s, c.loaded_at, ticket, tail, sizes));
                        put = Some(Arc::clone(&e));
                        Op::Put(e)
                    }
                };
                ready(op)
            })
            .await;
        if let Some(e) = put
            && (self.fences.crossed(id, ticket) || !self.enabled())
        {
            self.remove_if_same(id, &e).await;
        }
    }

    /// Keeps the frames of a page read from the backend as the entry's tail, when the page
    /// reaches the session's newest frame and no invalidation came in between.
    pub(super) async fn fill_tail(&self, id: &SessionId, page: &FramePage, ticket: Ticket) {
        let (max_frames, max_bytes, sizes) =
            (self.config.tail_frames, self.config.tail_bytes, self.sizes);
        let fences = &self.fences;
        self.entries
            .entry_by_ref(id)
            .and_compute_with(|cur| {
                let op = match cur.map(|c| c.into_value()) {
                    Some(c)
                        if c.session.last_seq == page.last_seq
                            && c.tail.is_none()
                            && !fences.crossed(id, ticket)
                            && !fences.crossed(id, c.ticket) =>
                    {
                        let tail =
                            Tail::from_page(page, c.session.first_seq, max_frames, max_bytes);
                        Op::Put(Arc::new(Entry::new(
                            c.snapshot(),
                            c.loaded_at,
                            c.ticket,
                            Some(tail),
                            sizes,
                        )))
                    }
                    _ => Op::Nop,
                };
                ready(op)
            })
            .await;
    }
}
