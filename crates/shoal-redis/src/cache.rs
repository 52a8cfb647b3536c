//! Caching a [`RedisStore`]: the cheap version check a `strict` cache uses, and a
//! [`Cached`](shoal_core::Cached) builder wired to it and to a [`RedisPubSub`].

use std::sync::Arc;

use async_trait::async_trait;
use shoal_core::{
    CachedBuilder, Result, SessionId,
    cached::{Revalidate, SessionStamp},
};

use crate::{RedisStore, meta, pubsub::RedisPubSub};

/// The cheap version check for `strict` caches: one `HMGET` of the meta field `a` (activity
/// and counters); the caller-owned blob is not read.
#[async_trait]
impl Revalidate for RedisStore {
    async fn stamp(&self, id: &SessionId) -> Result<Option<SessionStamp>> {
        let values = self.meta_fields(id, &[meta::F_ACTIVITY]).await?;
        let Some(a) = values.first().and_then(meta::bytes_of) else {
            return Ok(None);
        };
        let a = meta::parse_activity(id, a)?;
        let mut stamp = SessionStamp::of(&shoal_core::Session::new(
            id.clone(),
            shoal_core::Transport::Http,
        ));
        stamp.revision = a.revision;
        stamp.last_seq = a.seq;
        stamp.first_seq = a.first_seq;
        stamp.frame_count = a.frame_count;
        stamp.created_at = a.created_at;
        stamp.last_activity = a.last_activity;
        stamp.expires_at = a.expires_at;
        Ok(Some(stamp))
    }
}

/// A [`Cached`](shoal_core::Cached) builder for `store`: with `bus` (for
/// `consistency = invalidate`) and the store's one-`HMGET` version check (for `strict`).
/// Set the clock if the store does not use the system clock.
pub fn cache_builder(store: RedisStore, bus: Option<RedisPubSub>) -> CachedBuilder<RedisStore> {
    let validator: Arc<dyn Revalidate> = Arc::new(store.clone());
    let mut b = shoal_core::Cached::builder(store).validator(validator);
    if let Some(bus) = bus {
        b = b.bus(Arc::new(bus));
    }
    b
}
