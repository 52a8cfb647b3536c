//! Draining a local session (created during the outage): read it whole from the fallback and
//! copy it into the primary with one `restore`, or drop it when the primary already holds the
//! id or refuses it.

use super::{
    call::{Call, retryable},
    drain::{DrainReport, Stop, Taken, in_doubt_stop, outcome_unknown},
    journal::MarkKind,
    metrics,
    state::lock,
    wrapper::Resilient,
};
use crate::{
    Error, FrameQuery, Result, SessionId, SessionRecord, SessionStore, store::MAX_PAGE_LIMIT,
};

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    /// Reads a local session whole from the fallback. `None` when it is gone (expired).
    pub(super) async fn local_snapshot(&self, id: &SessionId) -> Result<Option<SessionRecord>> {
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

    /// Copies a local session into the primary with `restore` (keeping its seqs).
    pub(super) async fn drain_local(
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
        // After a crash from here on, the restore may have reached the primary.
        self.log_drain_started(id, 0).await.map_err(Stop::other)?;
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
    pub(super) async fn is_our_copy(
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

    pub(super) async fn local_done(
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

    pub(super) async fn local_conflict(
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
}
