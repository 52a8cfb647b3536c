//! Mapping redis-rs errors onto Shoal's [`Error`].

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};
use shoal_core::{Error, SessionId};

/// Maps `e`, raised by `op` (about session `id`, if any). Connection loss and refusal become
/// [`Error::Unavailable`] (a connection that broke under the call:
/// [`Error::connection_lost`]), I/O time-outs [`Error::Timeout`], a key of the wrong type
/// [`Error::Corrupt`] for that session, anything else [`Error::Backend`].
///
/// A reply redis-rs cannot parse (`ErrorKind::Parse`, e.g. one cut mid-line by a dropped
/// connection) is `Unavailable` too: redis-rs throws that connection away and reconnects, and
/// the outcome of the command is unknown — so a link that keeps truncating replies counts
/// against the circuit breaker instead of looking like a neutral application error.
pub(crate) fn map(
    e: RedisError,
    op: &'static str,
    id: Option<&SessionId>,
    timeout: Duration,
) -> Error {
    if e.code() == Some("WRONGTYPE") || e.to_string().contains("WRONGTYPE") {
        let what = match id {
            Some(id) => format!("session {:?} keys", id.as_str()),
            None => format!("a key read by {op}"),
        };
        return Error::corrupt(what, "a key holds the wrong Redis type (WRONGTYPE)");
    }
    if e.is_timeout() {
        return Error::Timeout { op, after: timeout };
    }
    // A refused connection is a server that is not there (redis-rs counts it as "dropped"
    // too): every call fails on its own, and each counts.
    if e.is_connection_refusal() {
        return Error::unavailable(format!("redis {op}: {e}"));
    }
    if e.is_connection_dropped() || e.kind() == ErrorKind::Parse {
        return Error::connection_lost(format!("redis {op}: {e}"));
    }
    if e.is_io_error() {
        return Error::unavailable(format!("redis {op}: {e}"));
    }
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::BusyLoading
            | ServerErrorKind::ReadOnly,
        )
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::MasterNameNotFoundBySentinel
        | ErrorKind::NoValidReplicasFoundBySentinel
        | ErrorKind::EmptySentinelList => Error::unavailable(format!("redis {op}: {e}")),
        _ => Error::backend(OpError { op, source: e }),
    }
}

/// A redis-rs error with the operation it broke, kept as the source of [`Error::Backend`].
#[derive(Debug, thiserror::Error)]
#[error("redis {op}: {source}")]
struct OpError {
    op: &'static str,
    #[source]
    source: RedisError,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(kind: ErrorKind) -> Error {
        map(
            RedisError::from((kind, "test")),
            "get",
            None,
            Duration::from_secs(1),
        )
    }

    #[test]
    fn a_cut_reply_is_unavailable_not_an_application_error() {
        assert!(
            mapped(ErrorKind::Parse).is_connection_lost(),
            "{:?}",
            mapped(ErrorKind::Parse)
        );
    }

    #[test]
    fn a_refused_connection_is_not_a_lost_one() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = map(refused, "get", None, Duration::from_secs(1));
        assert!(
            matches!(e, Error::Unavailable { .. }) && !e.is_connection_lost(),
            "{e:?}"
        );
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let e = map(reset, "get", None, Duration::from_secs(1));
        assert!(e.is_connection_lost(), "{e:?}");
    }

    #[test]
    fn a_type_mismatch_stays_a_backend_error() {
        assert!(
            matches!(mapped(ErrorKind::UnexpectedReturnType), Error::Backend(_)),
            "{:?}",
            mapped(ErrorKind::UnexpectedReturnType)
        );
    }
}
