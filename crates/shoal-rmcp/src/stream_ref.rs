//! Where an rmcp event stream lives in Shoal, and the event ids the adapter hands out.
//!
//! A session's streams live in that session's Shoal session, as frames tagged with the
//! stream: its standalone (GET) stream — rmcp's `<session id>:common` — as stream `common`,
//! each POST's SSE stream as the UUID rmcp gave it. So a session's events are trimmed, bounded,
//! expired and deleted with the session. The [`ShoalSessionManager`](crate::ShoalSessionManager)
//! gives every session an event store that knows its session, since rmcp's `EventStore` call
//! names only the stream.
//!
//! Streams of stateless requests (2026-07-28 servers, `legacy_session_mode = false`) have no
//! session: each gets a Shoal session of its own, `rmcp-stream-<uuid>`, stream `r`, created by
//! its first event and deleted a while after its response (`ReplaySettings::stateless_keep`).
//!
//! An event id is `<Shoal session id>/<stream>.<seq>[.<epoch>].<mac>`: the part after the
//! slash is the proxy's tamper-evident id ([`shoal_core::event_id`]), whose MAC covers the
//! session id, so the id alone locates its stream and an edited or forged id is refused.

use shoal_core::{
    SessionId,
    event_id::{EventId, EventIdCodec, valid_stream},
};

use crate::error::{Error, Result};

/// The prefix of a request stream's Shoal session id.
pub const REQUEST_STREAM_PREFIX: &str = "rmcp-stream-";
/// The stream name of a session's standalone stream.
pub const COMMON_STREAM: &str = "common";
/// The stream name of a stateless request's stream (in its own Shoal session).
pub const STATELESS_STREAM: &str = "r";

/// Which kind of rmcp stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// A session's standalone stream. Never ends by itself.
    Common,
    /// A POST's stream in its session. Ends with the request's response.
    Request,
    /// A stateless request's stream, in a Shoal session of its own that its first event
    /// creates. Ends with the request's response.
    Stateless,
}

impl StreamKind {
    /// Whether the stream ends with a JSON-RPC response or error.
    pub fn ends_with_response(self) -> bool {
        self != StreamKind::Common
    }
}

/// An rmcp stream's place in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRef {
    /// The Shoal session holding its events.
    pub session: SessionId,
    /// The stream name inside it.
    pub stream: String,
    /// Which kind.
    pub kind: StreamKind,
}

impl StreamRef {
    /// Where rmcp's stream `stream_id` of `session` lives.
    pub fn in_session(session: &SessionId, stream_id: &str) -> Result<Self> {
        if stream_id.ends_with(":common") {
            return Ok(StreamRef {
                session: session.clone(),
                stream: COMMON_STREAM.into(),
                kind: StreamKind::Common,
            });
        }
        if !valid_stream(stream_id) || stream_id == COMMON_STREAM {
            return Err(Error::BadId {
                id: stream_id.to_owned(),
                reason: "not a stream name (1–64 of A–Z, a–z, 0–9, - and _)".into(),
            });
        }
        Ok(StreamRef {
            session: session.clone(),
            stream: stream_id.to_owned(),
            kind: StreamKind::Request,
        })
    }

    /// Where rmcp's stream `stream_id` lives when the caller does not know its session: a
    /// standalone stream names it; any other is a stateless request's stream.
    pub fn of_rmcp(stream_id: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadId {
            id: stream_id.to_owned(),
            reason,
        };
        match stream_id.strip_suffix(":common") {
            Some(session) => Ok(StreamRef {
                session: SessionId::new(session).map_err(|e| bad(e.to_string()))?,
                stream: COMMON_STREAM.into(),
                kind: StreamKind::Common,
            }),
            None => Ok(StreamRef {
                session: SessionId::new(format!("{REQUEST_STREAM_PREFIX}{stream_id}"))
                    .map_err(|e| bad(e.to_string()))?,
                stream: STATELESS_STREAM.into(),
                kind: StreamKind::Stateless,
            }),
        }
    }

    /// The event id of frame `seq` (in `epoch`, 0 if not known) of this stream.
    pub fn event_id(&self, codec: &EventIdCodec, seq: u64, epoch: u64) -> String {
        format!(
            "{}/{}",
            self.session,
            codec.encode(self.session.as_str(), &self.stream, seq, epoch)
        )
    }

    /// Parses and verifies an event id this adapter handed out: its stream and position.
    pub fn parse_event_id(codec: &EventIdCodec, id: &str) -> Result<(Self, EventId)> {
        let (session, local) = id
            .trim()
            .rsplit_once('/')
            .ok_or_else(|| Error::event_id(id, "not of the form <session>/<event>"))?;
        let session = SessionId::new(session).map_err(|e| Error::event_id(id, e))?;
        let event = codec
            .decode(session.as_str(), local)
            .map_err(|e| Error::event_id(id, e))?;
        let kind = if event.stream == COMMON_STREAM {
            StreamKind::Common
        } else if event.stream == STATELESS_STREAM
            && session.as_str().starts_with(REQUEST_STREAM_PREFIX)
        {
            StreamKind::Stateless
        } else {
            StreamKind::Request
        };
        Ok((
            StreamRef {
                session,
                stream: event.stream.clone(),
                kind,
            },
            event,
        ))
    }
}

#[cfg(test)]
mod tests {
    use shoal_core::event_id::EventIdKey;

    use super::*;

    fn codec(b: u8) -> EventIdCodec {
        EventIdCodec::new(&EventIdKey::new(vec![b; 32]).unwrap())
    }

    #[test]
    fn common_and_request_streams_map_to_sessions() {
        let c = StreamRef::of_rmcp("0b5f0a0e-1f7c-4a57-a3d5-6a8f3b1c2d4e:common").unwrap();
        assert_eq!(c.session.as_str(), "0b5f0a0e-1f7c-4a57-a3d5-6a8f3b1c2d4e");
        assert_eq!(
            (c.stream.as_str(), c.kind),
            (COMMON_STREAM, StreamKind::Common)
        );
        let r = StreamRef::of_rmcp("9d1e6c1a-0000-4000-8000-000000000001").unwrap();
        assert_eq!(
            r.session.as_str(),
            "rmcp-stream-9d1e6c1a-0000-4000-8000-000000000001"
        );
        assert_eq!(
            (r.stream.as_str(), r.kind),
            (STATELESS_STREAM, StreamKind::Stateless)
        );
        assert!(StreamRef::of_rmcp(":common").is_err());
        assert!(StreamRef::of_rmcp("has space").is_err());
        // In a known session: the UUID is the stream.
        let sid = SessionId::new("0b5f0a0e-1f7c-4a57-a3d5-6a8f3b1c2d4e").unwrap();
        let p = StreamRef::in_session(&sid, "9d1e6c1a-0000-4000-8000-000000000001").unwrap();
        assert_eq!(
            (p.session.clone(), p.kind),
            (sid.clone(), StreamKind::Request)
        );
        assert_eq!(p.stream, "9d1e6c1a-0000-4000-8000-000000000001");
        let g = StreamRef::in_session(&sid, "0b5f0a0e-1f7c-4a57-a3d5-6a8f3b1c2d4e:common").unwrap();
        assert_eq!(
            (g.stream.as_str(), g.kind),
            (COMMON_STREAM, StreamKind::Common)
        );
        assert!(StreamRef::in_session(&sid, "no.dots").is_err());
        assert!(StreamRef::in_session(&sid, "common").is_err());
    }

    #[test]
    fn event_ids_round_trip_and_refuse_edits_and_other_keys() {
        let c = codec(1);
        let r = StreamRef::of_rmcp("9d1e6c1a-0000-4000-8000-000000000001").unwrap();
        let id = r.event_id(&c, 7, 0);
        let (back, ev) = StreamRef::parse_event_id(&c, &id).unwrap();
        assert_eq!(back, r);
        let sid = SessionId::new("s1").unwrap();
        let p = StreamRef::in_session(&sid, "9d1e6c1a-0000-4000-8000-000000000001").unwrap();
        assert_eq!(
            StreamRef::parse_event_id(&c, &p.event_id(&c, 3, 0))
                .unwrap()
                .0,
            p
        );
        let g = StreamRef::in_session(&sid, "s1:common").unwrap();
        assert_eq!(
            StreamRef::parse_event_id(&c, &g.event_id(&c, 3, 9))
                .unwrap()
                .0,
            g
        );
        assert_eq!((ev.seq, ev.epoch), (7, 0));
        let with_epoch = r.event_id(&c, 8, 12345);
        assert_eq!(
            StreamRef::parse_event_id(&c, &with_epoch).unwrap().1.epoch,
            12345
        );
        // Another session's prefix, an edited seq, another key, garbage: all refused.
        let moved = id.replacen("rmcp-stream-9d1e", "rmcp-stream-9d1f", 1);
        assert!(StreamRef::parse_event_id(&c, &moved).is_err());
        let edited = id.replacen(".7.", ".6.", 1);
        assert!(StreamRef::parse_event_id(&c, &edited).is_err());
        assert!(StreamRef::parse_event_id(&codec(2), &id).is_err());
        for junk in ["", "/", "x", "0/1", "a/b.c.d", &"9".repeat(5000)] {
            assert!(StreamRef::parse_event_id(&c, junk).is_err(), "{junk:?}");
        }
    }
}
