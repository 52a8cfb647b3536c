//! rmcp's [`SessionStore`](rmcp::transport::streamable_http_server::session::SessionStore) on
//! a Shoal store: the `initialize` parameters are kept in the Shoal session, as the proxy
//! keeps them (`initialize_params`, `protocol_version`, `client_info`).

use std::sync::Arc;

use rmcp::{
    model::InitializeRequestParams,
    transport::streamable_http_server::session::{
        SessionState as RmcpSessionState, SessionStore as RmcpSessionStore, SessionStoreError,
    },
};
use shoal_core::{Session, SessionId, SessionStore, Transport, session::SessionState};

use crate::error::{Error, Result};

/// How often an update that lost a race with another writer is tried again.
const UPDATE_ATTEMPTS: usize = 4;

/// The rmcp session store over any Shoal [`SessionStore`]. A session another replica deleted
/// or that expired loads as `None`, so rmcp answers 404.
#[derive(Debug, Clone)]
pub struct ShoalSessionStore {
    store: Arc<dyn SessionStore>,
}

/// A Shoal session id for an rmcp session id, or `None` when it cannot name one (so the
/// session is unknown).
pub(crate) fn shoal_id(id: &str) -> Option<SessionId> {
    SessionId::new(id).ok()
}

/// A new Shoal session for rmcp session `id`, before its handshake.
pub(crate) fn new_session(id: SessionId) -> Session {
    let mut s = Session::new(id, Transport::StreamableHttp);
    s.metadata.insert("rmcp.session".into(), "1".into());
    s
}

fn record_handshake(s: &mut Session, params: &serde_json::Value, init: &InitializeRequestParams) {
    s.initialize_params = Some(params.clone());
    s.protocol_version = Some(init.protocol_version.to_string());
    s.client_info = params.as_object().map(|o| {
        serde_json::json!({
            "clientInfo": o.get("clientInfo"),
            "capabilities": o.get("capabilities"),
        })
    });
    s.state = SessionState::Active;
}

impl ShoalSessionStore {
    /// A session store over `store`.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        ShoalSessionStore { store }
    }

    /// The `initialize` parameters of session `id`, or `None` if the store has no such
    /// session (deleted, expired, never created) or it has not finished its handshake.
    pub async fn load_params(&self, id: &str) -> Result<Option<InitializeRequestParams>> {
        let Some(sid) = shoal_id(id) else {
            return Ok(None);
        };
        let Some(session) = self.store.get(&sid).await? else {
            return Ok(None);
        };
        let Some(params) = session.initialize_params else {
            return Ok(None);
        };
        serde_json::from_value(params)
            .map(Some)
            .map_err(|e| Error::Codec {
                what: format!("the initialize parameters of session {sid}"),
                reason: e.to_string(),
            })
    }

    /// Records the handshake of session `id` (creating the session when this store's
    /// [`ShoalSessionManager`](crate::ShoalSessionManager) did not already).
    pub async fn save_params(&self, id: &str, init: &InitializeRequestParams) -> Result<()> {
        let sid = SessionId::new(id).map_err(|e| Error::BadId {
            id: id.to_owned(),
            reason: e.to_string(),
        })?;
        let params = serde_json::to_value(init).map_err(|e| Error::Codec {
            what: "encoding initialize parameters".into(),
            reason: e.to_string(),
        })?;
        for _ in 0..UPDATE_ATTEMPTS {
            match self.store.get(&sid).await? {
                Some(mut s) => {
                    record_handshake(&mut s, &params, init);
                    match self.store.update(&s).await {
                        Ok(_) => return Ok(()),
                        Err(shoal_core::Error::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {
                    let mut s = new_session(sid.clone());
                    record_handshake(&mut s, &params, init);
                    match self.store.create(s).await {
                        Ok(_) => return Ok(()),
                        Err(shoal_core::Error::AlreadyExists { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Err(Error::Store(shoal_core::Error::Conflict {
            what: format!("session {sid}"),
            expected: 0,
            actual: 0,
        }))
    }

    /// Deletes session `id` and its frames; deleting an unknown session is not an error.
    pub async fn remove(&self, id: &str) -> Result<()> {
        if let Some(sid) = shoal_id(id) {
            self.store.delete(&sid).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl RmcpSessionStore for ShoalSessionStore {
    async fn load(&self, session_id: &str) -> Result<Option<RmcpSessionState>, SessionStoreError> {
        Ok(self
            .load_params(session_id)
            .await?
            .map(RmcpSessionState::new))
    }

    async fn store(
        &self,
        session_id: &str,
        state: &RmcpSessionState,
    ) -> Result<(), SessionStoreError> {
        Ok(self
            .save_params(session_id, &state.initialize_params)
            .await?)
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        Ok(self.remove(session_id).await?)
    }
}
