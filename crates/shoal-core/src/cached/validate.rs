//! Cheap version checks for the `strict` consistency mode.

use std::fmt;

use async_trait::async_trait;

use crate::{Result, Session, SessionId, Timestamp};

/// The fields that change whenever a session changes: what a `strict` cache compares before
/// serving a hit.
///
/// `revision` moves on every update, `last_seq`/`first_seq`/`frame_count` on every append,
/// trim and `delete_frames`, `created_at` when an id is reused, `last_activity`/`expires_at`
/// on every touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStamp {
    /// The optimistic concurrency token.
    pub revision: u64,
    /// Seq of the newest frame.
    pub last_seq: u64,
    /// Seq of the oldest retained frame.
    pub first_seq: u64,
    /// Frames retained.
    pub frame_count: u64,
    /// When the session was created.
    pub created_at: Timestamp,
    /// Last recorded activity.
    pub last_activity: Timestamp,
    /// When the session expires.
    pub expires_at: Timestamp,
}

impl SessionStamp {
    /// The stamp of `s`.
    pub fn of(s: &Session) -> Self {
        SessionStamp {
            revision: s.revision,
            last_seq: s.last_seq,
            first_seq: s.first_seq,
            frame_count: s.frame_count,
            created_at: s.created_at,
            last_activity: s.last_activity,
            expires_at: s.expires_at,
        }
    }

    /// Whether `s` is the same version as this stamp, activity aside (touches only move
    /// activity, and a cache may know of newer activity than the backend).
    pub fn same_version(&self, s: &Session) -> bool {
        self.revision == s.revision
            && self.last_seq == s.last_seq
            && self.first_seq == s.first_seq
            && self.frame_count == s.frame_count
            && self.created_at == s.created_at
    }
}

/// Reads a session's [`SessionStamp`] cheaply — much cheaper than a full `get` (on Redis one
/// `HMGET` of seven small fields instead of an `HGETALL` and a decode).
#[async_trait]
pub trait Revalidate: Send + Sync + fmt::Debug + 'static {
    /// The current stamp of `id`, or `None` if the session does not exist. The caller checks
    /// `expires_at` against its clock.
    async fn stamp(&self, id: &SessionId) -> Result<Option<SessionStamp>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;

    #[test]
    fn same_version_ignores_activity_only() {
        let mut s = Session::new(SessionId::new("a").unwrap(), Transport::Http);
        s.revision = 3;
        let stamp = SessionStamp::of(&s);
        s.last_activity = Timestamp(99);
        s.expires_at = Timestamp(199);
        assert!(stamp.same_version(&s));
        s.last_seq = 1;
        assert!(!stamp.same_version(&s));
    }
}
