//! rmcp's [`SessionManager`] for a fleet: rmcp's local session workers, with the Shoal store
//! deciding which sessions exist.
//!
//! Each replica runs the sessions it serves in rmcp's [`LocalSessionManager`] (the MCP
//! handler needs a live worker), one local manager per session so that the session's event
//! store knows which session its streams belong to. The store is the truth about existence:
//! a session is created in the store with its local worker (so the store's limits refuse an
//! `initialize` before the client gets an id), every request slides its TTL and proves it
//! still exists (a session deleted on another replica, or expired, is closed here and
//! answered 404), and a session this replica does not run is restored by rmcp from
//! [`ShoalSessionStore`](crate::ShoalSessionStore). A session whose worker ends before its
//! handshake was recorded is deleted from the store, so failed `initialize` calls leave
//! nothing behind.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock},
};

use futures_util::Stream;
use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::{
        WorkerTransport,
        streamable_http_server::session::{
            EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
            local::{
                LocalSessionHandle, LocalSessionManager, LocalSessionManagerError,
                LocalSessionWorker, SessionConfig,
            },
        },
    },
};
use shoal_core::{SessionId as ShoalId, SessionStore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::{
    error::{Error, Result},
    event_store::{SessionEvents, ShoalEventStore},
    inbox::{Inbox, answer_key},
    session_store::{new_session, shoal_id},
};

/// rmcp's local session workers, with existence, limits and TTL in a Shoal store, and each
/// session's SSE events filed under it in the store.
#[derive(Debug)]
pub struct ShoalSessionManager {
    /// One rmcp local manager per running session: each has an event store that knows its
    /// session (rmcp's `EventStore` call names only the stream).
    running: RwLock<HashMap<SessionId, Running>>,
    store: Arc<dyn SessionStore>,
    events: ShoalEventStore,
    session_config: SessionConfig,
}

/// A session this replica runs: its rmcp local manager and the answers it awaits.
#[derive(Debug, Clone)]
struct Running {
    local: Arc<LocalSessionManager>,
    inbox: Arc<Inbox>,
}

impl ShoalSessionManager {
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        events: ShoalEventStore,
        session_config: SessionConfig,
    ) -> Self {
        ShoalSessionManager {
            running: RwLock::new(HashMap::new()),
            store,
            events,
            session_config,
        }
    }

    /// How many sessions this replica runs right now.
    pub fn running(&self) -> usize {
        self.running.read().map_or(0, |m| m.len())
    }

    fn start(&self, slot: Arc<OnceLock<ShoalId>>) -> Running {
        let inbox = Arc::new(Inbox::default());
        let events = SessionEvents::new(&self.events, slot, inbox.clone());
        let mut local = LocalSessionManager::default().with_event_store(Arc::new(events));
        local.session_config = self.session_config.clone();
        let local = Arc::new(local);
        inbox.attach(&local);
        Running { local, inbox }
    }

    fn running_session(&self, id: &SessionId) -> Option<Running> {
        self.running.read().ok()?.get(id).cloned()
    }

    fn session(&self, id: &SessionId) -> Result<Running> {
        self.running_session(id)
            .ok_or_else(|| Error::Local(LocalSessionManagerError::SessionNotFound(id.clone())))
    }

    /// The rmcp handle of running session `id` (owned, so no borrow outlives the call).
    async fn handle(&self, id: &SessionId) -> Result<LocalSessionHandle> {
        let local = self.session(id)?.local;
        let handle = local.sessions.read().await.get(id).cloned();
        handle.ok_or_else(|| Error::Local(LocalSessionManagerError::SessionNotFound(id.clone())))
    }

    fn forget(&self, id: &SessionId) -> Option<Arc<LocalSessionManager>> {
        self.running.write().ok()?.remove(id).map(|r| r.local)
    }

    fn insert(&self, id: SessionId, session: Running) {
        if let Ok(mut running) = self.running.write() {
            running.insert(id, session);
        }
    }
}

impl SessionManager for ShoalSessionManager {
    type Error = Error;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport)> {
        let slot = Arc::new(OnceLock::new());
        let session = self.start(slot.clone());
        let local = session.local.clone();
        let (id, transport) = local.create_session().await?;
        let created = match shoal_id(&id) {
            Some(sid) => {
                let _ = slot.set(sid.clone());
                self.store
                    .create(new_session(sid))
                    .await
                    .map_err(Error::from)
            }
            None => Err(Error::BadId {
                id: id.to_string(),
                reason: "rmcp made a session id Shoal cannot store".into(),
            }),
        };
        if let Err(e) = created {
            // Refused (e.g. the store's session limit): no session, here or anywhere.
            let _ = local.close_session(&id).await;
            return Err(e);
        }
        self.insert(id.clone(), session);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage> {
        let local = self.session(id)?.local;
        Ok(local.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool> {
        let Some(Running { local, .. }) = self.running_session(id) else {
            // rmcp then asks the session store and restores the session if it exists.
            return Ok(false);
        };
        if !local.has_session(id).await? {
            self.forget(id);
            return Ok(false);
        }
        let Some(sid) = shoal_id(id) else {
            return Ok(false);
        };
        match self.store.touch(&sid).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => {
                // Deleted on another replica, or expired: end the worker here too.
                self.forget(id);
                let _ = local.close_session(id).await;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn close_session(&self, id: &SessionId) -> Result<()> {
        let Some(local) = self.forget(id) else {
            return Ok(());
        };
        local.close_session(id).await?;
        // A session that never finished its handshake (its `initialize` failed, or the client
        // never sent it) would hold a place under the session limit until its TTL.
        if let Some(sid) = shoal_id(id)
            && let Ok(Some(session)) = self.store.get(&sid).await
            && session.initialize_params.is_none()
        {
            let _ = self.store.delete(&sid).await;
        }
        Ok(())
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static> {
        let handle = self.handle(id).await?;
        let receiver = handle
            .establish_request_wise_channel()
            .await
            .map_err(LocalSessionManagerError::from)?;
        handle
            .push_message(message, receiver.http_request_id)
            .await
            .map_err(LocalSessionManagerError::from)?;
        Ok(ReceiverStream::new(receiver.inner))
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<()> {
        let running = self.session(id)?;
        match answer_key(&message) {
            // An answer to a request another replica's worker sent: file it for that replica.
            Some(key) if !running.inbox.take(&key) => {
                let sid = shoal_id(id).ok_or_else(|| Error::BadId {
                    id: id.to_string(),
                    reason: "not a Shoal session id".into(),
                })?;
                self.events.file_answer(&sid, &message).await
            }
            _ => running.inbox.deliver(id, message).await,
        }
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static> {
        let sid = shoal_id(id).ok_or_else(|| Error::BadId {
            id: id.to_string(),
            reason: "not a Shoal session id".into(),
        })?;
        let receiver = self
            .handle(id)
            .await?
            .establish_common_channel()
            .await
            .map_err(LocalSessionManagerError::from)?;
        // rmcp's worker sends this replica's standalone messages into `local` after storing
        // them; the client is served from the store, which has every replica's. `local` is
        // drained (and kept, so the worker sees a live stream) while the client stays.
        let stop = CancellationToken::new();
        let guard = stop.clone().drop_guard();
        let mut local = receiver.inner;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    m = local.recv() => if m.is_none() { break },
                }
            }
        });
        self.events.follow_common(&sid, guard).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static> {
        // Only this session's streams: an id of another session is refused like a forged one.
        let owner = self.events.session_of(&last_event_id)?;
        if owner.as_str() != &**id {
            return Err(Error::EventId {
                id: String::new(),
                reason: "the event id belongs to another session".into(),
            });
        }
        self.session(id)?;
        self.events.replay(&last_event_id).await
    }

    async fn restore_session(&self, id: SessionId) -> Result<RestoreOutcome<Self::Transport>> {
        if self.running_session(&id).is_some() {
            return Ok(RestoreOutcome::AlreadyPresent);
        }
        let Some(sid) = shoal_id(&id) else {
            return Ok(RestoreOutcome::NotSupported);
        };
        let session = self.start(Arc::new(OnceLock::from(sid)));
        let outcome = session.local.restore_session(id.clone()).await?;
        if matches!(outcome, RestoreOutcome::Restored(_)) {
            self.insert(id, session);
        }
        Ok(outcome)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        Some(Arc::new(self.events.clone()))
    }
}
