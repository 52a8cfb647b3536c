//! Encoding and decoding the messages on the channels (formats in the module docs of
//! `pubsub`). Session ids never contain spaces or `*`; a wake-up's stream id is the rest of
//! its message.

use shoal_core::{SessionId, notify::unix_micros};

/// Message format version.
const VERSION: &str = "1";

/// One decoded invalidation message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InvalidationMessage {
    pub(crate) origin: String,
    pub(crate) sent_at_us: Option<u64>,
    pub(crate) ids: Vec<SessionId>,
    pub(crate) all: bool,
}

/// One decoded wake-up message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WakeupMessage {
    pub(crate) origin: String,
    pub(crate) session: SessionId,
    pub(crate) stream: String,
}

pub(crate) fn parse_invalidation(payload: &[u8]) -> Option<InvalidationMessage> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.split(' ');
    if parts.next()? != VERSION {
        return None;
    }
    let origin = parts.next()?.to_owned();
    let sent_at_us = parts.next()?.parse().ok();
    let mut msg = InvalidationMessage {
        origin,
        sent_at_us,
        ids: Vec::new(),
        all: false,
    };
    for p in parts {
        if p == "*" {
            msg.all = true;
        } else if let Ok(id) = SessionId::new(p) {
            msg.ids.push(id);
        }
    }
    Some(msg)
}

/// Invalidation messages for `ids` (and "everything" when `all`), each with its id count.
pub(crate) fn format_invalidations<'a>(
    origin: &str,
    ids: impl Iterator<Item = &'a SessionId>,
    all: bool,
    max_ids: usize,
) -> Vec<(String, usize)> {
    let now = unix_micros();
    let mut msgs = Vec::new();
    if all {
        msgs.push((format!("{VERSION} {origin} {now} *"), 0));
    }
    let ids: Vec<&SessionId> = ids.collect();
    for chunk in ids.chunks(max_ids.max(1)) {
        let mut m = format!("{VERSION} {origin} {now}");
        for id in chunk {
            m.push(' ');
            m.push_str(id.as_str());
        }
        msgs.push((m, chunk.len()));
    }
    msgs
}

pub(crate) fn parse_wakeup(payload: &[u8]) -> Option<WakeupMessage> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(4, ' ');
    if parts.next()? != VERSION {
        return None;
    }
    let origin = parts.next()?.to_owned();
    let session = SessionId::new(parts.next()?).ok()?;
    let stream = parts.next().filter(|s| !s.is_empty())?.to_owned();
    Some(WakeupMessage {
        origin,
        session,
        stream,
    })
}

pub(crate) fn format_wakeup(origin: &str, session: &SessionId, stream: &str) -> String {
    format!("{VERSION} {origin} {} {stream}", session.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    #[test]
    fn invalidations_round_trip_in_batches() {
        let ids: Vec<SessionId> = (0..5).map(|i| sid(&format!("s{i}"))).collect();
        let msgs = format_invalidations("abc", ids.iter(), false, 2);
        assert_eq!(msgs.len(), 3);
        let mut seen = Vec::new();
        for (m, n) in &msgs {
            let parsed = parse_invalidation(m.as_bytes()).unwrap();
            assert_eq!(parsed.origin, "abc");
            assert!(parsed.sent_at_us.is_some());
            assert!(!parsed.all);
            assert_eq!(parsed.ids.len(), *n);
            seen.extend(parsed.ids);
        }
        seen.sort();
        assert_eq!(seen, ids);

        let msgs = format_invalidations("o", std::iter::empty(), true, 10);
        assert_eq!(msgs.len(), 1);
        assert!(parse_invalidation(msgs[0].0.as_bytes()).unwrap().all);
    }

    #[test]
    fn unreadable_invalidations_are_ignored() {
        assert!(parse_invalidation(b"2 o 1 a").is_none(), "unknown version");
        assert!(parse_invalidation(b"1").is_none());
        assert!(parse_invalidation(&[0xff, 0xfe]).is_none());
        let m = parse_invalidation(b"1 o notanumber good bad{id}").unwrap();
        assert_eq!(m.sent_at_us, None);
        assert_eq!(m.ids, vec![sid("good")], "invalid ids are skipped");
    }

    #[test]
    fn wakeups_round_trip_and_junk_is_ignored() {
        let m = format_wakeup("o1", &sid("s-9"), "p a b");
        let w = parse_wakeup(m.as_bytes()).unwrap();
        assert_eq!(w.origin, "o1");
        assert_eq!(w.session, sid("s-9"));
        assert_eq!(w.stream, "p a b", "the stream is the rest of the message");
        assert!(parse_wakeup(b"2 o s p").is_none(), "unknown version");
        assert!(parse_wakeup(b"1 o s").is_none(), "no stream");
        assert!(parse_wakeup(b"1 o s ").is_none(), "empty stream");
        assert!(
            parse_wakeup(b"1 o bad{id} p").is_none(),
            "invalid session id"
        );
        assert!(parse_wakeup(&[0xff]).is_none());
    }
}
