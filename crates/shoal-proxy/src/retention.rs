//! Keeping a session's history within its byte budget
//! ([`Limits::max_session_bytes`](shoal_core::Limits::max_session_bytes)). The store refuses a
//! write that would pass the budget and writes nothing; the proxy then deletes the oldest half
//! of the session's frames (its history, like the count bound trims it) and tries the write
//! once more. A client resuming from before the deleted frames sees a gap, as after any trim.
//! A write that does not fit even then (pending requests and metadata fill the budget) fails.

use shoal_core::{AppendedFrames, Error, NewFrame, PendingRequest, Result, SessionId};

use crate::state::ProxyState;

/// `append_frames_with_epoch` (the epoch goes into the frames' event ids), making room once
/// if the session's budget refuses it.
pub(crate) async fn append_frames(
    inner: &ProxyState,
    id: &SessionId,
    frames: Vec<NewFrame>,
) -> Result<AppendedFrames> {
    match inner
        .store
        .append_frames_with_epoch(id, frames.clone())
        .await
    {
        Err(e) if over_budget(&e) && make_room(inner, id).await => {
            inner.store.append_frames_with_epoch(id, frames).await
        }
        r => r,
    }
}

/// `add_pending`, making room once if the session's budget refuses it.
pub(crate) async fn add_pending(
    inner: &ProxyState,
    id: &SessionId,
    request: PendingRequest,
) -> Result<()> {
    match inner.store.add_pending(id, request.clone()).await {
        Err(e) if over_budget(&e) && make_room(inner, id).await => {
            inner.store.add_pending(id, request).await
        }
        r => r,
    }
}

fn over_budget(e: &Error) -> bool {
    matches!(e, Error::LimitExceeded { what, .. } if *what == "session bytes")
}

/// Deletes the oldest half of the session's frames (at least one). Whether any went.
async fn make_room(inner: &ProxyState, id: &SessionId) -> bool {
    let session = match inner.store.get(id).await {
        Ok(Some(s)) if s.frame_count > 0 => s,
        _ => return false,
    };
    let through = session.first_seq + (session.frame_count / 2).max(1) - 1;
    match inner.store.delete_frames(id, Some(through)).await {
        Ok(n) if n > 0 => {
            inner.metrics.budget_trims.add(n);
            tracing::debug!(session = %id, deleted = n, "oldest frames deleted to keep the session within its byte budget");
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::debug!(session = %id, error = %e, "could not make room in the session's byte budget");
            false
        }
    }
}
