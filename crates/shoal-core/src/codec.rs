//! The persisted value format: a 1-byte version envelope, then named MessagePack.
//!
//! ```text
//! +------+------------------------------------------+
//! | 0x01 | MessagePack, structs as maps with names  |
//! +------+------------------------------------------+
//! ```
//!
//! Named maps (not positional arrays) let fields be added later without a new version: old
//! readers skip unknown keys, new readers default missing ones. The envelope byte exists for the
//! changes that cannot be made that way (another encoding, encryption): a reader that meets a
//! version it does not know reports [`CodecError::UnsupportedVersion`] for that one value.
//!
//! Nothing here panics on any input; random and truncated bytes are property-tested.
//!
//! ```
//! use shoal_core::{codec, Session, SessionId, Transport};
//!
//! let s = Session::new(SessionId::new("abc").unwrap(), Transport::Http);
//! let bytes = codec::encode(&s).unwrap();
//! assert_eq!(bytes[0], codec::ENVELOPE_MSGPACK_V1);
//! let back: Session = codec::decode(&bytes).unwrap();
//! assert_eq!(back, s);
//! assert!(codec::decode::<Session>(&[0x7f, 1, 2]).is_err());
//! ```

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{Direction, Error, Frame, SessionId, Timestamp};

/// Envelope byte of version 1: named MessagePack.
pub const ENVELOPE_MSGPACK_V1: u8 = 0x01;

/// Why a stored value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value has no bytes at all.
    #[error("empty value (no envelope byte)")]
    Empty,
    /// The envelope names a version this build does not know (written by a newer Shoal, or
    /// not written by Shoal at all).
    #[error("unsupported envelope version 0x{0:02x}")]
    UnsupportedVersion(u8),
    /// The payload is not valid for the expected type.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The value could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(String),
}

impl CodecError {
    /// Turns this into [`Error::Corrupt`] about `what`.
    pub fn into_corrupt(self, what: impl Into<String>) -> Error {
        Error::corrupt(what, self.to_string())
    }
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Self {
        e.into_corrupt("stored value")
    }
}

/// Encodes `value` with the v1 envelope.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::with_capacity(128);
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// Encodes `value` with the v1 envelope, appending to `buf`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    buf.push(ENVELOPE_MSGPACK_V1);
    let mut ser = rmp_serde::Serializer::new(&mut *buf).with_struct_map();
    value
        .serialize(&mut ser)
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a value written by [`encode`].
///
/// The payload is read in place (strings and byte strings are borrowed from `bytes` while
/// decoding, not copied through an intermediate buffer first): this runs on every session
/// and frame read.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, payload) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        ENVELOPE_MSGPACK_V1 => {
            // A value followed by more bytes is not what `encode` wrote. (A value cut short
            // is left to the decoder, which names what is missing.)
            if let Some(n) = msgpack_len(payload)
                && n != payload.len()
            {
                return Err(CodecError::Malformed(format!(
                    "{} trailing bytes after the value",
                    payload.len() - n
                )));
            }
            rmp_serde::from_slice(payload).map_err(|e| CodecError::Malformed(e.to_string()))
        }
        other => Err(CodecError::UnsupportedVersion(other)),
    }
}

/// The length in bytes of the one MessagePack value at the start of `buf`, or `None` if
/// `buf` ends inside it (or holds the reserved marker). Walks the markers without decoding
/// or allocating; every item takes at least one byte, so declared sizes larger than what is
/// left end the walk early instead of looping.
fn msgpack_len(buf: &[u8]) -> Option<usize> {
    use rmp::Marker;
    // A big-endian length of `k` bytes at `at`.
    let be = |at: usize, k: usize| -> Option<u64> {
        let b = buf.get(at..at.checked_add(k)?)?;
        Some(b.iter().fold(0u64, |n, d| (n << 8) | u64::from(*d)))
    };
    let mut pos = 0usize;
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let marker = Marker::from_u8(*buf.get(pos)?);
        pos += 1;
        // (bytes of a length field, fixed bytes after it, items that follow, length unit)
        let (len_bytes, fixed, items): (usize, u64, u64) = match marker {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0, 0)
            }
            Marker::U8 | Marker::I8 => (0, 1, 0),
            Marker::U16 | Marker::I16 | Marker::FixExt1 => (0, 2, 0),
            Marker::FixExt2 => (0, 3, 0),
            Marker::U32 | Marker::I32 | Marker::F32 => (0, 4, 0),
            Marker::FixExt4 => (0, 5, 0),
            Marker::U64 | Marker::I64 | Marker::F64 => (0, 8, 0),
            Marker::FixExt8 => (0, 9, 0),
            Marker::FixExt16 => (0, 17, 0),
            Marker::FixStr(n) => (0, u64::from(n), 0),
            Marker::FixArray(n) => (0, 0, u64::from(n)),
            Marker::FixMap(n) => (0, 0, 2 * u64::from(n)),
            Marker::Str8 | Marker::Bin8 => (1, 0, 0),
            Marker::Str16 | Marker::Bin16 => (2, 0, 0),
            Marker::Str32 | Marker::Bin32 => (4, 0, 0),
            Marker::Ext8 => (1, 1, 0),
            Marker::Ext16 => (2, 1, 0),
            Marker::Ext32 => (4, 1, 0),
            Marker::Array16 => (2, 0, 0),
            Marker::Array32 => (4, 0, 0),
            Marker::Map16 => (2, 0, 0),
            Marker::Map32 => (4, 0, 0),
            Marker::Reserved => return None,
        };
        let (skip, items) = if len_bytes == 0 {
            (fixed, items)
        } else {
            let n = be(pos, len_bytes)?;
            pos += len_bytes;
            match marker {
                Marker::Array16 | Marker::Array32 => (0, n),
                Marker::Map16 | Marker::Map32 => (0, 2 * n),
                _ => (fixed + n, 0),
            }
        };
        pos = pos.checked_add(usize::try_from(skip).ok()?)?;
        if pos > buf.len() {
            return None;
        }
        pending += items;
        if pending > (buf.len() - pos) as u64 {
            return None;
        }
    }
    Some(pos)
}

/// The stored form of a frame: everything but the session id, which the key already says.
#[derive(Serialize)]
struct FrameOut<'a> {
    seq: u64,
    stream_id: &'a Option<String>,
    direction: Direction,
    timestamp: Timestamp,
    content_type: &'a Option<String>,
    headers: &'a [(String, String)],
    content: &'a Bytes,
}

#[derive(Deserialize)]
struct FrameIn {
    seq: u64,
    #[serde(default)]
    stream_id: Option<String>,
    direction: Direction,
    timestamp: Timestamp,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    content: Bytes,
}

/// Encodes a frame for storage under its session's key (without the session id).
pub fn encode_frame(frame: &Frame) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::with_capacity(frame.content.len() + 64);
    encode_into(
        &FrameOut {
            seq: frame.seq,
            stream_id: &frame.stream_id,
            direction: frame.direction,
            timestamp: frame.timestamp,
            content_type: &frame.content_type,
            headers: &frame.headers,
            content: &frame.content,
        },
        &mut buf,
    )?;
    Ok(buf)
}

/// Decodes a frame written by [`encode_frame`] for the session `session_id`.
pub fn decode_frame(session_id: &SessionId, bytes: &[u8]) -> Result<Frame, CodecError> {
    let f: FrameIn = decode(bytes)?;
    Ok(Frame {
        session_id: session_id.clone(),
        seq: f.seq,
        stream_id: f.stream_id,
        direction: f.direction,
        timestamp: f.timestamp,
        content_type: f.content_type,
        headers: f.headers,
        content: f.content,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::{NewFrame, PendingRequest, Session, SessionStatus, Transport};

    fn golden_session() -> Session {
        let mut s = Session::new(
            SessionId::new("golden-1").unwrap(),
            Transport::StreamableHttp,
        );
        s.status = SessionStatus::Active;
        s.created_at = Timestamp(1_764_000_000_000);
        s.last_activity = Timestamp(1_764_000_000_500);
        s.expires_at = Timestamp(1_764_086_400_500);
        s.frame_count = 2;
        s.last_seq = 7;
        s.first_seq = 6;
        s.client_info = Some(json!({"name": "c", "version": "1"}));
        s.protocol_version = Some("2025-11-25".into());
        s.upstream_session_id = Some("up-1".into());
        s.principal = Some("alice".into());
        s.tags.insert("t1".into());
        s.metadata = BTreeMap::from([("k".to_string(), "v".to_string())]);
        s.revision = 3;
        s
    }

    fn golden_frame() -> Frame {
        NewFrame::new(Direction::ServerToClient, &b"{\"id\":1}"[..])
            .with_stream("get-1")
            .with_content_type("application/json")
            .with_header("mcp-protocol-version", "2025-11-25")
            .with_timestamp(Timestamp(1_764_000_000_123))
            .into_frame(SessionId::new("golden-1").unwrap(), 6)
    }

    /// The v1 bytes are a storage format: changing them breaks every stored session. If this
    /// test fails, the change needs a new envelope version, not a new golden string.
    #[test]
    fn golden_v1_session_bytes() {
        let bytes = encode(&golden_session()).unwrap();
        assert_eq!(hex::encode(&bytes), GOLDEN_SESSION_HEX);
        let back: Session = decode(&hex::decode(GOLDEN_SESSION_HEX).unwrap()).unwrap();
        assert_eq!(back, golden_session());
    }

    #[test]
    fn golden_v1_frame_bytes() {
        let bytes = encode_frame(&golden_frame()).unwrap();
        assert_eq!(hex::encode(&bytes), GOLDEN_FRAME_HEX);
        let back = decode_frame(
            &SessionId::new("golden-1").unwrap(),
            &hex::decode(GOLDEN_FRAME_HEX).unwrap(),
        )
        .unwrap();
        assert_eq!(back, golden_frame());
    }

    #[test]
    fn golden_v1_pending_bytes() {
        let p = PendingRequest::new(5, "tools/call").with_started_at(Timestamp(42));
        let bytes = encode(&p).unwrap();
        assert_eq!(hex::encode(&bytes), GOLDEN_PENDING_HEX);
        assert_eq!(decode::<PendingRequest>(&bytes).unwrap(), p);
    }

    const GOLDEN_SESSION_HEX: &str = "01de0013a26964a8676f6c64656e2d31a97472616e73706f7274af73747265616d61626c655f68747470a6737461747573a6616374697665a57374617465ac696e697469616c697a696e67aa637265617465645f6174cf0000019ab697e800ad6c6173745f6163746976697479cf0000019ab697e9f4aa657870697265735f6174cf0000019abbbe45f4ab6672616d655f636f756e7402a86c6173745f73657107a966697273745f73657106ab636c69656e745f696e666f82a46e616d65a163a776657273696f6ea131ab7365727665725f696e666fc0b070726f746f636f6c5f76657273696f6eaa323032352d31312d3235b3757073747265616d5f73657373696f6e5f6964a475702d31b1696e697469616c697a655f706172616d73c0a97072696e636970616ca5616c696365a47461677391a27431a86d6574616461746181a16ba176a87265766973696f6e03";
    const GOLDEN_FRAME_HEX: &str = "0187a373657106a973747265616d5f6964a56765742d31a9646972656374696f6eb07365727665725f746f5f636c69656e74a974696d657374616d70cf0000019ab697e87bac636f6e74656e745f74797065b06170706c69636174696f6e2f6a736f6ea7686561646572739192b46d63702d70726f746f636f6c2d76657273696f6eaa323032352d31312d3235a7636f6e74656e74c4087b226964223a317d";
    const GOLDEN_PENDING_HEX: &str = "0184aa726571756573745f696405a66d6574686f64aa746f6f6c732f63616c6caa737461727465645f61742aa973747265616d5f6964c0";

    #[test]
    fn unknown_version_and_empty_are_explicit_errors() {
        assert_eq!(decode::<Session>(&[]).unwrap_err(), CodecError::Empty);
        let mut bytes = encode(&golden_session()).unwrap();
        bytes[0] = 0x02;
        assert_eq!(
            decode::<Session>(&bytes).unwrap_err(),
            CodecError::UnsupportedVersion(2)
        );
        let e: Error = CodecError::UnsupportedVersion(2).into_corrupt("session \"x\" meta");
        assert!(
            e.to_string().contains("unsupported envelope version 0x02"),
            "{e}"
        );
    }

    #[test]
    fn msgpack_len_is_the_encoded_length() {
        let mut s = golden_session();
        s.server_info = Some(json!({"a": [1, -2, 3.5, null, true, "x", {"n": u64::MAX}],
            "long": "y".repeat(300), "big": vec![7u32; 70_000]}));
        for bytes in [
            encode(&s).unwrap(),
            encode(&golden_frame()).unwrap(),
            encode(&serde_bytes_like()).unwrap(),
            encode(&(-1i64, i64::MIN, 1.5f32, 2.5f64, u16::MAX, u32::MAX)).unwrap(),
        ] {
            let payload = &bytes[1..];
            assert_eq!(msgpack_len(payload), Some(payload.len()));
            for cut in 0..payload.len().min(600) {
                assert_eq!(msgpack_len(&payload[..cut]), None, "cut at {cut}");
            }
        }
        // Ext values (which encode never writes) are measured too.
        for (ext, len) in [
            (&[0xd4u8, 1, 0][..], 3),
            (&[0xd5, 1, 0, 0][..], 4),
            (&[0xd6, 1, 0, 0, 0, 0][..], 6),
            (&[0xd7, 1, 0, 0, 0, 0, 0, 0, 0, 0][..], 10),
            (&[0xc7, 2, 1, 0, 0][..], 5),
            (&[0xc8, 0, 1, 1, 9][..], 5),
        ] {
            assert_eq!(msgpack_len(ext), Some(len), "{ext:?}");
        }
        assert_eq!(msgpack_len(&[0xc1]), None, "reserved marker");
        assert_eq!(
            msgpack_len(&[0xdf, 0xff, 0xff, 0xff, 0xff]),
            None,
            "huge map, no data"
        );
    }

    fn serde_bytes_like() -> Vec<Vec<u8>> {
        vec![vec![0u8; 10], vec![1u8; 300], vec![2u8; 70_000]]
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&golden_session()).unwrap();
        bytes.push(0xc0);
        assert!(matches!(
            decode::<Session>(&bytes),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn json_values_of_every_kind_round_trip() {
        let mut s = golden_session();
        s.server_info = Some(json!({"a": [1, -2, 3.5, null, true, "x", {"n": u64::MAX}]}));
        let back: Session = decode(&encode(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Session>(&bytes);
            let _ = decode::<PendingRequest>(&bytes);
            let _ = decode_frame(&SessionId::new("x").unwrap(), &bytes);
        }

        #[test]
        fn v1_envelope_with_random_payload_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            let mut v = vec![ENVELOPE_MSGPACK_V1];
            v.extend(bytes);
            let _ = decode::<Session>(&v);
            let _ = decode_frame(&SessionId::new("x").unwrap(), &v);
        }

        #[test]
        fn every_truncation_is_an_error(cut in 0usize..400) {
            let bytes = encode(&golden_session()).unwrap();
            let cut = cut % bytes.len();
            prop_assert!(decode::<Session>(&bytes[..cut]).is_err());
            let fb = encode_frame(&golden_frame()).unwrap();
            let cut = cut % fb.len();
            prop_assert!(decode_frame(&SessionId::new("x").unwrap(), &fb[..cut]).is_err());
        }

        #[test]
        fn frames_round_trip(
            content in proptest::collection::vec(any::<u8>(), 0..256),
            seq in 1u64..u64::MAX,
            stream in proptest::option::of("[a-z0-9-]{1,12}"),
        ) {
            let mut f = NewFrame::new(Direction::ClientToServer, content);
            f.stream_id = stream;
            let f = f.into_frame(SessionId::new("s").unwrap(), seq);
            let back = decode_frame(&f.session_id, &encode_frame(&f).unwrap()).unwrap();
            prop_assert_eq!(back, f);
        }
    }
}
