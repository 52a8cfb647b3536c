//! The conformance suite through Sentinel (`redis+sentinel://…/mymaster`), and a failover:
//! the store follows the promoted replica.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use shoal_core::{
    Direction, FrameQuery, Limits, ManualClock, NewFrame, Session, SessionId, SessionStore,
    Transport,
};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::{Harness, redis_server::RedisSentinel};

fn sentinel() -> &'static RedisSentinel {
    static SENTINEL: OnceLock<RedisSentinel> = OnceLock::new();
    SENTINEL.get_or_init(RedisSentinel::start)
}

fn next_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("s{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn redis_sentinel(h: Harness) -> Arc<dyn SessionStore> {
    let config = RedisConfig::new(sentinel().url()).with_key_prefix(next_prefix());
    Arc::new(
        RedisStore::connect(config, h.limits, Arc::new(h.clock))
            .await
            .unwrap_or_else(|e| panic!("connect through sentinel: {e}")),
    )
}

shoal_testkit::conformance_suite!(redis_sentinel);
shoal_testkit::model_test!(redis_sentinel);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_master_across_a_failover() {
    let mut set = RedisSentinel::start();
    let config = RedisConfig::new(set.url())
        .with_key_prefix("failover")
        .with_connect_timeout(Duration::from_secs(1))
        .with_response_timeout(Duration::from_secs(1));
    let store = RedisStore::connect(
        config,
        Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.topology(), "sentinel");
    let id = SessionId::new("survivor").unwrap_or_else(|e| panic!("{e}"));
    store
        .create(Session::new(id.clone(), Transport::StreamableHttp))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seq = store
        .append_frame(&id, NewFrame::new(Direction::ClientToServer, "before"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seq, 1);
    // Wait (bounded) until the replica has the writes, so the failover loses nothing.
    let frames_key = "failover:{survivor}:frames";
    let mut replicated = false;
    for _ in 0..100 {
        if set.replica().cli(&["LLEN", frames_key]).trim() == "1" {
            replicated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(replicated, "the replica never caught up");
    let old_port = set.master().port();
    set.master_mut().stop();

    // Bounded: sentinels fail over in ~2 s here; retry transient errors until then.
    let mut seq = None;
    for _ in 0..150 {
        match store
            .append_frame(&id, NewFrame::new(Direction::ServerToClient, "after"))
            .await
        {
            Ok(s) => {
                seq = Some(s);
                break;
            }
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("not a transient error during failover: {e:?}"),
        }
    }
    assert_eq!(seq, Some(2), "the store did not reach the promoted replica");
    assert_ne!(set.current_master_port(), Some(old_port));
    let page = store
        .frames(&id, &FrameQuery::after(0, 10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let contents: Vec<&[u8]> = page.frames.iter().map(|f| &f.content[..]).collect();
    assert_eq!(contents, [&b"before"[..], &b"after"[..]]);
}
