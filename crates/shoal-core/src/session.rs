//! The session record and its small value types.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Limits, Result, SessionId};

/// Milliseconds since the Unix epoch (UTC). Small, ordered, and the same in every backend.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// Converts a `SystemTime` (times before 1970 become 0).
    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// This instant plus `d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// As a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 with milliseconds, e.g. `2026-11-25T18:00:00.000Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(self.to_system_time())
        )
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable lowercase name used in storage, config and on the command line.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(Error::invalid(format!(
                        concat!("unknown ", stringify!($name), " {:?}; expected one of: {}"),
                        other,
                        [$($s),+].join(", ")
                    ))),
                }
            }
        }
    };
}

string_enum! {
    /// How the client talks to the proxy.
    Transport {
        /// A child process over stdin/stdout.
        Stdio => "stdio",
        /// Plain HTTP request/response.
        Http => "http",
        /// The legacy HTTP+SSE transport.
        Sse => "sse",
        /// MCP Streamable HTTP.
        StreamableHttp => "streamable_http",
    }
}

string_enum! {
    /// How a session ended, or that it has not.
    SessionStatus {
        /// Live.
        Active => "active",
        /// Ended normally.
        Completed => "completed",
        /// Ended with an error.
        Failed => "failed",
        /// Ended because it was idle too long.
        Timeout => "timeout",
    }
}

string_enum! {
    /// Where a session is in the MCP lifecycle.
    SessionState {
        /// `initialize` sent, handshake not finished.
        Initializing => "initializing",
        /// Handshake done; normal operation.
        Active => "active",
        /// Shutdown in progress.
        ShuttingDown => "shutting_down",
        /// Closed.
        Closed => "closed",
    }
}

/// One client session: its metadata, not its frames.
///
/// Fields fall in two groups. The caller owns the descriptive ones (`transport`, `status`,
/// `state`, the `*_info` and `initialize_params` JSON, `protocol_version`,
/// `upstream_session_id`, `principal`, `tags`, `metadata`) and changes them with
/// [`SessionStore::update`](crate::SessionStore::update). The store owns the bookkeeping ones
/// (`created_at`, `last_activity`, `expires_at`, `frame_count`, `last_seq`, `first_seq`,
/// `revision`): whatever a caller puts there is ignored on create and update.
///
/// ```
/// use shoal_core::{Session, SessionId, Transport};
///
/// let mut s = Session::new(SessionId::generate(), Transport::StreamableHttp);
/// s.protocol_version = Some("2025-11-25".into());
/// s.tags.insert("team-a".into());
/// assert_eq!(s.revision, 0); // assigned by the store on create
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Session {
    /// The session's id.
    pub id: SessionId,
    /// How the client is connected.
    pub transport: Transport,
    /// Outcome so far.
    pub status: SessionStatus,
    /// Lifecycle position.
    pub state: SessionState,
    /// Set by the store on create.
    pub created_at: Timestamp,
    /// Set by the store on create, update, touch and append.
    pub last_activity: Timestamp,
    /// When the session expires unless touched again (`last_activity + ttl`).
    pub expires_at: Timestamp,
    /// Frames currently retained (after trimming).
    pub frame_count: u64,
    /// Seq of the newest frame ever appended; 0 when none.
    pub last_seq: u64,
    /// Seq of the oldest retained frame; `last_seq + 1` when none are retained.
    pub first_seq: u64,
    /// The client's `clientInfo`/capabilities from `initialize`.
    pub client_info: Option<Value>,
    /// The server's `serverInfo`/capabilities from the `initialize` result.
    pub server_info: Option<Value>,
    /// The negotiated MCP protocol revision.
    pub protocol_version: Option<String>,
    /// The session id the upstream server assigned, if it has one.
    pub upstream_session_id: Option<String>,
    /// The `initialize` request params, needed to restore the session on another instance.
    pub initialize_params: Option<Value>,
    /// The authenticated principal that owns the session, if any (never a token).
    pub principal: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Free-form string metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Bumped by the store on every update; the optimistic concurrency token.
    pub revision: u64,
}

impl Session {
    /// A field of the client's `clientInfo` (`name`, `version`): read from `client_info`
    /// whether it holds the `Implementation` itself (`{"name": …}`) or the proxy's shape
    /// (`{"clientInfo": {"name": …}, "capabilities": …}`).
    pub fn client_field(&self, field: &str) -> Option<&str> {
        let info = self.client_info.as_ref()?;
        info.get(field)
            .or_else(|| info.get("clientInfo").and_then(|c| c.get(field)))
            .and_then(Value::as_str)
    }

    /// A new session with the given id and transport, `Active`/`Initializing`, everything else
    /// empty. The store fills in the bookkeeping fields on create.
    pub fn new(id: SessionId, transport: Transport) -> Self {
        Session {
            id,
            transport,
            status: SessionStatus::Active,
            state: SessionState::Initializing,
            created_at: Timestamp(0),
            last_activity: Timestamp(0),
            expires_at: Timestamp(0),
            frame_count: 0,
            last_seq: 0,
            first_seq: 1,
            client_info: None,
            server_info: None,
            protocol_version: None,
            upstream_session_id: None,
            initialize_params: None,
            principal: None,
            tags: BTreeSet::new(),
            metadata: BTreeMap::new(),
            revision: 0,
        }
    }

    /// Approximate size in bytes of the caller-owned, variable-size fields: what
    /// [`Limits::max_metadata_bytes`](crate::Limits::max_metadata_bytes) bounds.
    pub fn metadata_bytes(&self) -> usize {
        fn json_len(v: &Option<Value>) -> usize {
            v.as_ref()
                .and_then(|v| serde_json::to_vec(v).ok())
                .map_or(0, |b| b.len())
        }
        fn opt_len(s: &Option<String>) -> usize {
            s.as_ref().map_or(0, String::len)
        }
        json_len(&self.client_info)
            + json_len(&self.server_info)
            + json_len(&self.initialize_params)
            + opt_len(&self.protocol_version)
            + opt_len(&self.upstream_session_id)
            + opt_len(&self.principal)
            + self.tags.iter().map(String::len).sum::<usize>()
            + self
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    /// Checks the caller-owned fields against
    /// [`Limits::max_metadata_bytes`]; every store does this
    /// before `create` and `update` write anything.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] when [`metadata_bytes`](Self::metadata_bytes) is over the limit.
    pub fn check_metadata(&self, limits: &Limits) -> Result<()> {
        let max = limits.max_metadata_bytes;
        if self.metadata_bytes() > max {
            return Err(Error::LimitExceeded {
                what: "session metadata bytes",
                limit: max as u64,
            });
        }
        Ok(())
    }

    /// Prepares a session for `create` at `now`, the same way in every store: checks its
    /// metadata ([`check_metadata`](Self::check_metadata)), then sets the bookkeeping a new
    /// session starts with — created and last active at `now`, expiring one
    /// [`session_ttl`](Limits::session_ttl) later, no frames (`frame_count` 0,
    /// `last_seq` 0, `first_seq` 1) and revision 1. Changes nothing when the check fails.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] when the metadata is over the limit.
    pub fn begin(&mut self, now: Timestamp, limits: &Limits) -> Result<()> {
        self.check_metadata(limits)?;
        self.created_at = now;
        self.last_activity = now;
        self.expires_at = now.saturating_add(limits.session_ttl);
        self.frame_count = 0;
        self.last_seq = 0;
        self.first_seq = 1;
        self.revision = 1;
        Ok(())
    }

    /// Whether the session has expired at `now`.
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }

    /// Copies the caller-owned fields of `from` into `self`, leaving the bookkeeping alone.
    pub fn apply_caller_fields(&mut self, from: &Session) {
        self.transport = from.transport;
        self.status = from.status;
        self.state = from.state;
        self.client_info.clone_from(&from.client_info);
        self.server_info.clone_from(&from.server_info);
        self.protocol_version.clone_from(&from.protocol_version);
        self.upstream_session_id
            .clone_from(&from.upstream_session_id);
        self.initialize_params.clone_from(&from.initialize_params);
        self.principal.clone_from(&from.principal);
        self.tags.clone_from(&from.tags);
        self.metadata.clone_from(&from.metadata);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_names() {
        for t in Transport::ALL {
            assert_eq!(t.as_str().parse::<Transport>().unwrap(), *t);
            assert_eq!(
                serde_json::to_string(t).unwrap(),
                format!("\"{}\"", t.as_str())
            );
        }
        for s in SessionStatus::ALL {
            assert_eq!(s.as_str().parse::<SessionStatus>().unwrap(), *s);
        }
        for s in SessionState::ALL {
            assert_eq!(s.as_str().parse::<SessionState>().unwrap(), *s);
        }
        let err = "bogus".parse::<Transport>().unwrap_err().to_string();
        assert!(err.contains("streamable_http"), "{err}");
    }

    #[test]
    fn timestamp_displays_as_rfc3339() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_000).saturating_add(Duration::from_millis(5)),
            Timestamp(1_005)
        );
    }

    #[test]
    fn begin_sets_the_bookkeeping_of_a_new_session() {
        let mut limits = Limits {
            session_ttl: Duration::from_millis(500),
            ..Limits::default()
        };
        let mut s = Session::new(SessionId::new("b").unwrap(), Transport::Stdio);
        s.frame_count = 9;
        s.last_seq = 9;
        s.first_seq = 4;
        s.revision = 7;
        s.begin(Timestamp(1_000), &limits).unwrap();
        assert_eq!(
            (s.created_at, s.last_activity),
            (Timestamp(1_000), Timestamp(1_000))
        );
        assert_eq!(s.expires_at, Timestamp(1_500));
        assert_eq!(
            (s.frame_count, s.last_seq, s.first_seq, s.revision),
            (0, 0, 1, 1)
        );

        limits.max_metadata_bytes = 2;
        let mut big = Session::new(SessionId::new("c").unwrap(), Transport::Stdio);
        big.principal = Some("abc".into());
        let before = big.clone();
        assert!(matches!(
            big.begin(Timestamp(1_000), &limits),
            Err(Error::LimitExceeded { .. })
        ));
        assert_eq!(big, before);
    }

    #[test]
    fn metadata_bytes_counts_variable_fields() {
        let mut s = Session::new(SessionId::new("a").unwrap(), Transport::Http);
        assert_eq!(s.metadata_bytes(), 0);
        s.metadata.insert("k".into(), "vv".into());
        s.tags.insert("t".into());
        s.client_info = Some(serde_json::json!({"a": 1}));
        assert_eq!(s.metadata_bytes(), 3 + 1 + 7);
    }
}
