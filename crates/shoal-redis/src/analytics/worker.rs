//! [`AnalyticsWorker`]: the consumer that keeps the analytics up to date. Every instance may
//! run one; a lease (`<prefix>:an:{f0}:worker`) lets one at a time read, so entries are applied
//! in feed order (a request before its response, a session's creation before its end). The
//! holder first takes over what a dead holder left pending, then reads new entries; a batch
//! applied twice (a holder that stalled past its lease) counts once, because the apply script
//! applies only entries its own acknowledgement took.

use std::{sync::Arc, time::Duration};

use shoal_core::{ChangeFeed, Result, feed::GroupStart};

use super::{AnalyticsConfig, apply::apply};
use crate::{RedisFeed, RedisStore};

/// A running analytics consumer; stops when dropped.
#[derive(Debug)]
pub struct AnalyticsWorker {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AnalyticsWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AnalyticsWorker {
    /// Starts the consumer on `store`'s feed (none when the store writes no feed).
    pub fn spawn(store: RedisStore, config: AnalyticsConfig) -> Option<Self> {
        let feed = store.feed()?;
        let task = tokio::spawn(async move {
            let mut run = Run::new(store, feed, config);
            run.forever().await;
        });
        Some(AnalyticsWorker { task })
    }

    /// Stops the consumer (entries it read and did not apply are taken over by the next
    /// holder of the lease).
    pub fn stop(self) {}
}

struct Run {
    store: RedisStore,
    feed: Arc<RedisFeed>,
    config: AnalyticsConfig,
    consumer: String,
    token: String,
    holding: bool,
    group_ready: bool,
}

impl Run {
    fn new(store: RedisStore, feed: Arc<RedisFeed>, config: AnalyticsConfig) -> Self {
        // A random token (a generated session id is 128 random bits, URL-safe).
        let hex = shoal_core::SessionId::generate().to_string();
        Run {
            store,
            feed,
            config,
            consumer: format!("w-{}", &hex[..hex.len().min(16)]),
            token: hex,
            holding: false,
            group_ready: false,
        }
    }

    async fn forever(&mut self) {
        loop {
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, "analytics: a round failed; retrying in 1s");
                self.holding = false;
                // The stream (and its group) may be gone — a server restarted empty, a
                // flushed database: create the group again before the next read.
                self.group_ready = false;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Takes or renews the lease; returns whether this worker holds it and whether it just
    /// took it.
    async fn lease(&mut self) -> Result<(bool, bool)> {
        let key = self.store.keys().analytics(0, "worker");
        let ms = self.config.lease.as_millis().max(1) as u64;
        if self.holding {
            let renewed = self
                .store
                .eval(
                    "analytics lease",
                    &self.store.scripts().renew_lease,
                    &[key],
                    vec![self.token.clone().into_bytes(), ms.to_string().into_bytes()],
                )
                .await?;
            self.holding = matches!(renewed, redis::Value::Int(1));
            return Ok((self.holding, false));
        }
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(&self.token).arg("NX").arg("PX").arg(ms);
        let v = self.store.command("analytics lease", set).await?;
        self.holding = matches!(v, redis::Value::Okay | redis::Value::SimpleString(_));
        Ok((self.holding, self.holding))
    }

    async fn round(&mut self) -> Result<()> {
        if !self.group_ready {
            self.feed
                .create_group(&self.config.group, GroupStart::Beginning)
                .await?;
            self.group_ready = true;
        }
        let (holding, took) = self.lease().await?;
        if !holding {
            tokio::time::sleep(self.config.lease / 3).await;
            return Ok(());
        }
        // What a holder before this one read and never applied: all of it at a takeover,
        // else what has waited past claim_after.
        let idle = if took {
            Duration::ZERO
        } else {
            self.config.claim_after
        };
        let group = self.config.group.clone();
        let claimed = self
            .feed
            .claim_stale(&group, &self.consumer, idle, self.config.batch)
            .await?;
        if !claimed.is_empty() {
            apply(&self.store, &self.config, &claimed).await?;
        }
        let wait = (self.config.lease / 3).min(Duration::from_secs(1));
        let batch = self
            .feed
            .read_group(&group, &self.consumer, self.config.batch, Some(wait))
            .await?;
        if !batch.is_empty() {
            apply(&self.store, &self.config, &batch).await?;
        }
        Ok(())
    }
}
