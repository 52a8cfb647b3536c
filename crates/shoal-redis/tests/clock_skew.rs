//! Instances whose clocks disagree with the Redis server's: the store reads time as the
//! server's once the difference passes `max_clock_skew`, so an instance an hour ahead deletes
//! nothing live (not on a write, not by sweeping), and one an hour behind writes no expiry in
//! the past.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use shoal_core::{
    Clock, Direction, FrameQuery, Limits, NewFrame, Session, SessionId, SessionStore, Timestamp,
    Transport,
};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::redis_server::RedisServer;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn next_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("skew{}", N.fetch_add(1, Ordering::Relaxed))
}

/// The system clock moved by a settable number of milliseconds.
#[derive(Debug, Default)]
struct SkewedClock(AtomicI64);

impl SkewedClock {
    fn by(ms: i64) -> Arc<Self> {
        Arc::new(SkewedClock(AtomicI64::new(ms)))
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> Timestamp {
        let now = Timestamp::now().as_millis();
        let skew = self.0.load(Ordering::SeqCst);
        Timestamp(if skew >= 0 {
            now.saturating_add(skew.unsigned_abs())
        } else {
            now.saturating_sub(skew.unsigned_abs())
        })
    }
}

async fn instance(prefix: &str, clock: Arc<SkewedClock>, ttl: Duration) -> RedisStore {
    let mut limits = Limits::default();
    limits.session_ttl = ttl;
    RedisStore::connect(
        RedisConfig::new(server().url()).with_key_prefix(prefix),
        limits,
        clock,
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

const HOUR_MS: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_an_hour_ahead_deletes_nothing_live() {
    let prefix = next_prefix();
    let ttl = Duration::from_secs(120);
    let honest = instance(&prefix, SkewedClock::by(0), ttl).await;
    let ahead = instance(&prefix, SkewedClock::by(HOUR_MS), ttl).await;
    assert_eq!(
        honest.clock_offset_ms(),
        0,
        "a synchronised clock is not corrected"
    );
    let offset = ahead.clock_offset_ms();
    assert!(
        (-HOUR_MS - 5_000..=-HOUR_MS + 5_000).contains(&offset),
        "an hour-ahead clock is corrected by about an hour: {offset} ms"
    );

    let ids: Vec<SessionId> = (0..20).map(|i| sid(&format!("live{i}"))).collect();
    for id in &ids {
        honest
            .create(Session::new(id.clone(), Transport::StreamableHttp))
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
        honest
            .append_frames(
                id,
                vec![NewFrame::new(Direction::ClientToServer, b"{}".to_vec())],
            )
            .await
            .unwrap_or_else(|e| panic!("append: {e}"));
    }
    // Every kind of write and read from the skewed instance, then its sweep.
    for id in &ids[..10] {
        ahead
            .touch(id)
            .await
            .unwrap_or_else(|e| panic!("touch from the skewed instance: {e}"));
        ahead
            .append_frames(
                id,
                vec![NewFrame::new(Direction::ServerToClient, b"{}".to_vec())],
            )
            .await
            .unwrap_or_else(|e| panic!("append from the skewed instance: {e}"));
    }
    for id in &ids[10..] {
        let got = ahead
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("get from the skewed instance: {e}"));
        assert!(got.is_some(), "{id} looked expired to the skewed instance");
    }
    let swept = ahead
        .sweep_expired()
        .await
        .unwrap_or_else(|e| panic!("sweep: {e}"));
    assert_eq!(swept.removed, 0, "the skewed sweeper removed live sessions");

    for id in &ids {
        let s = honest
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("get: {e}"))
            .unwrap_or_else(|| panic!("{id} was deleted by the skewed instance"));
        // Expiries written by the skewed instance are in the server's time, not an hour on.
        let left = s
            .expires_at
            .as_millis()
            .saturating_sub(Timestamp::now().as_millis());
        assert!(
            left <= 125_000,
            "{id} expires {left} ms from now, past its TTL: the skewed clock leaked into it"
        );
        let page = honest
            .frames(id, &FrameQuery::default())
            .await
            .unwrap_or_else(|e| panic!("frames: {e}"));
        assert!(!page.frames.is_empty(), "{id} lost its frames");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_an_hour_behind_writes_no_expiry_in_the_past() {
    let prefix = next_prefix();
    let ttl = Duration::from_secs(120);
    let behind = instance(&prefix, SkewedClock::by(-HOUR_MS), ttl).await;
    let honest = instance(&prefix, SkewedClock::by(0), ttl).await;
    let id = sid("made-behind");
    behind
        .create(Session::new(id.clone(), Transport::StreamableHttp))
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    behind
        .touch(&id)
        .await
        .unwrap_or_else(|e| panic!("touch: {e}"));
    let s = honest
        .get(&id)
        .await
        .unwrap_or_else(|e| panic!("get: {e}"))
        .unwrap_or_else(|| panic!("a session made by the slow instance looked expired"));
    assert!(s.expires_at > Timestamp::now());
    assert_eq!(
        honest
            .sweep_expired()
            .await
            .unwrap_or_else(|e| panic!("sweep: {e}"))
            .removed,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_that_jumps_after_connect_is_measured_again() {
    let prefix = next_prefix();
    let clock = SkewedClock::by(0);
    let mut config = RedisConfig::new(server().url()).with_key_prefix(&prefix);
    config.clock_resync = Duration::from_secs(1);
    let store = RedisStore::connect(config, Limits::default(), clock.clone())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    assert_eq!(store.clock_offset_ms(), 0);
    let _sweeper = store.spawn_sweeper(Duration::from_millis(50));
    clock.0.store(2 * HOUR_MS, Ordering::SeqCst);
    // Bounded wait for the sweeper's next measurement; no timing is asserted.
    let mut offset = 0;
    for _ in 0..100 {
        offset = store.clock_offset_ms();
        if offset != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        (-2 * HOUR_MS - 5_000..=-2 * HOUR_MS + 5_000).contains(&offset),
        "the jump was not measured: offset {offset} ms"
    );
    let health = store.health().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        health.details.contains_key("clock_offset_ms"),
        "health does not show the correction: {health:?}"
    );
}
