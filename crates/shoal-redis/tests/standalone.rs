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

/// Two instances (two stores, their own connections) appending to one session at once: on a
/// single server the feed holds every frame once, in seq order, because each entry is
/// written by the append's own script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_feed_one_sessions_frames_in_seq_order() {
    use shoal_core::{ChangeKind, Direction, FeedConfig, NewFrame, Session, SessionId, Transport};
    let prefix = {
        static N: AtomicU64 = AtomicU64::new(0);
        format!("two{}", N.fetch_add(1, Ordering::Relaxed))
    };
    let open = || async {
        RedisStore::connect(
            RedisConfig::new(server().url())
                .with_key_prefix(prefix.clone())
                .with_feed(FeedConfig::default()),
            shoal_core::Limits::default(),
            Arc::new(shoal_core::SystemClock),
        )
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
    };
    let (a, b) = (open().await, open().await);
    let id = SessionId::new("shared").unwrap_or_else(|e| panic!("{e}"));
    a.create(Session::new(id.clone(), Transport::StreamableHttp))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tasks = Vec::new();
    for store in [a.clone(), b.clone()] {
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let f = NewFrame::new(Direction::ClientToServer, format!("{{\"n\":{i}}}"));
                store
                    .append_frame(&id, f)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let feed = b.feed().unwrap_or_else(|| panic!("no feed"));
    let all = shoal_testkit::feed_conformance::read_all(feed.as_ref()).await;
    let seqs: Vec<u64> = all
        .iter()
        .filter(|c| c.kind == ChangeKind::Frame)
        .filter_map(|c| c.seq)
        .collect();
    assert_eq!(seqs, (1..=400).collect::<Vec<u64>>());
}
