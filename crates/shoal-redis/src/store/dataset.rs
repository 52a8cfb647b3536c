//! Noticing that the server lost its dataset: restarted without persistence, flushed, or
//! failed over to a replica that had nothing. Redis answers normally afterwards — the breaker
//! closes, every session simply looks gone — so without this the operator is never told.
//!
//! The store keeps a marker key, `<prefix>:dataset`, holding a random token and no TTL. At
//! connect it adopts the marker (creating it on a fresh server); every `health` call (the
//! resilience monitor probes it) and every sweeper round reads it again. A missing marker, or
//! one with another token, is a loss: said once per instance, plainly (an `error` log line
//! naming the server's `run_id` before and after), counted ([`RedisStore::dataset_losses`],
//! `shoal_redis_dataset_losses_total`) — and the marker is written again, so the next loss is
//! seen too. The instance that writes the new marker also records the loss in
//! `<prefix>:dataset:loss` (time, what, a fleet-wide count), which every `health` — also a
//! fresh `shoal health` process — reports, `Degraded` for [`LOSS_SHOWN_FOR`] after it.
//!
//! On a Cluster the marker lives on the node that owns its slot: a node that restarts empty
//! elsewhere is not seen by it.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::Value;
use shoal_core::{Result, SessionId, Timestamp};

use super::handle::{RedisStore, StoreState};
use crate::meta::{bytes_of, hash_pairs};

/// How long `health` reports `Degraded` after a loss was noticed.
pub(super) const LOSS_SHOWN_FOR: Duration = Duration::from_secs(600);

/// What this instance knows of the dataset.
#[derive(Debug, Default)]
pub(super) struct DatasetWatch {
    /// The marker token adopted last, and the server's `run_id` then.
    adopted: Mutex<Adopted>,
    /// Losses noticed by this instance.
    losses: AtomicU64,
}

#[derive(Debug, Default)]
struct Adopted {
    token: Option<String>,
    run_id: Option<String>,
}

impl DatasetWatch {
    pub(super) fn losses(&self) -> u64 {
        self.losses.load(Ordering::Relaxed)
    }
}

impl RedisStore {
    /// How many times this instance has noticed the server lose its dataset (see the module
    /// docs of the health check: a missing dataset marker).
    pub fn dataset_losses(&self) -> u64 {
        self.state.dataset.losses()
    }
}

impl StoreState {
    /// Reads the marker (creating it if absent) and compares it with the adopted token.
    /// Returns `true` when this call noticed a loss.
    pub(super) async fn check_dataset(&self) -> Result<bool> {
        let key = self.keys.dataset();
        let fresh = SessionId::generate().to_string();
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(&fresh).arg("NX").arg("GET");
        // SET NX GET (Redis 7): the old value, or nil when this call wrote the marker.
        let reply = self.cmd("dataset", None, set).await?;
        let (current, created) = match bytes_of(&reply) {
            Some(b) => (String::from_utf8_lossy(b).into_owned(), false),
            None if matches!(reply, Value::Nil) => (fresh, true),
            None => return Ok(false),
        };
        let run_id = self.run_id().await;
        let (previous, previous_run) = {
            let mut adopted = match self.dataset.adopted.lock() {
                Ok(a) => a,
                Err(p) => p.into_inner(),
            };
            (
                adopted.token.replace(current.clone()),
                std::mem::replace(&mut adopted.run_id, run_id.clone()),
            )
        };
        let lost = match previous {
            None => false,
            Some(p) => p != current || created,
        };
        if !lost {
            return Ok(false);
        }
        let how = match (&previous_run, &run_id) {
            (Some(a), Some(b)) if a != b => {
                format!("the server restarted (run_id {a} -> {b}) without its data")
            }
            (Some(_), Some(_)) => {
                "the data was flushed or the marker deleted (same run_id)".to_owned()
            }
            _ => "the server answers without the data it held".to_owned(),
        };
        let what = format!(
            "redis lost its dataset: the marker {key} is gone; {how}. Sessions, frames and \
             pending requests written before are lost; writes journaled during an outage \
             cannot be replayed onto their sessions. Enable persistence (appendonly yes) or \
             replication with failover"
        );
        tracing::error!("{what}");
        self.dataset.losses.fetch_add(1, Ordering::Relaxed);
        ::metrics::counter!("shoal_redis_dataset_losses_total").increment(1);
        if created {
            let mut pipe = redis::pipe();
            let loss = self.keys.dataset_loss();
            pipe.cmd("HSET")
                .arg(&loss)
                .arg("at")
                .arg(self.now().as_millis())
                .arg("what")
                .arg(&what)
                .ignore();
            pipe.cmd("HINCRBY").arg(&loss).arg("count").arg(1).ignore();
            let mut c = self.conn();
            if let Err(e) = self
                .io("dataset", None, pipe.query_async::<()>(&mut c))
                .await
            {
                tracing::warn!(error = %e, "redis dataset loss not recorded");
            }
        }
        Ok(true)
    }

    /// The fleet-wide loss record: (noticed at, what, count), if any loss was recorded.
    pub(super) async fn recorded_loss(&self) -> Result<Option<(Timestamp, String, u64)>> {
        let mut c = redis::cmd("HGETALL");
        c.arg(self.keys.dataset_loss());
        let v = self.cmd("dataset", None, c).await?;
        let Some(pairs) = hash_pairs(&v) else {
            return Ok(None);
        };
        let (mut at, mut what, mut count) = (None, String::new(), 0);
        for (k, v) in pairs {
            let text = String::from_utf8_lossy(v);
            match k {
                b"at" => at = text.parse().ok().map(Timestamp),
                b"what" => what = text.into_owned(),
                b"count" => count = text.parse().unwrap_or(0),
                _ => {}
            }
        }
        Ok(at.map(|at| (at, what, count)))
    }

    /// The server's `run_id` (one node of a cluster), if `INFO` answers.
    async fn run_id(&self) -> Option<String> {
        let mut info = redis::cmd("INFO");
        info.arg("server");
        let v = self.cmd("dataset", None, info).await.ok()?;
        let text = String::from_utf8_lossy(bytes_of(&v)?).into_owned();
        text.lines()
            .find_map(|l| l.trim().strip_prefix("run_id:"))
            .map(|s| s.trim().to_owned())
    }
}
