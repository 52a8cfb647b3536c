//! Recording a POST off the response path.
//!
//! The client's answer never waits for a frame append or a pending-request write: a task per
//! POST records them while (and after) the upstream answers.
//!
//! - A request answered with a complete (JSON) reply within `pending_after` is recorded
//!   together with its reply in **one** append, and is never listed as pending.
//! - A request still unanswered after `pending_after` is recorded then (its frame, and a
//!   pending entry per JSON-RPC request); its reply is recorded and the entries taken when it
//!   arrives.
//! - An SSE reply: the request and its pending entries are recorded before the SSE response
//!   goes out (a follower on another instance reads them), then the stream's pump records
//!   every event before it is sent.
//! - Responses the client POSTs to requests the upstream sent it (sampling, elicitation,
//!   roots) take those requests' pending entries at once.
//!
//! On a crash the request and reply frames of at most the replies sent during the last store
//! round trip (and the requests forwarded during the last `pending_after`) are missing from
//! the store; SSE events are never sent before they are recorded (their ids are their seqs).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use serde_json::Value;
use shoal_core::{Direction, Error, NewFrame, PendingRequest, RequestId};
use tokio::sync::oneshot;

use crate::{
    protocol,
    state::{Live, ProxyState},
};

/// The prefix of the pending entries of requests the upstream sent to the client: the two
/// sides number their requests independently, so their ids may collide.
pub(crate) const S2C_PREFIX: &str = "s2c:";

/// The pending-request id of a request the upstream sent to the client.
pub(crate) fn s2c_id(id: &RequestId) -> RequestId {
    RequestId::String(format!("{S2C_PREFIX}{}", protocol::id_to_json(id)))
}

/// Whether a pending entry is a server→client request.
pub(crate) fn is_s2c(id: &RequestId) -> bool {
    matches!(id, RequestId::String(s) if s.starts_with(S2C_PREFIX))
}

/// How the upstream answered a POST.
pub(crate) enum Outcome {
    /// A complete reply; `success` for a 2xx status.
    Reply { body: Bytes, success: bool },
    /// An SSE reply: acknowledged once the request and its pending entries are recorded.
    Stream(oneshot::Sender<()>),
    /// No reply (the upstream failed, the session is gone, the client went away).
    Nothing,
}

/// What a POST carried.
pub(crate) struct Post {
    pub(crate) stream: String,
    pub(crate) body: Bytes,
    /// Its JSON-RPC requests (id, method).
    pub(crate) requests: Vec<(RequestId, String)>,
    /// Ids of the responses it carried (answers to server→client requests).
    pub(crate) answers: Vec<RequestId>,
}

/// Starts recording `post`; tell the returned sender how the upstream answered.
pub(crate) fn spawn(
    inner: &Arc<ProxyState>,
    live: &Arc<Live>,
    post: Post,
) -> oneshot::Sender<Outcome> {
    let (tx, rx) = oneshot::channel();
    let (inner, live) = (inner.clone(), live.clone());
    tokio::spawn(async move { run(&inner, &live, post, rx).await });
    tx
}

async fn run(inner: &ProxyState, live: &Live, post: Post, mut rx: oneshot::Receiver<Outcome>) {
    let Post {
        stream,
        body,
        requests,
        answers,
    } = post;
    let frame = |dir: Direction, b: Bytes| {
        NewFrame::new(dir, b)
            .with_stream(stream.clone())
            .with_content_type("application/json")
    };
    let request = frame(Direction::ClientToServer, body);
    if requests.is_empty() {
        // Notifications and responses: nothing will answer them.
        let settle = join_all(answers.iter().map(|id| take(inner, live, s2c_id(id))));
        let (_, _) = tokio::join!(append(inner, live, vec![request]), settle);
        return;
    }
    let early = if inner.cfg.pending_after.is_zero() {
        None
    } else {
        tokio::time::timeout(inner.cfg.pending_after, &mut rx)
            .await
            .ok()
    };
    let recorded_late = early.is_none();
    let outcome = match early {
        Some(Ok(Outcome::Reply { body, success })) => {
            // Answered quickly: the request and its reply in one append; only requests the
            // reply did not answer stay pending.
            let answered = answered_by(&body, success);
            let mut frames = vec![request];
            if success && !body.is_empty() {
                frames.push(frame(Direction::ServerToClient, body));
            }
            let unanswered = requests
                .iter()
                .filter(|(id, _)| !answered.contains(id))
                .map(|(id, m)| add(inner, live, id, m, &stream));
            let (_, _) = tokio::join!(append(inner, live, frames), join_all(unanswered));
            return;
        }
        Some(Ok(other)) => Ok(other),
        Some(Err(e)) => Err(e),
        None => {
            // Slow (or `pending_after` is zero): record the request as pending now.
            let adds = join_all(
                requests
                    .iter()
                    .map(|(id, m)| add(inner, live, id, m, &stream)),
            );
            let (_, _) = tokio::join!(append(inner, live, vec![request.clone()]), adds);
            rx.await
        }
    };
    match outcome {
        Ok(Outcome::Reply { body, success }) => {
            let answered = answered_by(&body, success);
            let frames = if success && !body.is_empty() {
                vec![frame(Direction::ServerToClient, body)]
            } else {
                Vec::new()
            };
            let takes = join_all(answered.into_iter().map(|id| take(inner, live, id)));
            let (_, _) = tokio::join!(append(inner, live, frames), takes);
        }
        Ok(Outcome::Stream(ack)) => {
            if !recorded_late {
                let adds = join_all(
                    requests
                        .iter()
                        .map(|(id, m)| add(inner, live, id, m, &stream)),
                );
                let (_, _) = tokio::join!(append(inner, live, vec![request]), adds);
            }
            let _ = ack.send(());
        }
        Ok(Outcome::Nothing) | Err(_) => {
            if recorded_late {
                // Nothing will answer them through this proxy.
                join_all(requests.iter().map(|(id, _)| take(inner, live, id.clone()))).await;
            } else {
                append(inner, live, vec![request]).await;
            }
        }
    }
}

/// The request ids a reply body answers.
fn answered_by(body: &Bytes, success: bool) -> Vec<RequestId> {
    if !success || body.is_empty() {
        return Vec::new();
    }
    serde_json::from_slice::<Value>(body)
        .map(|v| protocol::response_ids(&v))
        .unwrap_or_default()
}

async fn append(inner: &ProxyState, live: &Live, frames: Vec<NewFrame>) {
    if frames.is_empty() {
        return;
    }
    let n = frames.len() as u64;
    match crate::retention::append_frames(inner, &live.id, frames).await {
        Ok(_) => {
            inner.metrics.frames_recorded.add(n);
        }
        Err(Error::NotFound { .. }) => {
            inner.evict(&live.id);
        }
        Err(e) => {
            inner.metrics.frame_errors.add(n);
            tracing::warn!(session = %live.id, error = %e, "could not record frames");
        }
    }
}

async fn add(inner: &ProxyState, live: &Live, id: &RequestId, method: &str, stream: &str) {
    let p = PendingRequest::new(id.clone(), method.to_owned()).with_stream(stream.to_owned());
    match crate::retention::add_pending(inner, &live.id, p).await {
        Ok(()) | Err(Error::AlreadyExists { .. } | Error::NotFound { .. }) => {}
        Err(e) => {
            tracing::debug!(session = %live.id, error = %e, "could not record a pending request");
        }
    }
}

async fn take(inner: &ProxyState, live: &Live, id: RequestId) {
    if let Err(e) = inner.store.take_pending(&live.id, &id).await
        && !e.is_not_found()
    {
        tracing::debug!(session = %live.id, error = %e, "could not settle a pending request");
    }
}
