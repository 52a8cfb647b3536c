//! Behaviour of `Cached<S>` over the memory store: cross-instance invalidation (in-process
//! bus), the bus going down and up, races between loads and invalidations, strict mode, touch
//! coalescing, write-behind and its shutdown, the frame tail.
//!
//! The conformance suite and the reference model for `Cached<MemoryStore>` run in
//! `crates/shoal-redis/tests/cached_memory.rs`. Every wait here is bounded; nothing asserts
//! on time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use shoal_core::{
    Clock, Direction, Error, FrameQuery, Limits, ManualClock, MemoryStore, NewFrame, Result,
    Session, SessionFilter, SessionId, SessionStatus, SessionStore, Transport,
    cached::{CacheConfig, Cached, Consistency, WriteMode},
    notify::{LocalBus, NotifyBus},
};
use shoal_testkit::forwarding::{Call, ForwardingStore, Hooks, Op, Outcome};
use tokio::sync::Notify;

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn ok<T>(r: Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Polls `done` (real time, at most 10 s).
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A memory store that counts calls and can hold a `get` after it has read.
type Probe = ForwardingStore<MemoryStore, ProbeHooks>;

/// What [`Probe`] counts and how it holds a `get`.
#[derive(Debug, Default)]
struct ProbeHooks {
    gets: AtomicU64,
    touches: AtomicU64,
    updates: AtomicU64,
    hold_gets: AtomicBool,
    read_done: Notify,
    release: Notify,
}

fn probe(clock: &ManualClock, limits: Limits) -> Arc<Probe> {
    let memory = MemoryStore::builder()
        .limits(limits)
        .clock(Arc::new(clock.clone()))
        .build();
    Arc::new(ForwardingStore::new(memory, ProbeHooks::default()).with_backend_name("probe"))
}

#[async_trait]
impl Hooks for ProbeHooks {
    type Ticket = ();

    async fn before(&self, call: Call<'_>) -> Result<()> {
        let counter = match call.op() {
            Op::Get => &self.gets,
            Op::Update => &self.updates,
            Op::Touch => &self.touches,
            _ => return Ok(()),
        };
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn after(&self, op: Op, _: (), _: Outcome<'_>) -> Option<Error> {
        if op == Op::Get && self.hold_gets.load(Ordering::SeqCst) {
            self.read_done.notify_one();
            self.release.notified().await;
        }
        None
    }
}

fn cached(
    store: Arc<Probe>,
    clock: &ManualClock,
    config: CacheConfig,
    bus: Option<LocalBus>,
) -> Cached<Arc<Probe>> {
    let mut b = Cached::builder(store)
        .config(config)
        .clock(Arc::new(clock.clone()));
    if let Some(bus) = bus {
        b = b.bus(Arc::new(bus));
    }
    ok(b.build(), "build")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Two instances on one store, each with a cache, joined by an in-process bus: after an
/// update or delete on A, B stops serving the old value as soon as the invalidation arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_see_each_others_writes() {
    let clock = ManualClock::starting_now();
    let store = probe(&clock, Limits::default());
    let bus_a = LocalBus::new();
    let bus_b = bus_a.endpoint();
    let config = CacheConfig::default().with_touch_interval(Duration::ZERO);
    let a = cached(Arc::clone(&store), &clock, config.clone(), Some(bus_a));
    let b = cached(Arc::clone(&store), &clock, config, Some(bus_b));

    let mut staleness = Vec::new();
    for i in 0..200 {
        let id = sid(&format!("two-{i}"));
        ok(
            a.create(Session::new(id.clone(), Transport::Http)).await,
            "create",
        );
        let seen = ok(b.get(&id).await, "b get").unwrap_or_else(|| panic!("b sees {id}"));
        assert_eq!(ok(b.get(&id).await, "b hit"), Some(seen.clone()));

        let mut change = seen.clone();
        change.status = SessionStatus::Completed;
        let updated = ok(a.update(&change).await, "a update");
        let t0 = Instant::now();
        eventually("b sees the update", async || {
            ok(b.get(&id).await, "b get").is_some_and(|s| s.revision == updated.revision)
        })
        .await;
        staleness.push(t0.elapsed());
        assert_eq!(ok(b.get(&id).await, "b get"), Some(updated));

        assert!(ok(a.delete(&id).await, "a delete"));
        let t0 = Instant::now();
        eventually("b sees the delete", async || {
            ok(b.get(&id).await, "b get").is_none()
        })
        .await;
        staleness.push(t0.elapsed());
    }
    staleness.sort();
    eprintln!(
        "in-process bus staleness over {} changes: p50 {:?} p99 {:?} max {:?}",
        staleness.len(),
        percentile(&staleness, 0.5),
        percentile(&staleness, 0.99),
        staleness.last().copied().unwrap_or_default()
    );
    let sb = b.stats();
    assert!(sb.invalidations_received >= 400, "{sb:?}");
    assert!(sb.hits >= 200, "{sb:?}");
}

/// While the bus is down the cache is off (every read reaches the store); when it is back
/// the cache is emptied, so nothing published meanwhile is served stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_bus_turns_the_cache_off_until_it_is_back() {
    let clock = ManualClock::starting_now();
    let store = probe(&clock, Limits::default());
    let bus_a = LocalBus::new();
    let bus_b = bus_a.endpoint();
    let config = CacheConfig::default().with_touch_interval(Duration::ZERO);
    let a = cached(Arc::clone(&store), &clock, config.clone(), Some(bus_a));
    let b = cached(Arc::clone(&store), &clock, config, Some(bus_b.clone()));
    let id = sid("flaky");
    let s = ok(
        a.create(Session::new(id.clone(), Transport::Http)).await,
        "create",
    );
    assert_eq!(ok(b.get(&id).await, "b get"), Some(s.clone()));
    assert!(b.is_enabled());

    bus_b.set_up(false);
    eventually("b turns its cache off", async || !b.is_enabled()).await;
    let mut change = s.clone();
    change.status = SessionStatus::Failed;
    let updated = ok(
        a.update(&change).await,
        "a update (b misses the announcement)",
    );
    let gets = store.hooks().gets.load(Ordering::SeqCst);
    assert_eq!(
        ok(b.get(&id).await, "b get while off"),
        Some(updated.clone())
    );
    assert_eq!(
        ok(b.get(&id).await, "b get while off"),
        Some(updated.clone())
    );
    assert_eq!(
        store.hooks().gets.load(Ordering::SeqCst),
        gets + 2,
        "every read reaches the store while the cache is off"
    );
    let health = ok(b.health().await, "health");
    assert_eq!(health.status, shoal_core::HealthStatus::Degraded);

    bus_b.set_up(true);
    eventually("b turns its cache on", async || b.is_enabled()).await;
    assert_eq!(
        ok(b.get(&id).await, "b get after up"),
        Some(updated.clone())
    );
    let gets = store.hooks().gets.load(Ordering::SeqCst);
    assert_eq!(ok(b.get(&id).await, "b hit"), Some(updated));
    assert_eq!(
        store.hooks().gets.load(Ordering::SeqCst),
        gets,
        "served from cache again"
    );
    assert!(b.stats().bypassed >= 2);
}

/// A load that read the old value while another instance's write was being announced
/// returns what it read but does not cache it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_racing_an_invalidation_is_not_cached() {
    let clock = ManualClock::starting_now();
    let store = probe(&clock, Limits::default());
    let bus_a = LocalBus::new();
    let bus_b = bus_a.endpoint();
    let config = CacheConfig::default().with_touch_interval(Duration::ZERO);
    let a = cached(Arc::clone(&store), &clock, config.clone(), Some(bus_a));
    let b = cached(Arc::clone(&store), &clock, config, Some(bus_b));
    let id = sid("race");
    let s = ok(
        a.create(Session::new(id.clone(), Transport::Http)).await,
        "create",
    );

    store.hooks().hold_gets.store(true, Ordering::SeqCst);
    let slow = {
        let (b, id) = (b.clone(), id.clone());
        tokio::spawn(async move { b.get(&id).await })
    };
    store.hooks().read_done.notified().await;
    store.hooks().hold_gets.store(false, Ordering::SeqCst);
    let before = b.stats().invalidations_received;
    let mut change = s.clone();
    change.status = SessionStatus::Completed;
    let updated = ok(a.update(&change).await, "update during b's load");
    eventually("b receives the invalidation", async || {
        b.stats().invalidations_received > before
    })
    .await;
    store.hooks().release.notify_one();
    let old = ok(
        slow.await.unwrap_or_else(|e| panic!("join: {e}")),
        "slow get",
    );
    assert_eq!(old, Some(s), "the racing load returns what it read");
    assert_eq!(
        ok(b.get(&id).await, "get after"),
        Some(updated),
        "and did not cache it"
    );
}

/// `strict`: no bus, yet a write by another instance is seen by the next read, because
/// each hit is checked against the store first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_checks_every_hit() {
    let clock = ManualClock::starting_now();
    let store = probe(&clock, Limits::default());
    let config = CacheConfig::default()
        .with_consistency(Consistency::Strict)
        .with_touch_interval(Duration::ZERO);
    let a = cached(Arc::clone(&store), &clock, config.clone(), None);
    let b = cached(Arc::clone(&store), &clock, config, None);
    let id = sid("strict");
    let s = ok(
        a.create(Session::new(id.clone(), Transport::Http)).await,
        "create",
    );
    assert_eq!(ok(b.get(&id).await, "b load"), Some(s.clone()));
    assert_eq!(ok(b.get(&id).await, "b hit"), Some(s.clone()));
    assert_eq!(b.stats().hits, 1);
    let mut change = s.clone();
    change.principal = Some("p".into());
    let updated = ok(a.update(&change).await, "a update");
    assert_eq!(ok(b.get(&id).await, "b after update"), Some(updated));
    assert_eq!(b.stats().stale_hits, 1);
    ok(
        a.append_frame(&id, NewFrame::new(Direction::ClientToServer, "x"))
            .await,
        "append",
    );
    assert_eq!(ok(b.count_frames(&id).await, "b count_frames"), 1);
    assert!(ok(a.delete(&id).await, "delete"));
    assert_eq!(ok(b.get(&id).await, "b after delete"), None);
}

/// Touch coalescing: at most one backend write per session per interval (plus the trailing
/// one), every touch returns the expiry the caller would see, and the last touch reaches the
/// backend once the interval has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touches_are_coalesced_and_the_last_one_is_written() {
    let clock = ManualClock::starting_now();
    let limits = Limits::default();
    let ttl = limits.session_ttl;
    let store = probe(&clock, limits);
    let interval = Duration::from_millis(50);
    let c = cached(
        Arc::clone(&store),
        &clock,
        CacheConfig::local().with_touch_interval(interval),
        None,
    );
    let ids: Vec<SessionId> = (0..10).map(|i| sid(&format!("hot-{i}"))).collect();
    for id in &ids {
        ok(
            c.create(Session::new(id.clone(), Transport::Http)).await,
            "create",
        );
    }
    let started = Instant::now();
    let mut touches = 0u64;
    for round in 0..2_000u64 {
        clock.advance(Duration::from_millis(1));
        let now = clock.now();
        for id in &ids {
            let exp = ok(c.touch(id).await, "touch");
            assert_eq!(
                exp,
                now.saturating_add(ttl),
                "round {round}: touch returns now + ttl"
            );
            touches += 1;
        }
        if round % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let elapsed = started.elapsed();
    let writes = store.hooks().touches.load(Ordering::SeqCst);
    let bound = ids.len() as u64 * (elapsed.as_millis() as u64 / interval.as_millis() as u64 + 2);
    eprintln!(
        "{touches} touches in {elapsed:?}: {writes} backend writes ({:.4} per touch)",
        writes as f64 / touches as f64
    );
    assert!(
        writes <= bound,
        "at most one write per session per interval (+ leading and trailing): {writes} > {bound}"
    );
    let acked = c.get(&ids[0]).await;
    let acked = ok(acked, "get").unwrap_or_else(|| panic!("live"));
    assert_eq!(
        acked.last_activity,
        clock.now(),
        "the cache shows the last touch"
    );
    eventually("the last touch reaches the store", async || {
        store
            .inner()
            .get(&ids[0])
            .await
            .ok()
            .flatten()
            .is_some_and(|s| s.last_activity == clock.now())
    })
    .await;
    assert!(c.stats().touches_coalesced > 0);
    ok(c.shutdown().await, "shutdown");
}

/// A touch is written at once when the store's expiry is within the margin, whatever the
/// interval: a short ttl means no coalescing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touches_near_expiry_are_written_at_once() {
    let clock = ManualClock::starting_now();
    let mut limits = Limits::default();
    limits.session_ttl = Duration::from_secs(20);
    let store = probe(&clock, limits);
    let c = cached(
        Arc::clone(&store),
        &clock,
        CacheConfig::local()
            .with_touch_interval(Duration::from_secs(3600))
            .with_touch_margin(Duration::from_secs(30)),
        None,
    );
    let id = sid("short");
    ok(
        c.create(Session::new(id.clone(), Transport::Http)).await,
        "create",
    );
    for _ in 0..100 {
        clock.advance(Duration::from_millis(10));
        ok(c.touch(&id).await, "touch");
    }
    assert_eq!(store.hooks().touches.load(Ordering::SeqCst), 100);
    assert_eq!(c.stats().touches_coalesced, 0);
}

/// Coalesced touches on a session deleted by another instance: the deletion stops
/// coalescing, and the next touch reports `NotFound`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_elsewhere_stops_coalesced_touches() {
    let clock = ManualClock::starting_now();
    let store = probe(&clock, Limits::default());
    let bus_a = LocalBus::new();
    let bus_b = bus_a.endpoint();
    let a = cached(
        Arc::clone(&store),
        &clock,
        CacheConfig::default().with_touch_interval(Duration::from_secs(3600)),
        Some(bus_a),
    );
    let b = cached(
        Arc::clone(&store),
        &clock,
        CacheConfig::default().with_touch_interval(Duration::from_secs(3600)),
        Some(bus_b),
    );
    let id = sid("gone-elsewhere");
    ok(
        a.create(Session::new(id.clone(), Transport::Http)).await,
        "create",
    );
    ok(b.touch(&id).await, "b touch (written)");
    ok(b.touch(&id).await, "b touch (coalesced)");
    assert_eq!(b.stats().touches_coalesced, 1);
    assert!(ok(a.delete(&id).await, "a delete"));
    eventually("b hears of the delete", async || {
        b.stats().invalidations_received > 0
    })
    .await;
    match b.touch(&id).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("touch after delete elsewhere: {other:?}"),
    }
}

fn updated(mut s: Session, i: usize) -> Session {
    s.metadata.insert("step".into(), i.to_string());
    s
}

/// Write-behind: updates and touches are acknowledged from the cache and reach the store
/// only on flush; `shutdown` writes every acknowledged one, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_shutdown_loses_no_acknowledged_write() {
    let clock = ManualClock::starting_now();
    let store = probe(&clock, Limits::default());
    let c = cached(
        Arc::clone(&store),
        &clock,
        CacheConfig::local()
            .with_write_mode(WriteMode::WriteBehind)
            .with_flush_interval(Duration::from_secs(3600))
            .with_touch_interval(Duration::from_secs(3600)),
        None,
    );
    let mut acked = Vec::new();
    for i in 0..50 {
        let id = sid(&format!("wb-{i}"));
        let mut s = ok(
            c.create(Session::new(id.clone(), Transport::Http)).await,
            "create",
        );
        for step in 0..5 {
            s = ok(c.update(&updated(s, step)).await, "update");
            ok(c.touch(&id).await, "touch");
        }
        assert_eq!(s.revision, 6);
        acked.push(s);
    }
    assert_eq!(
        store.hooks().updates.load(Ordering::SeqCst),
        0,
        "nothing written yet"
    );
    let stored =
        ok(store.inner().get(&acked[0].id).await, "inner get").unwrap_or_else(|| panic!("exists"));
    assert_eq!(
        stored.revision, 1,
        "the store still has the created session"
    );
    assert_eq!(
        ok(c.get(&acked[0].id).await, "cached get"),
        Some(acked[0].clone())
    );

    let report = ok(c.shutdown().await, "shutdown");
    assert_eq!(report.updates_written, 250, "{report:?}");
    assert_eq!(report.updates_dropped, 0, "{report:?}");
    assert_eq!(report.pending, 0, "{report:?}");
    for s in &acked {
        let stored = ok(store.inner().get(&s.id).await, "inner get")
            .unwrap_or_else(|| panic!("{} exists", s.id));
        assert_eq!(stored.revision, s.revision, "{}", s.id);
        assert_eq!(stored.metadata, s.metadata, "{}", s.id);
        assert_eq!(stored.last_activity, s.last_activity, "{}", s.id);
    }
    // After shutdown writes go through.
    let s = ok(c.update(&acked[0]).await, "update after shutdown");
    assert_eq!(
        ok(store.inner().get(&s.id).await, "inner").map(|x| x.revision),
        Some(7)
    );
}

/// Write-behind: a conflict or a revision mismatch is reported at once from the cache; an
/// update the store refuses at flush time (someone else changed the session) is dropped and
/// counted, and the cache then shows the store's version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_refused_updates_are_dropped_and_counted() {
    let clock = ManualClock::starting_now();
    let store = probe(&clock, Limits::default());
    let c = cached(
        Arc::clone(&store),
        &clock,
        CacheConfig::local()
            .with_write_mode(WriteMode::WriteBehind)
            .with_flush_interval(Duration::from_secs(3600))
            .with_touch_interval(Duration::ZERO),
        None,
    );
    let id = sid("contended-wb");
    let s = ok(
        c.create(Session::new(id.clone(), Transport::Http)).await,
        "create",
    );
    let mine = ok(c.update(&updated(s.clone(), 1)).await, "queued update");
    match c.update(&updated(s.clone(), 2)).await {
        Err(Error::Conflict {
            expected: 1,
            actual: 2,
            ..
        }) => {}
        other => panic!("stale revision against the cache: {other:?}"),
    }
    // Another writer changes the session in the store directly.
    let theirs = ok(store.inner().update(&updated(s, 9)).await, "other writer");
    let report = ok(c.flush().await, "flush");
    assert_eq!(report.updates_dropped, 1, "{report:?}");
    assert_eq!(c.stats().writes_dropped, 1);
    assert_eq!(ok(c.get(&id).await, "get"), Some(theirs.clone()));
    assert_ne!(Some(mine), ok(c.get(&id).await, "get"));
}

/// Write-behind: reads that must see every acknowledged write (list, count, a miss) flush
/// first; a full queue makes updates synchronous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_flushes_before_listing_and_when_full() {
    let clock = ManualClock::starting_now();
    let store = probe(&clock, Limits::default());
    let c = cached(
        Arc::clone(&store),
        &clock,
        CacheConfig::local()
            .with_write_mode(WriteMode::WriteBehind)
            .with_flush_interval(Duration::from_secs(3600))
            .with_max_queued_writes(3)
            .with_touch_interval(Duration::ZERO),
        None,
    );
    let mut sessions = Vec::new();
    for i in 0..5 {
        let id = sid(&format!("full-{i}"));
        let s = ok(c.create(Session::new(id, Transport::Http)).await, "create");
        let mut s2 = s.clone();
        s2.status = SessionStatus::Completed;
        sessions.push(ok(c.update(&s2).await, "update"));
    }
    // Beyond 3 queued, updates reach the store without an explicit flush: written at once,
    // or by the background flush the half-full queue wakes (which may still be writing when
    // the loop above ends — so wait for it, bounded).
    let waited = std::time::Instant::now();
    while store.hooks().updates.load(Ordering::SeqCst) < 2 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "beyond 3 queued the updates go through (only {} reached the store)",
            store.hooks().updates.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done = SessionFilter::default().with_status(SessionStatus::Completed);
    assert_eq!(ok(c.count(&done).await, "count"), 5, "count flushes first");
    assert_eq!(store.hooks().updates.load(Ordering::SeqCst), 5);
    c.invalidate_all();
    for s in &sessions {
        assert_eq!(ok(c.get(&s.id).await, "get"), Some(s.clone()));
    }
}

/// The frame tail answers replay pages from memory, follows local appends, and is dropped
/// when another instance appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frame_tail_serves_replays_and_follows_appends() {
    let clock = ManualClock::starting_now();
    let mut limits = Limits::default();
    limits.max_frames_per_session = 20;
    let store = probe(&clock, limits);
    let bus_a = LocalBus::new();
    let bus_b = bus_a.endpoint();
    let config = CacheConfig::default()
        .with_touch_interval(Duration::ZERO)
        .with_tail_frames(8);
    let a = cached(Arc::clone(&store), &clock, config.clone(), Some(bus_a));
    let b = cached(Arc::clone(&store), &clock, config, Some(bus_b));
    let id = sid("replay");
    ok(
        a.create(Session::new(id.clone(), Transport::Http)).await,
        "create",
    );
    for i in 1..=30u64 {
        let f = NewFrame::new(Direction::ServerToClient, format!("event {i}"))
            .with_stream(if i % 3 == 0 { "s3" } else { "s" });
        assert_eq!(ok(a.append_frame(&id, f).await, "append"), i);
    }
    let queries = [
        FrameQuery::after(25, 10),
        FrameQuery::after(22, 3),
        FrameQuery::after(29, 10),
        FrameQuery::after(30, 10),
        FrameQuery::after(1_000, 1),
        FrameQuery::after(23, 10).in_stream("s3"),
        FrameQuery::after(0, 5),
        FrameQuery::after(12, 100),
    ];
    let hits = a.stats().hits;
    for q in &queries {
        let want = ok(store.inner().frames(&id, q).await, "store frames");
        assert_eq!(ok(a.frames(&id, q).await, "cached frames"), want, "{q:?}");
    }
    assert!(
        a.stats().hits >= hits + 6,
        "pages within the last 8 frames come from memory: {:?}",
        a.stats()
    );
    let s = ok(a.get(&id).await, "get").unwrap_or_else(|| panic!("live"));
    assert_eq!((s.first_seq, s.last_seq, s.frame_count), (11, 30, 20));
    assert_eq!(ok(a.count_frames(&id).await, "count"), 20);

    // B reads the tail into its cache; A appends; B must not serve its old tail.
    let q = FrameQuery::after(28, 10);
    assert_eq!(ok(b.frames(&id, &q).await, "b frames").frames.len(), 2);
    assert_eq!(ok(b.frames(&id, &q).await, "b frames").frames.len(), 2);
    ok(
        a.append_frame(&id, NewFrame::new(Direction::ClientToServer, "31"))
            .await,
        "append",
    );
    eventually("b sees frame 31", async || {
        ok(b.frames(&id, &q).await, "b frames").frames.len() == 3
    })
    .await;
}

#[tokio::test]
async fn building_checks_the_configuration() {
    let clock = ManualClock::starting_now();
    let store = probe(&clock, Limits::default());
    let err = Cached::builder(Arc::clone(&store))
        .config(CacheConfig::default())
        .build()
        .err();
    assert!(
        matches!(err, Some(Error::InvalidInput { .. })),
        "invalidate without a bus: {err:?}"
    );
    let err = Cached::builder(Arc::clone(&store))
        .config(CacheConfig::local().with_ttl(Duration::ZERO))
        .build()
        .err();
    assert!(matches!(err, Some(Error::InvalidInput { .. })), "{err:?}");
    let bus = LocalBus::new();
    assert!(bus.is_up());
    assert!(
        Cached::builder(store)
            .config(CacheConfig::default())
            .bus(Arc::new(bus))
            .build()
            .is_ok()
    );
}

#[test]
fn building_outside_a_runtime_needs_no_tasks() {
    let clock = ManualClock::starting_now();
    let store = probe(&clock, Limits::default());
    let plain = Cached::builder(Arc::clone(&store))
        .config(CacheConfig::local().with_touch_interval(Duration::ZERO))
        .build();
    assert!(plain.is_ok());
    let deferred = Cached::builder(store)
        .config(CacheConfig::local())
        .build()
        .err();
    assert!(
        matches!(deferred, Some(Error::InvalidInput { .. })),
        "{deferred:?}"
    );
}

/// When an announcement is lost (here: the writer has no bus at all), the entry ttl bounds how
/// long the old value is served, on the store's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entry_ttl_bounds_staleness_when_announcements_are_lost() {
    let clock = ManualClock::starting_now();
    let store = probe(&clock, Limits::default());
    let ttl = Duration::from_secs(5);
    let silent = cached(
        Arc::clone(&store),
        &clock,
        CacheConfig::local().with_touch_interval(Duration::ZERO),
        None,
    );
    let reader = cached(
        Arc::clone(&store),
        &clock,
        CacheConfig::default()
            .with_ttl(ttl)
            .with_touch_interval(Duration::ZERO),
        Some(LocalBus::new()),
    );
    let id = sid("lost-news");
    let s = ok(
        silent
            .create(Session::new(id.clone(), Transport::Http))
            .await,
        "create",
    );
    assert_eq!(ok(reader.get(&id).await, "load"), Some(s.clone()));
    let mut change = s.clone();
    change.status = SessionStatus::Completed;
    let updated = ok(silent.update(&change).await, "update nobody hears of");
    clock.advance(ttl - Duration::from_millis(1));
    assert_eq!(
        ok(reader.get(&id).await, "within the ttl"),
        Some(s),
        "the old value, for at most the ttl"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(ok(reader.get(&id).await, "at the ttl"), Some(updated));
}

/// Concurrent misses of one id make one backend read (single flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_share_one_load() {
    let clock = ManualClock::starting_now();
    let store = probe(&clock, Limits::default());
    let c = cached(
        Arc::clone(&store),
        &clock,
        CacheConfig::local().with_touch_interval(Duration::ZERO),
        None,
    );
    let id = sid("popular");
    let s = ok(
        store
            .inner()
            .create(Session::new(id.clone(), Transport::Http))
            .await,
        "create behind the cache's back",
    );
    store.hooks().hold_gets.store(true, Ordering::SeqCst);
    let first = {
        let (c, id) = (c.clone(), id.clone());
        tokio::spawn(async move { c.get(&id).await })
    };
    store.hooks().read_done.notified().await;
    store.hooks().hold_gets.store(false, Ordering::SeqCst);
    let mut waiters = Vec::new();
    for _ in 0..16 {
        let (c, id) = (c.clone(), id.clone());
        waiters.push(tokio::spawn(async move { c.get(&id).await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.hooks().release.notify_one();
    for t in std::iter::once(first).chain(waiters) {
        let got = ok(t.await.unwrap_or_else(|e| panic!("join: {e}")), "get");
        assert_eq!(got, Some(s.clone()));
    }
    assert_eq!(
        store.hooks().gets.load(Ordering::SeqCst),
        1,
        "one read for 17 callers"
    );
}
