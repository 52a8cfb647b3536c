//! The raw redis-rs baseline: the Redis commands Shoal's `get`, `touch`, `append_frame` and
//! `create` send, issued directly through one `redis::aio::ConnectionManager` with no Shoal
//! code in between — plus `GET` of one blob the size of a session hash, the usual design of
//! session stores.
//!
//! What each op sends (see `crates/shoal-redis/src/store/` and `src/scripts/*.lua`):
//!
//! | op | what is sent |
//! |---|---|
//! | get | `HGETALL <p>:{sid}:meta` (schema 2: fields `a`, `d` [+ `d1`…]) |
//! | touch | `EVALSHA touch` (KEYS meta, frames, requests; ARGV now, expires_at, pexpire ms, the touch window's start) |
//! | append | `EVALSHA append` (same KEYS; ARGV now, expires_at, pexpire ms, max frames, byte budget, metadata allowance, epochs flag, the encoded-frame prefix, the frame's encoding after its seq) |
//! | create | `EVALSHA create_placed` (KEYS meta, frames, requests, the cap set — also the expiry index — and the bucket's listing set; ARGV now, pexpire ms, expires_at, max sessions, sid, the meta field/value pairs): what Shoal sends on a single server (on a Cluster it sends reserve, create and the listing `ZADD` as three round trips; the baseline runs on a single server) |
//!
//! With the change feed on (the default), every script also gets the feed stream as its last
//! key and `ARGV[1]` carries the feed header and the entry's detail after `now`
//! (`layout::script_head`), as Shoal sends them: the scripts write the same entries.
//!
//! The scripts, key names and listing bucket come from `shoal_redis::layout` (Shoal's own
//! sources and functions), so the SHA1s and keys are the ones Shoal uses.
//! The raw side works on copies of the bench's pool sessions (`COPY`) under its own key prefix;
//! its frame encodings, keys and meta pairs are prepared before timing, so only building and
//! sending the commands and reading the replies is timed.

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use redis::{Script, Value, aio::ConnectionManager};
use shoal_core::{Direction, NewFrame, SessionId, Timestamp, codec};
use shoal_redis::layout;

use super::driver::{OpFn, OpFuture};

/// Shoal's scripts, hashed once.
#[derive(Debug)]
pub(crate) struct Scripts {
    /// `common.lua` + `touch.lua`.
    pub(crate) touch: Script,
    /// `common.lua` + `append.lua`.
    pub(crate) append: Script,
    /// `common.lua` + `create_placed.lua`.
    pub(crate) create_placed: Script,
}

impl Scripts {
    /// The scripts exactly as `shoal-redis` builds them.
    pub(crate) fn new() -> Self {
        Scripts {
            touch: Script::new(layout::TOUCH_SOURCE),
            append: Script::new(layout::APPEND_SOURCE),
            create_placed: Script::new(layout::CREATE_PLACED_SOURCE),
        }
    }

    /// `(name, sha1)` of every script.
    pub(crate) fn hashes(&self) -> [(&'static str, &str); 3] {
        [
            ("touch", self.touch.get_hash()),
            ("append", self.append.get_hash()),
            ("create_placed", self.create_placed.get_hash()),
        ]
    }
}

/// Keys of one session under `prefix`: `[meta, frames, requests]`.
pub(crate) use layout::session_keys;

/// The field/value pairs of an `HGETALL` reply (RESP2 array or RESP3 map).
pub(crate) fn hash_pairs(v: Value) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    fn bytes(v: Value) -> anyhow::Result<Vec<u8>> {
        match v {
            Value::BulkString(b) => Ok(b),
            Value::SimpleString(s) => Ok(s.into_bytes()),
            other => bail!("unexpected hash item {other:?}"),
        }
    }
    match v {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((bytes(k)?, bytes(v)?));
            }
            Ok(out)
        }
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Ok((bytes(k)?, bytes(v)?)))
            .collect(),
        Value::Nil => Ok(Vec::new()),
        other => bail!("HGETALL gave {other:?}"),
    }
}

/// Everything the raw ops need, prepared before timing.
#[derive(Debug)]
pub(crate) struct RawCtx {
    /// The one multiplexed connection.
    pub(crate) conn: ConnectionManager,
    /// Shoal's scripts.
    pub(crate) scripts: Scripts,
    /// The raw side's key prefix.
    pub(crate) prefix: String,
    /// Per pool session: `[meta, frames, requests]` of its raw copy.
    pub(crate) keys: Vec<[String; 3]>,
    /// Per pool session: the key of its blob.
    pub(crate) blob_keys: Vec<String>,
    /// Per pool session: the frame's encoding after its seq value.
    pub(crate) suffixes: Vec<Vec<u8>>,
    /// The encoded-frame bytes before the seq value.
    pub(crate) frame_prefix: Vec<u8>,
    /// The meta pairs `create` writes (from a session Shoal created), with the positions of
    /// the fields that change per session.
    pub(crate) create_pairs: CreatePairs,
    /// Session TTL, milliseconds.
    pub(crate) ttl_ms: u64,
    /// Server-side TTL: TTL plus the expiry grace, milliseconds (Shoal's `pexpire_ms`).
    pub(crate) pexpire_ms: u64,
    /// `max_frames_per_session`.
    pub(crate) max_frames: u64,
    /// The append script's byte budget, metadata allowance and epochs flag, as the store
    /// sends them.
    pub(crate) append_middle: [u64; 3],
    /// `max_sessions`.
    pub(crate) max_sessions: u64,
    /// The store's settings: whether (and how) its scripts write the change feed.
    pub(crate) config: shoal_redis::RedisConfig,
    /// Per pool session: its id.
    pub(crate) ids: Vec<String>,
    /// Per pool session: the feed detail of appending its frame (empty without the feed).
    pub(crate) append_details: Vec<String>,
    /// The feed detail of a created session (empty without the feed).
    pub(crate) create_detail: String,
}

impl RawCtx {
    /// `ARGV[1]` and the feed stream key (to pass after the script's keys) of a script for
    /// session `sid`, as Shoal sends them: with the change feed's header and `detail` when the
    /// store writes the feed.
    pub(crate) fn head(&self, now: u64, sid: &str, detail: &str) -> (Vec<u8>, Option<String>) {
        layout::script_head(&self.config, &self.prefix, now, sid, detail)
    }
}

/// The meta pairs of a freshly created session (schema 2: `a`, then the blob's chunks).
#[derive(Debug, Clone)]
pub(crate) struct CreatePairs {
    /// Field/value pairs in Shoal's order.
    pub(crate) pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Index of the `a` pair (`<last_activity>:<expires_at>:<created_at>:<counters…>`; the
    /// first three are per session).
    pub(crate) activity: usize,
    /// The `a` value after `created_at` (from the third `:` on: the counters).
    pub(crate) counters: Vec<u8>,
}

impl CreatePairs {
    /// Finds the per-session field in `pairs`.
    pub(crate) fn new(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> anyhow::Result<Self> {
        let activity = pairs
            .iter()
            .position(|(k, _)| k == layout::ACTIVITY_FIELD.as_bytes())
            .context("the meta hash of a new session has no activity field")?;
        let a = &pairs[activity].1;
        let third = a
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b':')
            .nth(2)
            .map(|(i, _)| i)
            .context("the meta field a of a new session has fewer than four parts")?;
        Ok(CreatePairs {
            counters: a[third..].to_vec(),
            activity,
            pairs,
        })
    }

    /// The value of `a` for a session created at `now` that expires at `expires`.
    pub(crate) fn activity_value(&self, now: &str, expires: &str) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 * now.len() + expires.len() + 2 + self.counters.len());
        v.extend_from_slice(now.as_bytes());
        v.push(b':');
        v.extend_from_slice(expires.as_bytes());
        v.push(b':');
        v.extend_from_slice(now.as_bytes());
        v.extend_from_slice(&self.counters);
        v
    }
}

/// The encoding of `frame` (with seq 0) split as Shoal's append sends it: the prefix up to
/// the seq value and the bytes after it.
pub(crate) fn split_frame(id: &SessionId, frame: NewFrame) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let bytes = codec::encode_frame(&frame.into_frame(id.clone(), 0))?;
    let Some((prefix, suffix)) = layout::split_frame(&bytes) else {
        bail!("the frame codec no longer starts with the seq field; update the raw baseline");
    };
    Ok((prefix.to_vec(), suffix.to_vec()))
}

/// A frame as the bench appends it (`content` of the bench's frame size).
pub(crate) fn bench_frame(content: Vec<u8>) -> NewFrame {
    NewFrame::new(Direction::ClientToServer, content)
}

fn now_ms() -> u64 {
    Timestamp::now().as_millis()
}

fn err(e: redis::RedisError) -> String {
    e.to_string()
}

/// The reply status of a per-session script (`{0, ...}` is ok).
fn script_ok(v: &Value) -> Result<(), String> {
    match v {
        Value::Array(items) if matches!(items.first(), Some(Value::Int(0))) => Ok(()),
        other => Err(format!("script replied {other:?}")),
    }
}

/// An append script's reply: status 0, the epoch, then exactly one seq (anything else means
/// the arguments no longer match the script, e.g. an append of nothing).
fn appended_one(v: &Value) -> Result<(), String> {
    match v {
        Value::Array(items) if items.len() == 3 && matches!(items[0], Value::Int(0)) => Ok(()),
        other => Err(format!(
            "append script replied {other:?}, not status, epoch and one seq"
        )),
    }
}

/// `get`: `HGETALL meta`.
pub(crate) fn get(ctx: &Arc<RawCtx>) -> OpFn {
    let ctx = Arc::clone(ctx);
    Arc::new(move |_task, _n, r| -> OpFuture {
        let ctx = Arc::clone(&ctx);
        Box::pin(async move {
            let i = (r % ctx.keys.len() as u64) as usize;
            let mut conn = ctx.conn.clone();
            let v: Value = redis::cmd("HGETALL")
                .arg(&ctx.keys[i][0])
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            match v {
                Value::Array(a) if !a.is_empty() => Ok(()),
                Value::Map(m) if !m.is_empty() => Ok(()),
                other => Err(format!("HGETALL gave {other:?}")),
            }
        })
    })
}

/// `GET` of one blob the size of a session hash.
pub(crate) fn get_blob(ctx: &Arc<RawCtx>) -> OpFn {
    let ctx = Arc::clone(ctx);
    Arc::new(move |_task, _n, r| -> OpFuture {
        let ctx = Arc::clone(&ctx);
        Box::pin(async move {
            let i = (r % ctx.blob_keys.len() as u64) as usize;
            let mut conn = ctx.conn.clone();
            let v: Value = redis::cmd("GET")
                .arg(&ctx.blob_keys[i])
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            match v {
                Value::BulkString(b) if !b.is_empty() => Ok(()),
                other => Err(format!("GET gave {other:?}")),
            }
        })
    })
}

/// `touch`: `EVALSHA touch`.
pub(crate) fn touch(ctx: &Arc<RawCtx>) -> OpFn {
    let ctx = Arc::clone(ctx);
    Arc::new(move |_task, _n, r| -> OpFuture {
        let ctx = Arc::clone(&ctx);
        Box::pin(async move {
            let i = (r % ctx.keys.len() as u64) as usize;
            let now = now_ms();
            let mut inv = ctx.scripts.touch.prepare_invoke();
            for k in &ctx.keys[i] {
                inv.key(k);
            }
            let (head, feed) = ctx.head(now, &ctx.ids[i], "");
            if let Some(k) = feed {
                inv.key(k);
            }
            inv.arg(head)
                .arg((now + ctx.ttl_ms).to_string())
                .arg(ctx.pexpire_ms.to_string());
            if let Some(window) = layout::touch_window_arg(&ctx.config, now) {
                inv.arg(window.to_string());
            }
            let mut conn = ctx.conn.clone();
            let v: Value = inv.invoke_async(&mut conn).await.map_err(err)?;
            script_ok(&v)
        })
    })
}

/// `append_frame`: `EVALSHA append` with one frame.
pub(crate) fn append(ctx: &Arc<RawCtx>) -> OpFn {
    let ctx = Arc::clone(ctx);
    Arc::new(move |_task, _n, r| -> OpFuture {
        let ctx = Arc::clone(&ctx);
        Box::pin(async move {
            let i = (r % ctx.keys.len() as u64) as usize;
            let now = now_ms();
            let mut inv = ctx.scripts.append.prepare_invoke();
            for k in &ctx.keys[i] {
                inv.key(k);
            }
            let (head, feed) = ctx.head(now, &ctx.ids[i], &ctx.append_details[i]);
            if let Some(k) = feed {
                inv.key(k);
            }
            inv.arg(head)
                .arg((now + ctx.ttl_ms).to_string())
                .arg(ctx.pexpire_ms.to_string())
                .arg(ctx.max_frames.to_string())
                .arg(ctx.append_middle[0].to_string())
                .arg(ctx.append_middle[1].to_string())
                .arg(ctx.append_middle[2].to_string())
                .arg(&ctx.frame_prefix[..])
                .arg(&ctx.suffixes[i][..]);
            let mut conn = ctx.conn.clone();
            let v: Value = inv.invoke_async(&mut conn).await.map_err(err)?;
            appended_one(&v)
        })
    })
}

/// `create`: one pipeline of `EVALSHA reserve`, `EVALSHA create` and the listing `ZADD`
/// (what Shoal sends on a single server); session ids `<tag><task>-<n>`.
pub(crate) fn create(ctx: &Arc<RawCtx>, tag: &str) -> OpFn {
    let ctx = Arc::clone(ctx);
    let tag: Arc<str> = Arc::from(tag);
    Arc::new(move |task, n, _r| -> OpFuture {
        let ctx = Arc::clone(&ctx);
        let tag = Arc::clone(&tag);
        Box::pin(async move {
            let id = format!("{tag}{task}-{n}");
            let now = now_ms();
            let expires = now + ctx.ttl_ms;
            let mut conn = ctx.conn.clone();
            let mut inv = ctx.scripts.create_placed.prepare_invoke();
            for k in session_keys(&ctx.prefix, &id) {
                inv.key(k);
            }
            inv.key(layout::capacity_key(&ctx.prefix))
                .key(layout::listing_key(&ctx.prefix, layout::bucket_of(&id)));
            let (head, feed) = ctx.head(now, &id, &ctx.create_detail);
            if let Some(k) = feed {
                inv.key(k);
            }
            let p = &ctx.create_pairs;
            let now_s = now.to_string();
            let exp_s = expires.to_string();
            inv.arg(head)
                .arg(ctx.pexpire_ms.to_string())
                .arg(&exp_s)
                .arg(ctx.max_sessions.min(i64::MAX as u64))
                .arg(&id);
            for (j, (k, v)) in p.pairs.iter().enumerate() {
                inv.arg(&k[..]);
                if j == p.activity {
                    inv.arg(p.activity_value(&now_s, &exp_s));
                } else {
                    inv.arg(&v[..]);
                }
            }
            let created: Value = inv.invoke_async(&mut conn).await.map_err(err)?;
            script_ok(&created)
        })
    })
}

/// Deletes every key under `prefix:` (SCAN + UNLINK, bounded by the keyspace).
pub(crate) async fn delete_prefix(
    conn: &mut ConnectionManager,
    prefix: &str,
) -> anyhow::Result<u64> {
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    let mut deleted = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .context("cleaning up the raw baseline's keys (SCAN)")?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(conn)
                .await
                .context("cleaning up the raw baseline's keys (UNLINK)")?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Opens the raw side's connection with the knobs Shoal's own connection has (connection
/// and response timeouts, retries), so only the Shoal layer differs.
pub(crate) async fn connect(
    config: &shoal_redis::RedisConfig,
) -> anyhow::Result<ConnectionManager> {
    let client = match &config.tls_ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the redis TLS CA file {}", path.display()))?;
            redis::Client::build_with_tls(
                config.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
        }
        None => redis::Client::open(config.url.as_str()),
    }
    .context("the raw baseline cannot use the store URL")?;
    let mgr = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout))
        .set_number_of_retries(config.reconnect_retries)
        .set_max_delay(Duration::from_secs(1));
    tokio::time::timeout(
        config
            .connect_timeout
            .saturating_add(config.response_timeout),
        ConnectionManager::new_with_config(client, mgr),
    )
    .await
    .context("the raw baseline could not connect in time")?
    .context("the raw baseline could not connect")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_around_the_seq() {
        let id = SessionId::new("abc").unwrap();
        let (prefix, suffix) = split_frame(&id, bench_frame(vec![b'x'; 256])).unwrap();
        assert_eq!(&prefix[2..], b"\xa3seq");
        let mut whole = prefix.clone();
        whole.push(7);
        whole.extend_from_slice(&suffix);
        let frame = codec::decode_frame(&id, &whole).unwrap();
        assert_eq!(frame.seq, 7);
        assert_eq!(frame.content.len(), 256);
    }

    #[test]
    fn create_pairs_find_the_per_session_fields() {
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = [("d", "\u{1}blob"), ("a", "1:2:1:0:1:0:1:0")]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let p = CreatePairs::new(pairs.clone()).unwrap();
        assert_eq!(p.activity, 1);
        assert_eq!(p.activity_value("5", "9"), b"5:9:5:0:1:0:1:0");
        assert!(CreatePairs::new(pairs[..1].to_vec()).is_err());
        assert!(CreatePairs::new(vec![(b"a".to_vec(), b"1:2:3".to_vec())]).is_err());
    }

    #[test]
    fn scripts_are_shoal_redis_files() {
        let s = Scripts::new();
        assert!(layout::APPEND_SOURCE.contains("local function load_live"));
        assert!(layout::APPEND_SOURCE.contains("pack_a(t)"));
        let hashes = s.hashes();
        assert!(hashes.iter().all(|(_, h)| h.len() == 40));
    }
}
