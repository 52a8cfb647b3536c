//! A Redis server that comes back without its data — restarted without persistence, or
//! flushed — answers normally: without a check every session would just look gone. The store
//! notices the missing dataset marker, says so once, counts it, and `health` (also from a
//! fresh process, as `shoal health` is) reports it as `Degraded` with `data_loss`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use shoal_core::{HealthStatus, Limits, Session, SessionId, SessionStore, SystemClock, Transport};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::redis_server::RedisServer;

fn prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("loss{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn connect(url: String, prefix: &str) -> RedisStore {
    RedisStore::connect(
        RedisConfig::new(url).with_key_prefix(prefix),
        Limits::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_empty_is_reported_as_data_loss() {
    let mut server = RedisServer::builder()
        .args(["--save", "", "--appendonly", "no"])
        .start();
    let p = prefix();
    let a = connect(server.url(), &p).await;
    let b = connect(server.url(), &p).await;
    a.create(Session::new(sid("before"), Transport::StreamableHttp))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let health = a.health().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(health.status, HealthStatus::Healthy, "{health:?}");
    assert!(!health.details.contains_key("data_loss"));

    server.restart();
    // Bounded wait for the reconnect; the first calls after a restart may fail.
    let mut health = None;
    for _ in 0..100 {
        match a.health().await {
            Ok(h) if h.details.contains_key("data_loss") => {
                health = Some(h);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let health = health.unwrap_or_else(|| panic!("the restart without data was never reported"));
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
    let said = &health.details["data_loss"];
    assert!(
        said.contains("lost its dataset") && said.contains("run_id"),
        "the report does not say what happened: {said}"
    );
    assert_eq!(a.dataset_losses(), 1);
    assert!(
        a.get(&sid("before"))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );

    // Said once per instance: more checks do not count it again.
    for _ in 0..3 {
        a.health().await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(a.dataset_losses(), 1);
    // The other instance notices on its own, once; the fleet-wide count stays one loss.
    // (Its first call after the restart may fail on the dropped connection: bounded retry.)
    let mut hb = b.health().await.unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..100 {
        if b.dataset_losses() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        hb = b.health().await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(b.dataset_losses(), 1);
    assert_eq!(
        hb.details.get("dataset_losses").map(String::as_str),
        Some("1")
    );
    // A fresh process (what `shoal health` is) sees the recorded loss too.
    let fresh = connect(server.url(), &p).await;
    let hf = fresh.health().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hf.status, HealthStatus::Degraded);
    assert!(hf.details.contains_key("data_loss"), "{hf:?}");
    assert_eq!(fresh.dataset_losses(), 0, "it adopted the new marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_is_reported_and_a_healthy_server_never_is() {
    let server = RedisServer::start();
    let p = prefix();
    let store = connect(server.url(), &p).await;
    for _ in 0..5 {
        let h = store.health().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.status, HealthStatus::Healthy, "{h:?}");
    }
    assert_eq!(store.dataset_losses(), 0);
    server.cli(&["FLUSHALL"]);
    let h = store.health().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.status, HealthStatus::Degraded);
    assert!(
        h.details["data_loss"].contains("flushed"),
        "{:?}",
        h.details
    );
    assert_eq!(store.dataset_losses(), 1);
}
