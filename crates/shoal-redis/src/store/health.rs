//! `health`: a `PING` timed, the server version, and how full the store is.

use std::time::Instant;

use shoal_core::{Health, HealthStatus, Result};

use super::{dataset::LOSS_SHOWN_FOR, handle::StoreState};
use crate::meta::bytes_of;

impl StoreState {
    pub(super) async fn health(&self) -> Result<Health> {
        let started = Instant::now();
        let ping = self.cmd("health", None, redis::cmd("PING")).await;
        let latency = started.elapsed();
        let mut health = Health::healthy("redis", latency)
            .with_detail("topology", self.topology)
            .with_detail("key_prefix", self.keys.prefix());
        if let Err(e) = ping {
            health.status = HealthStatus::Unhealthy;
            return Ok(health.with_detail("error", e.to_string()));
        }
        match self.check_dataset().await {
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "redis dataset marker not checked"),
        }
        if let Ok(Some((at, what, count))) = self.recorded_loss().await {
            let ago = self.now().as_millis().saturating_sub(at.as_millis());
            health = health
                .with_detail("dataset_losses", count)
                .with_detail("last_dataset_loss_ms_ago", ago);
            if u128::from(ago) < LOSS_SHOWN_FOR.as_millis() {
                health.status = HealthStatus::Degraded;
                health = health.with_detail("data_loss", what);
            }
        }
        let mut info = redis::cmd("INFO");
        info.arg("server");
        if let Ok(v) = self.cmd("health", None, info).await
            && let Some(text) = bytes_of(&v).map(String::from_utf8_lossy)
            && let Some(version) = text.lines().find_map(|l| l.strip_prefix("redis_version:"))
        {
            health = health.with_detail("server_version", version.trim());
        }
        if let Ok(policy) = self.memory_policy().await {
            health = health
                .with_detail("maxmemory_policy", &policy.policy)
                .with_detail("evicted_keys", policy.evicted_keys);
            if policy.can_evict() {
                health = health.with_detail("warning", policy.warning());
            }
        }
        let offset = self.clock.offset_ms();
        if offset != 0 {
            health = health.with_detail("clock_offset_ms", offset);
        }
        match self.indexed().await {
            Ok(n) => health = health.with_detail("indexed_sessions", n),
            Err(e) => {
                health.status = HealthStatus::Degraded;
                health = health.with_detail("error", e.to_string());
            }
        }
        Ok(health.with_detail("max_sessions", self.limits.max_sessions))
    }
}
