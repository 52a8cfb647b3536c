//! [`RedisStore`]: the [`SessionStore`] on Redis.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use futures_util::{StreamExt, stream};
use redis::{Cmd, RedisError, Script, Value, cluster_routing::Slot};
use shoal_core::{
    Clock, Direction, Error, Frame, FramePage, FrameQuery, GetMany, Health, HealthStatus,
    ItemError, Limits, ListPage, ListQuery, NewFrame, PendingRequest, RequestId, Result, Session,
    SessionFilter, SessionId, SessionRecord, SessionStatus, SessionStore, SweepReport, SystemClock,
    Timestamp, codec,
};

use crate::{
    config::{RedisConfig, Topology},
    conn::{self, Conn},
    errors,
    keys::{BUCKETS, Keys, bucket_of},
    meta::{self, MAX_LUA_INT, StoredPending, bytes_of, hash_pairs},
    scripts::Scripts,
};

/// How many sessions a sweep or list pass reads per index command.
const SCAN_CHUNK: usize = 256;
/// Concurrent commands when one operation fans out over many cluster slots.
const FAN_OUT: usize = 32;
/// Bound on index batches one sweep examines per bucket.
const MAX_SWEEP_ROUNDS: usize = 10_000;

/// Script reply statuses (see `scripts/common.lua`).
const ST_OK: i64 = 0;
const ST_NOT_FOUND: i64 = -1;
const ST_EXISTS: i64 = -2;
const ST_CONFLICT: i64 = -3;
const ST_PENDING_LIMIT: i64 = -4;
const ST_CORRUPT: i64 = -9;

/// The Redis [`SessionStore`]: standalone, Cluster or Sentinel, chosen by the URL.
///
/// Cloning shares the connections. See the crate docs for the key schema and the consistency
/// model.
///
/// ```no_run
/// use std::sync::Arc;
/// use shoal_core::{Limits, Session, SessionId, SessionStore, SystemClock, Transport};
/// use shoal_redis::{RedisConfig, RedisStore};
///
/// # async fn demo() -> shoal_core::Result<()> {
/// let store = RedisStore::connect(
///     RedisConfig::new("redis://127.0.0.1:6379"),
///     Limits::default(),
///     Arc::new(SystemClock),
/// )
/// .await?;
/// let s = store.create(Session::new(SessionId::generate(), Transport::StreamableHttp)).await?;
/// assert_eq!(s.revision, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conns: Vec<Conn>,
    next: AtomicUsize,
    keys: Keys,
    limits: Limits,
    clock: Arc<dyn Clock>,
    config: RedisConfig,
    topology: &'static str,
    cluster: bool,
    scripts: Scripts,
    metrics: PendingMetrics,
    /// The encoded-frame bytes before the seq value (see `append.lua`).
    frame_prefix: Vec<u8>,
    /// Bound on one Redis call, reconnection included.
    deadline: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.inner.config)
            .field("topology", &self.inner.topology)
            .field("limits", &self.inner.limits)
            .finish()
    }
}

/// The background sweeper of [`RedisStore::spawn_sweeper`]; stops when dropped.
#[derive(Debug)]
pub struct RedisSweeper {
    task: tokio::task::JoinHandle<()>,
}

impl RedisSweeper {
    /// Stops the sweeper (a pass in progress is abandoned; the lease lapses by itself).
    pub fn stop(self) {}
}

impl Drop for RedisSweeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counters kept in Redis under `<prefix>:metrics:*`, summed over every instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisMetrics {
    /// Sessions created (and restored).
    pub created: u64,
    /// Updates that moved a session to `completed`.
    pub completed: u64,
    /// Updates that moved a session to `failed`.
    pub failed: u64,
    /// Sessions deleted by `delete`.
    pub deleted: u64,
    /// Frames appended.
    pub frames: u64,
}

const METRIC_NAMES: [&str; 5] = ["created", "completed", "failed", "deleted", "frames"];
const M_CREATED: usize = 0;
const M_COMPLETED: usize = 1;
const M_FAILED: usize = 2;
const M_DELETED: usize = 3;
const M_FRAMES: usize = 4;

/// Counter increments not yet written to Redis. They are flushed by one background task at a
/// time (so an operation never waits for a metrics write) and by [`RedisStore::metrics`].
#[derive(Default)]
struct PendingMetrics {
    counts: [AtomicU64; 5],
    flushing: AtomicBool,
    /// Held from taking the counts until Redis has them, so [`RedisStore::metrics`] (and so a
    /// CLI command's final report) waits for a background flush already under way instead of
    /// finding nothing to flush and reading counters that miss its increments — which the
    /// process exiting could then drop.
    sending: tokio::sync::Mutex<()>,
}

/// The encoded-frame prefix up to the seq value, derived from the codec itself, so a codec
/// change that moves the seq is caught instead of silently writing bad frames.
fn frame_prefix() -> Result<Vec<u8>> {
    let probe = NewFrame::new(Direction::ClientToServer, Vec::new()).into_frame(
        SessionId::new("p").map_err(|e| Error::backend(e.to_string()))?,
        0,
    );
    let bytes = codec::encode_frame(&probe).map_err(|e| Error::backend(e.to_string()))?;
    // envelope, map header, "seq" as a 3-byte fixstr, then the value 0 (one byte).
    if bytes.len() < 7 || &bytes[2..6] != b"\xa3seq" || bytes[6] != 0 {
        return Err(Error::backend(
            "the frame codec no longer starts with the seq field; the redis append script \
             needs updating",
        ));
    }
    Ok(bytes[..6].to_vec())
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => std::str::from_utf8(bytes_of(other)?).ok()?.parse().ok(),
    }
}

fn u64_of(v: &Value) -> Option<u64> {
    int_of(v).and_then(|n| u64::try_from(n).ok())
}

fn array(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(items) | Value::Set(items) => Some(items),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

fn server_error(v: &Value) -> Option<RedisError> {
    match v {
        Value::ServerError(e) => Some(RedisError::from(e.clone())),
        _ => None,
    }
}

fn not_found(id: &SessionId) -> Error {
    Error::session_not_found(id)
}

fn cursor_of(bucket: u32, member: &str) -> String {
    format!("{bucket:04}:{member}")
}

fn parse_cursor(cursor: Option<&str>) -> Result<(u32, Option<String>)> {
    let Some(c) = cursor else {
        return Ok((0, None));
    };
    let bad = || Error::invalid(format!("bad list cursor {c:?}"));
    let (b, member) = c.split_once(':').ok_or_else(bad)?;
    let bucket: u32 = b.parse().map_err(|_| bad())?;
    if bucket >= BUCKETS || b.len() != 4 {
        return Err(bad());
    }
    if member.is_empty() {
        return Ok((bucket, None));
    }
    SessionId::new(member).map_err(|_| bad())?;
    Ok((bucket, Some(member.to_string())))
}

impl RedisStore {
    /// Connects with `config`, enforcing `limits` and reading time from `clock`.
    ///
    /// Fails within `config.connect_timeout` with [`Error::Unavailable`] if Redis cannot be
    /// reached, [`Error::Backend`] if it refuses the credentials, [`Error::InvalidInput`] for
    /// a bad configuration.
    pub async fn connect(
        config: RedisConfig,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        config.validate()?;
        let topology = Topology::parse(&config.url)?;
        let conns = conn::connect(&config, &topology).await?;
        let store = RedisStore {
            inner: Arc::new(Inner {
                conns,
                next: AtomicUsize::new(0),
                keys: Keys::new(&config.key_prefix),
                limits,
                clock,
                deadline: config.connect_timeout + config.response_timeout,
                topology: topology.name(),
                cluster: matches!(topology, Topology::Cluster { .. }),
                config,
                scripts: Scripts::new(),
                metrics: PendingMetrics::default(),
                frame_prefix: frame_prefix()?,
            }),
        };
        // Prove the connection (and the credentials) now, not at the first request.
        store.inner.cmd("connect", None, redis::cmd("PING")).await?;
        Ok(store)
    }

    /// Connects with default limits and the system clock.
    pub async fn connect_default(config: RedisConfig) -> Result<Self> {
        RedisStore::connect(config, Limits::default(), Arc::new(SystemClock)).await
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// `standalone`, `cluster` or `sentinel`.
    pub fn topology(&self) -> &'static str {
        self.inner.topology
    }

    /// Starts a task on the current Tokio runtime that calls
    /// [`sweep_expired`](SessionStore::sweep_expired) every `every` (the first pass after one
    /// period). Any number of instances may run one: the sweep lease lets one of them work at
    /// a time. The task holds no strong reference to the store; it ends when the returned
    /// handle is dropped or the store is gone.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn_sweeper(&self, every: Duration) -> RedisSweeper {
        let weak = Arc::downgrade(&self.inner);
        let every = every.max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let store = RedisStore { inner };
                match store.sweep_expired().await {
                    Ok(r) if r.removed > 0 || r.repaired > 0 => {
                        tracing::debug!(
                            removed = r.removed,
                            repaired = r.repaired,
                            "redis sweeper"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "redis sweeper pass failed"),
                }
            }
        });
        RedisSweeper { task }
    }

    /// One `HMGET` of `fields` on the session's meta hash (the cache's cheap version check,
    /// see `invalidation.rs`); one value per field, `Nil` where absent.
    pub(crate) async fn meta_fields(&self, id: &SessionId, fields: &[&str]) -> Result<Vec<Value>> {
        let mut c = redis::cmd("HMGET");
        c.arg(self.inner.keys.meta(id)).arg(fields);
        Ok(array(self.inner.cmd("stamp", Some(id), c).await?).unwrap_or_default())
    }

    /// Writes pending counter increments and reads the counters.
    pub async fn metrics(&self) -> Result<RedisMetrics> {
        self.inner.flush_metrics().await?;
        let cmds: Vec<(String, Cmd)> = METRIC_NAMES
            .iter()
            .map(|n| {
                let key = self.inner.keys.metric(n);
                let mut c = redis::cmd("GET");
                c.arg(&key);
                (key, c)
            })
            .collect();
        let values = self.inner.multi("metrics", cmds).await?;
        let get = |i: usize| values.get(i).and_then(u64_of).unwrap_or(0);
        Ok(RedisMetrics {
            created: get(M_CREATED),
            completed: get(M_COMPLETED),
            failed: get(M_FAILED),
            deleted: get(M_DELETED),
            frames: get(M_FRAMES),
        })
    }

    fn bump(&self, metric: usize, n: u64) {
        if n == 0 {
            return;
        }
        let inner = &self.inner;
        inner.metrics.counts[metric].fetch_add(n, Ordering::Relaxed);
        if inner.metrics.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            inner.metrics.flushing.store(false, Ordering::Release);
            return;
        };
        let inner = Arc::clone(&self.inner);
        handle.spawn(async move {
            if let Err(e) = inner.flush_metrics().await {
                tracing::debug!(error = %e, "redis metrics flush failed; will retry later");
            }
            inner.metrics.flushing.store(false, Ordering::Release);
        });
    }
}

impl Inner {
    fn conn(&self) -> Conn {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len().max(1);
        // `connect` always opens at least one connection.
        self.conns[i].clone()
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn expiry_from(&self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.limits.session_ttl)
    }

    /// Server-side TTL for keys whose logical expiry is `expires_at`: the remaining time plus
    /// the grace, at least one second.
    fn pexpire_ms(&self, expires_at: Timestamp, now: Timestamp) -> u64 {
        let remaining = expires_at.as_millis().saturating_sub(now.as_millis());
        let grace = u64::try_from(self.config.expiry_grace.as_millis()).unwrap_or(u64::MAX);
        remaining
            .saturating_add(grace)
            .clamp(1_000, i64::MAX as u64 / 2)
    }

    /// Runs one Redis call under the deadline and maps its error.
    async fn io<T>(
        &self,
        op: &'static str,
        id: Option<&SessionId>,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.deadline, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(errors::map(e, op, id, self.config.response_timeout)),
            Err(_) => Err(Error::Timeout {
                op,
                after: self.deadline,
            }),
        }
    }

    async fn cmd(&self, op: &'static str, id: Option<&SessionId>, cmd: Cmd) -> Result<Value> {
        let mut c = self.conn();
        self.io(op, id, cmd.query_async::<Value>(&mut c)).await
    }

    /// Runs a per-session script with the session's three keys and returns its reply array.
    async fn script(
        &self,
        op: &'static str,
        id: &SessionId,
        script: &Script,
        args: Vec<Vec<u8>>,
    ) -> Result<Vec<Value>> {
        let mut inv = script.prepare_invoke();
        for k in self.keys.session(id) {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut c = self.conn();
        let reply = self
            .io(op, Some(id), inv.invoke_async::<Value>(&mut c))
            .await?;
        array(reply)
            .ok_or_else(|| Error::backend(format!("redis {op}: the script gave a non-array reply")))
    }

    /// Handles the statuses every live-session script shares; returns the reply on `ok`.
    async fn live(
        &self,
        op: &'static str,
        id: &SessionId,
        reply: Vec<Value>,
    ) -> Result<Vec<Value>> {
        match reply.first().and_then(int_of) {
            Some(ST_OK) => Ok(reply),
            Some(ST_NOT_FOUND) => {
                if reply.get(1).and_then(int_of) == Some(1) {
                    self.unindex(&[id.as_str()]).await;
                }
                Err(not_found(id))
            }
            Some(ST_CORRUPT) => Err(self.corrupt_status(id, &reply)),
            other => Err(Error::backend(format!(
                "redis {op}: unexpected script status {other:?}"
            ))),
        }
    }

    fn corrupt_status(&self, id: &SessionId, reply: &[Value]) -> Error {
        let text = |i: usize| {
            reply
                .get(i)
                .and_then(bytes_of)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let field = text(1).unwrap_or_default();
        let reason = match text(2).as_deref() {
            Some("schema1") => meta::SCHEMA1.to_owned(),
            Some(r) => r.to_owned(),
            None => "not valid".to_owned(),
        };
        meta::corrupt(id, &field, reason)
    }

    /// Runs commands that may live in different slots: one pipeline on a single server; on a
    /// cluster one pipeline per slot, concurrently. Each command comes with the key that routes
    /// it. Per-command server errors stay in place as `Value::ServerError`.
    async fn multi(&self, op: &'static str, cmds: Vec<(String, Cmd)>) -> Result<Vec<Value>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        if !self.cluster {
            let n = cmds.len();
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (_, c) in cmds {
                pipe.add_command(c);
            }
            let mut c = self.conn();
            let values: Vec<Value> = self.io(op, None, pipe.query_async(&mut c)).await?;
            if values.len() != n {
                return Err(Error::backend(format!(
                    "redis {op}: {} replies for {n} commands",
                    values.len(),
                )));
            }
            return Ok(values);
        }
        let mut groups: HashMap<Slot, Vec<(usize, Cmd)>> = HashMap::new();
        let n = cmds.len();
        for (i, (key, c)) in cmds.into_iter().enumerate() {
            groups
                .entry(Slot::for_key(key.as_bytes()))
                .or_default()
                .push((i, c));
        }
        let results: Vec<Result<Vec<(usize, Value)>>> = stream::iter(groups.into_values())
            .map(|group| async move {
                let mut pipe = redis::pipe();
                pipe.ignore_errors();
                for (_, c) in &group {
                    pipe.add_command(c.clone());
                }
                let mut c = self.conn();
                let values: Vec<Value> = self.io(op, None, pipe.query_async(&mut c)).await?;
                if values.len() != group.len() {
                    return Err(Error::backend(format!(
                        "redis {op}: {} replies for {} commands",
                        values.len(),
                        group.len()
                    )));
                }
                Ok(group.into_iter().map(|(i, _)| i).zip(values).collect())
            })
            .buffer_unordered(FAN_OUT)
            .collect()
            .await;
        let mut out = vec![Value::Nil; n];
        for r in results {
            for (i, v) in r? {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Adds sessions to their listing buckets and to the capacity set, which is also the
    /// expiry index (after their per-session write).
    async fn index(&self, entries: &[(&str, Timestamp)]) -> Result<()> {
        let mut by_bucket: BTreeMap<u32, Vec<(&str, Timestamp)>> = BTreeMap::new();
        for (id, exp) in entries {
            by_bucket.entry(bucket_of(id)).or_default().push((id, *exp));
        }
        let mut cmds = Vec::new();
        for (b, items) in by_bucket {
            let mut zall = redis::cmd("ZADD");
            zall.arg(self.keys.all(b));
            for (id, _) in items {
                zall.arg(0).arg(id);
            }
            cmds.push((self.keys.all(b), zall));
        }
        let cap = self.keys.cap();
        let mut zcap = redis::cmd("ZADD");
        zcap.arg(&cap);
        for (id, exp) in entries {
            zcap.arg(exp.as_millis()).arg(*id);
        }
        cmds.push((cap, zcap));
        let values = self.multi("index", cmds).await?;
        match values.iter().find_map(server_error) {
            Some(e) => Err(errors::map(e, "index", None, self.config.response_timeout)),
            None => Ok(()),
        }
    }

    /// Removes members from their listing buckets and the capacity set. Best effort: a
    /// failure leaves a dangling member that readers and the sweeper remove later.
    async fn unindex(&self, ids: &[&str]) {
        if ids.is_empty() {
            return;
        }
        let mut by_bucket: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for id in ids {
            by_bucket.entry(bucket_of(id)).or_default().push(id);
        }
        let mut cmds = Vec::new();
        for (b, members) in by_bucket {
            let key = self.keys.all(b);
            let mut c = redis::cmd("ZREM");
            c.arg(&key).arg(&members);
            cmds.push((key, c));
        }
        let cap = self.keys.cap();
        let mut c = redis::cmd("ZREM");
        c.arg(&cap).arg(ids);
        cmds.push((cap, c));
        if let Err(e) = self.multi("unindex", cmds).await {
            tracing::warn!(error = %e, "redis: could not remove index entries; they will be repaired later");
        }
    }

    /// Sessions counted against `max_sessions` (live, expired-but-unswept, and the rare
    /// dangling entry alike).
    async fn indexed(&self) -> Result<u64> {
        let mut c = redis::cmd("ZCARD");
        c.arg(self.keys.cap());
        let v = self.cmd("count", None, c).await?;
        Ok(u64_of(&v).unwrap_or(0))
    }

    async fn flush_metrics(&self) -> Result<()> {
        let _sending = self.metrics.sending.lock().await;
        let taken: Vec<u64> = self
            .metrics
            .counts
            .iter()
            .map(|c| c.swap(0, Ordering::AcqRel))
            .collect();
        let cmds: Vec<(String, Cmd)> = METRIC_NAMES
            .iter()
            .zip(&taken)
            .filter(|(_, n)| **n > 0)
            .map(|(name, n)| {
                let key = self.keys.metric(name);
                let mut c = redis::cmd("INCRBY");
                c.arg(&key).arg(*n);
                (key, c)
            })
            .collect();
        if cmds.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.multi("metrics", cmds).await {
            for (c, n) in self.metrics.counts.iter().zip(taken) {
                c.fetch_add(n, Ordering::AcqRel);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Removes `id` if it has expired (lazy expiry outside a write script).
    async fn expire_one(&self, id: &SessionId) -> Result<ExpireOutcome> {
        let now = self.now();
        let reply = self
            .script(
                "expire",
                id,
                &self.scripts.expire,
                vec![now.as_millis().to_string().into_bytes()],
            )
            .await?;
        Ok(match reply.first().and_then(int_of) {
            Some(0) => ExpireOutcome::Gone,
            Some(1) => ExpireOutcome::Removed,
            Some(2) => ExpireOutcome::Live(reply.get(1).and_then(u64_of).unwrap_or(0)),
            _ => ExpireOutcome::Unreadable,
        })
    }

    fn check_metadata(&self, s: &Session) -> Result<()> {
        let max = self.limits.max_metadata_bytes;
        if s.metadata_bytes() > max {
            return Err(Error::LimitExceeded {
                what: "session metadata bytes",
                limit: max as u64,
            });
        }
        Ok(())
    }

    /// Reserves a place for `id` under `max_sessions`, atomically (one script on the
    /// capacity set), sweeping expired sessions once when the store is full. Returns whether
    /// `id` was newly added (so a definite failure can give the place back).
    async fn reserve(
        &self,
        store: &RedisStore,
        id: &SessionId,
        expires: Timestamp,
    ) -> Result<bool> {
        let max = u64::try_from(self.limits.max_sessions).unwrap_or(u64::MAX);
        for attempt in 0..2 {
            match self.reserve_script(id, expires, max).await? {
                1 => return Ok(true),
                2 => return Ok(false),
                _ if attempt == 0 => {
                    // Expired sessions may still hold places; drop them and try once more.
                    store.sweep_expired().await?;
                }
                _ => {}
            }
        }
        Err(Error::LimitExceeded {
            what: "sessions",
            limit: max,
        })
    }

    /// Create's three steps — reserve a place, run the create script, add the listing
    /// entry — as one pipeline, so a create costs one round trip instead of three. Only on a
    /// single server (standalone, Sentinel): the capacity set and the listing bucket live in
    /// other cluster slots than the session.
    ///
    /// Returns the create script's reply and whether the place was newly reserved, or `None`
    /// when the caller must take the step-by-step path: a script was not loaded yet
    /// (`NOSCRIPT`), or the store is full — then the session this pipeline may have created is
    /// removed again first, and the step-by-step path sweeps expired sessions and retries or
    /// refuses. (While it exists, a concurrent `list` or `get` of that id may see it.)
    async fn create_in_one_trip(
        &self,
        id: &SessionId,
        expires: Timestamp,
        args: &[Vec<u8>],
    ) -> Result<Option<(Vec<Value>, bool)>> {
        let max = u64::try_from(self.limits.max_sessions).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("EVALSHA")
            .arg(self.scripts.reserve.get_hash())
            .arg(1)
            .arg(self.keys.cap())
            .arg(id.as_str())
            .arg(expires.as_millis())
            .arg(max.min(i64::MAX as u64));
        let create = pipe
            .cmd("EVALSHA")
            .arg(self.scripts.create.get_hash())
            .arg(3);
        for k in self.keys.session(id) {
            create.arg(k);
        }
        for a in args {
            create.arg(a);
        }
        pipe.cmd("ZADD")
            .arg(self.keys.all(bucket_of(id.as_str())))
            .arg(0)
            .arg(id.as_str());
        let mut c = self.conn();
        let values: Vec<Value> = self
            .io("create", Some(id), pipe.query_async(&mut c))
            .await?;
        let [reserve, created, listed] = <[Value; 3]>::try_from(values).map_err(|v| {
            Error::backend(format!("redis create: {} replies for 3 commands", v.len()))
        })?;
        let noscript = |v: &Value| server_error(v).is_some_and(|e| e.code() == Some("NOSCRIPT"));
        if noscript(&created) {
            // Nothing was created; the step-by-step path loads the scripts (a place this
            // pipeline reserved is found again as "already a member").
            return Ok(None);
        }
        if let Some(e) = server_error(&created) {
            return Err(errors::map(
                e,
                "create",
                Some(id),
                self.config.response_timeout,
            ));
        }
        let reply = array(created)
            .ok_or_else(|| Error::backend("redis create: the script gave a non-array reply"))?;
        let created_now = reply.first().and_then(int_of) == Some(ST_OK);
        let reserved = if noscript(&reserve) {
            if !created_now {
                return Ok(Some((reply, false)));
            }
            match self.reserve_script(id, expires, max).await? {
                0 => None,
                r => Some(r == 1),
            }
        } else if let Some(e) = server_error(&reserve) {
            if created_now {
                self.remove_created(id).await;
            }
            return Err(errors::map(
                e,
                "create",
                Some(id),
                self.config.response_timeout,
            ));
        } else {
            match int_of(&reserve) {
                Some(0) => None,
                Some(1) => Some(true),
                Some(2) => Some(false),
                other => {
                    if created_now {
                        self.remove_created(id).await;
                    }
                    return Err(Error::backend(format!(
                        "redis reserve: unexpected reply {other:?}"
                    )));
                }
            }
        };
        let Some(reserved) = reserved else {
            // Full. Whatever the script did to this id is undone only if it created it.
            if created_now {
                self.remove_created(id).await;
                return Ok(None);
            }
            return Ok(Some((reply, false)));
        };
        if let Some(e) = server_error(&listed) {
            // The session exists; only listing misses it until the index is written again.
            tracing::warn!(session = %id, error = %e, "redis: created session could not be indexed");
        }
        Ok(Some((reply, reserved)))
    }

    /// One run of the reserve script: 1 reserved, 2 already a member, 0 full.
    async fn reserve_script(&self, id: &SessionId, expires: Timestamp, max: u64) -> Result<i64> {
        let mut inv = self.scripts.reserve.prepare_invoke();
        inv.key(self.keys.cap())
            .arg(id.as_str())
            .arg(expires.as_millis())
            .arg(max.min(i64::MAX as u64));
        let mut c = self.conn();
        let v = self
            .io("reserve", Some(id), inv.invoke_async::<Value>(&mut c))
            .await?;
        match int_of(&v) {
            Some(r @ 0..=2) => Ok(r),
            other => Err(Error::backend(format!(
                "redis reserve: unexpected reply {other:?}"
            ))),
        }
    }

    /// Removes a session this instance has just created but may not keep (no place left):
    /// its keys and its index entries. Counters are not touched: it was never counted.
    async fn remove_created(&self, id: &SessionId) {
        let res = self
            .script(
                "create",
                id,
                &self.scripts.delete,
                vec![now_arg(self.now())],
            )
            .await;
        if let Err(e) = res {
            tracing::warn!(session = %id, error = %e, "redis: a session created over the limit could not be removed");
        }
        self.unindex(&[id.as_str()]).await;
    }

    /// Maps the create script's status to the result; a place newly reserved for a session
    /// that was not written is given back.
    async fn created_status(&self, id: &SessionId, reply: &[Value], reserved: bool) -> Result<()> {
        match reply.first().and_then(int_of) {
            Some(ST_OK) => Ok(()),
            Some(ST_EXISTS) => Err(Error::AlreadyExists {
                what: format!("session {:?}", id.as_str()),
            }),
            Some(ST_CORRUPT) => {
                if reserved {
                    self.unreserve(id).await;
                }
                Err(self.corrupt_status(id, reply))
            }
            other => Err(Error::backend(format!(
                "redis create: unexpected script status {other:?}"
            ))),
        }
    }

    /// Gives back a place reserved for a session that was definitely not written.
    async fn unreserve(&self, id: &SessionId) {
        let mut c = redis::cmd("ZREM");
        c.arg(self.keys.cap()).arg(id.as_str());
        if let Err(e) = self.cmd("unreserve", Some(id), c).await {
            tracing::debug!(session = %id, error = %e, "redis: reservation not released");
        }
    }

    /// Sessions from a batch of `HGETALL` replies, in order: `Ok(Some)` readable,
    /// `Ok(None)` absent, `Err` unreadable.
    fn parse_meta_reply(&self, id: &SessionId, v: &Value) -> Result<Option<Session>> {
        if let Some(e) = server_error(v) {
            return Err(errors::map(
                e,
                "get",
                Some(id),
                self.config.response_timeout,
            ));
        }
        meta::parse_session(id, v)
    }

    /// Reads an `HGET meta a` reply. A missing `a` is `NotFound` when the hash is gone, else
    /// `Corrupt` (one more round trip, only then), naming schema 1 when the hash was written
    /// by it.
    async fn activity_reply(
        &self,
        op: &'static str,
        id: &SessionId,
        reply: &Value,
    ) -> Result<meta::Activity> {
        if let Some(a) = bytes_of(reply) {
            return meta::parse_activity(id, a);
        }
        if let Value::ServerError(e) = reply {
            return Err(errors::map(
                RedisError::from(e.clone()),
                op,
                Some(id),
                self.config.response_timeout,
            ));
        }
        let key = self.keys.meta(id);
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(&key);
        pipe.cmd("HEXISTS").arg(&key).arg("expires_at");
        let mut c = self.conn();
        let (exists, schema1): (i64, i64) = self.io(op, Some(id), pipe.query_async(&mut c)).await?;
        match (exists, schema1) {
            (0, _) => Err(not_found(id)),
            (_, 1) => Err(meta::corrupt(id, meta::F_ACTIVITY, meta::SCHEMA1)),
            _ => Err(meta::corrupt(id, meta::F_ACTIVITY, "missing")),
        }
    }

    async fn hgetall_many(&self, ids: &[SessionId]) -> Result<Vec<Value>> {
        let cmds = ids
            .iter()
            .map(|id| {
                let key = self.keys.meta(id);
                let mut c = redis::cmd("HGETALL");
                c.arg(&key);
                (key, c)
            })
            .collect();
        self.multi("get_many", cmds).await
    }
}

enum ExpireOutcome {
    Gone,
    Removed,
    Live(u64),
    Unreadable,
}

fn now_arg(now: Timestamp) -> Vec<u8> {
    now.as_millis().to_string().into_bytes()
}

fn num_arg(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

#[async_trait]
impl SessionStore for RedisStore {
    fn backend_name(&self) -> &'static str {
        "redis"
    }

    fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    async fn create(&self, mut session: Session) -> Result<Session> {
        let inner = &self.inner;
        inner.check_metadata(&session)?;
        let now = inner.now();
        session.created_at = now;
        session.last_activity = now;
        session.expires_at = inner.expiry_from(now);
        session.frame_count = 0;
        session.last_seq = 0;
        session.first_seq = 1;
        session.revision = 1;
        let mut args = vec![
            now_arg(now),
            num_arg(inner.pexpire_ms(session.expires_at, now)),
        ];
        for (k, v) in meta::all_fields(&session, 0)? {
            args.push(k.as_bytes().to_vec());
            args.push(v);
        }
        let id = session.id.clone();
        if !inner.cluster
            && let Some((reply, reserved)) = inner
                .create_in_one_trip(&id, session.expires_at, &args)
                .await?
        {
            inner.created_status(&id, &reply, reserved).await?;
            self.bump(M_CREATED, 1);
            return Ok(session);
        }
        let reserved = inner.reserve(self, &id, session.expires_at).await?;
        let reply = inner
            .script("create", &id, &inner.scripts.create, args)
            .await?;
        inner.created_status(&id, &reply, reserved).await?;
        if let Err(e) = inner.index(&[(id.as_str(), session.expires_at)]).await {
            // The session exists; only listing misses it until the index is written again.
            tracing::warn!(session = %id, error = %e, "redis: created session could not be indexed");
        }
        self.bump(M_CREATED, 1);
        Ok(session)
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Session>> {
        let inner = &self.inner;
        let mut c = redis::cmd("HGETALL");
        c.arg(inner.keys.meta(id));
        let reply = inner.cmd("get", Some(id), c).await?;
        let Some(s) = meta::parse_session(id, &reply)? else {
            return Ok(None);
        };
        if s.is_expired_at(inner.now()) {
            if let ExpireOutcome::Removed | ExpireOutcome::Gone = inner.expire_one(id).await? {
                inner.unindex(&[id.as_str()]).await;
            }
            return Ok(None);
        }
        Ok(Some(s))
    }

    async fn get_many(&self, ids: &[SessionId]) -> Result<GetMany> {
        let inner = &self.inner;
        let replies = inner.hgetall_many(ids).await?;
        let now = inner.now();
        let mut out = GetMany::default();
        for (id, v) in ids.iter().zip(&replies) {
            match inner.parse_meta_reply(id, v) {
                Ok(Some(s)) if !s.is_expired_at(now) => out.found.push(s),
                Ok(_) => out.missing.push(id.clone()),
                Err(e @ Error::Corrupt { .. }) => push_item_error(&mut out.errors, id, e),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn update(&self, session: &Session) -> Result<Session> {
        let inner = &self.inner;
        inner.check_metadata(session)?;
        let now = inner.now();
        let expires = inner.expiry_from(now);
        let blob = meta::encode_desc(session)?;
        let mut args = vec![
            now_arg(now),
            num_arg(expires.as_millis()),
            num_arg(inner.pexpire_ms(expires, now)),
            num_arg(session.revision.min(MAX_LUA_INT)),
        ];
        for (k, v) in meta::chunk_fields(&blob) {
            args.push(k.as_bytes().to_vec());
            args.push(v);
        }
        let id = &session.id;
        let reply = inner
            .script("update", id, &inner.scripts.update, args)
            .await?;
        if reply.first().and_then(int_of) == Some(ST_CONFLICT) {
            return Err(Error::Conflict {
                what: format!("session {:?}", id.as_str()),
                expected: session.revision,
                actual: reply.get(1).and_then(u64_of).unwrap_or(0),
            });
        }
        let reply = inner.live("update", id, reply).await?;
        let (Some(old), Some(a)) = (
            reply.get(1).and_then(bytes_of),
            reply.get(2).and_then(bytes_of),
        ) else {
            return Err(Error::backend("redis update: bad reply"));
        };
        // What is stored now: the blob just written, with the script's field a.
        let stored = meta::assemble(id, a, &blob)?;
        let metric = match stored.status {
            SessionStatus::Completed => Some(M_COMPLETED),
            SessionStatus::Failed => Some(M_FAILED),
            _ => None,
        };
        if let Some(m) = metric
            && meta::desc_status(old) != Some(stored.status)
        {
            self.bump(m, 1);
        }
        Ok(stored)
    }

    async fn touch(&self, id: &SessionId) -> Result<Timestamp> {
        let inner = &self.inner;
        let now = inner.now();
        let expires = inner.expiry_from(now);
        let args = vec![
            now_arg(now),
            num_arg(expires.as_millis()),
            num_arg(inner.pexpire_ms(expires, now)),
        ];
        let reply = inner
            .script("touch", id, &inner.scripts.touch, args)
            .await?;
        inner.live("touch", id, reply).await?;
        Ok(expires)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let inner = &self.inner;
        let reply = inner
            .script(
                "delete",
                id,
                &inner.scripts.delete,
                vec![now_arg(inner.now())],
            )
            .await?;
        let existed = reply.first().and_then(int_of) == Some(1);
        inner.unindex(&[id.as_str()]).await;
        if existed {
            self.bump(M_DELETED, 1);
        }
        Ok(existed)
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        query.validate()?;
        let inner = &self.inner;
        let (mut bucket, mut after) = parse_cursor(query.cursor.as_deref())?;
        let now = inner.now();
        let chunk = (query.limit + 1).clamp(16, 1000);
        let mut page = ListPage::default();
        let mut last_pos: Option<(u32, String)> = None;
        let mut dangling: Vec<String> = Vec::new();
        // Buckets read per round trip: one at first (a dense store fills a page from one
        // bucket), four times more after each window that left the page short, so walking
        // an empty store costs a handful of round trips, not one per bucket.
        let mut window = 1u32;
        while bucket < BUCKETS {
            let w = window.min(BUCKETS - bucket);
            window = (window * 4).min(256);
            let mut cmds = Vec::with_capacity(w as usize);
            for i in 0..w {
                let key = inner.keys.all(bucket + i);
                let min = match (i, after.as_deref()) {
                    (0, Some(a)) => format!("({a}"),
                    _ => "-".to_string(),
                };
                let mut c = redis::cmd("ZRANGEBYLEX");
                c.arg(&key)
                    .arg(&min)
                    .arg("+")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(chunk);
                cmds.push((key, c));
            }
            let mut per_bucket = Vec::with_capacity(w as usize);
            for v in inner.multi("list", cmds).await? {
                if let Some(e) = server_error(&v) {
                    return Err(errors::map(e, "list", None, inner.config.response_timeout));
                }
                let members = array(v)
                    .ok_or_else(|| Error::backend("redis list: ZRANGEBYLEX gave no array"))?;
                let members: Vec<String> = members
                    .iter()
                    .filter_map(|m| bytes_of(m).map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect();
                let more = members.len() >= chunk;
                per_bucket.push((members, more));
                if more {
                    // This bucket has more members than were read: buckets after it wait
                    // until it is exhausted (the listing order is bucket, then member).
                    break;
                }
            }
            // The window's members in listing order. Their metas are read a page's worth at a
            // time, so a wide window over a sparse store does not read hundreds of sessions
            // for the few the page still needs.
            let first = bucket;
            let entries: Vec<(u32, &String)> = per_bucket
                .iter()
                .enumerate()
                .flat_map(|(i, (members, _))| members.iter().map(move |m| (first + i as u32, m)))
                .collect();
            let mut at = 0;
            while at < entries.len() {
                let take = (query.limit + 1 - page.sessions.len()).max(16);
                let chunk = &entries[at..entries.len().min(at + take)];
                at += chunk.len();
                let ids: Vec<Option<SessionId>> = chunk
                    .iter()
                    .map(|(_, m)| SessionId::new(m.as_str()).ok())
                    .collect();
                let valid: Vec<SessionId> = ids.iter().flatten().cloned().collect();
                let replies = inner.hgetall_many(&valid).await?;
                let mut replies = replies.iter();
                for ((b, member), id) in chunk.iter().zip(&ids) {
                    let Some(id) = id else {
                        // Not a session id at all: index garbage.
                        dangling.push((*member).clone());
                        continue;
                    };
                    let reply = replies.next().unwrap_or(&Value::Nil);
                    let item = match inner.parse_meta_reply(id, reply) {
                        Ok(None) => {
                            dangling.push((*member).clone());
                            None
                        }
                        Ok(Some(s)) if s.is_expired_at(now) || !query.filter.matches(&s) => None,
                        Ok(Some(s)) => Some(Ok(s)),
                        Err(e @ Error::Corrupt { .. }) => Some(Err(e)),
                        Err(e) => return Err(e),
                    };
                    if let Some(item) = item {
                        if page.sessions.len() == query.limit {
                            // One more item exists: there is a next page, starting after the
                            // last position this page consumed.
                            page.next_cursor = last_pos.map(|(b, m)| cursor_of(b, &m));
                            inner.repair(&dangling).await;
                            return Ok(page);
                        }
                        match item {
                            Ok(s) => page.sessions.push(s),
                            Err(e) => push_item_error(&mut page.errors, id, e),
                        }
                    }
                    last_pos = Some((*b, (*member).clone()));
                }
            }
            // The window is consumed: go on after its last bucket, or inside it if that one
            // has more members than were read.
            match per_bucket.last() {
                Some((members, true)) => {
                    bucket = first + per_bucket.len() as u32 - 1;
                    after = members.last().cloned();
                    // The page is still short; go on in this bucket, one bucket at a time.
                    window = 1;
                }
                _ => {
                    bucket = first + per_bucket.len() as u32;
                    after = None;
                }
            }
        }
        inner.repair(&dangling).await;
        Ok(page)
    }

    async fn count(&self, filter: &SessionFilter) -> Result<u64> {
        let inner = &self.inner;
        if *filter != SessionFilter::default() {
            let mut n = 0;
            let mut cursor = None;
            loop {
                let page = self
                    .list(
                        &ListQuery::first(shoal_core::store::MAX_PAGE_LIMIT)
                            .with_filter(filter.clone())
                            .with_cursor(cursor),
                    )
                    .await?;
                n += page.sessions.len() as u64;
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => return Ok(n),
                }
            }
        }
        // Unfiltered: members of the capacity set indexed with an expiry after now are live
        // (expiry only ever moves forward); the few at or before now are checked one by one.
        let now = inner.now().as_millis();
        let cap = inner.keys.cap();
        let mut pipe = redis::pipe();
        pipe.cmd("ZCOUNT")
            .arg(&cap)
            .arg(format!("({now}"))
            .arg("+inf");
        pipe.cmd("ZRANGEBYSCORE").arg(&cap).arg("-inf").arg(now);
        let mut c = inner.conn();
        let (live, stale): (u64, Vec<String>) =
            inner.io("count", None, pipe.query_async(&mut c)).await?;
        let candidates: Vec<SessionId> = stale
            .iter()
            .filter_map(|m| SessionId::new(m).ok())
            .collect();
        let mut total = live;
        if !candidates.is_empty() {
            let cmds = candidates
                .iter()
                .map(|id| {
                    let key = inner.keys.meta(id);
                    let mut c = redis::cmd("HGET");
                    c.arg(&key).arg(meta::F_ACTIVITY);
                    (key, c)
                })
                .collect();
            let values = inner.multi("count", cmds).await?;
            total += candidates
                .iter()
                .zip(&values)
                .filter(|(id, v)| {
                    bytes_of(v)
                        .and_then(|a| meta::parse_activity(id, a).ok())
                        .is_some_and(|a| a.expires_at.as_millis() > now)
                })
                .count() as u64;
        }
        Ok(total)
    }

    async fn append_frames(&self, id: &SessionId, frames: Vec<NewFrame>) -> Result<Vec<u64>> {
        let inner = &self.inner;
        let max_bytes = inner.limits.max_frame_bytes;
        if frames.iter().any(|f| f.size() > max_bytes) {
            return Err(Error::LimitExceeded {
                what: "frame bytes",
                limit: max_bytes as u64,
            });
        }
        let now = inner.now();
        let expires = inner.expiry_from(now);
        let n = frames.len() as u64;
        let mut args = Vec::with_capacity(frames.len() + 5);
        args.push(now_arg(now));
        args.push(num_arg(expires.as_millis()));
        args.push(num_arg(inner.pexpire_ms(expires, now)));
        args.push(num_arg(inner.limits.max_frames_per_session as u64));
        args.push(inner.frame_prefix.clone());
        let p = inner.frame_prefix.len();
        for f in frames {
            let bytes = codec::encode_frame(&f.into_frame(id.clone(), 0))
                .map_err(|e| Error::invalid(format!("cannot encode frame: {e}")))?;
            if bytes.len() <= p || bytes[..p] != inner.frame_prefix[..] || bytes[p] != 0 {
                return Err(Error::backend(
                    "redis append: the encoded frame does not have the expected layout",
                ));
            }
            args.push(bytes[p + 1..].to_vec());
        }
        let reply = inner
            .script("append", id, &inner.scripts.append, args)
            .await?;
        let reply = inner.live("append", id, reply).await?;
        let seqs: Option<Vec<u64>> = reply[1..].iter().map(u64_of).collect();
        let seqs = seqs.ok_or_else(|| Error::backend("redis append: bad seqs in the reply"))?;
        if seqs.len() as u64 != n {
            return Err(Error::backend(format!(
                "redis append: {} seqs for {n} frames",
                seqs.len()
            )));
        }
        self.bump(M_FRAMES, n);
        Ok(seqs)
    }

    async fn frames(&self, id: &SessionId, query: &FrameQuery) -> Result<FramePage> {
        query.validate()?;
        let inner = &self.inner;
        let mut page = FramePage::default();
        let mut after = query.after_seq.min(MAX_LUA_INT);
        let filtered = query.stream_id.is_some();
        // Without a filter one extra entry tells whether there is more; with one, read ahead.
        let chunk = if filtered {
            (query.limit + 1).clamp(64, 1024)
        } else {
            query.limit + 1
        };
        let mut first_call = true;
        loop {
            let args = vec![now_arg(inner.now()), num_arg(after), num_arg(chunk as u64)];
            let reply = inner
                .script("frames", id, &inner.scripts.frames, args)
                .await?;
            let reply = inner.live("frames", id, reply).await?;
            let (Some(first), Some(last)) =
                (reply.get(1).and_then(u64_of), reply.get(2).and_then(u64_of))
            else {
                return Err(Error::backend("redis frames: bad reply"));
            };
            if first_call {
                page.last_seq = last;
                first_call = false;
            }
            if after.saturating_add(1) < first {
                page.trimmed = true;
            }
            let items = reply.get(4).cloned().and_then(array).unwrap_or_default();
            let expected_start = after.saturating_add(1).max(first);
            let count = items.len();
            for (i, item) in items.iter().enumerate() {
                let seq = expected_start + i as u64;
                let what = || format!("session {:?} frame {seq}", id.as_str());
                let bytes = bytes_of(item).ok_or_else(|| Error::corrupt(what(), "not a string"))?;
                let frame: Frame = codec::decode_frame(id, bytes)
                    .map_err(|e| Error::corrupt(what(), e.to_string()))?;
                if frame.seq != seq {
                    return Err(Error::corrupt(
                        what(),
                        format!("holds seq {} at the position of {seq}", frame.seq),
                    ));
                }
                after = seq;
                if let Some(s) = &query.stream_id
                    && frame.stream_id.as_ref() != Some(s)
                {
                    continue;
                }
                if page.frames.len() == query.limit {
                    page.has_more = true;
                    return Ok(page);
                }
                page.frames.push(frame);
            }
            if count < chunk || after >= last {
                return Ok(page);
            }
        }
    }

    async fn count_frames(&self, id: &SessionId) -> Result<u64> {
        let inner = &self.inner;
        let mut c = redis::cmd("HGET");
        c.arg(inner.keys.meta(id)).arg(meta::F_ACTIVITY);
        let reply = inner.cmd("count_frames", Some(id), c).await?;
        let activity = inner.activity_reply("count_frames", id, &reply).await?;
        if activity.expires_at <= inner.now() {
            if let ExpireOutcome::Removed | ExpireOutcome::Gone = inner.expire_one(id).await? {
                inner.unindex(&[id.as_str()]).await;
            }
            return Err(not_found(id));
        }
        Ok(activity.frame_count)
    }

    async fn delete_frames(&self, id: &SessionId, through_seq: Option<u64>) -> Result<u64> {
        let inner = &self.inner;
        let through = through_seq.map_or_else(Vec::new, |t| num_arg(t.min(MAX_LUA_INT)));
        let reply = inner
            .script(
                "delete_frames",
                id,
                &inner.scripts.delete_frames,
                vec![now_arg(inner.now()), through],
            )
            .await?;
        let reply = inner.live("delete_frames", id, reply).await?;
        reply
            .get(1)
            .and_then(u64_of)
            .ok_or_else(|| Error::backend("redis delete_frames: bad reply"))
    }

    async fn add_pending(&self, id: &SessionId, request: PendingRequest) -> Result<()> {
        let inner = &self.inner;
        let field = meta::request_field(&request.request_id);
        let value = codec::encode(&request)
            .map_err(|e| Error::invalid(format!("cannot encode pending request: {e}")))?;
        let args = vec![
            now_arg(inner.now()),
            field,
            value,
            num_arg(inner.limits.max_pending_per_session as u64),
        ];
        let reply = inner
            .script("add_pending", id, &inner.scripts.add_pending, args)
            .await?;
        match reply.first().and_then(int_of) {
            Some(ST_EXISTS) => Err(Error::AlreadyExists {
                what: format!(
                    "pending request {} in session {:?}",
                    request.request_id,
                    id.as_str()
                ),
            }),
            Some(ST_PENDING_LIMIT) => Err(Error::LimitExceeded {
                what: "pending requests per session",
                limit: inner.limits.max_pending_per_session as u64,
            }),
            _ => inner.live("add_pending", id, reply).await.map(|_| ()),
        }
    }

    async fn take_pending(
        &self,
        id: &SessionId,
        request_id: &RequestId,
    ) -> Result<Option<PendingRequest>> {
        let inner = &self.inner;
        let field = meta::request_field(request_id);
        let reply = inner
            .script(
                "take_pending",
                id,
                &inner.scripts.take_pending,
                vec![now_arg(inner.now()), field.clone()],
            )
            .await?;
        let reply = inner.live("take_pending", id, reply).await?;
        match reply.get(1).and_then(bytes_of) {
            None => Ok(None),
            Some(v) => Ok(Some(meta::decode_pending(id, &field, v)?.r)),
        }
    }

    async fn list_pending(&self, id: &SessionId) -> Result<Vec<PendingRequest>> {
        let inner = &self.inner;
        let [meta_key, _, requests_key] = inner.keys.session(id);
        let mut pipe = redis::pipe();
        pipe.cmd("HGET").arg(&meta_key).arg(meta::F_ACTIVITY);
        pipe.cmd("HGETALL").arg(&requests_key);
        let mut c = inner.conn();
        let (activity, all): (Value, Value) = inner
            .io("list_pending", Some(id), pipe.query_async(&mut c))
            .await?;
        let activity = inner.activity_reply("list_pending", id, &activity).await?;
        if activity.expires_at <= inner.now() {
            return Err(not_found(id));
        }
        let pairs = hash_pairs(&all).ok_or_else(|| {
            Error::corrupt(
                format!("session {:?} pending requests", id.as_str()),
                "not a hash",
            )
        })?;
        let mut out = Vec::with_capacity(pairs.len());
        for (field, value) in pairs {
            out.push(meta::decode_pending(id, field, value)?);
        }
        out.sort_by_key(|p| p.o);
        Ok(out.into_iter().map(|p| p.r).collect())
    }

    async fn sweep_expired(&self) -> Result<SweepReport> {
        let inner = &self.inner;
        let token = SessionId::generate().to_string();
        let lease_ms = u64::try_from(inner.config.sweep_lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut c = redis::cmd("SET");
        c.arg(inner.keys.lease())
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(lease_ms);
        if inner.cmd("sweep", None, c).await? == Value::Nil {
            tracing::debug!("redis sweep skipped: another instance holds the lease");
            return Ok(SweepReport::default());
        }
        let result = self.sweep_all().await;
        let mut release = inner.scripts.release_lease.prepare_invoke();
        release.key(inner.keys.lease()).arg(&token);
        let mut c = inner.conn();
        if let Err(e) = inner
            .io("sweep", None, release.invoke_async::<Value>(&mut c))
            .await
        {
            tracing::debug!(error = %e, "redis sweep lease not released; it will lapse");
        }
        result
    }

    async fn health(&self) -> Result<Health> {
        let inner = &self.inner;
        let started = Instant::now();
        let ping = inner.cmd("health", None, redis::cmd("PING")).await;
        let latency = started.elapsed();
        let mut health = Health::healthy("redis", latency)
            .with_detail("topology", inner.topology)
            .with_detail("key_prefix", inner.keys.prefix());
        if let Err(e) = ping {
            health.status = HealthStatus::Unhealthy;
            return Ok(health.with_detail("error", e.to_string()));
        }
        let mut info = redis::cmd("INFO");
        info.arg("server");
        if let Ok(v) = inner.cmd("health", None, info).await
            && let Some(text) = bytes_of(&v).map(String::from_utf8_lossy)
            && let Some(version) = text.lines().find_map(|l| l.strip_prefix("redis_version:"))
        {
            health = health.with_detail("server_version", version.trim());
        }
        match inner.indexed().await {
            Ok(n) => health = health.with_detail("indexed_sessions", n),
            Err(e) => {
                health.status = HealthStatus::Degraded;
                health = health.with_detail("error", e.to_string());
            }
        }
        Ok(health.with_detail("max_sessions", inner.limits.max_sessions))
    }

    async fn restore(&self, record: SessionRecord) -> Result<()> {
        let inner = &self.inner;
        record.validate(&inner.limits)?;
        let s = &record.session;
        let numbers = [
            s.last_seq,
            s.first_seq,
            s.revision,
            s.frame_count,
            s.created_at.as_millis(),
            s.last_activity.as_millis(),
            s.expires_at.as_millis(),
        ];
        if numbers.iter().any(|n| *n > MAX_LUA_INT) {
            return Err(Error::invalid(format!(
                "session {:?}: seqs, revisions and timestamps above 2^53 - 1 are not supported \
                 by the redis backend (its scripts compute with Lua doubles)",
                s.id.as_str()
            )));
        }
        let reserved = inner.reserve(self, &s.id, s.expires_at).await?;
        let now = inner.now();
        let pending_n = record.pending.len() as u64;
        let fields = meta::all_fields(s, pending_n)?;
        let mut args = vec![
            now_arg(now),
            num_arg(inner.pexpire_ms(s.expires_at, now)),
            num_arg(fields.len() as u64),
        ];
        for (k, v) in fields {
            args.push(k.as_bytes().to_vec());
            args.push(v);
        }
        args.push(num_arg(record.frames.len() as u64));
        for f in &record.frames {
            args.push(
                codec::encode_frame(f)
                    .map_err(|e| Error::invalid(format!("cannot encode frame: {e}")))?,
            );
        }
        for (i, p) in record.pending.iter().enumerate() {
            args.push(meta::request_field(&p.request_id));
            args.push(
                codec::encode(&StoredPending {
                    o: i as u64 + 1,
                    r: p.clone(),
                })
                .map_err(|e| Error::invalid(format!("cannot encode pending request: {e}")))?,
            );
        }
        let id = &s.id;
        let reply = inner
            .script("restore", id, &inner.scripts.restore, args)
            .await?;
        match reply.first().and_then(int_of) {
            Some(ST_OK) => {}
            Some(ST_EXISTS) => {
                return Err(Error::AlreadyExists {
                    what: format!("session {:?}", id.as_str()),
                });
            }
            Some(ST_CORRUPT) => {
                if reserved {
                    inner.unreserve(id).await;
                }
                return Err(inner.corrupt_status(id, &reply));
            }
            other => {
                return Err(Error::backend(format!(
                    "redis restore: unexpected script status {other:?}"
                )));
            }
        }
        if let Err(e) = inner.index(&[(id.as_str(), s.expires_at)]).await {
            tracing::warn!(session = %id, error = %e, "redis: restored session could not be indexed");
        }
        self.bump(M_CREATED, 1);
        Ok(())
    }
}

/// Reports an unreadable item beside the readable ones.
///
/// `shoal_core::ItemError` is `#[non_exhaustive]` and has no constructor, so no backend outside
/// `shoal-core` can build one (reported as a contract problem). Until it gains one, an
/// unreadable item is logged and left out of the result (it is neither found nor missing);
/// single-item reads (`get`) still return [`Error::Corrupt`] for it.
fn push_item_error(errors: &mut Vec<ItemError>, id: &SessionId, error: Error) {
    tracing::warn!(session = %id, error = %error, "redis: unreadable session reported beside a multi-session read");
    errors.push(ItemError::new(id.clone(), error));
}

impl Inner {
    /// Removes index members whose session is gone (lazy repair by readers).
    async fn repair(&self, members: &[String]) {
        if members.is_empty() {
            return;
        }
        let refs: Vec<&str> = members.iter().map(String::as_str).collect();
        self.unindex(&refs).await;
    }
}

impl RedisStore {
    async fn sweep_all(&self) -> Result<SweepReport> {
        let inner = &self.inner;
        let mut report = SweepReport::default();
        // The capacity set is the expiry index: every session is in it, scored with its
        // expiry as of its last indexing.
        self.sweep_zset(&inner.keys.cap(), &mut report).await?;
        if report.removed > 0 || report.repaired > 0 {
            tracing::debug!(
                removed = report.removed,
                repaired = report.repaired,
                "redis sweep"
            );
        }
        Ok(report)
    }

    /// Examines the members of one expiry-scored set whose score is at or before now: removes
    /// expired sessions, drops members whose session is gone, and re-scores live ones (their
    /// expiry moved on since they were indexed) — and puts live ones back into their listing
    /// bucket if they are missing there (`ZADD NX`: a create whose listing write failed is
    /// listed again at the latest one TTL later).
    async fn sweep_zset(&self, key: &str, report: &mut SweepReport) -> Result<()> {
        let inner = &self.inner;
        let mut skip = 0usize;
        for _ in 0..MAX_SWEEP_ROUNDS {
            let now = inner.now();
            let mut c = redis::cmd("ZRANGEBYSCORE");
            c.arg(key)
                .arg("-inf")
                .arg(now.as_millis())
                .arg("LIMIT")
                .arg(skip)
                .arg(SCAN_CHUNK);
            let members: Vec<String> = array(inner.cmd("sweep", None, c).await?)
                .unwrap_or_default()
                .iter()
                .filter_map(bytes_of)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            if members.is_empty() {
                break;
            }
            let outcomes: Vec<(String, Result<ExpireOutcome>)> = stream::iter(members.clone())
                .map(|m: String| async move {
                    let outcome = match SessionId::new(&m) {
                        Ok(id) => inner.expire_one(&id).await,
                        Err(_) => Ok(ExpireOutcome::Gone),
                    };
                    (m, outcome)
                })
                .buffer_unordered(16)
                .collect()
                .await;
            let mut gone = Vec::new();
            let mut rescore = redis::cmd("ZADD");
            rescore.arg(key).arg("XX");
            let mut any_rescore = false;
            let mut relist: BTreeMap<u32, Vec<String>> = BTreeMap::new();
            for (m, outcome) in outcomes {
                match outcome? {
                    ExpireOutcome::Gone => {
                        report.repaired += 1;
                        gone.push(m);
                    }
                    ExpireOutcome::Removed => {
                        report.removed += 1;
                        gone.push(m);
                    }
                    ExpireOutcome::Live(e) => {
                        rescore.arg(e).arg(&m);
                        any_rescore = true;
                        relist.entry(bucket_of(&m)).or_default().push(m);
                    }
                    ExpireOutcome::Unreadable => skip += 1,
                }
            }
            inner.repair(&gone).await;
            if any_rescore {
                inner.cmd("sweep", None, rescore).await?;
                let cmds = relist
                    .into_iter()
                    .map(|(b, members)| {
                        let k = inner.keys.all(b);
                        let mut c = redis::cmd("ZADD");
                        c.arg(&k).arg("NX");
                        for m in members {
                            c.arg(0).arg(m);
                        }
                        (k, c)
                    })
                    .collect();
                let relisted = inner.multi("sweep", cmds).await?;
                if let Some(e) = relisted.iter().find_map(server_error) {
                    return Err(errors::map(e, "sweep", None, inner.config.response_timeout));
                }
                report.repaired += relisted.iter().filter_map(u64_of).sum::<u64>();
            }
            if members.len() < SCAN_CHUNK {
                break;
            }
        }
        Ok(())
    }
}
