//! Sweeping: removing expired sessions and repairing the index sets, one instance at a time
//! (a lease key), from the capacity set, which is also the expiry index — on demand
//! (`sweep_expired`, a full `create`) or from a [`RedisSweeper`] task.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures_util::{StreamExt, stream};
use redis::Value;
use shoal_core::{ChangeKind, Result, SessionId, SweepReport};

use super::{
    exec::{array, int_of, now_arg, server_error, u64_of},
    handle::{RedisStore, StoreState},
};
use crate::{keys::bucket_of, meta::bytes_of};

/// How many sessions a sweep pass reads per index command.
const SCAN_CHUNK: usize = 256;
/// Most capacity entries a full `create` examines inline to free places.
const RECLAIM_BATCH: usize = 64;
/// Bound on index batches one sweep examines per bucket.
const MAX_SWEEP_ROUNDS: usize = 10_000;

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

/// The sweep lease this pass holds.
pub(super) struct SweepLease {
    token: String,
    ms: u64,
}

/// What the expire script found for one session.
pub(super) enum ExpireOutcome {
    /// No such session (any index entry for it is dangling).
    Gone,
    /// It had expired and was removed.
    Removed,
    /// It is live and expires at this time (milliseconds).
    Live(u64),
    /// Its meta hash cannot be read; left alone.
    Unreadable,
}

impl RedisStore {
    /// Starts a task on the current Tokio runtime that calls
    /// [`sweep_expired`](shoal_core::SessionStore::sweep_expired) every `every` (the first pass
    /// after one period). Any number of instances may run one: the sweep lease lets one of
    /// them work at a time. The task holds no strong reference to the store; it ends when the
    /// returned handle is dropped or the store is gone.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn spawn_sweeper(&self, every: Duration) -> RedisSweeper {
        let weak = Arc::downgrade(&self.state);
        let every = every.max(Duration::from_millis(10));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(state) = weak.upgrade() else { break };
                state.resync_clock_if_due().await;
                if let Err(e) = state.check_dataset().await {
                    tracing::debug!(error = %e, "redis dataset marker not checked");
                }
                match state.sweep_expired().await {
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
}

impl StoreState {
    /// One sweep pass under the lease; nothing (an empty report) when another instance
    /// holds it.
    pub(super) async fn sweep_expired(&self) -> Result<SweepReport> {
        let token = SessionId::generate().to_string();
        let lease_ms = u64::try_from(self.config.sweep_lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut c = redis::cmd("SET");
        c.arg(self.keys.sweep_lease())
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(lease_ms);
        if self.cmd("sweep", None, c).await? == Value::Nil {
            tracing::debug!("redis sweep skipped: another instance holds the lease");
            return Ok(SweepReport::default());
        }
        let lease = SweepLease {
            token,
            ms: lease_ms,
        };
        let result = self.sweep_all(&lease).await;
        let token = lease.token;
        let mut release = self.scripts.release_lease.prepare_invoke();
        release.key(self.keys.sweep_lease()).arg(&token);
        let mut c = self.conn();
        if let Err(e) = self
            .io("sweep", None, release.invoke_async::<Value>(&mut c))
            .await
        {
            tracing::debug!(error = %e, "redis sweep lease not released; it will lapse");
        }
        result
    }

    async fn sweep_all(&self, lease: &SweepLease) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        // The capacity set is the expiry index: every session is in it, scored with its
        // expiry as of its last indexing.
        self.sweep_zset(&self.keys.cap(), lease, &mut report)
            .await?;
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
    ///
    /// Each round after the first renews the lease (a long sweep keeps it; one that lost it
    /// stops), and a round that meets exactly the members of the round before — nothing it
    /// did moved them out of the window — stops the pass instead of spinning.
    async fn sweep_zset(
        &self,
        key: &str,
        lease: &SweepLease,
        report: &mut SweepReport,
    ) -> Result<()> {
        let mut skip = 0usize;
        let mut previous: Vec<String> = Vec::new();
        for round in 0..MAX_SWEEP_ROUNDS {
            if round > 0 && !self.renew_lease(lease).await? {
                tracing::warn!("redis sweep stopped: its lease lapsed and was taken over");
                break;
            }
            let members = self.due_members("sweep", key, skip, SCAN_CHUNK).await?;
            if members.is_empty() {
                break;
            }
            if members == previous {
                tracing::warn!(
                    members = members.len(),
                    "redis sweep stopped: a round made no progress (the same members again)"
                );
                break;
            }
            let outcomes = self.expire_members(members.clone()).await;
            let mut gone = Vec::new();
            let mut live: Vec<(u64, String)> = Vec::new();
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
                    ExpireOutcome::Live(e) => live.push((e, m)),
                    ExpireOutcome::Unreadable => skip += 1,
                }
            }
            previous = members;
            self.repair(&gone).await;
            report.repaired += self.rescore_and_relist(key, live).await?;
            if previous.len() < SCAN_CHUNK {
                break;
            }
        }
        Ok(())
    }

    /// Re-scores live members of `key` with their current expiry (`ZADD XX`) and puts them
    /// back into their listing buckets where missing (`ZADD NX`); returns how many were
    /// listed again.
    async fn rescore_and_relist(&self, key: &str, live: Vec<(u64, String)>) -> Result<u64> {
        if live.is_empty() {
            return Ok(0);
        }
        let mut rescore = redis::cmd("ZADD");
        rescore.arg(key).arg("XX");
        let mut relist: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for (expires, m) in live {
            rescore.arg(expires).arg(&m);
            relist.entry(bucket_of(&m)).or_default().push(m);
        }
        self.cmd("sweep", None, rescore).await?;
        let cmds = relist
            .into_iter()
            .map(|(b, members)| {
                let k = self.keys.all(b);
                let mut c = redis::cmd("ZADD");
                c.arg(&k).arg("NX");
                for m in members {
                    c.arg(0).arg(m);
                }
                (k, c)
            })
            .collect();
        let relisted = self.multi("sweep", cmds).await?;
        if let Some(e) = relisted.iter().find_map(server_error) {
            return Err(self.map_error(e, "sweep", None));
        }
        Ok(relisted.iter().filter_map(u64_of).sum::<u64>())
    }

    /// Extends the lease if this pass still holds it.
    async fn renew_lease(&self, lease: &SweepLease) -> Result<bool> {
        let mut renew = self.scripts.renew_lease.prepare_invoke();
        renew
            .key(self.keys.sweep_lease())
            .arg(&lease.token)
            .arg(lease.ms);
        let mut c = self.conn();
        let v = self
            .io("sweep", None, renew.invoke_async::<Value>(&mut c))
            .await?;
        Ok(int_of(&v) == Some(1))
    }

    /// Frees places held by expired sessions, inline but bounded: examines at most
    /// [`RECLAIM_BATCH`] capacity entries due at or before now (no lease, no full pass — a
    /// create that finds the store full never pays for a whole sweep). Returns how many
    /// places were freed.
    pub(super) async fn reclaim_due(&self) -> Result<u64> {
        let members = self
            .due_members("reserve", &self.keys.cap(), 0, RECLAIM_BATCH)
            .await?;
        let outcomes = self.expire_members(members).await;
        let mut freed = Vec::new();
        for (m, outcome) in outcomes {
            if let ExpireOutcome::Gone | ExpireOutcome::Removed = outcome? {
                freed.push(m);
            }
        }
        self.repair(&freed).await;
        Ok(freed.len() as u64)
    }

    /// Up to `count` members of the expiry-scored set `key` due at or before now, from the
    /// `skip`-th on.
    async fn due_members(
        &self,
        op: &'static str,
        key: &str,
        skip: usize,
        count: usize,
    ) -> Result<Vec<String>> {
        let mut c = redis::cmd("ZRANGEBYSCORE");
        c.arg(key)
            .arg("-inf")
            .arg(self.now().as_millis())
            .arg("LIMIT")
            .arg(skip)
            .arg(count);
        Ok(array(self.cmd(op, None, c).await?)
            .unwrap_or_default()
            .iter()
            .filter_map(bytes_of)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect())
    }

    /// Runs the expire script on each member (16 at a time); a member that is not a valid
    /// session id is `Gone` (a dangling index entry).
    async fn expire_members(&self, members: Vec<String>) -> Vec<(String, Result<ExpireOutcome>)> {
        stream::iter(members)
            .map(|m: String| async move {
                let outcome = match SessionId::new(&m) {
                    Ok(id) => self.expire_one(&id).await,
                    Err(_) => Ok(ExpireOutcome::Gone),
                };
                (m, outcome)
            })
            .buffer_unordered(16)
            .collect()
            .await
    }

    /// Removes `id` if it has expired (lazy expiry outside a write script).
    pub(super) async fn expire_one(&self, id: &SessionId) -> Result<ExpireOutcome> {
        let reply = self
            .script(
                "expire",
                id,
                &self.scripts.expire,
                vec![now_arg(self.now())],
            )
            .await?;
        Ok(match reply.first().and_then(int_of) {
            Some(0) => ExpireOutcome::Gone,
            Some(1) => {
                let created = reply.get(1).and_then(u64_of);
                self.feed_end_after(id.as_str(), ChangeKind::Expired, created);
                ExpireOutcome::Removed
            }
            Some(2) => ExpireOutcome::Live(reply.get(1).and_then(u64_of).unwrap_or(0)),
            _ => ExpireOutcome::Unreadable,
        })
    }
}
