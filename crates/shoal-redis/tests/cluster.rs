//! The conformance suite and the reference model against a 6-node Redis Cluster (3 masters,
//! 3 replicas), through `redis+cluster://` seed URLs. Any CROSSSLOT error fails a case.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicU64, Ordering},
};

use shoal_core::{
    Direction, ListQuery, ManualClock, NewFrame, Session, SessionId, SessionStore, Transport,
};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::{Harness, redis_server::RedisCluster};

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

fn next_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("k{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn redis_cluster(h: Harness) -> Arc<dyn SessionStore> {
    let config = RedisConfig::new(cluster().url()).with_key_prefix(next_prefix());
    Arc::new(
        RedisStore::connect(config, h.limits, Arc::new(h.clock))
            .await
            .unwrap_or_else(|e| panic!("connect to the cluster: {e}")),
    )
}

shoal_testkit::conformance_suite!(redis_cluster);
shoal_testkit::model_test!(redis_cluster);

/// Sessions spread over every master, and one store call reaches all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_all_masters() {
    let store = RedisStore::connect(
        RedisConfig::new(cluster().url()).with_key_prefix(next_prefix()),
        shoal_core::Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.topology(), "cluster");
    let ids: Vec<SessionId> = (0..60)
        .map(|i| SessionId::new(format!("spread-{i}")).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    for id in &ids {
        store
            .create(Session::new(id.clone(), Transport::Http))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .append_frame(id, NewFrame::new(Direction::ClientToServer, "x"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let masters: Vec<_> = cluster()
        .nodes()
        .iter()
        .filter(|n| n.cli(&["ROLE"]).starts_with("master"))
        .collect();
    assert_eq!(masters.len(), 3);
    for m in masters {
        let keys = m.cli(&["DBSIZE"]);
        let n: u64 = keys.trim().parse().unwrap_or(0);
        assert!(n > 0, "a master holds no keys");
    }
    let many = store.get_many(&ids).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(many.found.len(), ids.len());
    let page = store
        .list(&ListQuery::first(1000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.sessions.len(), ids.len());
    assert_eq!(
        store
            .count(&Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        ids.len() as u64
    );
}

/// The minimal ACL of the README, plus what cluster topology discovery needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_the_documented_permissions_works() {
    let args = [
        "ACL",
        "SETUSER",
        "shoalk",
        "reset",
        "on",
        ">pw",
        "~ka*",
        "resetchannels",
        "+ping",
        "+evalsha",
        "+script|load",
        "+hgetall",
        "+hget",
        "+hmget",
        "+hset",
        "+hdel",
        "+hincrby",
        "+hexists",
        "+hlen",
        "+rpush",
        "+llen",
        "+ltrim",
        "+lrange",
        "+del",
        "+exists",
        "+type",
        "+pexpire",
        "+pttl",
        "+zadd",
        "+zrem",
        "+zcard",
        "+zcount",
        "+zscore",
        "+zrangebyscore",
        "+zrangebylex",
        "+set",
        "+get",
        "+incrby",
        "+info",
        // cluster topology discovery
        "+cluster|slots",
    ];
    for node in cluster().nodes() {
        let out = node.cli(&args);
        assert_eq!(out.trim(), "OK", "{out}");
    }
    let url = cluster()
        .url()
        .replace("redis+cluster://", "redis+cluster://shoalk:pw@");
    let store = RedisStore::connect(
        RedisConfig::new(url).with_key_prefix("ka1"),
        shoal_core::Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .unwrap_or_else(|e| panic!("connect as ACL user: {e}"));
    let id = SessionId::new("acl-1").unwrap_or_else(|e| panic!("{e}"));
    store
        .create(Session::new(id.clone(), Transport::Http))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .append_frame(&id, NewFrame::new(Direction::ClientToServer, "x"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let page = store
        .list(&ListQuery::first(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.sessions.len(), 1);
    store
        .sweep_expired()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store.health().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(store.delete(&id).await.unwrap_or_else(|e| panic!("{e}")));
}
