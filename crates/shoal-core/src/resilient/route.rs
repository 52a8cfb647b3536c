//! Which store serves a call on a session: the primary directly, or (while the session has
//! journaled writes) under the session's lock along its mark; and provisional seqs in a
//! query mapped to final ones.

use std::sync::{Arc, atomic::Ordering};

use super::{journal::MarkKind, seqmap::is_provisional, state::lock, wrapper::Resilient};
use crate::{Error, Result, SessionId, SessionStore};

/// Where a call on a session goes.
pub(super) enum Route {
    /// The session has nothing journaled: the call goes to the primary.
    Direct,
    /// The session is marked; the guard serialises it with the drain and other marked writes.
    Marked(MarkKind, tokio::sync::OwnedMutexGuard<()>),
}

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    /// Where a call on `id` goes. Takes the session's lock when it is marked.
    pub(super) async fn route(&self, id: &SessionId) -> Route {
        if self.state.marked.load(Ordering::Acquire) == 0 {
            return Route::Direct;
        }
        loop {
            let Some((_, lock)) = self.journal().lookup(id) else {
                return Route::Direct;
            };
            let guard = Arc::clone(&lock).lock_owned().await;
            match self.journal().lookup(id) {
                Some((kind, l)) if Arc::ptr_eq(&l, &lock) => return Route::Marked(kind, guard),
                Some(_) => continue,
                None => return Route::Direct,
            }
        }
    }

    /// Maps a provisional seq in a query to its final seq.
    pub(super) fn translate(&self, id: &SessionId, seq: u64, what: &str) -> Result<u64> {
        if !is_provisional(seq) {
            return Ok(seq);
        }
        if matches!(self.journal().kind(id), Some(MarkKind::Shadow { .. })) {
            return Err(self.pending_error(id, what));
        }
        lock(&self.state.seqs).get(id, seq).ok_or_else(|| {
            Error::invalid(format!(
                "seq {seq} of session {id} is a provisional seq handed out during a store \
                 outage and is not known here (another instance, a restart, or an evicted \
                 mapping); restart the stream instead of resuming it"
            ))
        })
    }
}
