//! Shoal's Redis layout — key names, the listing bucket hash, the meta field names and the
//! script sources — exposed for Shoal's own benchmark, whose raw redis-rs baseline must issue
//! exactly the commands [`RedisStore`](crate::RedisStore) issues (same keys, same script
//! SHA1s) without going through it.
//!
//! **Not a stable API.** It is hidden from the docs and may change in any release, together
//! with the storage format it describes; nothing outside Shoal should use it.

pub use crate::{
    keys::{BUCKETS, bucket_of, capacity_key, listing_key, session_keys},
    scripts::{APPEND_SOURCE, CREATE_PLACED_SOURCE, CREATE_SOURCE, RESERVE_SOURCE, TOUCH_SOURCE},
};

/// The meta hash field holding activity and counters,
/// `<last_activity>:<expires_at>:<created_at>:<seq>:<first_seq>:<frame_count>:<revision>:<pending_seq>`
/// (decimal); the other fields hold the caller-owned blob.
pub const ACTIVITY_FIELD: &str = crate::meta::F_ACTIVITY;

/// The append script's arguments between `max frames` and the frame prefix, as
/// [`RedisStore`](crate::RedisStore) sends them under `limits` and `config`: the session's
/// byte budget, the metadata allowance and whether frame epochs are recorded (1 or 0; see
/// `append.lua`).
pub fn append_middle_args(limits: &shoal_core::Limits, config: &crate::RedisConfig) -> [u64; 3] {
    [
        limits.max_session_bytes as u64,
        crate::store::metadata_allowance(limits),
        u64::from(config.frame_epochs),
    ]
}

/// Splits the encoding of a frame whose seq is 0 the way the append script receives it: the
/// bytes before the seq value (the same for every frame) and the bytes after it. `None` when
/// the codec no longer puts the seq first, which the append script relies on.
pub fn split_frame(encoded: &[u8]) -> Option<(&[u8], &[u8])> {
    // envelope, map header, "seq" as a 3-byte fixstr, then the value 0 (one byte).
    if encoded.len() < 7 || &encoded[2..6] != b"\xa3seq" || encoded[6] != 0 {
        return None;
    }
    Some((&encoded[..6], &encoded[7..]))
}

/// What a per-session script gets for the change feed on a single server (standalone,
/// Sentinel), as [`RedisStore`](crate::RedisStore) sends it under `config`, for a session
/// whose keys have `prefix`: `ARGV[1]` (`now`, then the feed header and `detail` when the
/// feed is on) and the feed stream key to pass after the script's own keys (`None` when the
/// feed is off).
pub fn script_head(
    config: &crate::RedisConfig,
    prefix: &str,
    now_ms: u64,
    sid: &str,
    detail: &str,
) -> (Vec<u8>, Option<String>) {
    let now = now_ms.to_string().into_bytes();
    if !config.feed.enabled {
        return (now, None);
    }
    (
        crate::store::feed_script_head(&config.feed, now, sid, detail),
        Some(crate::keys::Keys::new(prefix).feed(0)),
    )
}

/// The touch script's extra argument on a single server under `config`: the start of the
/// touch window `now_ms` falls in (`None` when the feed is off or touches are not reported).
pub fn touch_window_arg(config: &crate::RedisConfig, now_ms: u64) -> Option<u64> {
    if !config.feed.enabled {
        return None;
    }
    crate::store::touch_window_start(&config.feed, now_ms)
}

/// The feed detail of an append of `frames` under `config` (empty when the feed or its frame
/// entries are off).
pub fn append_detail(config: &crate::RedisConfig, frames: &[shoal_core::NewFrame]) -> String {
    if !config.feed.enabled || !config.feed.frames {
        return String::new();
    }
    let summaries: Vec<_> = frames
        .iter()
        .map(shoal_core::feed::FrameSummary::of)
        .collect();
    crate::store::frames_detail(&summaries)
}

/// The feed detail of the creation of `session` under `config` (empty when the feed is off).
pub fn created_detail(config: &crate::RedisConfig, session: &shoal_core::Session) -> String {
    if !config.feed.enabled {
        return String::new();
    }
    shoal_core::feed::SessionSummary::of(session).to_detail()
}

#[cfg(test)]
mod tests {
    use shoal_core::{Direction, NewFrame, SessionId, codec};

    use super::*;

    #[test]
    fn frames_split_around_the_seq() {
        let id = SessionId::new("abc").unwrap_or_else(|e| panic!("{e}"));
        let frame =
            NewFrame::new(Direction::ClientToServer, vec![b'x'; 100]).into_frame(id.clone(), 0);
        let bytes = codec::encode_frame(&frame).unwrap_or_else(|e| panic!("{e}"));
        let (prefix, suffix) = split_frame(&bytes).unwrap_or_else(|| panic!("no seq first"));
        let mut whole = prefix.to_vec();
        whole.push(7);
        whole.extend_from_slice(suffix);
        let back = codec::decode_frame(&id, &whole).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.seq, 7);
        assert_eq!(back.content.len(), 100);
        assert_eq!(split_frame(&bytes[..6]), None);
    }

    #[test]
    fn scripts_are_the_sources_shoal_loads() {
        for source in [
            TOUCH_SOURCE,
            APPEND_SOURCE,
            CREATE_SOURCE,
            CREATE_PLACED_SOURCE,
        ] {
            assert!(source.starts_with(include_str!("scripts/common.lua")));
        }
        assert_eq!(RESERVE_SOURCE, include_str!("scripts/reserve.lua"));
        let scripts = crate::scripts::Scripts::new();
        assert_eq!(
            redis::Script::new(APPEND_SOURCE).get_hash(),
            scripts.append.get_hash()
        );
    }
}
