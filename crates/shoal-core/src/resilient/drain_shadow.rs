//! Draining the journaled writes of a session the primary holds: appends (batched, with their
//! provisional seqs mapped to final ones, read back first when in doubt), touches and deletes.

use std::collections::VecDeque;

use super::{
    call::{Call, retryable},
    drain::{DrainReport, Stop, Taken, in_doubt_stop, outcome_unknown},
    journal::{Entry, Op},
    metrics,
    state::lock,
    wrapper::Resilient,
};
use crate::{Error, Frame, FrameQuery, NewFrame, SessionId, SessionStore, store::MAX_PAGE_LIMIT};

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

fn same(stored: &Frame, sent: &NewFrame) -> bool {
    stored.content == sent.content
        && stored.direction == sent.direction
        && stored.timestamp == sent.timestamp
        && stored.stream_id == sent.stream_id
        && stored.content_type == sent.content_type
        && stored.headers == sent.headers
}

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    /// Applies the journaled writes of a session held by the primary.
    pub(super) async fn drain_shadow(
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
        self.log_settled(id);
        Ok(())
    }

    pub(super) async fn drain_shadow_entries(
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
            if !gone {
                // After a crash from here on, these appends may have reached the primary.
                self.log_drain_started(id, last)
                    .await
                    .map_err(Stop::other)?;
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

    pub(super) fn drop_frames(&self, id: &SessionId, n: u64, rep: &mut DrainReport) {
        // One line per session at debug; the drain says it once, summed, at warn.
        tracing::debug!(
            session = %id,
            frames = n,
            "resilient: frames journaled during the outage are dropped: the session no longer \
             exists in the primary"
        );
        ::metrics::counter!(metrics::DRAIN_DROPPED, "reason" => "session_gone").increment(n);
        rep.dropped_frames += n;
    }

    pub(super) fn map_seqs(&self, id: &SessionId, provisional: &[u64], finals: &[u64]) {
        let mut m = lock(&self.state.seqs);
        for (p, f) in provisional.iter().zip(finals) {
            m.insert(id, *p, *f);
        }
    }

    /// Looks for `frames` as one contiguous run among the primary's frames after `after`;
    /// returns their seqs when found.
    pub(super) async fn find_applied(
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
    use super::*;
    use crate::Direction;

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
