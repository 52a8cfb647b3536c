//! [`CacheControl`]: the cache of a stack, whatever store it wraps.

use std::{fmt, future::Future, pin::Pin};

use shoal_core::{
    Cached, SessionStore,
    cached::{CacheConfig, CacheStats, FlushReport},
};

/// A boxed future of a [`CacheControl`] method.
pub type CacheFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a caller needs of a stack's [`Cached`] store without knowing what it wraps (Redis,
/// Redis behind the resilience wrapper, or memory): its counters, configuration and flushes.
pub trait CacheControl: Send + Sync + fmt::Debug {
    /// Counters.
    fn stats(&self) -> CacheStats;
    /// The configuration in force.
    fn config(&self) -> &CacheConfig;
    /// Drops every entry (local only).
    fn invalidate_all(&self);
    /// Writes every deferred write.
    fn flush(&self) -> CacheFuture<'_, shoal_core::Result<FlushReport>>;
    /// Stops deferring and writes everything deferred.
    fn shutdown(&self) -> CacheFuture<'_, shoal_core::Result<FlushReport>>;
}

impl<S: SessionStore> CacheControl for Cached<S> {
    fn stats(&self) -> CacheStats {
        Cached::stats(self)
    }
    fn config(&self) -> &CacheConfig {
        Cached::config(self)
    }
    fn invalidate_all(&self) {
        Cached::invalidate_all(self);
    }
    fn flush(&self) -> CacheFuture<'_, shoal_core::Result<FlushReport>> {
        Box::pin(Cached::flush(self))
    }
    fn shutdown(&self) -> CacheFuture<'_, shoal_core::Result<FlushReport>> {
        Box::pin(Cached::shutdown(self))
    }
}
