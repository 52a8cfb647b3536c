//! [`RedisFeed`]: reading the change feed's Streams (`<prefix>:feed:{f<shard>}`) — from a
//! cursor (`XREAD`), as a consumer group (`XREADGROUP`, `XACK`, `XAUTOCLAIM`) — and its size.
//!
//! Waiting reads on a single server block in Redis (`XREAD BLOCK`, at most a second per call)
//! on a connection of their own, opened at the first one, so they never hold up the store's
//! multiplexed connections. On a Cluster (several shards, in other slots) a waiting read polls
//! every [`CLUSTER_POLL`].

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use redis::{Cmd, Value};
use shoal_core::{
    Change, ChangeFeed, Error, FeedCursor, FeedId, Result,
    feed::{
        FeedStats, GroupStart, GroupStats,
        reader::{check_count, check_name},
    },
};
use tokio::sync::Mutex;

use super::{
    exec::{int_of, u64_of},
    handle::{RedisStore, StoreState},
};
use crate::{
    config::Topology,
    conn::{self, Conn},
    meta::bytes_of,
};

/// The longest one blocking `XREAD` waits; longer waits are several calls.
const MAX_BLOCK: Duration = Duration::from_secs(1);
/// How often a waiting read polls a Cluster's shards.
pub const CLUSTER_POLL: Duration = Duration::from_millis(50);

/// The change feed of a [`RedisStore`] (see `shoal_core::feed` for the entries and the
/// guarantees). Get it with [`SessionStore::change_feed`](shoal_core::SessionStore::change_feed)
/// or [`RedisStore::feed`].
pub struct RedisFeed {
    state: Arc<StoreState>,
    /// The connection waiting reads block on (single server), opened at the first one.
    blocking: Mutex<Option<Conn>>,
}

impl std::fmt::Debug for RedisFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFeed")
            .field("shards", &self.state.feed_shards())
            .finish()
    }
}

impl RedisStore {
    /// This store's change feed, when it writes one (`RedisConfig::feed`).
    pub fn feed(&self) -> Option<Arc<RedisFeed>> {
        self.state.config.feed.enabled.then(|| {
            Arc::new(RedisFeed {
                state: Arc::clone(&self.state),
                blocking: Mutex::new(None),
            })
        })
    }
}

/// `s` as text (stream ids, field names and values are ASCII/UTF-8 we wrote).
fn text(v: &Value) -> Option<String> {
    bytes_of(v).map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The elements of an array (or the flattened pairs of a map) reply.
fn items(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Map(m) => m.iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// One stream entry `[id, [field, value, ...]]` of shard `shard` (`None` for a deleted
/// entry, which `XAUTOCLAIM` on older servers reports as nil fields).
fn entry(shard: u16, v: &Value) -> Option<Change> {
    let parts = items(v);
    let id = FeedId::parse_stream_id(shard, &text(parts.first()?)?).ok()?;
    let fields = items(parts.get(1)?);
    let pairs: Vec<(String, String)> = fields
        .chunks(2)
        .filter_map(|p| Some((text(p.first()?)?, text(p.get(1)?)?)))
        .collect();
    Some(Change::from_fields(
        id,
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ))
}

/// The entries of an `XREAD`/`XREADGROUP` reply for one key (nil: none).
fn read_reply(shard: u16, v: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    let top = items(v);
    // [[key, [entries]]] (RESP2) or {key: [entries]} (RESP3, flattened to key, entries).
    let streams: Vec<&Value> = match v {
        Value::Map(_) => top.chunks(2).filter_map(|p| p.get(1).copied()).collect(),
        _ => top
            .iter()
            .filter_map(|s| items(s).get(1).copied())
            .collect(),
    };
    for s in streams {
        out.extend(items(s).into_iter().filter_map(|e| entry(shard, e)));
    }
    out
}

impl RedisFeed {
    fn shards(&self) -> u16 {
        self.state.feed_shards()
    }

    fn key(&self, shard: u16) -> String {
        self.state.keys.feed(shard)
    }

    async fn run(&self, op: &'static str, cmd: Cmd) -> Result<Value> {
        self.state.cmd(op, None, cmd).await
    }

    /// One blocking `XREAD` on the feed's own connection (single server).
    async fn blocking_read(&self, after: FeedId, count: usize, block: Duration) -> Result<Value> {
        let mut guard = self.blocking.lock().await;
        if guard.is_none() {
            let mut config = self.state.config.clone();
            config.connections = 1;
            config.response_timeout = config.response_timeout.saturating_add(MAX_BLOCK);
            let topology = Topology::parse(&config.url)?;
            let mut conns = conn::connect(&config, &topology).await?;
            *guard = conns.pop();
        }
        let Some(c) = guard.as_mut() else {
            return Err(Error::backend("redis feed: no connection"));
        };
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(self.key(0))
            .arg(after.stream_id());
        let deadline = self.state.deadline.saturating_add(block);
        match tokio::time::timeout(deadline, cmd.query_async::<Value>(c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *guard = None;
                Err(self.state.map_error(e, "feed read", None))
            }
            Err(_) => {
                *guard = None;
                Err(Error::Timeout {
                    op: "feed read",
                    after: deadline,
                })
            }
        }
    }

    /// One non-blocking read of every shard after `cursor`, merged by time.
    async fn read_once(&self, cursor: &FeedCursor, count: usize) -> Result<Vec<Change>> {
        let mut out = Vec::new();
        for shard in 0..self.shards() {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(self.key(shard))
                .arg(cursor.position(shard).stream_id());
            let v = self.run("feed read", cmd).await?;
            out.extend(read_reply(shard, &v));
        }
        out.sort_by_key(|c| (c.id.ms, c.id.seq, c.id.shard));
        out.truncate(count);
        Ok(out)
    }

    /// `XREADGROUP` of shard `shard` for `consumer`, non-blocking or blocking `block`.
    async fn group_read_shard(
        &self,
        shard: u16,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<Change>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(self.key(shard))
            .arg(">");
        let v = self
            .state
            .cmd("feed group read", None, cmd)
            .await
            .map_err(|e| no_group(e, group))?;
        Ok(read_reply(shard, &v))
    }
}

/// A missing group is `NOGROUP` from Redis: say which.
fn no_group(e: Error, group: &str) -> Error {
    if e.to_string().contains("NOGROUP") {
        Error::invalid(format!("no consumer group {group:?} on the feed"))
    } else {
        e
    }
}

#[async_trait]
impl ChangeFeed for RedisFeed {
    fn shards(&self) -> u16 {
        self.state.feed_shards()
    }

    async fn end(&self) -> Result<FeedCursor> {
        self.state.flush_feed().await;
        let mut ids = Vec::new();
        for shard in 0..RedisFeed::shards(self) {
            let mut cmd = redis::cmd("XREVRANGE");
            cmd.arg(self.key(shard))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
            let v = self.run("feed end", cmd).await?;
            let last = items(&v)
                .first()
                .and_then(|e| entry(shard, e))
                .map_or(FeedId::new(shard, 0, 0), |c| c.id);
            ids.push(last);
        }
        Ok(FeedCursor::from_ids(ids))
    }

    async fn read(
        &self,
        cursor: &FeedCursor,
        count: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<Change>> {
        check_count(count)?;
        self.state.flush_feed().await;
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            let got = self.read_once(cursor, count).await?;
            let Some(deadline) = deadline else {
                return Ok(got);
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !got.is_empty() || left.is_zero() {
                return Ok(got);
            }
            if self.state.cluster {
                tokio::time::sleep(left.min(CLUSTER_POLL)).await;
            } else {
                let v = self
                    .blocking_read(cursor.position(0), count, left.min(MAX_BLOCK))
                    .await?;
                let got = read_reply(0, &v);
                if !got.is_empty() {
                    return Ok(got);
                }
            }
        }
    }

    async fn create_group(&self, group: &str, start: GroupStart) -> Result<bool> {
        check_name("consumer group", group)?;
        let mut created = false;
        for shard in 0..RedisFeed::shards(self) {
            let mut cmd = redis::cmd("XGROUP");
            cmd.arg("CREATE")
                .arg(self.key(shard))
                .arg(group)
                .arg(match start {
                    GroupStart::Beginning => "0",
                    _ => "$",
                })
                .arg("MKSTREAM");
            match self.run("feed group create", cmd).await {
                Ok(_) => created = true,
                Err(e) if e.to_string().contains("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(created)
    }

    async fn read_group(
        &self,
        group: &str,
        consumer: &str,
        count: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<Change>> {
        check_name("consumer group", group)?;
        check_name("consumer", consumer)?;
        check_count(count)?;
        self.state.flush_feed().await;
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        loop {
            // Shards one by one, each asked only for what is still wanted: every entry
            // delivered is returned (none left pending unseen).
            let mut out = Vec::new();
            for shard in 0..RedisFeed::shards(self) {
                let want = count - out.len();
                if want == 0 {
                    break;
                }
                out.extend(self.group_read_shard(shard, group, consumer, want).await?);
            }
            let Some(deadline) = deadline else {
                return Ok(out);
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !out.is_empty() || left.is_zero() {
                return Ok(out);
            }
            let step = if self.state.cluster {
                CLUSTER_POLL
            } else {
                Duration::from_millis(10)
            };
            tokio::time::sleep(left.min(step)).await;
        }
    }

    async fn ack(&self, group: &str, ids: &[FeedId]) -> Result<u64> {
        check_name("consumer group", group)?;
        let mut acked = 0;
        for shard in 0..RedisFeed::shards(self) {
            let mine: Vec<String> = ids
                .iter()
                .filter(|i| i.shard == shard)
                .map(FeedId::stream_id)
                .collect();
            for chunk in mine.chunks(1000) {
                let mut cmd = redis::cmd("XACK");
                cmd.arg(self.key(shard)).arg(group).arg(chunk);
                acked += u64_of(&self.run("feed ack", cmd).await?).unwrap_or(0);
            }
        }
        Ok(acked)
    }

    async fn claim_stale(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Change>> {
        check_name("consumer group", group)?;
        check_name("consumer", consumer)?;
        check_count(count)?;
        self.state.flush_feed().await;
        let mut out = Vec::new();
        for shard in 0..RedisFeed::shards(self) {
            let mut start = "0-0".to_string();
            // Bounded: each round moves the cursor forward or ends.
            for _ in 0..1000 {
                let want = count - out.len();
                if want == 0 {
                    break;
                }
                let mut cmd = redis::cmd("XAUTOCLAIM");
                cmd.arg(self.key(shard))
                    .arg(group)
                    .arg(consumer)
                    .arg(min_idle.as_millis() as u64)
                    .arg(&start)
                    .arg("COUNT")
                    .arg(want);
                let v = self
                    .run("feed claim", cmd)
                    .await
                    .map_err(|e| no_group(e, group))?;
                let parts = items(&v);
                let next = parts.first().and_then(|n| text(n)).unwrap_or_default();
                if let Some(entries) = parts.get(1) {
                    out.extend(items(entries).into_iter().filter_map(|e| entry(shard, e)));
                }
                if next == "0-0" || next.is_empty() || next == start {
                    break;
                }
                start = next;
            }
        }
        Ok(out)
    }

    async fn stats(&self) -> Result<FeedStats> {
        self.state.flush_feed().await;
        let shards = RedisFeed::shards(self);
        let mut stats = FeedStats {
            cap: self.state.config.feed.cap,
            shards,
            ..FeedStats::default()
        };
        let mut bytes = 0u64;
        let mut groups: std::collections::BTreeMap<String, GroupStats> = Default::default();
        for shard in 0..shards {
            let key = self.key(shard);
            let mut len = redis::cmd("XLEN");
            len.arg(&key);
            stats.length += u64_of(&self.run("feed stats", len).await?).unwrap_or(0);
            let mut mem = redis::cmd("MEMORY");
            mem.arg("USAGE").arg(&key).arg("SAMPLES").arg(0);
            // MEMORY may be refused by an ACL: the size is then unknown.
            if let Ok(v) = self.run("feed stats", mem).await {
                bytes += u64_of(&v).unwrap_or(0);
            }
            let mut last = redis::cmd("XREVRANGE");
            last.arg(&key).arg("+").arg("-").arg("COUNT").arg(1);
            let v = self.run("feed stats", last).await?;
            stats.last.push(
                items(&v)
                    .first()
                    .and_then(|e| entry(shard, e))
                    .map(|c| c.id),
            );
            let mut info = redis::cmd("XINFO");
            info.arg("GROUPS").arg(&key);
            let Ok(v) = self.run("feed stats", info).await else {
                continue; // no stream yet
            };
            for g in items(&v) {
                let f = items(g);
                let field = |name: &str| {
                    f.chunks(2)
                        .find(|p| p.first().and_then(|k| text(k)).as_deref() == Some(name))
                        .and_then(|p| p.get(1).copied())
                };
                let Some(name) = field("name").and_then(text) else {
                    continue;
                };
                let e = groups.entry(name.clone()).or_insert(GroupStats {
                    name,
                    pending: 0,
                    consumers: 0,
                    lag: Some(0),
                });
                e.pending += field("pending").and_then(u64_of).unwrap_or(0);
                e.consumers = e
                    .consumers
                    .max(field("consumers").and_then(u64_of).unwrap_or(0));
                let lag = field("lag").and_then(|v| int_of(v).map(|n| n.max(0) as u64));
                e.lag = match (e.lag, lag) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
            }
        }
        stats.bytes = Some(bytes);
        stats.groups = groups.into_values().collect();
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_resp2_and_resp3_stream_replies() {
        let e = Value::Array(vec![
            bulk("5-1"),
            Value::Array(vec![
                bulk("v"),
                bulk("1"),
                bulk("k"),
                bulk("touched"),
                bulk("s"),
                bulk("a"),
            ]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("key"),
            Value::Array(vec![e.clone()]),
        ])]);
        let resp3 = Value::Map(vec![(bulk("key"), Value::Array(vec![e]))]);
        for v in [resp2, resp3] {
            let got = read_reply(2, &v);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].id, FeedId::new(2, 5, 1));
            assert_eq!(got[0].session_id, "a");
        }
        assert!(read_reply(0, &Value::Nil).is_empty());
    }
}
