//! The session's `meta` hash: small fields as plain strings (so `touch` is one `HSET`), the
//! structured caller fields as one versioned MessagePack blob (`ext`).

use std::collections::{BTreeMap, BTreeSet};

use redis::Value;
use serde::{Deserialize, Deserializer, Serialize};
use shoal_core::{
    Error, PendingRequest, RequestId, Result, Session, SessionId, SessionState, SessionStatus,
    Timestamp, Transport, codec,
};

pub(crate) const F_ID: &str = "id";
pub(crate) const F_TRANSPORT: &str = "transport";
pub(crate) const F_STATUS: &str = "status";
pub(crate) const F_STATE: &str = "state";
pub(crate) const F_CREATED_AT: &str = "created_at";
pub(crate) const F_LAST_ACTIVITY: &str = "last_activity";
pub(crate) const F_EXPIRES_AT: &str = "expires_at";
pub(crate) const F_SEQ: &str = "seq";
pub(crate) const F_FIRST_SEQ: &str = "first_seq";
pub(crate) const F_FRAME_COUNT: &str = "frame_count";
pub(crate) const F_REVISION: &str = "revision";
pub(crate) const F_PRINCIPAL: &str = "principal";
pub(crate) const F_PROTOCOL_VERSION: &str = "protocol_version";
pub(crate) const F_UPSTREAM_SESSION_ID: &str = "upstream_session_id";
pub(crate) const F_EXT: &str = "ext";
pub(crate) const F_PENDING_SEQ: &str = "pending_seq";

/// The largest integer the Lua scripts handle exactly (Lua numbers are doubles).
pub(crate) const MAX_LUA_INT: u64 = (1 << 53) - 1;

/// The structured caller-owned fields, stored together as one blob.
#[derive(Default, Serialize, Deserialize)]
struct Ext {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    client_info: Option<serde_json::Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    server_info: Option<serde_json::Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    initialize_params: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    tags: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
}

/// A present key is `Some`, even when its value is JSON `null` (absent keys default to `None`).
fn present<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl Ext {
    fn of(s: &Session) -> Self {
        Ext {
            client_info: s.client_info.clone(),
            server_info: s.server_info.clone(),
            initialize_params: s.initialize_params.clone(),
            tags: s.tags.clone(),
            metadata: s.metadata.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        self.client_info.is_none()
            && self.server_info.is_none()
            && self.initialize_params.is_none()
            && self.tags.is_empty()
            && self.metadata.is_empty()
    }
}

fn encode_ext(s: &Session) -> Result<Option<Vec<u8>>> {
    let ext = Ext::of(s);
    if ext.is_empty() {
        return Ok(None);
    }
    codec::encode(&ext)
        .map(Some)
        .map_err(|e| Error::invalid(format!("session {:?}: cannot encode: {e}", s.id.as_str())))
}

/// Hash fields and their values.
pub(crate) type Fields = Vec<(&'static str, Vec<u8>)>;

/// Field/value pairs for the caller-owned fields, and the optional fields to remove.
pub(crate) fn caller_fields(s: &Session) -> Result<(Fields, Vec<&'static str>)> {
    let mut set: Vec<(&'static str, Vec<u8>)> = vec![
        (F_TRANSPORT, s.transport.as_str().into()),
        (F_STATUS, s.status.as_str().into()),
        (F_STATE, s.state.as_str().into()),
    ];
    let mut del = Vec::new();
    for (field, value) in [
        (F_PRINCIPAL, &s.principal),
        (F_PROTOCOL_VERSION, &s.protocol_version),
        (F_UPSTREAM_SESSION_ID, &s.upstream_session_id),
    ] {
        match value {
            Some(v) => set.push((field, v.as_bytes().to_vec())),
            None => del.push(field),
        }
    }
    match encode_ext(s)? {
        Some(blob) => set.push((F_EXT, blob)),
        None => del.push(F_EXT),
    }
    Ok((set, del))
}

/// Every field of a whole session (create and restore).
pub(crate) fn all_fields(s: &Session, pending_seq: u64) -> Result<Fields> {
    let (mut fields, _) = caller_fields(s)?;
    let num = |n: u64| n.to_string().into_bytes();
    fields.extend([
        (F_ID, s.id.as_str().as_bytes().to_vec()),
        (F_CREATED_AT, num(s.created_at.as_millis())),
        (F_LAST_ACTIVITY, num(s.last_activity.as_millis())),
        (F_EXPIRES_AT, num(s.expires_at.as_millis())),
        (F_SEQ, num(s.last_seq)),
        (F_FIRST_SEQ, num(s.first_seq)),
        (F_FRAME_COUNT, num(s.frame_count)),
        (F_REVISION, num(s.revision)),
        (F_PENDING_SEQ, num(pending_seq)),
    ]);
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

fn corrupt(id: &SessionId, field: &str, reason: impl Into<String>) -> Error {
    Error::corrupt(
        format!("session {:?} meta field {field:?}", id.as_str()),
        reason,
    )
}

/// Parses an `HGETALL` of `id`'s meta. `Ok(None)` when the hash is empty (no session).
pub(crate) fn parse_session(id: &SessionId, reply: &Value) -> Result<Option<Session>> {
    let pairs = hash_pairs(reply).ok_or_else(|| {
        Error::corrupt(
            format!("session {:?} meta", id.as_str()),
            "the reply is not a hash",
        )
    })?;
    if pairs.is_empty() {
        return Ok(None);
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| *v)
    };
    let text = |name: &str| -> Result<Option<String>> {
        get(name)
            .map(|b| {
                String::from_utf8(b.to_vec()).map_err(|_| corrupt(id, name, "not valid UTF-8"))
            })
            .transpose()
    };
    let required =
        |name: &str| -> Result<String> { text(name)?.ok_or_else(|| corrupt(id, name, "missing")) };
    let number = |name: &str| -> Result<u64> {
        let s = required(name)?;
        s.parse::<u64>()
            .map_err(|_| corrupt(id, name, format!("{s:?} is not a non-negative integer")))
    };
    let stored_id = required(F_ID)?;
    if stored_id != id.as_str() {
        return Err(corrupt(id, F_ID, format!("holds {stored_id:?}")));
    }
    let transport: Transport = required(F_TRANSPORT)?
        .parse()
        .map_err(|e: Error| corrupt(id, F_TRANSPORT, e.to_string()))?;
    let status: SessionStatus = required(F_STATUS)?
        .parse()
        .map_err(|e: Error| corrupt(id, F_STATUS, e.to_string()))?;
    let state: SessionState = required(F_STATE)?
        .parse()
        .map_err(|e: Error| corrupt(id, F_STATE, e.to_string()))?;
    let ext: Ext = match get(F_EXT) {
        None => Ext::default(),
        Some(b) => codec::decode(b).map_err(|e| corrupt(id, F_EXT, e.to_string()))?,
    };
    let mut s = Session::new(id.clone(), transport);
    s.status = status;
    s.state = state;
    s.created_at = Timestamp(number(F_CREATED_AT)?);
    s.last_activity = Timestamp(number(F_LAST_ACTIVITY)?);
    s.expires_at = Timestamp(number(F_EXPIRES_AT)?);
    s.last_seq = number(F_SEQ)?;
    s.first_seq = number(F_FIRST_SEQ)?;
    s.frame_count = number(F_FRAME_COUNT)?;
    s.revision = number(F_REVISION)?;
    s.principal = text(F_PRINCIPAL)?;
    s.protocol_version = text(F_PROTOCOL_VERSION)?;
    s.upstream_session_id = text(F_UPSTREAM_SESSION_ID)?;
    s.client_info = ext.client_info;
    s.server_info = ext.server_info;
    s.initialize_params = ext.initialize_params;
    s.tags = ext.tags;
    s.metadata = ext.metadata;
    Ok(Some(s))
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

    fn to_reply(fields: &[(&'static str, Vec<u8>)]) -> Value {
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

    #[test]
    fn sessions_round_trip_through_fields() {
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
        let fields = all_fields(&s, 0).unwrap_or_else(|e| panic!("{e}"));
        let back = parse_session(&sid(), &to_reply(&fields)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, Some(s.clone()));

        let plain = Session::new(sid(), Transport::Stdio);
        let fields = all_fields(&plain, 0).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            fields.iter().all(|(k, _)| *k != F_EXT),
            "empty ext is not stored"
        );
        let back = parse_session(&sid(), &to_reply(&fields)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, Some(plain));
    }

    #[test]
    fn bad_fields_are_corrupt_and_named() {
        let s = Session::new(sid(), Transport::Http);
        let mut fields = all_fields(&s, 0).unwrap_or_else(|e| panic!("{e}"));
        for (k, v) in &mut fields {
            if *k == F_SEQ {
                *v = b"x1".to_vec();
            }
        }
        let err = parse_session(&sid(), &to_reply(&fields)).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("\"seq\""), "{err}");
        assert!(parse_session(&sid(), &Value::Int(3)).is_err());
        assert_eq!(
            parse_session(&sid(), &Value::Array(vec![])).ok(),
            Some(None)
        );
    }

    #[test]
    fn request_fields_are_distinct() {
        assert_eq!(request_field(&RequestId::from(5)), b"n:5");
        assert_eq!(request_field(&RequestId::from("5")), b"s:5");
    }
}
