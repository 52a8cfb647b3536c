//! Where an rmcp event stream lives in Shoal, and the event ids the adapter hands out.
//!
//! rmcp names a session's standalone (GET) stream `<session id>:common`; its events are frames
//! of that session's Shoal session, in stream `common`. Every other stream (one per POST that
//! answers with SSE, and the stateless streams of 2026-07-28 servers) is a UUID that rmcp does
//! not tie to a session in the `EventStore` call, so its events go to a Shoal session of its
//! own, `rmcp-stream-<uuid>`, stream `r`, created by its first event and expiring with the
//! store's session TTL.
//!
//! An event id is `<Shoal session id>/<stream>.<seq>[.<epoch>].<mac>`: the part after the
//! slash is the proxy's tamper-evident id ([`shoal_core::event_id`]), whose MAC covers the
//! session id, so the id alone locates its stream and an edited or forged id is refused.

use shoal_core::{
    SessionId,
    event_id::{EventId, EventIdCodec},
};

use crate::error::{Error, Result};

/// The prefix of a request stream's Shoal session id.
pub const REQUEST_STREAM_PREFIX: &str = "rmcp-stream-";
/// The stream name of a session's standalone stream.
pub const COMMON_STREAM: &str = "common";
/// The stream name of a request stream (in its own Shoal session).
pub const REQUEST_STREAM: &str = "r";

/// Which kind of rmcp stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// A session's standalone stream: lives in the rmcp session's Shoal session, which the
    /// adapter never creates for it (a deleted session is not brought back by a late event).
    Common,
    /// A POST's (or stateless request's) stream: its own Shoal session, created on demand;
    /// it ends with the request's response.
    Request,
}

/// An rmcp stream's place in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRef {
    /// The Shoal session holding its events.
    pub session: SessionId,
    /// The stream name inside it.
    pub stream: &'static str,
    /// Which kind.
    pub kind: StreamKind,
}

impl StreamRef {
    /// Where rmcp's stream `stream_id` lives.
    pub fn of_rmcp(stream_id: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadId {
            id: stream_id.to_owned(),
            reason,
        };
        match stream_id.strip_suffix(":common") {
            Some(session) => Ok(StreamRef {
                session: SessionId::new(session).map_err(|e| bad(e.to_string()))?,
                stream: COMMON_STREAM,
                kind: StreamKind::Common,
            }),
            None => Ok(StreamRef {
                session: SessionId::new(format!("{REQUEST_STREAM_PREFIX}{stream_id}"))
                    .map_err(|e| bad(e.to_string()))?,
                stream: REQUEST_STREAM,
                kind: StreamKind::Request,
            }),
        }
    }

    /// The event id of frame `seq` (in `epoch`, 0 if not known) of this stream.
    pub fn event_id(&self, codec: &EventIdCodec, seq: u64, epoch: u64) -> String {
        format!(
            "{}/{}",
            self.session,
            codec.encode(self.session.as_str(), self.stream, seq, epoch)
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
        let (stream, kind) = match event.stream.as_str() {
            COMMON_STREAM => (COMMON_STREAM, StreamKind::Common),
            REQUEST_STREAM => (REQUEST_STREAM, StreamKind::Request),
            other => return Err(Error::event_id(id, format!("unknown stream {other:?}"))),
        };
        Ok((
            StreamRef {
                session,
                stream,
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
        assert_eq!((c.stream, c.kind), (COMMON_STREAM, StreamKind::Common));
        let r = StreamRef::of_rmcp("9d1e6c1a-0000-4000-8000-000000000001").unwrap();
        assert_eq!(
            r.session.as_str(),
            "rmcp-stream-9d1e6c1a-0000-4000-8000-000000000001"
        );
        assert_eq!((r.stream, r.kind), (REQUEST_STREAM, StreamKind::Request));
        assert!(StreamRef::of_rmcp(":common").is_err());
        assert!(StreamRef::of_rmcp("has space").is_err());
    }

    #[test]
    fn event_ids_round_trip_and_refuse_edits_and_other_keys() {
        let c = codec(1);
        let r = StreamRef::of_rmcp("9d1e6c1a-0000-4000-8000-000000000001").unwrap();
        let id = r.event_id(&c, 7, 0);
        let (back, ev) = StreamRef::parse_event_id(&c, &id).unwrap();
        assert_eq!(back, r);
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
