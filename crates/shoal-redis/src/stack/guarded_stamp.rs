//! [`GuardedStamp`]: the `strict` cache's version check when the breaker sits between the
//! cache and Redis.

use async_trait::async_trait;
use shoal_core::{
    SessionId, SessionStore,
    cached::{Revalidate, SessionStamp},
    resilient::BreakerState,
};

use super::ResilientRedis;
use crate::RedisStore;

/// One `HMGET` under the breaker's `op_timeout` while the breaker is closed; otherwise the
/// wrapper's own `get` (the fallback's answer, or `Unavailable`), so a hit is never checked
/// against a server the breaker keeps out.
#[derive(Debug)]
pub(super) struct GuardedStamp {
    /// The store the breaker guards.
    pub(super) redis: RedisStore,
    /// The wrapper around it.
    pub(super) resilient: ResilientRedis,
}

#[async_trait]
impl Revalidate for GuardedStamp {
    async fn stamp(&self, id: &SessionId) -> shoal_core::Result<Option<SessionStamp>> {
        if self.resilient.breaker_state() == BreakerState::Closed {
            let after = self.resilient.config().op_timeout;
            return match tokio::time::timeout(after, self.redis.stamp(id)).await {
                Ok(r) => r,
                Err(_) => Err(shoal_core::Error::Timeout { op: "stamp", after }),
            };
        }
        Ok(self.resilient.get(id).await?.map(|s| SessionStamp::of(&s)))
    }
}
