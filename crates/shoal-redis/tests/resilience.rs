//! The conformance suite and the reference model through `Resilient<P, F>` with a healthy
//! primary: `Resilient<RedisStore, MemoryStore>` (one server per test binary, a fresh key
//! prefix per store) and `Resilient<MemoryStore, MemoryStore>`. The wrapper must be
//! invisible while the primary is healthy.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use shoal_core::{MemoryStore, ResilienceConfig, Resilient, SessionStore};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::{Harness, redis_server::RedisServer};

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// Generous deadlines: the suite runs many stores at once on two shared cores, and a breaker
/// opened by a slow moment would fail cases that have nothing to do with resilience.
fn config() -> ResilienceConfig {
    let mut c = ResilienceConfig::default();
    c.op_timeout = Duration::from_secs(10);
    c.bulk_timeout = Duration::from_secs(30);
    c
}

fn memory(h: &Harness) -> MemoryStore {
    MemoryStore::builder()
        .limits(h.limits.clone())
        .clock(Arc::new(h.clock.clone()))
        .build()
}

/// `Resilient<RedisStore, MemoryStore>` on the shared server under a fresh key prefix.
async fn resilient_redis(h: Harness) -> Arc<dyn SessionStore> {
    static N: AtomicU64 = AtomicU64::new(0);
    let prefix = format!("r{}", N.fetch_add(1, Ordering::Relaxed));
    let redis = RedisStore::connect(
        RedisConfig::new(server().url()).with_key_prefix(prefix),
        h.limits.clone(),
        Arc::new(h.clock.clone()),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"));
    let store = Resilient::new(redis, memory(&h), config())
        .unwrap_or_else(|e| panic!("resilient config: {e}"));
    Arc::new(store)
}

/// `Resilient<MemoryStore, MemoryStore>`.
async fn resilient_memory(h: Harness) -> Arc<dyn SessionStore> {
    let store = Resilient::new(memory(&h), memory(&h), config())
        .unwrap_or_else(|e| panic!("resilient config: {e}"));
    Arc::new(store)
}

shoal_testkit::conformance_suite!(redis_primary, resilient_redis);
shoal_testkit::conformance_suite!(memory_primary, resilient_memory);
shoal_testkit::model_test!(model_redis_primary, resilient_redis);
shoal_testkit::model_test!(model_memory_primary, resilient_memory);
