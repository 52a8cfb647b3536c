//! One dropped connection is one event, not a wave of failures: `CLIENT KILL` of every
//! connection while 32 tasks read and write through `Resilient<RedisStore, MemoryStore>` fails
//! every call in flight at once; those failures count once for the breaker, idempotent calls
//! retry once on the fresh connection before they count, and two such resets do not open the
//! breaker. Figures are printed (`--nocapture`); every loop is bounded in count and time.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use shoal_core::{
    Direction, Limits, MemoryStore, NewFrame, Session, SessionId, SessionStore, SystemClock,
    Transport, resilient::Resilient,
};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::{fault::client_kill_all, redis_server::RedisServer};

const TASKS: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connection_resets_under_load_do_not_open_the_breaker() {
    let server = RedisServer::start();
    let redis = RedisStore::connect(
        RedisConfig::new(server.url())
            .with_key_prefix("resets")
            .with_response_timeout(Duration::from_millis(500)),
        Limits::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"));
    // The production defaults of the breaker: 5 consecutive failures open it.
    let mut config = support::config();
    config.breaker = shoal_core::resilient::BreakerConfig::default();
    let store = Arc::new(
        Resilient::new(redis, MemoryStore::new(), config).unwrap_or_else(|e| panic!("{e}")),
    );
    let _monitor = store.spawn_monitor();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, stop, ok, failed) = (
                Arc::clone(&store),
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
            );
            tokio::spawn(async move {
                let id = SessionId::new(format!("t{t}")).unwrap_or_else(|e| panic!("{e}"));
                let _ = store
                    .create(Session::new(id.clone(), Transport::StreamableHttp))
                    .await;
                for i in 0..200_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = match i % 3 {
                        0 => store.get(&id).await.map(drop),
                        1 => store.touch(&id).await.map(drop),
                        _ => store
                            .append_frames(
                                &id,
                                vec![NewFrame::new(Direction::ServerToClient, "{}")],
                            )
                            .await
                            .map(drop),
                    };
                    match r {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut killed = 0;
    for _ in 0..2 {
        killed += client_kill_all(&server);
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let stats = store.stats();
    eprintln!(
        "2 resets ({killed} connections killed): {} calls ok, {} failed; breaker opened {} \
         times",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        stats.breaker_opened
    );
    assert!(killed >= 2, "the resets killed no connection");
    assert!(
        ok.load(Ordering::Relaxed) > 1_000,
        "the workload made progress"
    );
    assert_eq!(
        stats.breaker_opened, 0,
        "a connection reset opened the breaker"
    );
}
