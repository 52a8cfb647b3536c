//! The session's `meta` hash, schema 2: two kinds of fields, so every read is a lean
//! `HGETALL` (2 fields for a plain session, 3–4 for a proxy's) and the scripts never decode
//! the caller's fields.
//!
//! | field | written by | value |
//! |---|---|---|
//! | `a` | every write script | `<last_activity>:<expires_at>:<created_at>:<seq>:<first_seq>:<frame_count>:<revision>:<pending_seq>` (decimal) |
//! | `b` | append, add_pending, take_pending, delete_frames, restore | stored bytes of the frames and pending requests |
//! | `q` | add_pending, take_pending, restore | pending requests held (a requests hash with fewer was evicted) |
//! | `e` | append | the frame epochs, `<epoch>@<first_seq>` pairs in the order they started (see `shoal_core::epoch`; absent: none) |
//! | `i` | append | the identity of the server that appended last (13 hex digits of its replication id; the current epoch's number in hex) |
//! | `d`, `d1` … `d7` | create, update, restore | one codec blob (v1 envelope + named MessagePack) of the caller-owned fields, split into chunks of at most [`CHUNK`] bytes |
//!
//! Activity and counters share one field because every reply element costs the client a
//! parse and an allocation (the bottleneck on small machines, see DESIGN §9), while rewriting
//! ~50 bytes inside a script costs Redis next to nothing.
//!
//! The blob is chunked so that no hash value exceeds Redis's default `hash-max-listpack-value`
//! (64): one longer value turns the whole hash from a listpack (≈ 100–250 B here) into a
//! hashtable (≈ 1 KB). A blob longer than [`CHUNK`] × [`MAX_CHUNKS`] is stored whole in `d`
//! (such a hash is a hashtable anyway, and fewer fields keep `HGETALL` cheap).
//!
//! The field set is the schema marker: schema 1 (builds before 2026-11-25) stored plain fields
//! (`id`, `expires_at`, `seq`, …); a hash holding those is reported as `Corrupt`, naming
//! schema 1, by the Rust reader and by every script. A later schema that keeps these names must
//! add a marker field.

use std::collections::{BTreeMap, BTreeSet};

use redis::Value;
use serde::{Deserialize, Deserializer, Serialize};
use shoal_core::{
    EpochStart, Error, FrameEpochs, PendingRequest, RequestId, Result, Session, SessionId,
    SessionState, SessionStatus, Timestamp, Transport, codec,
};

/// The activity and counters field: `<last_activity>:<expires_at>:<created_at>:<seq>:
/// <first_seq>:<frame_count>:<revision>:<pending_seq>`.
pub(crate) const F_ACTIVITY: &str = "a";
/// The meta field counting the pending requests the requests hash holds.
pub(crate) const F_PENDING_COUNT: &str = "q";
/// The meta field holding the frame epochs (`<epoch>@<first_seq>` pairs, comma-separated).
pub(crate) const F_EPOCHS: &str = "e";
/// The names of the blob's chunks, in order.
pub(crate) const CHUNK_NAMES: [&str; MAX_CHUNKS] = ["d", "d1", "d2", "d3", "d4", "d5", "d6", "d7"];
/// The longest chunk: Redis's default `hash-max-listpack-value`.
pub(crate) const CHUNK: usize = 64;
/// Chunks at most; a longer blob is stored whole in `d`.
pub(crate) const MAX_CHUNKS: usize = 8;
/// A field only schema 1 had; its presence names the old layout in errors.
const SCHEMA1_FIELD: &[u8] = b"expires_at";
/// The reason given for a hash written by schema 1.
pub(crate) const SCHEMA1: &str = "written by the schema-1 layout (plain fields id, expires_at, \
     seq, …) of shoal-redis builds before 2026-11-25; this version reads schema 2 (fields a, d): \
     delete the session or export it with the old version and import it again";

/// The largest integer the Lua scripts handle exactly (Lua numbers are doubles).
pub(crate) const MAX_LUA_INT: u64 = (1 << 53) - 1;

/// The caller-owned fields as stored (`d`), borrowed for encoding. Short names keep a
/// typical session's blob within one or two chunks.
#[derive(Serialize)]
struct DescOut<'a> {
    t: Transport,
    s: SessionStatus,
    st: SessionState,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pv: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ci: &'a Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    si: &'a Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: &'a Option<serde_json::Value>,
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    tg: &'a BTreeSet<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    md: &'a BTreeMap<String, String>,
}

/// The caller-owned fields as read back.
#[derive(Deserialize)]
struct DescIn {
    t: Transport,
    s: SessionStatus,
    st: SessionState,
    #[serde(default)]
    p: Option<String>,
    #[serde(default)]
    pv: Option<String>,
    #[serde(default)]
    u: Option<String>,
    #[serde(default, deserialize_with = "present")]
    ci: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    si: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    ip: Option<serde_json::Value>,
    #[serde(default)]
    tg: BTreeSet<String>,
    #[serde(default)]
    md: BTreeMap<String, String>,
}

/// A present key is `Some`, even when its value is JSON `null` (absent keys default to `None`).
fn present<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// The blob of `s`'s caller-owned fields (`d`).
pub(crate) fn encode_desc(s: &Session) -> Result<Vec<u8>> {
    let out = DescOut {
        t: s.transport,
        s: s.status,
        st: s.state,
        p: &s.principal,
        pv: &s.protocol_version,
        u: &s.upstream_session_id,
        ci: &s.client_info,
        si: &s.server_info,
        ip: &s.initialize_params,
        tg: &s.tags,
        md: &s.metadata,
    };
    codec::encode(&out)
        .map_err(|e| Error::invalid(format!("session {:?}: cannot encode: {e}", s.id.as_str())))
}

/// Hash fields and their values.
pub(crate) type Fields = Vec<(&'static str, Vec<u8>)>;

/// The blob as `(chunk name, bytes)` pairs: chunks of at most [`CHUNK`] bytes, or the whole
/// blob in `d` when it needs more than [`MAX_CHUNKS`].
pub(crate) fn chunk_fields(blob: &[u8]) -> Fields {
    if blob.len() > CHUNK * MAX_CHUNKS || blob.len() <= CHUNK {
        return vec![(CHUNK_NAMES[0], blob.to_vec())];
    }
    blob.chunks(CHUNK)
        .zip(CHUNK_NAMES)
        .map(|(c, name)| (name, c.to_vec()))
        .collect()
}

/// The value of field `a` for `s`.
pub(crate) fn activity_value(s: &Session, pending_seq: u64) -> Vec<u8> {
    format!(
        "{}:{}:{}:{}:{}:{}:{}:{}",
        s.last_activity.as_millis(),
        s.expires_at.as_millis(),
        s.created_at.as_millis(),
        s.last_seq,
        s.first_seq,
        s.frame_count,
        s.revision,
        pending_seq
    )
    .into_bytes()
}

/// Every field of a whole session (create and restore): `a`, then the blob's chunks.
pub(crate) fn all_fields(s: &Session, pending_seq: u64) -> Result<Fields> {
    let blob = encode_desc(s)?;
    let mut fields = vec![(F_ACTIVITY, activity_value(s, pending_seq))];
    fields.extend(chunk_fields(&blob));
    Ok(fields)
}

/// The bytes of a string-like reply value.
pub(crate) fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

/// The field/value pairs of an `HGETALL` reply (RESP2 flat array or RESP3 map).
pub(crate) fn hash_pairs(v: &Value) -> Option<Vec<(&[u8], &[u8])>> {
    match v {
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return None;
            }
            items
                .chunks_exact(2)
                .map(|kv| Some((bytes_of(&kv[0])?, bytes_of(&kv[1])?)))
                .collect()
        }
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| Some((bytes_of(k)?, bytes_of(v)?)))
            .collect(),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

pub(crate) fn corrupt(id: &SessionId, field: &str, reason: impl Into<String>) -> Error {
    Error::corrupt(
        format!("session {:?} meta field {field:?}", id.as_str()),
        reason,
    )
}

/// A decimal non-negative integer of at most 16 digits (what the scripts accept).
fn dec(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 16 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = b.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    (n <= MAX_LUA_INT).then_some(n)
}

/// `N` decimal integers separated by `:`.
fn decs<const N: usize>(b: &[u8]) -> Option<[u64; N]> {
    let mut out = [0u64; N];
    let mut parts = b.split(|c| *c == b':');
    for slot in &mut out {
        *slot = dec(parts.next()?)?;
    }
    parts.next().is_none().then_some(out)
}

/// Field `a`, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Activity {
    pub(crate) last_activity: Timestamp,
    pub(crate) expires_at: Timestamp,
    pub(crate) created_at: Timestamp,
    pub(crate) seq: u64,
    pub(crate) first_seq: u64,
    pub(crate) frame_count: u64,
    pub(crate) revision: u64,
}

/// Parses field `a`.
pub(crate) fn parse_activity(id: &SessionId, v: &[u8]) -> Result<Activity> {
    let [
        la,
        exp,
        created,
        seq,
        first_seq,
        frame_count,
        revision,
        _pending,
    ] = decs::<8>(v).ok_or_else(|| {
        corrupt(
            id,
            F_ACTIVITY,
            format!(
                "{:?} is not <last_activity>:<expires_at>:<created_at>:<seq>:<first_seq>:\
                     <frame_count>:<revision>:<pending_seq>",
                String::from_utf8_lossy(v)
            ),
        )
    })?;
    Ok(Activity {
        last_activity: Timestamp(la),
        expires_at: Timestamp(exp),
        created_at: Timestamp(created),
        seq,
        first_seq,
        frame_count,
        revision,
    })
}

/// Decodes the caller-owned fields of `id` from the blob `d` into a session.
fn decode_desc(id: &SessionId, blob: &[u8]) -> Result<Session> {
    let d: DescIn = codec::decode(blob).map_err(|e| corrupt(id, "d", e.to_string()))?;
    let mut s = Session::new(id.clone(), d.t);
    s.status = d.s;
    s.state = d.st;
    s.principal = d.p;
    s.protocol_version = d.pv;
    s.upstream_session_id = d.u;
    s.client_info = d.ci;
    s.server_info = d.si;
    s.initialize_params = d.ip;
    s.tags = d.tg;
    s.metadata = d.md;
    Ok(s)
}

/// The caller-owned status stored in a blob, if it decodes (metrics only).
pub(crate) fn desc_status(blob: &[u8]) -> Option<SessionStatus> {
    codec::decode::<DescIn>(blob).ok().map(|d| d.s)
}

/// A whole session from its two parts.
pub(crate) fn assemble(id: &SessionId, a: &[u8], blob: &[u8]) -> Result<Session> {
    let c = parse_activity(id, a)?;
    let mut s = decode_desc(id, blob)?;
    s.created_at = c.created_at;
    s.last_activity = c.last_activity;
    s.expires_at = c.expires_at;
    s.last_seq = c.seq;
    s.first_seq = c.first_seq;
    s.frame_count = c.frame_count;
    s.revision = c.revision;
    Ok(s)
}

/// The field/value pairs of an `HGETALL` reply (RESP2 flat array or RESP3 map), without
/// collecting them: `None` if the reply is not a hash.
fn for_each_pair<'v>(v: &'v Value, mut f: impl FnMut(&'v [u8], &'v [u8])) -> Option<bool> {
    match v {
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return None;
            }
            for kv in items.chunks_exact(2) {
                f(bytes_of(&kv[0])?, bytes_of(&kv[1])?);
            }
            Some(!items.is_empty())
        }
        Value::Map(pairs) => {
            for (k, v) in pairs {
                f(bytes_of(k)?, bytes_of(v)?);
            }
            Some(!pairs.is_empty())
        }
        Value::Nil => Some(false),
        _ => None,
    }
}

/// Parses an `HGETALL` of `id`'s meta. `Ok(None)` when the hash is empty (no session).
pub(crate) fn parse_session(id: &SessionId, reply: &Value) -> Result<Option<Session>> {
    let mut a = None;
    let mut chunks: [Option<&[u8]>; MAX_CHUNKS] = [None; MAX_CHUNKS];
    let mut schema1 = false;
    let any = for_each_pair(reply, |k, v| match k {
        b"a" => a = Some(v),
        b"d" => chunks[0] = Some(v),
        [b'd', n @ b'1'..=b'7'] => chunks[usize::from(n - b'0')] = Some(v),
        SCHEMA1_FIELD => schema1 = true,
        _ => {}
    })
    .ok_or_else(|| {
        Error::corrupt(
            format!("session {:?} meta", id.as_str()),
            "the reply is not a hash",
        )
    })?;
    if !any {
        return Ok(None);
    }
    let Some(a) = a else {
        return Err(corrupt(
            id,
            F_ACTIVITY,
            if schema1 { SCHEMA1 } else { "missing" },
        ));
    };
    let first = chunks[0].ok_or_else(|| corrupt(id, "d", "missing"))?;
    let n = chunks.iter().take_while(|c| c.is_some()).count();
    if let Some(gap) = chunks[n..].iter().position(Option::is_some) {
        return Err(corrupt(
            id,
            CHUNK_NAMES[n + gap],
            format!("present while {:?} is missing", CHUNK_NAMES[n]),
        ));
    }
    let s = if n == 1 {
        assemble(id, a, first)?
    } else {
        let mut blob = Vec::with_capacity(chunks.iter().flatten().map(|c| c.len()).sum());
        for c in chunks.iter().flatten() {
            blob.extend_from_slice(c);
        }
        assemble(id, a, &blob)?
    };
    Ok(Some(s))
}

/// Parses meta field `e` of `id` (absent or empty: no epochs).
pub(crate) fn parse_epochs(id: &SessionId, v: Option<&[u8]>) -> Result<FrameEpochs> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(FrameEpochs::default());
    };
    let bad = || corrupt(id, F_EPOCHS, "not <epoch>@<first_seq> pairs in order");
    let text = std::str::from_utf8(v).map_err(|_| bad())?;
    let mut starts = Vec::new();
    for pair in text.split(',') {
        let (epoch, first_seq) = pair.split_once('@').ok_or_else(bad)?;
        let (Ok(epoch), Ok(first_seq)) = (epoch.parse::<u64>(), first_seq.parse::<u64>()) else {
            return Err(bad());
        };
        starts.push(EpochStart { epoch, first_seq });
    }
    FrameEpochs::from_starts(starts).ok_or_else(bad)
}

/// The hash field of a pending request id: `n:<number>` or `s:<string>`.
pub(crate) fn request_field(id: &RequestId) -> Vec<u8> {
    match id {
        RequestId::Number(n) => format!("n:{n}").into_bytes(),
        RequestId::String(s) => {
            let mut v = Vec::with_capacity(s.len() + 2);
            v.extend_from_slice(b"s:");
            v.extend_from_slice(s.as_bytes());
            v
        }
    }
}

/// A stored pending request: its insertion order (assigned in Redis) and the request.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredPending {
    pub(crate) o: u64,
    pub(crate) r: PendingRequest,
}

/// Decodes a stored pending request of session `id`, stored under `field`.
pub(crate) fn decode_pending(id: &SessionId, field: &[u8], value: &[u8]) -> Result<StoredPending> {
    codec::decode::<StoredPending>(value).map_err(|e| {
        Error::corrupt(
            format!(
                "session {:?} pending request {:?}",
                id.as_str(),
                String::from_utf8_lossy(field)
            ),
            e.to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sid() -> SessionId {
        SessionId::new("s-1").unwrap_or_else(|e| panic!("{e}"))
    }

    fn to_reply(fields: &[(&str, Vec<u8>)]) -> Value {
        Value::Array(
            fields
                .iter()
                .flat_map(|(k, v)| {
                    [
                        Value::BulkString(k.as_bytes().to_vec()),
                        Value::BulkString(v.clone()),
                    ]
                })
                .collect(),
        )
    }

    fn full() -> Session {
        let mut s = Session::new(sid(), Transport::StreamableHttp);
        s.created_at = Timestamp(1);
        s.last_activity = Timestamp(2);
        s.expires_at = Timestamp(3);
        s.last_seq = 9;
        s.first_seq = 5;
        s.frame_count = 5;
        s.revision = 4;
        s.principal = Some(String::new());
        s.client_info = Some(json!({"name": "c"}));
        s.server_info = Some(serde_json::Value::Null);
        s.tags.insert("t".into());
        s.metadata.insert("k".into(), "v".into());
        s
    }

    #[test]
    fn sessions_round_trip_through_fields() {
        let s = full();
        let fields = all_fields(&s, 0).unwrap_or_else(|e| panic!("{e}"));
        let back = parse_session(&sid(), &to_reply(&fields)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, Some(s.clone()));

        let plain = Session::new(sid(), Transport::Stdio);
        let fields = all_fields(&plain, 0).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["a", "d"]);
        let back = parse_session(&sid(), &to_reply(&fields)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, Some(plain));
    }

    #[test]
    fn long_blobs_are_chunked_within_the_listpack_limit() {
        let mut s = full();
        s.client_info = Some(json!({"name": "claude-code", "version": "1.0.71"}));
        s.upstream_session_id = Some("0123456789abcdef0123456789abcdef".into());
        s.protocol_version = Some("2025-11-25".into());
        let fields = all_fields(&s, 3).unwrap_or_else(|e| panic!("{e}"));
        assert!(fields.len() > 2, "{fields:?}");
        assert!(fields.iter().all(|(_, v)| v.len() <= CHUNK), "{fields:?}");
        // Any field order (a hashtable's HGETALL is unordered).
        let mut reversed = fields.clone();
        reversed.reverse();
        for f in [&fields, &reversed] {
            let back = parse_session(&sid(), &to_reply(f)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back.as_ref(), Some(&s));
        }
        // A missing middle chunk is named.
        let gap: Vec<_> = fields.iter().filter(|(k, _)| *k != "d1").cloned().collect();
        let err = parse_session(&sid(), &to_reply(&gap)).unwrap_err();
        assert!(err.to_string().contains("\"d2\""), "{err}");

        // Past MAX_CHUNKS chunks the blob is stored whole.
        s.metadata
            .insert("big".into(), "x".repeat(CHUNK * MAX_CHUNKS));
        let fields = all_fields(&s, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fields.len(), 2);
        let back = parse_session(&sid(), &to_reply(&fields)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, Some(s));
    }

    /// The storage format of the blob, byte for byte (a change here is a schema change).
    #[test]
    fn desc_blob_golden() {
        let mut s = Session::new(sid(), Transport::Http);
        s.protocol_version = Some("v".into());
        let blob = encode_desc(&s).unwrap_or_else(|e| panic!("{e}"));
        let hex: String = blob.iter().map(|b| format!("{b:02x}")).collect();
        // 0x01 envelope; map of 4: t "http", s "active", st "initializing", pv "v".
        assert_eq!(
            hex,
            "0184a174a468747470a173a6616374697665a27374ac696e697469616c697a696e67a27076a176"
        );
        assert_eq!(&fields_of(&s)[..1], &[("a", b"0:0:0:0:1:0:0:0".to_vec())]);
    }

    fn fields_of(s: &Session) -> Fields {
        all_fields(s, 0).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn bad_fields_are_corrupt_and_named() {
        let s = Session::new(sid(), Transport::Http);
        let base = fields_of(&s);
        let with = |name: &'static str, value: &[u8]| {
            let mut f = base.clone();
            for (k, v) in &mut f {
                if *k == name {
                    *v = value.to_vec();
                }
            }
            parse_session(&sid(), &to_reply(&f)).unwrap_err()
        };
        for (name, value) in [
            ("a", &b"0:0:0:x1:1:0:0:0"[..]),
            ("a", b"0:0:0:1:1:0:0"),
            ("a", b"0:0:0:1:1:0:0:0:0"),
            ("a", b"0:0:99999999999999999:0:1:0:0:0"),
            ("a", b"1:"),
            ("a", b"soon"),
            ("d", b"\x07payload"),
            ("d", b"\x01\xc1"),
        ] {
            let err = with(name, value);
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
        }
        assert!(
            with("d", b"\x07x")
                .to_string()
                .contains("unsupported envelope version 0x07")
        );
        assert!(parse_session(&sid(), &Value::Int(3)).is_err());
        assert_eq!(
            parse_session(&sid(), &Value::Array(vec![])).ok(),
            Some(None)
        );
    }

    #[test]
    fn schema1_hashes_are_corrupt_and_named() {
        let old: Fields = vec![
            ("id", b"s-1".to_vec()),
            ("transport", b"http".to_vec()),
            ("expires_at", b"5".to_vec()),
            ("seq", b"0".to_vec()),
        ];
        let err = parse_session(&sid(), &to_reply(&old)).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("schema-1"), "{err}");
    }

    #[test]
    fn request_fields_are_distinct() {
        assert_eq!(request_field(&RequestId::from(5)), b"n:5");
        assert_eq!(request_field(&RequestId::from("5")), b"s:5");
    }
}
