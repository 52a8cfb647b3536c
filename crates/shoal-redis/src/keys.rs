//! Key names. Every key of one session carries the hash tag `{<sid>}`, so one script can touch
//! all of them on Redis Cluster too; listing buckets carry a bucket tag `{bNNNN}`, the capacity
//! (and expiry) set the tag `{cap}`.

use shoal_core::SessionId;

/// Listing buckets: the listing index is split into this many sorted sets (each in its own
/// cluster slot), so a page walks short sets and its cursor stays stable.
///
/// 1,024 so that up to about 120,000 sessions (the default `max_sessions` is 100,000) every
/// bucket holds at most `zset-max-listpack-entries` (128) members and Redis keeps it as a
/// compact listpack: ≈ 30 bytes per session instead of ≈ 128 in a skiplist (measured with
/// 100,000 22-byte ids: 29.5 B vs 128.5 B per entry). Larger stores still work; their
/// buckets turn into skiplists one by one. `list` reads sparse buckets several per round
/// trip, so a mostly empty store does not cost a round trip per bucket.
pub const BUCKETS: u32 = 1024;

/// The bucket of a session id: FNV-1a (32 bit) of its bytes, modulo [`BUCKETS`]. Stable across
/// versions and processes (it is part of the storage format).
pub fn bucket_of(id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % BUCKETS
}

/// `<prefix>:{<sid>}:<kind>`, built without `format!` (it is on every request's path).
fn session_key(prefix: &str, id: &str, kind: &str) -> String {
    let mut k = String::with_capacity(prefix.len() + id.len() + kind.len() + 4);
    k.push_str(prefix);
    k.push_str(":{");
    k.push_str(id);
    k.push_str("}:");
    k.push_str(kind);
    k
}

/// `[<prefix>:{<sid>}:meta, <prefix>:{<sid>}:frames, <prefix>:{<sid>}:requests]`, the keys
/// every per-session script receives, in that order.
pub fn session_keys(prefix: &str, id: &str) -> [String; 3] {
    [
        session_key(prefix, id, "meta"),
        session_key(prefix, id, "frames"),
        session_key(prefix, id, "requests"),
    ]
}

/// `<prefix>:idx:{bNNNN}:all`, the listing bucket `bucket` (see [`bucket_of`]): score 0,
/// member = sid; walked in lexicographic order by `list`.
pub fn listing_key(prefix: &str, bucket: u32) -> String {
    format!("{prefix}:idx:{{b{bucket:04}}}:all")
}

/// `<prefix>:idx:{cap}:live`: every session (member = sid, score = expires_at when indexed),
/// in one key so `max_sessions` can be checked and reserved atomically; also the index the
/// sweeper and `count` read expiries from.
pub fn capacity_key(prefix: &str) -> String {
    format!("{prefix}:idx:{{cap}}:live")
}

/// Builds key names under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:{<sid>}:meta`.
    pub(crate) fn meta(&self, id: &SessionId) -> String {
        session_key(&self.prefix, id.as_str(), "meta")
    }

    /// `[meta, frames, requests]` of `id`: [`session_keys`].
    pub(crate) fn session(&self, id: &SessionId) -> [String; 3] {
        session_keys(&self.prefix, id.as_str())
    }

    /// The listing bucket `bucket`: [`listing_key`].
    pub(crate) fn all(&self, bucket: u32) -> String {
        listing_key(&self.prefix, bucket)
    }

    /// The capacity (and expiry) set: [`capacity_key`].
    pub(crate) fn cap(&self) -> String {
        capacity_key(&self.prefix)
    }

    /// `<prefix>:metrics:<name>`.
    pub(crate) fn metric(&self, name: &str) -> String {
        format!("{}:metrics:{name}", self.prefix)
    }

    /// `<prefix>:{<sid>}:lease:<name>`: a named lease of the session (a string holding the
    /// owner token, with a PX expiry). Lease names are `[A-Za-z0-9._-]` (checked by the caller).
    pub(crate) fn session_lease(&self, id: &SessionId, name: &str) -> String {
        let mut kind = String::with_capacity(6 + name.len());
        kind.push_str("lease:");
        kind.push_str(name);
        session_key(&self.prefix, id.as_str(), &kind)
    }

    /// `<prefix>:secret:<name>`: a secret every process of the store shares (names are
    /// `[A-Za-z0-9._-]`, checked by the caller).
    pub(crate) fn secret(&self, name: &str) -> String {
        format!("{}:secret:{name}", self.prefix)
    }

    /// `<prefix>:quota:{<subject>}:live` and `…:recent`: a subject's admission quota logs
    /// (sorted sets), hash-tagged with the subject so one script sees both on Cluster. `%`,
    /// `{`, `}` and spaces in the subject are percent-escaped, so the tag is the whole subject.
    pub(crate) fn quota(&self, subject: &str) -> [String; 2] {
        let mut tag = String::with_capacity(subject.len());
        for c in subject.chars() {
            match c {
                '%' | '{' | '}' | ' ' => tag.push_str(&format!("%{:02X}", c as u32)),
                c => tag.push(c),
            }
        }
        [
            format!("{}:quota:{{{tag}}}:live", self.prefix),
            format!("{}:quota:{{{tag}}}:recent", self.prefix),
        ]
    }

    /// `<prefix>:feed:{f<shard>}`: shard `shard` of the change feed (a Stream). The tag
    /// puts the shard's analytics keys in its slot.
    pub(crate) fn feed(&self, shard: u16) -> String {
        format!("{}:feed:{{f{shard}}}", self.prefix)
    }

    /// `<prefix>:an:{f<shard>}:<name>`: an analytics structure computed from feed shard
    /// `shard` (in the shard's slot, so one script updates it and acknowledges the entries).
    pub(crate) fn analytics(&self, shard: u16, name: &str) -> String {
        format!("{}:an:{{f{shard}}}:{name}", self.prefix)
    }

    /// `<prefix>:sweep:lease`.
    pub(crate) fn sweep_lease(&self) -> String {
        format!("{}:sweep:lease", self.prefix)
    }

    /// `<prefix>:dataset`: the dataset marker (a token without a TTL; its absence means the
    /// server lost the data).
    pub(crate) fn dataset(&self) -> String {
        format!("{}:dataset", self.prefix)
    }

    /// `<prefix>:dataset:loss`: the last loss noticed (hash `at`, `what`, `count`; no TTL).
    pub(crate) fn dataset_loss(&self) -> String {
        format!("{}:dataset:loss", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        // Part of the storage format: these must never change.
        assert_eq!(bucket_of(""), 0x811c_9dc5 % BUCKETS);
        assert_eq!(bucket_of("a"), 0xe40c_292c % BUCKETS);
        assert_eq!(BUCKETS, 1024);
        let mut seen = [0u32; BUCKETS as usize];
        for i in 0..102_400 {
            seen[bucket_of(&format!("session-{i}")) as usize] += 1;
        }
        // 100 per bucket on average (a few pass the listpack limit of 128 at this count).
        assert!(seen.iter().all(|&n| (60..=150).contains(&n)), "{seen:?}");
        assert!(seen.iter().filter(|&&n| n > 128).count() < 20, "{seen:?}");
    }

    #[test]
    fn names() {
        let k = Keys::new("p");
        let id = SessionId::new("abc").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k.meta(&id), "p:{abc}:meta");
        assert_eq!(
            k.session(&id),
            ["p:{abc}:meta", "p:{abc}:frames", "p:{abc}:requests"]
        );
        assert_eq!(k.cap(), "p:idx:{cap}:live");
        assert_eq!(k.all(15), "p:idx:{b0015}:all");
        assert_eq!(k.all(1023), "p:idx:{b1023}:all");
        assert_eq!(session_keys("p", "abc"), k.session(&id));
        assert_eq!(listing_key("p", 7), "p:idx:{b0007}:all");
        assert_eq!(capacity_key("p"), k.cap());
        assert_eq!(k.feed(0), "p:feed:{f0}");
        assert_eq!(k.analytics(3, "methods"), "p:an:{f3}:methods");
    }
}
