//! The conformance suite and the reference model against standalone Redis (one server per
//! test binary, a fresh key prefix per store).

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicU64, Ordering},
};

use shoal_core::SessionStore;
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::{Harness, redis_server::RedisServer};

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// A fresh store on the shared server under a key prefix no other store uses.
async fn redis(h: Harness) -> Arc<dyn SessionStore> {
    static N: AtomicU64 = AtomicU64::new(0);
    let prefix = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
    let config = RedisConfig::new(server().url())
        .with_key_prefix(prefix)
        .with_feed(h.feed.clone());
    let store = RedisStore::connect(config, h.limits, Arc::new(h.clock))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    Arc::new(store)
}

shoal_testkit::conformance_suite!(redis);
shoal_testkit::feed_suite!(redis);
shoal_testkit::model_test!(redis);

/// 1,000 frames of 1 MiB through one real redis-server: no page over 8 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_frame_pages_stay_within_their_byte_bound() {
    shoal_testkit::conformance::big_frame_pages_stay_within_their_byte_bound(redis).await;
}
