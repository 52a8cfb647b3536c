//! Writing what a [`Stack`] defers, and closing it.

use std::time::{Duration, Instant};

use shoal_core::resilient::BreakerState;

use super::{
    errors::{CloseError, UndrainedJournal},
    handle::Stack,
};

impl Stack {
    /// Writes the counter increments of the Redis backend it has not flushed yet (they are
    /// otherwise written in the background, which a short-lived process may not wait for).
    /// A no-op for other stores.
    pub async fn flush_counters(&self) -> shoal_core::Result<()> {
        match self.redis() {
            Some(redis) => redis.metrics().await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// Makes what was acknowledged durable where the stack defers it: the cache's deferred
    /// writes (an error if they cannot be written), then the Redis counters (best effort: a
    /// failure is logged, never returned, as counters are not data).
    pub async fn save(&self) -> shoal_core::Result<()> {
        if let Some(cache) = &self.cache {
            cache.flush().await?;
        }
        if let Err(e) = self.flush_counters().await {
            tracing::warn!(error = %e, "redis counters not flushed");
        }
        Ok(())
    }

    /// Ends the stack: writes the cache's deferred writes, waits (up to the resilience
    /// settings' `drain_timeout`) until the outage journal is drained into Redis, sends the
    /// pending bus messages (up to 2 s) and closes the bus, stops the health monitor and the
    /// sweeper. The error says exactly what was acknowledged but not written.
    pub async fn close(mut self) -> Result<(), CloseError> {
        let mut lost = CloseError::default();
        if let Some(cache) = &self.cache {
            match cache.shutdown().await {
                Ok(report) => lost.updates_dropped = report.updates_dropped,
                Err(e) => lost.flush_failed = Some(e),
            }
        }
        if let Some(resilient) = &self.resilient {
            let now = Instant::now();
            let deadline = now.checked_add(self.drain_timeout).unwrap_or(now);
            loop {
                let stats = resilient.stats();
                if stats.journal_entries == 0 && stats.marked_sessions == 0 {
                    break;
                }
                if Instant::now() >= deadline {
                    lost.journal = Some(UndrainedJournal {
                        entries: stats.journal_entries,
                        sessions: stats.marked_sessions,
                        waited: self.drain_timeout,
                        breaker: stats.breaker,
                    });
                    break;
                }
                if stats.breaker == BreakerState::Closed {
                    resilient.drain_journal().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        if let Some(bus) = self.bus.get_mut().take() {
            // Sent, then closed; if they cannot be sent, a warning says what that means and
            // the bus is dropped with the stack (its tasks end with the last handle).
            if bus.flush(Duration::from_secs(2)).await {
                bus.close().await;
            } else {
                tracing::warn!(
                    "some cache invalidations were not sent before closing; other instances' \
                     caches may serve their copy until its entry ttl passes"
                );
            }
        }
        if let Some(monitor) = self.monitor.take() {
            monitor.stop().await;
        }
        self.stop_sweeper().await;
        if lost.is_empty() { Ok(()) } else { Err(lost) }
    }
}
