//! One entry of the change feed ([`Change`]), its position ([`FeedId`]) and its wire format:
//! the field/value pairs every backend stores (a Redis Stream entry's fields; the memory
//! feed keeps the parsed value).
//!
//! # Wire format, version 1
//!
//! | field | holds | in |
//! |---|---|---|
//! | `v` | `1`, the format version | every entry |
//! | `k` | the kind: `created`, `updated`, `touched`, `deleted`, `expired`, `evicted`, `frame` | every entry |
//! | `s` | the session id | every entry |
//! | `q` | the frame's seq | `frame` |
//! | `r` | the session's revision after the update | `updated` |
//! | `c` | when the session was created (ms since the epoch), when known | `deleted`, `expired`, `evicted` |
//! | `x` | the kind's detail, tab-separated (see [`SessionSummary`], [`FrameSummary`]; `updated`: the status) | `created`, `updated`, `frame` |
//!
//! The entry's time is its id's milliseconds (the Redis server's clock, or the memory
//! store's). Payloads are never in the feed. Entries of a newer version, or of a kind this
//! version does not know, are read as [`ChangeKind::Other`] (acknowledge and skip them).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use super::summary::{FrameSummary, SessionSummary};
use crate::{Error, Result, SessionStatus, Timestamp};

/// The wire format version this build writes and reads.
pub const FEED_FORMAT_VERSION: &str = "1";

/// What happened to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeKind {
    /// A session was created.
    Created,
    /// Its caller-owned fields were updated (the detail carries the new status).
    Updated,
    /// Its TTL was slid by a touch; at most one per session per `touch_every` window.
    Touched,
    /// It was deleted.
    Deleted,
    /// It expired and was removed (sweeper or lazy expiry).
    Expired,
    /// Redis evicted part of it; the rest was removed.
    Evicted,
    /// A frame was appended (one entry per frame).
    Frame,
    /// An entry this build cannot read: a newer format version or an unknown kind.
    Other,
}

impl ChangeKind {
    /// Every kind a writer produces, in declaration order.
    pub const ALL: &'static [ChangeKind] = &[
        ChangeKind::Created,
        ChangeKind::Updated,
        ChangeKind::Touched,
        ChangeKind::Deleted,
        ChangeKind::Expired,
        ChangeKind::Evicted,
        ChangeKind::Frame,
    ];

    /// The name stored in field `k`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Touched => "touched",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Expired => "expired",
            ChangeKind::Evicted => "evicted",
            ChangeKind::Frame => "frame",
            ChangeKind::Other => "other",
        }
    }

    /// Whether the session ended with this change.
    pub fn ends_session(self) -> bool {
        matches!(
            self,
            ChangeKind::Deleted | ChangeKind::Expired | ChangeKind::Evicted
        )
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChangeKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ChangeKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown change kind {s:?}; expected one of: {}",
                    ChangeKind::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

/// An entry's position: the feed shard it is in and its stream id there (`<ms>-<seq>`).
/// Ordered within a shard; shards are independent (one on a single server).
///
/// Written `<ms>-<seq>` for shard 0 and `<ms>-<seq>@<shard>` otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FeedId {
    /// The shard (0 on a single server and in memory).
    pub shard: u16,
    /// Milliseconds part (the time the entry was written).
    pub ms: u64,
    /// Sequence within the millisecond.
    pub seq: u64,
}

impl FeedId {
    /// `<ms>-<seq>` in `shard`.
    pub fn new(shard: u16, ms: u64, seq: u64) -> Self {
        FeedId { shard, ms, seq }
    }

    /// The stream id without the shard: `<ms>-<seq>`.
    pub fn stream_id(&self) -> String {
        format!("{}-{}", self.ms, self.seq)
    }

    /// Parses a stream id `<ms>-<seq>` (or `<ms>`, seq 0) of `shard`.
    pub fn parse_stream_id(shard: u16, s: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("bad feed id {s:?}: expected <ms>-<seq>"));
        let (ms, seq) = match s.split_once('-') {
            Some((ms, seq)) => (ms, seq),
            None => (s, "0"),
        };
        Ok(FeedId {
            shard,
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }

    /// When the entry was written.
    pub fn time(&self) -> Timestamp {
        Timestamp(self.ms)
    }
}

impl fmt::Display for FeedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)?;
        if self.shard != 0 {
            write!(f, "@{}", self.shard)?;
        }
        Ok(())
    }
}

impl FromStr for FeedId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once('@') {
            Some((id, shard)) => {
                let shard = shard
                    .parse()
                    .map_err(|_| Error::invalid(format!("bad feed id {s:?}: bad shard")))?;
                FeedId::parse_stream_id(shard, id)
            }
            None => FeedId::parse_stream_id(0, s),
        }
    }
}

impl Serialize for FeedId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FeedId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One entry of the change feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Change {
    /// Its position.
    pub id: FeedId,
    /// What happened.
    pub kind: ChangeKind,
    /// The session it happened to (as stored; not checked against the id rules, so an entry
    /// written by hand is still delivered and can be acknowledged).
    pub session_id: String,
    /// `frame`: the frame's seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// `updated`: the revision after the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// `updated`: the status after the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SessionStatus>,
    /// `deleted`, `expired`, `evicted`: when the session was created, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// `created`: who the client is and how it talks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionSummary>,
    /// `frame`: what the frame is, without its payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<FrameSummary>,
    /// `other`: the stored kind and version, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_kind: Option<String>,
}

impl Change {
    /// A change of `kind` to `session_id` with no detail (the id is set by the feed).
    pub fn new(kind: ChangeKind, session_id: impl Into<String>) -> Self {
        Change {
            id: FeedId::default(),
            kind,
            session_id: session_id.into(),
            seq: None,
            revision: None,
            status: None,
            created_at: None,
            session: None,
            frame: None,
            raw_kind: None,
        }
    }

    /// When it was written (the id's time).
    pub fn at(&self) -> Timestamp {
        self.id.time()
    }

    /// The entry's fields in the wire format (see the module docs), in order.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("v", FEED_FORMAT_VERSION.to_string()),
            ("k", self.kind.as_str().to_string()),
            ("s", self.session_id.clone()),
        ];
        if let Some(q) = self.seq {
            out.push(("q", q.to_string()));
        }
        if let Some(r) = self.revision {
            out.push(("r", r.to_string()));
        }
        if let Some(c) = self.created_at {
            out.push(("c", c.as_millis().to_string()));
        }
        let detail = match self.kind {
            ChangeKind::Created => self.session.as_ref().map(SessionSummary::to_detail),
            ChangeKind::Updated => self.status.map(|s| s.as_str().to_string()),
            ChangeKind::Frame => self.frame.as_ref().map(FrameSummary::to_detail),
            _ => None,
        };
        if let Some(x) = detail {
            out.push(("x", x));
        }
        out
    }

    /// Reads an entry's fields (wire format). Never fails: an entry it cannot read is a
    /// [`ChangeKind::Other`] that keeps what it could read, so a consumer can acknowledge it.
    pub fn from_fields<'a>(
        id: FeedId,
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut c = Change::new(ChangeKind::Other, String::new());
        c.id = id;
        let (mut version, mut kind, mut detail) = (None, None, None);
        for (name, value) in fields {
            match name {
                "v" => version = Some(value),
                "k" => kind = Some(value),
                "s" => c.session_id = value.to_string(),
                "q" => c.seq = value.parse().ok(),
                "r" => c.revision = value.parse().ok(),
                "c" => c.created_at = value.parse().ok().map(Timestamp),
                "x" => detail = Some(value),
                _ => {}
            }
        }
        let known = match (version, kind) {
            (Some(FEED_FORMAT_VERSION), Some(k)) => k.parse::<ChangeKind>().ok(),
            _ => None,
        };
        let Some(kind) = known else {
            c.raw_kind = Some(format!(
                "v{} {}",
                version.unwrap_or("?"),
                kind.unwrap_or("?")
            ));
            return c;
        };
        c.kind = kind;
        match (kind, detail) {
            (ChangeKind::Created, Some(x)) => c.session = Some(SessionSummary::from_detail(x)),
            (ChangeKind::Updated, Some(x)) => c.status = x.parse().ok(),
            (ChangeKind::Frame, Some(x)) => c.frame = Some(FrameSummary::from_detail(x)),
            _ => {}
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, NewFrame, Session, SessionId, Transport};

    fn sid() -> SessionId {
        SessionId::new("s-1").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn feed_ids_print_and_parse() {
        let a = FeedId::new(0, 1_700_000_000_000, 3);
        assert_eq!(a.to_string(), "1700000000000-3");
        assert_eq!("1700000000000-3".parse::<FeedId>().ok(), Some(a));
        let b = FeedId::new(5, 12, 0);
        assert_eq!(b.to_string(), "12-0@5");
        assert_eq!("12-0@5".parse::<FeedId>().ok(), Some(b));
        assert_eq!("12".parse::<FeedId>().ok(), Some(FeedId::new(0, 12, 0)));
        for bad in ["", "x-1", "1-x", "1-2@x", "1-2-3", "-1"] {
            assert!(bad.parse::<FeedId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_kind_round_trips_through_the_wire_format() {
        let mut s = Session::new(sid(), Transport::StreamableHttp);
        s.protocol_version = Some("2025-11-25".into());
        s.client_info = Some(serde_json::json!({"name": "cli\tent", "version": "1.2"}));
        s.principal = Some("alice".into());
        let mut created = Change::new(ChangeKind::Created, "s-1");
        created.session = Some(SessionSummary::of(&s));
        let mut updated = Change::new(ChangeKind::Updated, "s-1");
        updated.revision = Some(4);
        updated.status = Some(SessionStatus::Completed);
        let mut frame = Change::new(ChangeKind::Frame, "s-1");
        frame.seq = Some(9);
        frame.frame = Some(FrameSummary::of(
            &NewFrame::new(
                Direction::ClientToServer,
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"a":1}}}"#,
            )
            .with_stream("post-1"),
        ));
        let mut deleted = Change::new(ChangeKind::Deleted, "s-1");
        deleted.created_at = Some(Timestamp(1234));
        for c in [
            created,
            updated,
            frame,
            deleted,
            Change::new(ChangeKind::Touched, "s-1"),
        ] {
            let fields = c.to_fields();
            let back = Change::from_fields(
                FeedId::default(),
                fields.iter().map(|(k, v)| (*k, v.as_str())),
            );
            assert_eq!(back, c);
        }
    }

    #[test]
    fn unknown_versions_and_kinds_are_other_and_keep_the_session() {
        let c = Change::from_fields(
            FeedId::default(),
            [("v", "2"), ("k", "created"), ("s", "a")],
        );
        assert_eq!(c.kind, ChangeKind::Other);
        assert_eq!(c.session_id, "a");
        assert_eq!(c.raw_kind.as_deref(), Some("v2 created"));
        let c = Change::from_fields(FeedId::default(), [("v", "1"), ("k", "renamed")]);
        assert_eq!(c.kind, ChangeKind::Other);
        let c = Change::from_fields(FeedId::default(), []);
        assert_eq!(c.raw_kind.as_deref(), Some("v? ?"));
    }
}
