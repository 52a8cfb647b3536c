//! Configurable limits every backend enforces the same way.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The longest session TTL accepted.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Limits on what a store accepts. Exceeding one returns
/// [`Error::LimitExceeded`] and writes nothing — except
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
    /// Most bytes one session holds: its retained frames, pending requests and metadata,
    /// as the backend stores them (memory: the sizes [`Frame::size`](crate::Frame::size) and
    /// [`PendingRequest::size`](crate::PendingRequest::size) count; Redis: the stored
    /// encodings, a few dozen bytes more per item). A write that would pass it is refused
    /// with `LimitExceeded` and writes nothing; frames trimmed by `max_frames_per_session`
    /// in the same append make room first. Metadata counts, but an `update` is bounded by
    /// `max_metadata_bytes` alone (so a write-behind cache can accept it at once): it may take
    /// a session past the budget by at most that much, and its next append or pending
    /// request is refused then. At least `max_frame_bytes`. Default 64 MiB.
    pub max_session_bytes: usize,
    /// Largest pending request ([`PendingRequest::size`](crate::PendingRequest::size): its
    /// id, method and stream id). Default 8 KiB.
    pub max_pending_bytes: usize,
    /// Most frame bytes one `frames` page returns (as the backend measures them; a page
    /// always holds at least one frame), so no read builds a reply of unbounded size. At
    /// least `max_frame_bytes`. Default 16 MiB.
    pub max_page_bytes: usize,
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
            max_session_bytes: 64 * 1024 * 1024,
            max_pending_bytes: 8 * 1024,
            max_page_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Checks that every count is at least 1, the session TTL between one second and one
    /// year, and that the session and page byte bounds hold at least one frame. The message
    /// of a bad setting starts with its key (`limits.max_sessions must be …`).
    ///
    /// ```
    /// let mut limits = shoal_core::Limits::default();
    /// assert!(limits.validate().is_ok());
    /// limits.max_sessions = 0;
    /// assert!(limits.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        for (key, value) in [
            ("limits.max_frame_bytes", self.max_frame_bytes),
            ("limits.max_frames_per_session", self.max_frames_per_session),
            ("limits.max_sessions", self.max_sessions),
            (
                "limits.max_pending_per_session",
                self.max_pending_per_session,
            ),
            ("limits.max_session_bytes", self.max_session_bytes),
            ("limits.max_pending_bytes", self.max_pending_bytes),
            ("limits.max_page_bytes", self.max_page_bytes),
        ] {
            if value == 0 {
                return Err(Error::invalid(format!("{key} must be at least 1")));
            }
        }
        if self.session_ttl < Duration::from_secs(1) {
            return Err(Error::invalid("limits.session_ttl must be at least 1s"));
        }
        if self.session_ttl > MAX_SESSION_TTL {
            return Err(Error::invalid("limits.session_ttl must be at most 365d"));
        }
        for (key, value) in [
            ("limits.max_session_bytes", self.max_session_bytes),
            ("limits.max_page_bytes", self.max_page_bytes),
        ] {
            if value < self.max_frame_bytes {
                return Err(Error::invalid(format!(
                    "{key} must be at least limits.max_frame_bytes ({}), so one frame fits",
                    self.max_frame_bytes
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_limits_name_their_key() {
        assert!(Limits::default().validate().is_ok());
        let l = Limits {
            max_pending_per_session: 0,
            ..Limits::default()
        };
        let e = l
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("limits.max_pending_per_session"), "{e}");
        let l = Limits {
            session_ttl: Duration::from_millis(999),
            ..Limits::default()
        };
        let e = l
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("limits.session_ttl"), "{e}");
    }
}
