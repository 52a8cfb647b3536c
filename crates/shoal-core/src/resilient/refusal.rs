//! The errors a call gets when it cannot be served: the breaker is open and the fallback
//! mode does not cover the call, or the session's journaled writes come first.

use super::{config::FallbackMode, wrapper::Resilient};
use crate::{Error, SessionId, SessionStore};

impl<P: SessionStore, F: SessionStore> Resilient<P, F> {
    pub(super) fn refused(&self, op: &str) -> Error {
        let primary = self.primary_name();
        match self.mode() {
            FallbackMode::None => Error::unavailable(format!(
                "resilient: {primary} is unavailable (circuit breaker open); {op} refused \
                 (fallback mode none)"
            )),
            FallbackMode::ReadOnly => Error::unavailable(format!(
                "resilient: {primary} is unavailable (circuit breaker open) and the store is \
                 read-only meanwhile; {op} refused"
            )),
            FallbackMode::Memory => Error::unavailable(format!(
                "resilient: {primary} is unavailable (circuit breaker open); {op} needs it \
                 and cannot be served from the fallback"
            )),
        }
    }

    pub(super) fn not_held(&self, id: &SessionId, op: &str) -> Error {
        Error::unavailable(format!(
            "resilient: {} is unavailable (circuit breaker open) and the fallback does not \
             hold session {id}; {op} refused",
            self.primary_name()
        ))
    }

    pub(super) fn pending_error(&self, id: &SessionId, op: &str) -> Error {
        Error::unavailable(format!(
            "resilient: session {id} has writes journaled during a {} outage that are not \
             replayed yet; {op} needs them replayed first",
            self.primary_name()
        ))
    }

    pub(super) fn in_doubt_error(&self, id: &SessionId, op: &str) -> Error {
        Error::unavailable(format!(
            "resilient: session {id} was being copied to {} when it failed; {op} waits until \
             the next replay settles it",
            self.primary_name()
        ))
    }

    pub(super) fn not_found(id: &SessionId) -> Error {
        Error::session_not_found(id)
    }
}
