//! The one error type every [`SessionStore`](crate::SessionStore) returns.
//!
//! The variants are chosen so that a host (the proxy, the CLI) can map each to a clear reaction
//! without inspecting messages: `NotFound` → 404, `Unavailable`/`Timeout` → 503 and retry later,
//! `InvalidInput`/`LimitExceeded` → 400/413, `Conflict` → re-read and retry, `Corrupt` → the stored
//! item is unreadable (and only that item), `Backend` → anything else the backend reported.

use std::time::Duration;

/// A boxed error from a backend library (Redis, I/O, …), kept as the [`Error::Backend`] source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with Shoal's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a session store.
///
/// Every variant says *what* it is about, so the message alone is actionable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session (or pending request) does not exist, was deleted, or has expired.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `session "abc"`.
        what: String,
    },

    /// A session with this id already exists (create and import never overwrite).
    #[error("{what} already exists")]
    AlreadyExists {
        /// What already exists, e.g. `session "abc"`.
        what: String,
    },

    /// An optimistic concurrency check failed: someone else changed the session first.
    #[error("conflict on {what}: expected revision {expected}, found {actual}")]
    Conflict {
        /// What was being changed.
        what: String,
        /// The revision the caller based its change on.
        expected: u64,
        /// The revision currently stored.
        actual: u64,
    },

    /// The input was rejected before anything was written (malformed id, bad cursor, …).
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// Why the input was rejected.
        reason: String,
    },

    /// A configured limit would be exceeded; nothing was written.
    #[error("limit exceeded: {what} (limit {limit})")]
    LimitExceeded {
        /// Which limit, e.g. `frame bytes`.
        what: &'static str,
        /// The configured limit.
        limit: u64,
    },

    /// The backend cannot serve the request right now (down, circuit open, session held elsewhere).
    ///
    /// Unlike [`Error::NotFound`] this says nothing about whether the session exists: a host must
    /// not tell a client its session is gone because of it.
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// Why the store is unavailable.
        reason: String,
    },

    /// The operation did not finish within its deadline. Its effect is unknown.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// The operation that timed out.
        op: &'static str,
        /// The deadline that passed.
        after: Duration,
    },

    /// A stored item could not be decoded. Only this item is affected.
    #[error("corrupt data in {what}: {reason}")]
    Corrupt {
        /// Which item, e.g. `session "abc" meta`.
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Any other failure reported by the backend.
    #[error("backend error: {0}")]
    Backend(#[source] BoxError),
}

impl Error {
    /// `NotFound` for the session `id`.
    pub fn session_not_found(id: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what: format!("session {id:?}", id = id.to_string()),
        }
    }

    /// `InvalidInput` with `reason`.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            reason: reason.into(),
        }
    }

    /// `Corrupt` for `what` with `reason`.
    pub fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// `Unavailable` with `reason`.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Error::Unavailable {
            reason: reason.into(),
        }
    }

    /// Wraps any backend error.
    pub fn backend(err: impl Into<BoxError>) -> Self {
        Error::Backend(err.into())
    }

    /// True for errors that say nothing about the data, only that the backend could not answer
    /// now (`Unavailable`, `Timeout`, `Backend`): the ones a resilience layer may retry or route
    /// to a fallback.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::Timeout { .. } | Error::Backend(_)
        )
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// `Unavailable` because an established connection broke under the call (reset, closed,
    /// a reply cut mid-way): one event fails every call in flight on that connection at once,
    /// and the backend's client reconnects at once. A resilience layer counts a burst of these
    /// once and retries idempotent calls on the fresh connection
    /// ([`Error::is_connection_lost`]).
    pub fn connection_lost(detail: impl std::fmt::Display) -> Self {
        Error::Unavailable {
            reason: format!("{CONNECTION_LOST}{detail}"),
        }
    }

    /// True for an error made by [`Error::connection_lost`].
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::Unavailable { reason } if reason.starts_with(CONNECTION_LOST))
    }

    /// `Unavailable` because the backend applied a write but could not make it as durable as
    /// configured (e.g. fewer replicas than required confirmed it): the write is there, not
    /// safe, and the caller is not told it succeeded. Like any `Unavailable` it counts against
    /// a circuit breaker — a store that cannot replicate is served by the fallback — and a
    /// journal drain retries it (reading back first, so nothing is written twice).
    pub fn not_replicated(detail: impl std::fmt::Display) -> Self {
        Error::Unavailable {
            reason: format!("{NOT_REPLICATED}{detail}"),
        }
    }

    /// True for an error made by [`Error::not_replicated`].
    pub fn is_not_replicated(&self) -> bool {
        matches!(self, Error::Unavailable { reason } if reason.starts_with(NOT_REPLICATED))
    }
}

/// The start of the reason of [`Error::not_replicated`].
const NOT_REPLICATED: &str = "not replicated: ";

/// The start of the reason of [`Error::connection_lost`].
const CONNECTION_LOST: &str = "connection lost: ";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_unavailable_and_told_apart() {
        let e = Error::connection_lost("redis get: broken pipe");
        assert!(matches!(e, Error::Unavailable { .. }));
        assert!(e.is_connection_lost() && e.is_transient());
        assert!(!Error::unavailable("connection refused").is_connection_lost());
        let n = Error::not_replicated("redis append: 0 of 1 replicas");
        assert!(n.is_not_replicated() && !n.is_connection_lost());
        assert!(matches!(n, Error::Unavailable { .. }));
        assert_eq!(
            e.to_string(),
            "store unavailable: connection lost: redis get: broken pipe"
        );
    }

    #[test]
    fn messages_name_what_they_are_about() {
        assert_eq!(
            Error::session_not_found("abc").to_string(),
            "session \"abc\" not found"
        );
        let e = Error::LimitExceeded {
            what: "frame bytes",
            limit: 10,
        };
        assert_eq!(e.to_string(), "limit exceeded: frame bytes (limit 10)");
        assert!(Error::unavailable("down").is_transient());
        assert!(!Error::invalid("x").is_transient());
    }
}
