//! The composed stack (`shoal_redis::stack`): the conformance suite through the cache, the
//! resilience wrapper and Redis (and through the cache over memory), two stacks on one server
//! invalidating each other's caches, and `close()` draining the outage journal — or saying
//! what it could not drain.
//!
//! Every test starts its own `redis-server` (loopback); every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use shoal_core::{
    FallbackMode, Limits, Session, SessionId, SessionStore, SystemClock, Transport,
    resilient::BreakerState,
};
use shoal_redis::{
    RedisConfig, RedisStore,
    stack::{Stack, StackConfig},
};
use shoal_testkit::{Harness, redis_server::RedisServer};

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn next_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("st{}", N.fetch_add(1, Ordering::Relaxed))
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

/// Stacks a factory opened, kept open (monitor, sweeper, bus) until the test binary exits.
fn keep(stack: Stack) -> Arc<dyn SessionStore> {
    static KEPT: Mutex<Vec<Stack>> = Mutex::new(Vec::new());
    let store = stack.store();
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(stack);
    store
}

/// Short deadlines so an outage opens the breaker, and a probe closes it, within a second.
fn resilient_config(config: &mut StackConfig) {
    config.resilience.fallback = Some(FallbackMode::Memory);
    let r = &mut config.resilience.config;
    r.op_timeout = Duration::from_millis(500);
    r.bulk_timeout = Duration::from_secs(3);
    r.retry.max_retries = 0;
    r.breaker.failure_threshold = 1;
    r.breaker.cooldown = Duration::from_millis(200);
    r.breaker.close_after = 1;
    r.health.interval = Duration::from_millis(100);
    r.health.timeout = Duration::from_millis(500);
}

/// The whole composition: cache (invalidate, every touch written) over the resilience
/// wrapper over Redis, on a fresh prefix.
fn full_config(limits: Limits) -> StackConfig {
    let mut config = StackConfig::default();
    config.limits = limits;
    config.redis.connection.key_prefix = next_prefix();
    resilient_config(&mut config);
    config.cache.enabled = true;
    config.cache.config.touch_interval = Duration::ZERO;
    config
}

async fn full_stack(h: Harness) -> Arc<dyn SessionStore> {
    let config = full_config(h.limits.clone());
    let stack = Stack::open_with_clock(&server().url(), &config, Arc::new(h.clock.clone()))
        .await
        .unwrap_or_else(|e| panic!("open: {e}"));
    assert!(stack.resilient().is_some() && stack.cache().is_some());
    keep(stack)
}

async fn cached_memory_stack(h: Harness) -> Arc<dyn SessionStore> {
    let mut config = StackConfig::default();
    config.limits = h.limits.clone();
    config.cache.enabled = true;
    config.cache.config.touch_interval = Duration::ZERO;
    let stack = Stack::open_with_clock("memory://", &config, Arc::new(h.clock.clone()))
        .await
        .unwrap_or_else(|e| panic!("open: {e}"));
    keep(stack)
}

shoal_testkit::conformance_suite!(full_stack_conformance, full_stack);
shoal_testkit::model_test!(full_stack_model, full_stack);
shoal_testkit::conformance_suite!(cached_memory_conformance, cached_memory_stack);

/// Polls `done` (real time, at most 10 s).
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_on_one_server_invalidate_each_others_caches() {
    let mut config = StackConfig::default();
    config.redis.connection.key_prefix = next_prefix();
    config.cache.enabled = true;
    // Long enough that only an invalidation can end a stale entry within the test.
    config.cache.config.ttl = Duration::from_secs(60);
    let a = Stack::open(&server().url(), &config).await.unwrap();
    let b = Stack::open(&server().url(), &config).await.unwrap();
    let id = sid("shared");
    a.store()
        .create(Session::new(id.clone(), Transport::Http))
        .await
        .unwrap();
    // B caches revision 1.
    assert_eq!(b.store().get(&id).await.unwrap().unwrap().revision, 1);

    // A write through A's cache is announced by it.
    let mut s = a.store().get(&id).await.unwrap().unwrap();
    s.metadata.insert("step".into(), "2".into());
    a.store().update(&s).await.unwrap();
    eventually("B sees A's update", async || {
        b.store().get(&id).await.unwrap().map(|s| s.revision) == Some(2)
    })
    .await;

    // A stack without a cache (a one-off admin command) writes, then announces: B hears it
    // on the bus that stack opens for the announcement.
    let mut plain = config.clone();
    plain.cache.enabled = false;
    let c = Stack::open(&server().url(), &plain).await.unwrap();
    let mut s = c.store().get(&id).await.unwrap().unwrap();
    s.metadata.insert("step".into(), "3".into());
    c.store().update(&s).await.unwrap();
    c.announce(std::slice::from_ref(&id)).await;
    eventually("B sees the announced write", async || {
        b.store().get(&id).await.unwrap().map(|s| s.revision) == Some(3)
    })
    .await;
    c.close().await.unwrap();

    // The bus the proxy takes its wake-ups from is the cache's.
    let bus = a
        .notify_bus()
        .await
        .unwrap()
        .expect("a Redis stack has a bus");
    assert!(bus.subscribe_wakeups().is_some());
    assert!(a.bus_stats().await.is_some_and(|s| s.up));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Writes `n` sessions through `stack` while its server is down, until the breaker has
/// sent them to the fallback (bounded).
async fn write_during_outage(stack: &Stack, n: usize) -> Vec<SessionId> {
    let store = stack.store();
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ids.len() < n {
        assert!(Instant::now() < deadline, "the fallback never took writes");
        let id = sid(&format!("outage-{}", ids.len()));
        if store
            .create(Session::new(id.clone(), Transport::Http))
            .await
            .is_ok()
        {
            ids.push(id);
        }
    }
    let stats = stack.resilient().unwrap().stats();
    assert_ne!(stats.breaker, BreakerState::Closed);
    assert!(
        stats.journal_entries > 0 || stats.marked_sessions > 0,
        "{stats:?}"
    );
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_drains_the_outage_journal_into_redis() {
    let mut own = RedisServer::start();
    let mut config = StackConfig::default();
    config.redis.connection.key_prefix = next_prefix();
    config.redis.connection.connect_timeout = Duration::from_millis(500);
    config.redis.connection.response_timeout = Duration::from_millis(500);
    resilient_config(&mut config);
    let stack = Stack::open(&own.url(), &config).await.unwrap();
    own.stop();
    let ids = write_during_outage(&stack, 3).await;
    own.restart();

    stack.close().await.unwrap_or_else(|e| panic!("close: {e}"));
    let redis = RedisStore::connect(
        RedisConfig::new(own.url()).with_key_prefix(config.redis.connection.key_prefix.clone()),
        Limits::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    for id in &ids {
        assert!(redis.get(id).await.unwrap().is_some(), "{id} not in Redis");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_says_what_it_could_not_drain() {
    let mut own = RedisServer::start();
    let mut config = StackConfig::default();
    config.redis.connection.key_prefix = next_prefix();
    config.redis.connection.connect_timeout = Duration::from_millis(500);
    config.redis.connection.response_timeout = Duration::from_millis(500);
    resilient_config(&mut config);
    config.resilience.drain_timeout = Duration::from_millis(300);
    let stack = Stack::open(&own.url(), &config).await.unwrap();
    own.stop();
    write_during_outage(&stack, 2).await;

    let lost = stack.close().await.expect_err("Redis is down");
    let journal = lost.journal.clone().expect("the journal was not drained");
    assert!(journal.entries > 0 || journal.sessions > 0, "{lost}");
    assert!(
        lost.to_string().contains("not drained into Redis"),
        "{lost}"
    );
}
