//! The client's answers to server requests, delivered to the replica that asked.
//!
//! A tool running on replica A may ask the client something (elicitation, sampling, roots,
//! ping); the request reaches the client on A's stream, but the client may POST its answer to
//! any replica. A replica that is not waiting for that answer files it in the session's
//! `inbox` stream; the replica whose worker sent the request follows that stream while it
//! waits for answers and hands each one to its worker. An answer that reaches the asking
//! replica directly is handed over at once.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, Weak},
};

use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::streamable_http_server::session::{SessionId as RmcpId, local::LocalSessionManager},
};
use shoal_core::{Direction, FrameQuery, NewFrame, SessionId};

use crate::{
    error::{Error, Result},
    event_store::EventState,
};

/// The stream name of a session's inbox.
pub const INBOX_STREAM: &str = "inbox";

/// The JSON-RPC id of a request, as a key (`"1"`, `"\"abc\""`).
fn id_key(id: &serde_json::Value) -> Option<String> {
    (!id.is_null()).then(|| id.to_string())
}

/// The id key of a server→client request.
pub(crate) fn request_key(message: &ServerJsonRpcMessage) -> Option<String> {
    match message {
        ServerJsonRpcMessage::Request(r) => {
            serde_json::to_value(&r.id).ok().and_then(|v| id_key(&v))
        }
        _ => None,
    }
}

/// The id key of a client's answer (a response or an error with an id).
pub(crate) fn answer_key(message: &ClientJsonRpcMessage) -> Option<String> {
    match message {
        ClientJsonRpcMessage::Response(r) => {
            serde_json::to_value(&r.id).ok().and_then(|v| id_key(&v))
        }
        ClientJsonRpcMessage::Error(e) => {
            e.id.as_ref()
                .and_then(|id| serde_json::to_value(id).ok())
                .and_then(|v| id_key(&v))
        }
        _ => None,
    }
}

#[derive(Debug, Default)]
struct Waiting {
    /// Ids of requests this replica's worker sent and has no answer for yet.
    ids: HashSet<String>,
    /// Whether a follower of the inbox runs.
    following: bool,
}

/// One running session's outstanding server requests on this replica.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    waiting: Mutex<Waiting>,
    /// The local manager running the session (set once it exists).
    local: std::sync::OnceLock<Weak<LocalSessionManager>>,
}

impl Inbox {
    pub(crate) fn attach(&self, local: &Arc<LocalSessionManager>) {
        let _ = self.local.set(Arc::downgrade(local));
    }

    /// The worker sent request `key`: true when a follower must be started.
    fn await_answer(&self, key: String) -> bool {
        let Ok(mut w) = self.waiting.lock() else {
            return false;
        };
        w.ids.insert(key);
        !std::mem::replace(&mut w.following, true)
    }

    /// Whether this replica waits for answer `key` (and no longer, once taken).
    pub(crate) fn take(&self, key: &str) -> bool {
        self.waiting.lock().is_ok_and(|mut w| w.ids.remove(key))
    }

    /// Stops following when nothing is awaited; true when it stopped.
    fn stop_if_idle(&self) -> bool {
        let Ok(mut w) = self.waiting.lock() else {
            return true;
        };
        if w.ids.is_empty() {
            w.following = false;
            true
        } else {
            false
        }
    }

    fn give_up(&self) {
        if let Ok(mut w) = self.waiting.lock() {
            w.ids.clear();
            w.following = false;
        }
    }

    /// Hands `message` to the local worker of `id`.
    pub(crate) async fn deliver(&self, id: &RmcpId, message: ClientJsonRpcMessage) -> Result<()> {
        let local = self.local.get().and_then(Weak::upgrade).ok_or_else(|| {
            Error::Local(
                rmcp::transport::streamable_http_server::session::local::LocalSessionManagerError::SessionNotFound(id.clone()),
            )
        })?;
        let handle = local.sessions.read().await.get(id).cloned();
        let handle = handle.ok_or_else(|| {
            Error::Local(
                rmcp::transport::streamable_http_server::session::local::LocalSessionManagerError::SessionNotFound(id.clone()),
            )
        })?;
        handle
            .push_message(message, None)
            .await
            .map_err(|e| Error::Local(e.into()))
    }

    /// The worker of session `session` sent request `key` as frame `seq`: follow the inbox
    /// from there while answers are awaited.
    pub(crate) fn sent(
        self: &Arc<Self>,
        state: &Arc<EventState>,
        session: &SessionId,
        key: String,
        seq: u64,
    ) {
        if self.await_answer(key) {
            tokio::spawn(follow(
                self.clone(),
                state.clone(),
                session.clone(),
                RmcpId::from(session.as_str()),
                seq,
            ));
        }
    }
}

/// Files a client's answer that this replica does not wait for in the session's inbox.
pub(crate) async fn file(
    state: &EventState,
    session: &SessionId,
    message: &ClientJsonRpcMessage,
) -> Result<()> {
    let content = serde_json::to_vec(message).map_err(|e| Error::Codec {
        what: "encoding a client answer".into(),
        reason: e.to_string(),
    })?;
    let frame = NewFrame::new(Direction::ClientToServer, content)
        .with_stream(INBOX_STREAM)
        .with_content_type("application/json");
    state.store().append_frames(session, vec![frame]).await?;
    state.wakeups().notify(session, INBOX_STREAM);
    Ok(())
}

async fn follow(
    inbox: Arc<Inbox>,
    state: Arc<EventState>,
    session: SessionId,
    rmcp_id: RmcpId,
    mut cursor: u64,
) {
    let mut wakeups = state.wakeups().subscribe(&session);
    let deadline = tokio::time::Instant::now() + state.settings().follow_for;
    loop {
        let query = FrameQuery::after(cursor, 64).in_stream(INBOX_STREAM);
        match state.store().frames(&session, &query).await {
            Ok(page) => {
                for frame in &page.frames {
                    cursor = frame.seq;
                    let Ok(message) =
                        serde_json::from_slice::<ClientJsonRpcMessage>(&frame.content)
                    else {
                        tracing::warn!(session = %session, seq = frame.seq, "skipping an inbox entry that cannot be decoded");
                        continue;
                    };
                    if answer_key(&message).is_some_and(|k| inbox.take(&k))
                        && let Err(e) = inbox.deliver(&rmcp_id, message).await
                    {
                        tracing::warn!(session = %session, error = %e, "an answer from another replica could not be handed to the worker");
                    }
                }
                if page.has_more {
                    continue;
                }
            }
            Err(e) if e.is_not_found() => {
                inbox.give_up();
                return;
            }
            Err(e) => {
                tracing::warn!(session = %session, error = %e, "reading the inbox failed; retrying");
            }
        }
        if inbox.stop_if_idle() {
            return;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() || inbox.local.get().and_then(Weak::upgrade).is_none() {
            inbox.give_up();
            return;
        }
        let poll = state.poll_interval().min(left);
        let _ = tokio::time::timeout(poll, wakeups.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn requests_and_answers_share_keys() {
        let req: ServerJsonRpcMessage =
            serde_json::from_value(json!({"jsonrpc": "2.0", "id": 4, "method": "ping"})).unwrap();
        let ok: ClientJsonRpcMessage =
            serde_json::from_value(json!({"jsonrpc": "2.0", "id": 4, "result": {}})).unwrap();
        let err: ClientJsonRpcMessage = serde_json::from_value(
            json!({"jsonrpc": "2.0", "id": 4, "error": {"code": -1, "message": "no"}}),
        )
        .unwrap();
        let other: ClientJsonRpcMessage =
            serde_json::from_value(json!({"jsonrpc": "2.0", "id": "4", "result": {}})).unwrap();
        assert_eq!(request_key(&req).as_deref(), Some("4"));
        assert_eq!(answer_key(&ok), request_key(&req));
        assert_eq!(answer_key(&err), request_key(&req));
        assert_ne!(
            answer_key(&other),
            request_key(&req),
            "a string id is another id"
        );
        let note: ClientJsonRpcMessage = serde_json::from_value(
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .unwrap();
        assert!(answer_key(&note).is_none());
    }

    #[test]
    fn a_follower_starts_once_and_stops_when_nothing_is_awaited() {
        let inbox = Inbox::default();
        assert!(inbox.await_answer("1".into()));
        assert!(!inbox.await_answer("2".into()), "one follower at a time");
        assert!(!inbox.stop_if_idle());
        assert!(inbox.take("1") && inbox.take("2"));
        assert!(!inbox.take("1"), "an answer is taken once");
        assert!(inbox.stop_if_idle());
        assert!(
            inbox.await_answer("3".into()),
            "a new request starts a new follower"
        );
    }
}
