//! Flushing deferred writes (queued updates, coalesced touches): all at once, and the
//! background task that does it periodically.

use std::{
    sync::{Arc, Weak},
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use super::{cache_core::CacheCore, config::WriteMode, stats::FlushReport};
use crate::{Error, SessionStore};

/// Concurrent backend writes of one flush.
pub(super) const FLUSH_CONCURRENCY: usize = 32;

/// Runs `f` on every item, at most `limit` at once, on spawned tasks.
pub(super) async fn run_concurrently<T, F, Fut>(
    items: Vec<T>,
    limit: usize,
    f: F,
) -> Vec<Fut::Output>
where
    F: Fn(T) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut out = Vec::with_capacity(items.len());
    let mut items = items.into_iter();
    loop {
        while set.len() < limit.max(1) {
            match items.next() {
                Some(item) => {
                    set.spawn(f(item));
                }
                None => break,
            }
        }
        match set.join_next().await {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => tracing::error!(error = %e, "cache flush task failed"),
            None => return out,
        }
    }
}

impl<S: SessionStore> CacheCore<S> {
    /// Writes the queued updates, then the deferred touches (all with `force`).
    pub(super) async fn flush_everything(
        self: &Arc<Self>,
        force: bool,
    ) -> (FlushReport, Option<Error>) {
        let (mut report, e1) = self.flush_queue().await;
        let (touches, e2) = self.flush_touches(force).await;
        report.touches_written += touches.touches_written;
        report.pending = (self.queue.len() + self.dirty.len()) as u64;
        (report, e1.or(e2))
    }

    /// One tick of the background task.
    async fn tick(self: &Arc<Self>, last_flush: &mut Instant, last_prune: &mut Instant) {
        if !self.config.touch_interval.is_zero() {
            let (_, err) = self.flush_touches(false).await;
            if let Some(e) = err {
                tracing::debug!(error = %e, "deferred touches not written yet; will retry");
            }
        }
        if self.config.write_mode == WriteMode::WriteBehind
            && (last_flush.elapsed() >= self.config.flush_interval
                || self.queue.len() >= self.config.max_queued_writes / 2)
        {
            *last_flush = Instant::now();
            let (_, err) = self.flush_queue().await;
            if let Some(e) = err {
                tracing::warn!(error = %e, queued = self.queue.len(), "write-behind flush failed; will retry");
            }
        }
        if last_prune.elapsed() >= Duration::from_secs(1) {
            *last_prune = Instant::now();
            self.prune_touches();
            self.fences.prune();
        }
    }
}

/// Writes deferred touches and queued updates in the background.
pub(super) async fn maintain<S: SessionStore>(weak: Weak<CacheCore<S>>, wake: Arc<Notify>) {
    let period = {
        let Some(s) = weak.upgrade() else { return };
        let mut p = s.config.flush_interval;
        if !s.config.touch_interval.is_zero() {
            p = p.min(s.config.touch_interval / 4);
        }
        p.clamp(Duration::from_millis(1), Duration::from_millis(250))
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_flush = Instant::now();
    let mut last_prune = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = wake.notified() => {}
        }
        let Some(s) = weak.upgrade() else { return };
        s.tick(&mut last_flush, &mut last_prune).await;
    }
}
