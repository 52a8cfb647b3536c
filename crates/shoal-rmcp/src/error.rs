//! The adapter's errors. rmcp boxes them (`SessionStoreError`, `EventStoreError`), so each
//! says what failed in words a server log can show; none carries a credential.

/// What went wrong in the adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Shoal store refused or failed the call (see [`shoal_core::Error`]).
    #[error("session store: {0}")]
    Store(#[from] shoal_core::Error),
    /// An id rmcp handed over is not usable as a Shoal session id.
    #[error("rmcp id {id:?} cannot name a Shoal session: {reason}")]
    BadId {
        /// The id as rmcp gave it.
        id: String,
        /// Why.
        reason: String,
    },
    /// A `Last-Event-ID` that is not one of ours, was edited, or belongs to another fleet's
    /// key.
    #[error("event id {id:?} refused: {reason}")]
    EventId {
        /// The id as the client sent it (truncated to 200 bytes).
        id: String,
        /// Why.
        reason: String,
    },
    /// A message could not be encoded for the store or decoded from it.
    #[error("{what}: {reason}")]
    Codec {
        /// What was being encoded or decoded.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// The local session manager failed (rmcp's `LocalSessionManagerError`).
    #[error("local session: {0}")]
    Local(
        #[from] rmcp::transport::streamable_http_server::session::local::LocalSessionManagerError,
    ),
    /// The store could not be opened.
    #[error("opening the store: {0}")]
    Open(String),
}

impl Error {
    pub(crate) fn event_id(id: &str, reason: impl std::fmt::Display) -> Self {
        let mut shown = id.to_owned();
        if shown.len() > 200 {
            let mut end = 200;
            while !shown.is_char_boundary(end) {
                end -= 1;
            }
            shown.truncate(end);
        }
        Error::EventId {
            id: shown,
            reason: reason.to_string(),
        }
    }

    /// True when the store said the session does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_not_found())
    }
}

/// The adapter's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
