//! rmcp's [`SessionManager`] for a fleet: rmcp's local session workers, with the Shoal store
//! deciding which sessions exist.
//!
//! Each replica runs the sessions it serves in rmcp's [`LocalSessionManager`] (the MCP
//! handler needs a live worker); the store is the truth about existence. A session is
//! created in the store with its local worker (so the store's limits refuse an `initialize`
//! before the client gets an id), every request slides its TTL and proves it still exists
//! (a session deleted on another replica, or expired, is closed here and answered 404), and
//! a session this replica does not run is restored by rmcp from [`ShoalSessionStore`]
//! (`crate::ShoalSessionStore`).

use std::sync::Arc;

use futures_util::Stream;
use rmcp::{
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::{
        WorkerTransport,
        streamable_http_server::session::{
            EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
            local::{LocalSessionManager, LocalSessionWorker, SessionConfig},
        },
    },
};
use shoal_core::SessionStore;

use crate::{
    error::{Error, Result},
    event_store::ShoalEventStore,
    session_store::{new_session, shoal_id},
};

/// rmcp's local session manager, with existence, limits and TTL in a Shoal store, and
/// events in a [`ShoalEventStore`].
#[derive(Debug)]
pub struct ShoalSessionManager {
    local: LocalSessionManager,
    store: Arc<dyn SessionStore>,
}

impl ShoalSessionManager {
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        events: ShoalEventStore,
        session_config: SessionConfig,
    ) -> Self {
        let mut local = LocalSessionManager::default().with_event_store(Arc::new(events));
        local.session_config = session_config;
        ShoalSessionManager { local, store }
    }

    /// The local manager (the sessions this replica runs right now).
    pub fn local(&self) -> &LocalSessionManager {
        &self.local
    }
}

impl SessionManager for ShoalSessionManager {
    type Error = Error;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport)> {
        let (id, transport) = self.local.create_session().await?;
        let created = match shoal_id(&id) {
            Some(sid) => self
                .store
                .create(new_session(sid))
                .await
                .map_err(Error::from),
            None => Err(Error::BadId {
                id: id.to_string(),
                reason: "rmcp made a session id Shoal cannot store".into(),
            }),
        };
        if let Err(e) = created {
            // Refused (e.g. the store's session limit): no session, here or anywhere.
            let _ = self.local.close_session(&id).await;
            return Err(e);
        }
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage> {
        Ok(self.local.initialize_session(id, message).await?)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool> {
        if !self.local.has_session(id).await? {
            // rmcp then asks the session store and restores the session if it exists.
            return Ok(false);
        }
        let Some(sid) = shoal_id(id) else {
            return Ok(false);
        };
        match self.store.touch(&sid).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => {
                // Deleted on another replica, or expired: end the worker here too.
                let _ = self.local.close_session(id).await;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn close_session(&self, id: &SessionId) -> Result<()> {
        Ok(self.local.close_session(id).await?)
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static> {
        Ok(self.local.create_stream(id, message).await?)
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<()> {
        Ok(self.local.accept_message(id, message).await?)
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static> {
        Ok(self.local.create_standalone_stream(id).await?)
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static> {
        Ok(self.local.resume(id, last_event_id).await?)
    }

    async fn restore_session(&self, id: SessionId) -> Result<RestoreOutcome<Self::Transport>> {
        Ok(self.local.restore_session(id).await?)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.local.event_store()
    }
}
