//! Touch coalescing: a session's `last_activity` is written at most once per
//! `touch_interval`; the touches in between are answered from the cache and flushed later.

use std::sync::{Arc, atomic::Ordering};

use super::{
    cache_core::{CacheCore, millis},
    deferred::TouchState,
    flush::{FLUSH_CONCURRENCY, run_concurrently},
    stats::FlushReport,
};
use crate::{Error, Result, SessionId, SessionStore, Timestamp};

/// What one deferred touch flush did.
enum TouchFlush {
    Written,
    Kept(Option<Error>),
    Gone,
}

impl<S: SessionStore> CacheCore<S> {
    /// Answers a touch from the cache when the backend was written less than
    /// `touch_interval` ago and its expiry is further than `touch_margin` away.
    pub(super) async fn try_coalesce(&self, id: &SessionId, now: Timestamp) -> Option<Timestamp> {
        let st = self.touches.get(id)?;
        if st.stale.load(Ordering::Acquire) {
            return None;
        }
        let since = self
            .now_ns()
            .saturating_sub(st.last_write_ns.load(Ordering::Acquire));
        if u128::from(since) >= self.config.touch_interval.as_nanos() {
            return None;
        }
        let remaining = st
            .backend_expires
            .load(Ordering::Acquire)
            .saturating_sub(now.0);
        if remaining <= millis(self.config.touch_margin) {
            return None;
        }
        let expires = now.saturating_add(self.session_ttl);
        if !st.dirty.swap(true, Ordering::AcqRel) {
            self.dirty.insert(id);
        }
        if let Some(e) = self.entries.get(id).await {
            e.touched_at(now);
        }
        self.stats.coalesced.inc();
        Some(expires)
    }

    /// A touch written to the backend now. Queued write-behind updates of the session need
    /// not go first: both only move activity forward.
    pub(super) async fn touch_through(self: &Arc<Self>, id: &SessionId) -> Result<Timestamp> {
        let ticket = self.fences.ticket();
        match self.store.touch(id).await {
            Ok(expires) => {
                self.stats.touch_writes.inc();
                let last_activity = Timestamp(expires.0.saturating_sub(millis(self.session_ttl)));
                if let Some(e) = self.entries.get(id).await {
                    e.touched_at(last_activity);
                }
                let now_ns = self.now_ns();
                let existing = self.touches.get(id);
                match existing {
                    Some(st) if !st.stale.load(Ordering::Acquire) => st.written(now_ns, expires),
                    _ if self.coalescing() && !self.fences.crossed(id, ticket) => {
                        let st = Arc::new(TouchState::new(now_ns, expires));
                        self.touches.insert(id.clone(), Arc::clone(&st));
                        if self.fences.crossed(id, ticket) {
                            st.stale.store(true, Ordering::Release);
                        }
                    }
                    _ => {}
                }
                Ok(expires)
            }
            Err(e) => {
                if e.is_not_found() {
                    self.evict(id, true).await;
                }
                Err(e)
            }
        }
    }

    /// Writes the deferred touch of `id` if it is due (or `force`).
    async fn flush_touch(&self, id: &SessionId, force: bool) -> TouchFlush {
        let Some(st) = self.touches.get(id) else {
            return TouchFlush::Gone;
        };
        if !st.dirty.load(Ordering::Acquire) {
            return TouchFlush::Gone;
        }
        let since = self
            .now_ns()
            .saturating_sub(st.last_write_ns.load(Ordering::Acquire));
        if !force && u128::from(since) < self.config.touch_interval.as_nanos() {
            return TouchFlush::Kept(None);
        }
        st.dirty.store(false, Ordering::Release);
        match self.store.touch(id).await {
            Ok(expires) => {
                st.written(self.now_ns(), expires);
                self.stats.touch_writes.inc();
                if let Some(e) = self.entries.get(id).await {
                    let la = Timestamp(expires.0.saturating_sub(millis(self.session_ttl)));
                    e.touched_at(la);
                }
                TouchFlush::Written
            }
            Err(e) if e.is_not_found() => {
                self.evict(id, true).await;
                TouchFlush::Gone
            }
            Err(e) => {
                st.dirty.store(true, Ordering::Release);
                TouchFlush::Kept(Some(e))
            }
        }
    }

    /// Writes deferred touches (all of them with `force`, else those whose interval has
    /// passed). On a spawned task, so a cancelled caller never loses taken touches.
    pub(super) async fn flush_touches(
        self: &Arc<Self>,
        force: bool,
    ) -> (FlushReport, Option<Error>) {
        let s = Arc::clone(self);
        let job = tokio::spawn(async move {
            let ids = s.dirty.take();
            if ids.is_empty() {
                return (FlushReport::default(), None);
            }
            let results = run_concurrently(ids, FLUSH_CONCURRENCY, |id| {
                let s = Arc::clone(&s);
                async move {
                    let r = s.flush_touch(&id, force).await;
                    (id, r)
                }
            })
            .await;
            let mut report = FlushReport::default();
            let mut err = None;
            for (id, r) in results {
                match r {
                    TouchFlush::Written => report.touches_written += 1,
                    TouchFlush::Gone => {}
                    TouchFlush::Kept(e) => {
                        s.dirty.insert(&id);
                        if e.is_some() {
                            err = e;
                        }
                    }
                }
            }
            (report, err)
        });
        job.await.unwrap_or_else(|e| {
            (
                FlushReport::default(),
                Some(Error::backend(format!("cache touch flush failed: {e}"))),
            )
        })
    }

    /// Forgets touch states that are clean and idle for two intervals, or stale.
    pub(super) fn prune_touches(&self) {
        let now_ns = self.now_ns();
        let keep = u64::try_from(self.config.touch_interval.as_nanos().saturating_mul(2))
            .unwrap_or(u64::MAX);
        self.touches.retain(|_, st| {
            st.dirty.load(Ordering::Acquire)
                || (!st.stale.load(Ordering::Acquire)
                    && now_ns.saturating_sub(st.last_write_ns.load(Ordering::Acquire)) < keep)
        });
    }
}
