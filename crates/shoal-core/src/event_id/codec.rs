//! Encoding and verifying event ids with an [`EventIdKey`].

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use super::EventIdKey;

const MAC_BYTES: usize = 12;
const MAX_STREAM_LEN: usize = 64;

/// Why an event id was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventIdError {
    /// Not of the form `<stream>.<seq>.<mac>` or `<stream>.<seq>.<epoch>.<mac>`.
    Malformed,
    /// Well formed, but the MAC does not match this session (tampered, or from another
    /// session or key).
    BadMac,
}

impl std::fmt::Display for EventIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EventIdError::Malformed => "malformed event id",
            EventIdError::BadMac => "event id does not belong to this session",
        })
    }
}

impl std::error::Error for EventIdError {}

/// A decoded, verified event id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventId {
    /// The stream the event belongs to.
    pub stream: String,
    /// The frame seq in the store (0: before the stream's first event, e.g. a priming event).
    pub seq: u64,
    /// The frame's epoch (0: not known).
    pub epoch: u64,
}

/// Encodes event ids with one key and verifies them with it or any previous key (so ids
/// handed out before a key rotation stay valid while the previous key is kept).
#[derive(Clone)]
pub struct EventIdCodec {
    mac: Hmac<Sha256>,
    previous: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for EventIdCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventIdCodec(..)")
    }
}

/// Whether `s` is a valid stream name: 1–64 of `[A-Za-z0-9_-]`.
pub fn valid_stream(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_STREAM_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `mac` fed with what an event id signs: a version tag, the session, the stream, the seq
/// and (version 2, epoch not 0) the epoch.
fn keyed_input(
    mac: &Hmac<Sha256>,
    session: &str,
    stream: &str,
    seq: u64,
    epoch: u64,
) -> Hmac<Sha256> {
    let mut m = mac.clone();
    m.update(if epoch == 0 {
        b"shoal-eid-v1\0"
    } else {
        b"shoal-eid-v2\0"
    });
    m.update(session.as_bytes());
    m.update(b"\0");
    m.update(stream.as_bytes());
    m.update(b"\0");
    m.update(&seq.to_be_bytes());
    if epoch != 0 {
        m.update(&epoch.to_be_bytes());
    }
    m
}

fn mac_of(key: &EventIdKey) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; the error branch cannot happen.
    <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| <Hmac<Sha256>>::new(&Default::default()))
}

impl EventIdCodec {
    /// A codec with `key`.
    pub fn new(key: &EventIdKey) -> Self {
        Self::with_previous(key, &[])
    }

    /// A codec that encodes with `key` and also accepts ids made with `previous` keys.
    pub fn with_previous(key: &EventIdKey, previous: &[EventIdKey]) -> Self {
        EventIdCodec {
            mac: mac_of(key),
            previous: previous.iter().map(mac_of).collect(),
        }
    }

    fn tag(&self, session: &str, stream: &str, seq: u64, epoch: u64) -> [u8; 32] {
        keyed_input(&self.mac, session, stream, seq, epoch)
            .finalize()
            .into_bytes()
            .into()
    }

    /// The event id of frame `seq` (appended in `epoch`, 0 if not known) of `stream` in
    /// `session`.
    pub fn encode(&self, session: &str, stream: &str, seq: u64, epoch: u64) -> String {
        let tag = self.tag(session, stream, seq, epoch);
        let mac = URL_SAFE_NO_PAD.encode(&tag[..MAC_BYTES]);
        if epoch == 0 {
            format!("{stream}.{seq}.{mac}")
        } else {
            format!("{stream}.{seq}.{epoch}.{mac}")
        }
    }

    /// Parses and verifies `id` as an event id of `session`.
    pub fn decode(&self, session: &str, id: &str) -> Result<EventId, EventIdError> {
        let id = id.trim();
        let parts: Vec<&str> = id.splitn(5, '.').collect();
        let (stream, seq, epoch, mac) = match parts[..] {
            [stream, seq, mac] => (stream, seq, None, mac),
            [stream, seq, epoch, mac] => (stream, seq, Some(epoch), mac),
            _ => return Err(EventIdError::Malformed),
        };
        let seq = decimal(seq).ok_or(EventIdError::Malformed)?;
        let epoch = match epoch {
            None => 0,
            // Version 2 ids never carry epoch 0.
            Some(e) => decimal(e)
                .filter(|&e| e != 0)
                .ok_or(EventIdError::Malformed)?,
        };
        if !valid_stream(stream) {
            return Err(EventIdError::Malformed);
        }
        let given = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| EventIdError::Malformed)?;
        if given.len() != MAC_BYTES {
            return Err(EventIdError::Malformed);
        }
        // Constant-time comparison of the truncated tag.
        let verifies = |mac: &Hmac<Sha256>| {
            keyed_input(mac, session, stream, seq, epoch)
                .verify_truncated_left(&given)
                .is_ok()
        };
        if !verifies(&self.mac) && !self.previous.iter().any(verifies) {
            return Err(EventIdError::BadMac);
        }
        Ok(EventId {
            stream: stream.to_owned(),
            seq,
            epoch,
        })
    }
}

/// A decimal u64 of 1–20 ASCII digits.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(b: u8) -> EventIdCodec {
        EventIdCodec::new(&EventIdKey::new(vec![b; 32]).unwrap())
    }

    #[test]
    fn round_trips() {
        let c = codec(1);
        let id = c.encode("sess", "p0123abcd", 42, 0);
        assert!(id.starts_with("p0123abcd.42."), "{id}");
        assert_eq!(
            c.decode("sess", &id).unwrap(),
            EventId {
                stream: "p0123abcd".into(),
                seq: 42,
                epoch: 0,
            }
        );
        assert_eq!(
            c.decode("sess", &c.encode("sess", "g1", 0, 0)).unwrap().seq,
            0
        );
        assert_eq!(
            c.decode("sess", &c.encode("sess", "g1", u64::MAX, 0))
                .unwrap()
                .seq,
            u64::MAX
        );
    }

    #[test]
    fn ids_with_an_epoch_round_trip_and_bind_it() {
        let c = codec(1);
        let epoch = (1u64 << 52) - 3;
        let id = c.encode("sess", "g0", 42, epoch);
        assert!(id.starts_with(&format!("g0.42.{epoch}.")), "{id}");
        assert_eq!(
            c.decode("sess", &id).unwrap(),
            EventId {
                stream: "g0".into(),
                seq: 42,
                epoch,
            }
        );
        // The epoch is signed: another epoch, or none, does not verify.
        let other = id.replacen(&format!(".{epoch}."), ".5.", 1);
        assert_eq!(c.decode("sess", &other), Err(EventIdError::BadMac));
        let mac = id.rsplit('.').next().unwrap();
        assert_eq!(
            c.decode("sess", &format!("g0.42.{mac}")),
            Err(EventIdError::BadMac)
        );
        // Epoch 0 is written without the field, never as one.
        assert_eq!(
            c.decode("sess", &format!("g0.42.0.{mac}")),
            Err(EventIdError::Malformed)
        );
        assert!(!c.encode("sess", "g0", 42, 0).contains(".0."));
    }

    #[test]
    fn refuses_other_sessions_keys_and_edits() {
        let c = codec(1);
        let id = c.encode("sess", "p1", 7, 0);
        assert_eq!(c.decode("other", &id), Err(EventIdError::BadMac));
        assert_eq!(codec(2).decode("sess", &id), Err(EventIdError::BadMac));
        let edited = id.replacen(".7.", ".8.", 1);
        assert_eq!(c.decode("sess", &edited), Err(EventIdError::BadMac));
        let restream = id.replacen("p1.", "p2.", 1);
        assert_eq!(c.decode("sess", &restream), Err(EventIdError::BadMac));
        let mut flipped = id.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == 'A' { 'B' } else { 'A' });
        assert!(c.decode("sess", &flipped).is_err());
    }

    #[test]
    fn a_rotated_codec_accepts_the_previous_key_only_while_listed() {
        let key = |b: u8| EventIdKey::new(vec![b; 32]).unwrap();
        let old_id = codec(1).encode("sess", "p1", 7, 0);
        let rotated = EventIdCodec::with_previous(&key(2), &[key(1)]);
        assert_eq!(rotated.decode("sess", &old_id).unwrap().seq, 7);
        let new_id = rotated.encode("sess", "p1", 8, 0);
        assert_eq!(
            codec(2).decode("sess", &new_id).unwrap().seq,
            8,
            "new ids use the new key"
        );
        assert_eq!(codec(1).decode("sess", &new_id), Err(EventIdError::BadMac));
        assert_eq!(
            codec(2).decode("sess", &old_id),
            Err(EventIdError::BadMac),
            "grace over"
        );
    }

    #[test]
    fn refuses_malformed_ids() {
        let c = codec(1);
        for bad in [
            "",
            "abc",
            "p1.7",
            "p1.7.x.y",
            ".7.AAAAAAAAAAAAAAAA",
            "p1..AAAAAAAAAAAAAAAA",
            "p1.-7.AAAAAAAAAAAAAAAA",
            "p1.99999999999999999999999.AAAAAAAAAAAAAAAA",
            "p 1.7.AAAAAAAAAAAAAAAA",
            "p1.7.!!!",
            "p1.7.AAAA",
            "p1.7.AAAAAAAAAAAAAAAAAAAA",
            "p1.7.3.4.AAAAAAAAAAAAAAAA",
            "p1.7.-3.AAAAAAAAAAAAAAAA",
            "p1.7..AAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(c.decode("s", bad), Err(EventIdError::Malformed), "{bad:?}");
        }
        let long = "x".repeat(65);
        assert_eq!(
            c.decode("s", &format!("{long}.1.AAAAAAAAAAAAAAAA")),
            Err(EventIdError::Malformed)
        );
    }
}
