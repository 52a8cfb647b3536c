//! Whether a request stream still has a producer: a replay must not wait forever for the rest
//! of a stream whose replica died.
//!
//! The replica that runs a request takes a lease named after the request's stream once the
//! request has run for [`ReplaySettings::lease_after`] (so quick requests cost no store call
//! for it), renews it every third of [`ReplaySettings::lease_ttl`] until the request's response
//! is stored, then gives it up. A replay that has waited longer than
//! [`ReplaySettings::orphan_after`] without a new event asks for the lease: no holder means
//! no replica produces the stream any more, and the replay ends (the client sees its stream
//! end, as when a server closes it, and may call again).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use shoal_core::{LeaseRequest, SessionId};
use tokio_util::sync::CancellationToken;

use crate::event_store::{EventState, ReplaySettings};

/// The request streams one session's worker is producing on this replica.
#[derive(Debug, Default)]
pub(crate) struct Producing {
    streams: Mutex<HashMap<String, CancellationToken>>,
}

impl Producing {
    /// The worker stored an event of request stream `stream`: guard it from its first event
    /// until `ends` (its response).
    pub(crate) fn event(
        self: &Arc<Self>,
        state: &Arc<EventState>,
        session: &SessionId,
        stream: &str,
        ends: bool,
    ) {
        let Ok(mut streams) = self.streams.lock() else {
            return;
        };
        if ends {
            if let Some(done) = streams.remove(stream) {
                done.cancel();
            }
            return;
        }
        if streams.contains_key(stream) {
            return;
        }
        let done = CancellationToken::new();
        streams.insert(stream.to_owned(), done.clone());
        tokio::spawn(guard(
            Arc::downgrade(self),
            state.clone(),
            session.clone(),
            stream.to_owned(),
            done,
        ));
    }

    /// The session ended here: stop guarding its streams.
    pub(crate) fn stop_all(&self) {
        if let Ok(mut streams) = self.streams.lock() {
            for (_, done) in streams.drain() {
                done.cancel();
            }
        }
    }
}

impl Drop for Producing {
    fn drop(&mut self) {
        self.stop_all();
    }
}

async fn guard(
    producing: Weak<Producing>,
    state: Arc<EventState>,
    session: SessionId,
    stream: String,
    done: CancellationToken,
) {
    let settings: &ReplaySettings = state.settings();
    tokio::select! {
        _ = done.cancelled() => return,
        _ = tokio::time::sleep(settings.lease_after) => {}
    }
    let owner = state.owner();
    let ttl = settings.lease_ttl;
    let mut held = false;
    loop {
        let request = if held {
            LeaseRequest::Renew {
                name: &stream,
                owner,
                ttl,
            }
        } else {
            LeaseRequest::Acquire {
                name: &stream,
                owner,
                ttl,
            }
        };
        match state.store().lease(&session, request).await {
            Ok(reply) => held = reply.granted,
            Err(e) if e.is_not_found() => break,
            // Stores without leases: replays fall back to `follow_for`.
            Err(e) => {
                tracing::debug!(session = %session, error = %e, "the producer lease could not be taken");
                held = false;
            }
        }
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tokio::time::sleep(ttl / 3) => {}
        }
        if producing.upgrade().is_none() {
            break;
        }
    }
    if held {
        let _ = state
            .store()
            .lease(
                &session,
                LeaseRequest::Release {
                    name: &stream,
                    owner,
                },
            )
            .await;
    }
}

/// Whether a replica still produces `stream` of `session`: false only when the store keeps
/// leases and nobody holds this one.
pub(crate) async fn has_producer(state: &EventState, session: &SessionId, stream: &str) -> bool {
    match state
        .store()
        .lease(session, LeaseRequest::Read { name: stream })
        .await
    {
        Ok(reply) => reply.holder.is_some(),
        Err(e) => !e.is_not_found(),
    }
}
