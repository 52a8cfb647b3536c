//! Running commands: one call under the deadline, a per-session script, a batch of commands
//! spread over cluster slots — and reading what comes back (script statuses, reply values).

use std::{collections::HashMap, future::Future};

use futures_util::{StreamExt, stream};
use redis::{Cmd, RedisError, Script, Value, cluster_routing::Slot};
use shoal_core::{ChangeKind, Error, Result, SessionId, Timestamp};

use super::{handle::StoreState, metrics::M_EVICTED};
use crate::{
    errors,
    meta::{self, bytes_of},
};

/// Concurrent commands when one operation fans out over many cluster slots.
const FAN_OUT: usize = 32;

/// Script reply statuses (see `scripts/common.lua`).
pub(super) const ST_OK: i64 = 0;
pub(super) const ST_NOT_FOUND: i64 = -1;
pub(super) const ST_EXISTS: i64 = -2;
pub(super) const ST_CONFLICT: i64 = -3;
pub(super) const ST_PENDING_LIMIT: i64 = -4;
pub(super) const ST_OVER_BUDGET: i64 = -5;
/// `create_placed`: no place left under `max_sessions` (nothing was written).
pub(super) const ST_FULL: i64 = -6;
pub(super) const ST_CORRUPT: i64 = -9;

pub(super) fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => std::str::from_utf8(bytes_of(other)?).ok()?.parse().ok(),
    }
}

pub(super) fn u64_of(v: &Value) -> Option<u64> {
    int_of(v).and_then(|n| u64::try_from(n).ok())
}

pub(super) fn array(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(items) | Value::Set(items) => Some(items),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

pub(super) fn server_error(v: &Value) -> Option<RedisError> {
    match v {
        Value::ServerError(e) => Some(RedisError::from(e.clone())),
        _ => None,
    }
}

pub(super) fn not_found(id: &SessionId) -> Error {
    Error::session_not_found(id)
}

/// A script argument: the time in milliseconds, in decimal.
pub(super) fn now_arg(now: Timestamp) -> Vec<u8> {
    now.as_millis().to_string().into_bytes()
}

/// A script argument: a number in decimal.
pub(super) fn num_arg(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

impl StoreState {
    /// Runs one Redis call under the deadline and maps its error.
    pub(super) async fn io<T>(
        &self,
        op: &'static str,
        id: Option<&SessionId>,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.deadline, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_error(e, op, id)),
            Err(_) => Err(Error::Timeout {
                op,
                after: self.deadline,
            }),
        }
    }

    /// Maps a Redis error of `op` (on `id`, if it concerns one session).
    pub(super) fn map_error(
        &self,
        e: RedisError,
        op: &'static str,
        id: Option<&SessionId>,
    ) -> Error {
        errors::map(e, op, id, self.config.response_timeout)
    }

    pub(super) async fn cmd(
        &self,
        op: &'static str,
        id: Option<&SessionId>,
        cmd: Cmd,
    ) -> Result<Value> {
        let mut c = self.conn();
        self.io(op, id, cmd.query_async::<Value>(&mut c)).await
    }

    /// Runs a per-session script with the session's three keys and returns its reply array.
    pub(super) async fn script(
        &self,
        op: &'static str,
        id: &SessionId,
        script: &Script,
        args: Vec<Vec<u8>>,
    ) -> Result<Vec<Value>> {
        self.run_script(op, id, script, None, args, "").await
    }

    /// [`script`](Self::script) with a fourth key after the session's three (one of the
    /// session's own, under its hash tag).
    pub(super) async fn script_with_key(
        &self,
        op: &'static str,
        id: &SessionId,
        script: &Script,
        fourth_key: Option<String>,
        args: Vec<Vec<u8>>,
    ) -> Result<Vec<Value>> {
        self.run_script(op, id, script, fourth_key, args, "").await
    }

    /// [`script`](Self::script) for a change whose feed entry carries `detail` (see
    /// `feed_write`; ignored when the script does not write the feed).
    pub(super) async fn script_reporting(
        &self,
        op: &'static str,
        id: &SessionId,
        script: &Script,
        args: Vec<Vec<u8>>,
        detail: &str,
    ) -> Result<Vec<Value>> {
        self.run_script(op, id, script, None, args, detail).await
    }

    /// Runs a per-session script: its keys (and the feed stream last, when the script writes
    /// the feed), `args` with `args[0]` (now) turned into the feed header when it does.
    async fn run_script(
        &self,
        op: &'static str,
        id: &SessionId,
        script: &Script,
        fourth_key: Option<String>,
        mut args: Vec<Vec<u8>>,
        detail: &str,
    ) -> Result<Vec<Value>> {
        let mut feed_key = None;
        if let Some(first) = args.first_mut() {
            let (head, key) = self.script_head(std::mem::take(first), id, detail);
            *first = head;
            feed_key = key;
        }
        let mut inv = script.prepare_invoke();
        for k in self.keys.session(id) {
            inv.key(k);
        }
        if let Some(k) = fourth_key {
            inv.key(k);
        }
        if let Some(k) = feed_key {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut c = self.conn();
        let reply = self
            .io(op, Some(id), inv.invoke_async::<Value>(&mut c))
            .await?;
        let reply = array(reply).ok_or_else(|| {
            Error::backend(format!("redis {op}: the script gave a non-array reply"))
        })?;
        self.confirm_script(op, id, &reply, &mut c).await?;
        Ok(reply)
    }

    /// Handles the statuses every live-session script shares; returns the reply on `ok`.
    pub(super) async fn live(
        &self,
        op: &'static str,
        id: &SessionId,
        reply: Vec<Value>,
    ) -> Result<Vec<Value>> {
        match reply.first().and_then(int_of) {
            Some(ST_OK) => Ok(reply),
            Some(ST_NOT_FOUND) => {
                match reply.get(1).and_then(int_of) {
                    Some(1) => {
                        self.unindex(&[id.as_str()]).await;
                        self.feed_end_after(id.as_str(), ChangeKind::Expired, None);
                    }
                    Some(2) => {
                        self.unindex(&[id.as_str()]).await;
                        self.feed_end_after(id.as_str(), ChangeKind::Evicted, None);
                        self.add_uncommitted(M_EVICTED, 1);
                        tracing::warn!(
                            session = id.as_str(),
                            "redis evicted a session's meta; its frames and requests were \
                             removed (set maxmemory-policy noeviction)"
                        );
                    }
                    _ => {}
                }
                Err(not_found(id))
            }
            Some(ST_CORRUPT) => {
                let error = self.corrupt_status(id, &reply);
                self.count_if_evicted(id, &reply, &error).await;
                Err(error)
            }
            Some(ST_OVER_BUDGET) => Err(shoal_core::store::session_bytes_exceeded(&self.limits)),
            other => Err(Error::backend(format!(
                "redis {op}: unexpected script status {other:?}"
            ))),
        }
    }

    /// A corrupt status for an evicted key means the script removed what was left of the
    /// session: take it out of the index sets, count it, and say so.
    pub(super) async fn count_if_evicted(&self, id: &SessionId, reply: &[Value], error: &Error) {
        let which = reply.get(1).and_then(bytes_of);
        let evicted = reply
            .get(2)
            .and_then(bytes_of)
            .is_some_and(|r| r.starts_with(b"evicted"));
        if evicted && matches!(which, Some(b"frames" | b"requests")) {
            self.unindex(&[id.as_str()]).await;
            self.feed_end_after(id.as_str(), ChangeKind::Evicted, None);
            self.add_uncommitted(M_EVICTED, 1);
            tracing::warn!(
                session = id.as_str(),
                error = %error,
                "redis evicted part of a session; the rest was removed (set maxmemory-policy \
                 noeviction)"
            );
        }
    }

    /// The error of a script's `corrupt` status: `{-9, field, reason}`.
    pub(super) fn corrupt_status(&self, id: &SessionId, reply: &[Value]) -> Error {
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
        if field == "frames" || field == "requests" {
            let what = if field == "frames" {
                "frames"
            } else {
                "pending requests"
            };
            return Error::corrupt(format!("session {:?} {what}", id.as_str()), reason);
        }
        meta::corrupt(id, &field, reason)
    }

    /// Runs commands that may live in different slots: one pipeline on a single server; on a
    /// cluster one pipeline per slot, concurrently. Each command comes with the key that routes
    /// it. Per-command server errors stay in place as `Value::ServerError`.
    pub(super) async fn multi(
        &self,
        op: &'static str,
        cmds: Vec<(String, Cmd)>,
    ) -> Result<Vec<Value>> {
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
}
