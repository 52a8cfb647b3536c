//! `Cached<RedisStore>` with the Redis pub/sub invalidation bus: the conformance suite and the
//! model, two instances on one Redis (staleness measured and printed — run with
//! `--nocapture`), the bus losing its subscription, and write-behind shutdown.
//!
//! Every test starts its own `redis-server` (loopback); every wait is bounded; nothing asserts
//! on time.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use shoal_core::{
    Limits, ManualClock, Result, Session, SessionId, SessionStatus, SessionStore, SystemClock,
    Transport,
    cached::{CacheConfig, Cached, Consistency, WriteMode},
    notify::{BusEvent, NotifyBus},
};
use shoal_redis::{BusConfig, RedisConfig, RedisPubSub, RedisStore, cache_builder};
use shoal_testkit::{Harness, redis_server::RedisServer};

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn next_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("c{}", N.fetch_add(1, Ordering::Relaxed))
}

fn ok<T>(r: Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

/// A cached Redis store on a fresh prefix, with its own bus, using the harness's clock.
async fn cached_on_redis(h: Harness, config: CacheConfig) -> Arc<dyn SessionStore> {
    let rc = RedisConfig::new(server().url()).with_key_prefix(next_prefix());
    let clock = Arc::new(h.clock.clone());
    let store = ok(
        RedisStore::connect(rc.clone(), h.limits, clock.clone()).await,
        "connect",
    );
    let bus = ok(RedisPubSub::connect(&rc, BusConfig::default()).await, "bus");
    Arc::new(ok(
        cache_builder(store, Some(bus))
            .config(config)
            .clock(clock)
            .build(),
        "build",
    ))
}

/// Invalidation over pub/sub, write-through, every touch written.
async fn invalidate(h: Harness) -> Arc<dyn SessionStore> {
    cached_on_redis(
        h,
        CacheConfig::default().with_touch_interval(Duration::ZERO),
    )
    .await
}

/// Strict: every hit checked with one HMGET.
async fn strict(h: Harness) -> Arc<dyn SessionStore> {
    cached_on_redis(
        h,
        CacheConfig::default()
            .with_consistency(Consistency::Strict)
            .with_touch_interval(Duration::ZERO),
    )
    .await
}

/// Write-behind, updates flushed every 20 ms.
async fn write_behind(h: Harness) -> Arc<dyn SessionStore> {
    cached_on_redis(
        h,
        CacheConfig::default()
            .with_write_mode(WriteMode::WriteBehind)
            .with_flush_interval(Duration::from_millis(20))
            .with_touch_interval(Duration::ZERO),
    )
    .await
}

/// Read-through: writes drop entries.
async fn read_through(h: Harness) -> Arc<dyn SessionStore> {
    cached_on_redis(
        h,
        CacheConfig::default()
            .with_write_mode(WriteMode::ReadThrough)
            .with_touch_interval(Duration::ZERO),
    )
    .await
}

/// Touch coalescing on (1 s).
async fn coalescing(h: Harness) -> Arc<dyn SessionStore> {
    cached_on_redis(h, CacheConfig::default()).await
}

shoal_testkit::conformance_suite!(invalidate_conformance, invalidate);
shoal_testkit::conformance_suite!(strict_conformance, strict);
shoal_testkit::conformance_suite!(write_behind_conformance, write_behind);
shoal_testkit::conformance_suite!(coalescing_conformance, coalescing);
shoal_testkit::conformance_suite!(read_through_conformance, read_through);
shoal_testkit::model_test!(invalidate_model, invalidate);
shoal_testkit::model_test!(strict_model, strict);

/// Polls `done` (real time, at most 10 s).
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Instance {
    cache: Cached<RedisStore>,
    bus: RedisPubSub,
}

async fn instance(url: &str, prefix: &str, config: CacheConfig) -> Instance {
    let rc = RedisConfig::new(url).with_key_prefix(prefix);
    let store = ok(
        RedisStore::connect(rc.clone(), Limits::default(), Arc::new(SystemClock)).await,
        "connect",
    );
    let mut bus_config = BusConfig::default();
    bus_config.ping_interval = Duration::from_millis(200);
    let bus = ok(RedisPubSub::connect(&rc, bus_config).await, "bus");
    let cache = ok(
        cache_builder(store, Some(bus.clone()))
            .config(config)
            .build(),
        "build",
    );
    Instance { cache, bus }
}

/// Waits (without spinning) until B's bus delivers an invalidation naming `id`, then polls
/// B until it serves something other than the old state; returns when that happened.
async fn b_moves_on(
    events: &mut tokio::sync::broadcast::Receiver<BusEvent>,
    b: &Cached<RedisStore>,
    id: &SessionId,
    new_state: impl Fn(Option<Session>) -> bool,
) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(BusEvent::Invalidate(inv))) if inv.ids.contains(id) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("b's bus: {e}"),
            Err(_) => panic!("b never heard of the change to {id}"),
        }
    }
    loop {
        if new_state(ok(b.get(id).await, "b get")) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "b kept serving the old state of {id}"
        );
        tokio::task::yield_now().await;
    }
}

/// Two instances on one Redis, each with a cache and a bus. After an update or a delete on
/// A, B serves the old value only until the invalidation arrives; the measured staleness
/// (A's write acknowledged → B serves the new state) is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_staleness_over_pubsub() {
    let prefix = next_prefix();
    let config = CacheConfig::default().with_touch_interval(Duration::ZERO);
    let a = instance(&server().url(), &prefix, config.clone()).await;
    let b = instance(&server().url(), &prefix, config).await;
    let mut events = b.bus.subscribe();
    let mut staleness = Vec::new();
    for i in 0..500 {
        let id = sid(&format!("pair-{i}"));
        let created = ok(
            a.cache
                .create(Session::new(id.clone(), Transport::StreamableHttp))
                .await,
            "create",
        );
        b_moves_on(&mut events, &b.cache, &id, |s| s.is_some()).await;
        assert_eq!(
            ok(b.cache.get(&id).await, "b hit"),
            Some(created.clone()),
            "b serves it from its cache"
        );
        let mut change = created.clone();
        change.status = SessionStatus::Completed;
        let updated = ok(a.cache.update(&change).await, "a update");
        let t0 = Instant::now();
        let rev = updated.revision;
        let seen = b_moves_on(&mut events, &b.cache, &id, |s| {
            s.is_some_and(|s| s.revision == rev)
        })
        .await;
        staleness.push(seen - t0);
        assert_eq!(ok(b.cache.get(&id).await, "b"), Some(updated));
        assert!(ok(a.cache.delete(&id).await, "a delete"));
        let t0 = Instant::now();
        let seen = b_moves_on(&mut events, &b.cache, &id, |s| s.is_none()).await;
        staleness.push(seen - t0);
    }
    staleness.sort();
    let sb = b.cache.stats();
    eprintln!(
        "redis pub/sub staleness over {} changes (update or delete acknowledged on A → B \
         serves the new state): p50 {:?} p90 {:?} p99 {:?} max {:?}; B: {} invalidations \
         received, max publish→receive delay {} µs, {} hits, {} misses",
        staleness.len(),
        percentile(&staleness, 0.5),
        percentile(&staleness, 0.9),
        percentile(&staleness, 0.99),
        staleness.last().copied().unwrap_or_default(),
        sb.invalidations_received,
        sb.invalidation_delay_max_us,
        sb.hits,
        sb.misses,
    );
    assert!(sb.invalidations_received >= 1_000, "{sb:?}");
    assert!(a.bus.stats().messages_published > 0);
    let bus = b.bus.stats();
    eprintln!("B's bus: {bus:?}");
    assert_eq!(
        bus.subscriptions, 1,
        "the subscription (pinged every 200 ms) never dropped in a healthy run"
    );
}

/// `strict` without a bus: B sees A's write on its very next read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_instances_see_writes_at_once() {
    let prefix = next_prefix();
    let rc = RedisConfig::new(server().url()).with_key_prefix(&prefix);
    let config = CacheConfig::default()
        .with_consistency(Consistency::Strict)
        .with_touch_interval(Duration::ZERO);
    let mut caches = Vec::new();
    for _ in 0..2 {
        let store = ok(RedisStore::connect_default(rc.clone()).await, "connect");
        caches.push(ok(
            cache_builder(store, None).config(config.clone()).build(),
            "build",
        ));
    }
    let (a, b) = (&caches[0], &caches[1]);
    let id = sid("strict-pair");
    let s = ok(
        a.create(Session::new(id.clone(), Transport::Http)).await,
        "create",
    );
    assert_eq!(ok(b.get(&id).await, "b load"), Some(s.clone()));
    assert_eq!(ok(b.get(&id).await, "b hit"), Some(s.clone()));
    let mut change = s;
    change.principal = Some("alice".into());
    let updated = ok(a.update(&change).await, "a update");
    assert_eq!(ok(b.get(&id).await, "b"), Some(updated));
    assert!(ok(a.delete(&id).await, "a delete"));
    assert_eq!(ok(b.get(&id).await, "b"), None);
    assert!(b.stats().stale_hits >= 2, "{:?}", b.stats());
}

/// B's subscription is killed and cannot come back (its ACL user loses the channel): B's
/// cache is off and every read goes to Redis, so A's writes meanwhile are seen; when the
/// permission returns, B resubscribes, empties its cache and serves hits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_turns_the_cache_off_until_it_is_back() {
    let srv = server();
    assert!(
        srv.cli(&["ACL", "SETUSER", "busb", "on", ">pw", "~*", "&*", "+@all"])
            .contains("OK")
    );
    let prefix = next_prefix();
    let config = CacheConfig::default().with_touch_interval(Duration::ZERO);
    let a = instance(&srv.url(), &prefix, config.clone()).await;
    let b = instance(&srv.url_with_user("busb", "pw"), &prefix, config).await;
    let id = sid("flaky-sub");
    let s = ok(
        a.cache
            .create(Session::new(id.clone(), Transport::Http))
            .await,
        "create",
    );
    eventually("b caches it", async || {
        ok(b.cache.get(&id).await, "get").is_some() && b.cache.stats().hits > 0
    })
    .await;
    assert!(b.cache.is_enabled());

    assert!(
        srv.cli(&["ACL", "SETUSER", "busb", "resetchannels"])
            .contains("OK")
    );
    srv.cli(&["CLIENT", "KILL", "TYPE", "pubsub", "USER", "busb"]);
    eventually("b's bus is down", async || !b.bus.is_up()).await;
    eventually("b's cache is off", async || !b.cache.is_enabled()).await;
    let mut change = s.clone();
    change.status = SessionStatus::Failed;
    let updated = ok(a.cache.update(&change).await, "a update (b cannot hear it)");
    assert_eq!(
        ok(b.cache.get(&id).await, "b while off"),
        Some(updated.clone())
    );
    let bypassed = b.cache.stats().bypassed;
    assert!(bypassed > 0);
    let health = ok(b.cache.health().await, "health");
    assert_eq!(health.status, shoal_core::HealthStatus::Degraded);

    assert!(
        srv.cli(&["ACL", "SETUSER", "busb", "allchannels"])
            .contains("OK")
    );
    eventually("b's bus is back", async || b.bus.is_up()).await;
    eventually("b's cache is on", async || b.cache.is_enabled()).await;
    assert_eq!(ok(b.cache.get(&id).await, "b after"), Some(updated.clone()));
    let hits = b.cache.stats().hits;
    assert_eq!(ok(b.cache.get(&id).await, "b hit"), Some(updated));
    assert_eq!(
        b.cache.stats().hits,
        hits + 1,
        "served from the cache again"
    );
    assert!(b.bus.stats().subscriptions >= 2);
}

/// Write-behind on Redis: many acknowledged updates and touches, `shutdown`, and a fresh
/// uncached store reads every one of them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_shutdown_loses_nothing_on_redis() {
    let prefix = next_prefix();
    let rc = RedisConfig::new(server().url()).with_key_prefix(&prefix);
    let clock = ManualClock::starting_now();
    let store = ok(
        RedisStore::connect(rc.clone(), Limits::default(), Arc::new(clock.clone())).await,
        "connect",
    );
    let bus = ok(RedisPubSub::connect(&rc, BusConfig::default()).await, "bus");
    let cache = ok(
        cache_builder(store, Some(bus.clone()))
            .config(
                CacheConfig::default()
                    .with_write_mode(WriteMode::WriteBehind)
                    .with_flush_interval(Duration::from_secs(3600))
                    .with_touch_interval(Duration::from_secs(3600)),
            )
            .clock(Arc::new(clock.clone()))
            .build(),
        "build",
    );
    let mut acked = Vec::new();
    for i in 0..100 {
        let id = sid(&format!("wb-{i}"));
        let mut s = ok(
            cache
                .create(Session::new(id.clone(), Transport::Http))
                .await,
            "create",
        );
        for step in 0..3 {
            s.metadata.insert("step".into(), step.to_string());
            s = ok(cache.update(&s).await, "update");
            ok(cache.touch(&id).await, "touch");
        }
        acked.push(s);
    }
    let plain = ok(
        RedisStore::connect(rc.clone(), Limits::default(), Arc::new(clock.clone())).await,
        "connect plain",
    );
    let before = ok(plain.get(&acked[0].id).await, "plain get").map(|s| s.revision);
    assert_eq!(before, Some(1), "not written before shutdown");
    let report = ok(cache.shutdown().await, "shutdown");
    assert_eq!(report.updates_written, 300, "{report:?}");
    assert_eq!(report.updates_dropped, 0, "{report:?}");
    for s in &acked {
        let stored =
            ok(plain.get(&s.id).await, "plain get").unwrap_or_else(|| panic!("{} exists", s.id));
        assert_eq!(stored.revision, s.revision, "{}", s.id);
        assert_eq!(stored.metadata, s.metadata, "{}", s.id);
    }
    assert!(bus.flush(Duration::from_secs(5)).await);
    bus.close().await;
    assert!(!bus.is_up());
}

/// Loses the reply of the next `update` once armed: Redis applies it, the caller gets a
/// timeout (what a reply lost on a dropped connection looks like).
#[derive(Clone, Debug, Default)]
struct LoseUpdateReplies {
    armed: Arc<std::sync::atomic::AtomicUsize>,
    lost: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl shoal_testkit::forwarding::Hooks for LoseUpdateReplies {
    type Ticket = bool;

    async fn before(&self, call: shoal_testkit::forwarding::Call<'_>) -> Result<bool> {
        if call.op() != shoal_testkit::forwarding::Op::Update {
            return Ok(false);
        }
        Ok(self
            .armed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok())
    }

    async fn after(
        &self,
        _op: shoal_testkit::forwarding::Op,
        lose: bool,
        _outcome: shoal_testkit::forwarding::Outcome<'_>,
    ) -> Option<shoal_core::Error> {
        if !lose {
            return None;
        }
        self.lost.fetch_add(1, Ordering::SeqCst);
        Some(shoal_core::Error::Timeout {
            op: "update",
            after: Duration::from_secs(1),
        })
    }
}

/// Write-behind: a flushed update that Redis applied but whose reply was lost is retried,
/// meets `Conflict`, is read back and found applied — and the session's later queued
/// updates (all acknowledged) are written too; nothing is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_keeps_updates_after_one_applied_but_unanswered() {
    let prefix = next_prefix();
    let rc = RedisConfig::new(server().url()).with_key_prefix(&prefix);
    let redis = ok(
        RedisStore::connect(rc.clone(), Limits::default(), Arc::new(SystemClock)).await,
        "connect",
    );
    let hooks = LoseUpdateReplies::default();
    let forwarding = shoal_testkit::forwarding::ForwardingStore::new(redis.clone(), hooks.clone());
    let cache = ok(
        Cached::builder(forwarding)
            .config(
                CacheConfig::default()
                    .with_consistency(Consistency::Local)
                    .with_write_mode(WriteMode::WriteBehind)
                    .with_flush_interval(Duration::from_secs(3600))
                    .with_touch_interval(Duration::from_secs(3600)),
            )
            .build(),
        "build",
    );
    let id = sid("wb-in-doubt");
    let mut s = ok(
        cache
            .create(Session::new(id.clone(), Transport::Http))
            .await,
        "create",
    );
    for step in 0..5 {
        s.metadata.insert("step".into(), step.to_string());
        s = ok(cache.update(&s).await, "update (acknowledged)");
    }
    hooks.armed.store(1, Ordering::SeqCst);
    // The first flush: update 1 is applied, its reply lost; the rest wait in the queue.
    let first = cache.flush().await;
    assert!(
        first.is_err(),
        "the lost reply surfaces as a transient error"
    );
    assert_eq!(hooks.lost.load(Ordering::SeqCst), 1);
    // The retry meets Conflict for update 1, reads it back, and writes 2..5.
    let report = ok(cache.flush().await, "second flush");
    assert_eq!(report.updates_dropped, 0, "{report:?}");
    let stored = ok(redis.get(&id).await, "get").unwrap_or_else(|| panic!("the session exists"));
    assert_eq!(
        stored.revision, s.revision,
        "every acknowledged update is stored"
    );
    assert_eq!(stored.metadata, s.metadata);
}
