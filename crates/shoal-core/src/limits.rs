//! Configurable limits every backend enforces the same way.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits on what a store accepts. Exceeding one returns
/// [`Error::LimitExceeded`](crate::Error::LimitExceeded) and writes nothing — except
/// `max_frames_per_session`, which is a retention bound: the oldest frames are trimmed and
/// sequence numbers keep counting.
///
/// ```
/// use shoal_core::Limits;
/// use std::time::Duration;
///
/// let mut limits = Limits::default();
/// limits.session_ttl = Duration::from_secs(3600);
/// assert_eq!(limits.max_frame_bytes, 4 * 1024 * 1024);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Limits {
    /// Largest frame accepted (content + stream id + content type + headers), in bytes.
    /// Default 4 MiB.
    pub max_frame_bytes: usize,
    /// Frames retained per session; older ones are trimmed. Default 10,000.
    pub max_frames_per_session: usize,
    /// Most sessions a store holds at once. Default 100,000.
    pub max_sessions: usize,
    /// Sliding time to live: a session expires this long after its last activity. Default 24 h.
    #[serde(with = "crate::serde_util::duration")]
    pub session_ttl: Duration,
    /// Largest [`Session::metadata_bytes`](crate::Session::metadata_bytes). Default 64 KiB.
    pub max_metadata_bytes: usize,
    /// Most pending requests per session. Default 10,000.
    pub max_pending_per_session: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 4 * 1024 * 1024,
            max_frames_per_session: 10_000,
            max_sessions: 100_000,
            session_ttl: Duration::from_secs(24 * 3600),
            max_metadata_bytes: 64 * 1024,
            max_pending_per_session: 10_000,
        }
    }
}

