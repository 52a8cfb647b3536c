//! Bus events: invalidations raise fences at once (the hook) and free entries later (the
//! listener task); the bus going down turns the cache off, and back up empties it first.

use std::sync::{Arc, Weak, atomic::Ordering};

use tokio::sync::broadcast;

use super::cache_core::CacheCore;
use crate::notify::{BusEvent, BusHook, Invalidation, unix_micros};
use crate::{SessionId, SessionStore};

impl<S: SessionStore> CacheCore<S> {
    /// Turns the cache on (after emptying it) or off (then empties it); counted and logged.
    pub(super) fn set_enabled(&self, on: bool) {
        let mut changes = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *changes += 1;
        if on {
            self.clear();
            self.enabled.store(true, Ordering::Release);
        } else {
            self.enabled.store(false, Ordering::Release);
            self.clear();
        }
        self.stats.set_enabled(on);
        tracing::info!(
            enabled = on,
            "session cache {}",
            if on { "on" } else { "off" }
        );
    }

    /// The synchronous part of an invalidation: fences raised (hits stop at once), touch
    /// states stale, counted.
    pub(super) fn invalidated(&self, inv: &Invalidation) {
        for id in inv.ids.iter() {
            self.fences.raise(id);
            if let Some(st) = self.touches.get(id) {
                st.stale.store(true, Ordering::Release);
            }
        }
        self.stats.invalidations.add(inv.ids.len() as u64);
        if let Some(sent) = inv.sent_at_us {
            self.stats
                .record_delay_us(unix_micros().saturating_sub(sent));
        }
    }

    /// Frees every entry (after [`CacheCore::clear`]).
    pub(super) async fn drop_all(&self) {
        let keys: Vec<Arc<SessionId>> = self.entries.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.entries.invalidate(&*k).await;
        }
    }

    /// The asynchronous part: the entries themselves go (memory is freed).
    async fn drop_entries(&self, inv: &Invalidation) {
        for id in inv.ids.iter() {
            self.entries.invalidate(id).await;
        }
    }
}

impl<S: SessionStore> BusHook for CacheCore<S> {
    fn on_event(&self, event: &BusEvent) {
        match event {
            BusEvent::Invalidate(inv) => self.invalidated(inv),
            BusEvent::InvalidateAll => self.clear(),
            BusEvent::Down => self.set_enabled(false),
            BusEvent::Up => self.set_enabled(true),
        }
    }
}

/// Applies bus events to the cache until the cache or the bus is gone. With a hook
/// (`hooked`) the events were already applied synchronously; this only frees the entries.
pub(super) async fn listen<S: SessionStore>(
    weak: Weak<CacheCore<S>>,
    mut rx: broadcast::Receiver<BusEvent>,
    hooked: bool,
) {
    loop {
        let event = rx.recv().await;
        let Some(shared) = weak.upgrade() else { return };
        match event {
            Ok(BusEvent::Invalidate(inv)) => {
                if !hooked {
                    shared.invalidated(&inv);
                }
                shared.drop_entries(&inv).await;
            }
            Ok(other) => {
                if !hooked {
                    shared.on_event(&other);
                }
                shared.drop_all().await;
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "cache fell behind its invalidation bus; clearing it"
                );
                shared.clear();
                shared.drop_all().await;
            }
            Err(broadcast::error::RecvError::Closed) => {
                shared.set_enabled(false);
                return;
            }
        }
    }
}
