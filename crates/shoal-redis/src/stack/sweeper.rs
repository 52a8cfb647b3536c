//! [`Sweeper`]: the background expiry sweeper of a stack's backend.

use shoal_core::SweeperHandle;

use crate::RedisSweeper;

/// A background sweeper, stopped when dropped.
#[derive(Debug)]
pub(super) enum Sweeper {
    /// The memory store's.
    Memory(SweeperHandle),
    /// The Redis store's (one instance sweeps at a time, under the sweep lease).
    Redis(RedisSweeper),
}

impl Sweeper {
    /// Stops it; a sweep under way finishes first.
    pub(super) async fn stop(self) {
        match self {
            Sweeper::Memory(s) => s.stop().await,
            Sweeper::Redis(s) => s.stop(),
        }
    }
}
