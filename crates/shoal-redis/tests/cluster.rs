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
    let config = RedisConfig::new(cluster().url())
        .with_key_prefix(next_prefix())
        .with_feed(h.feed.clone());
    Arc::new(
        RedisStore::connect(config, h.limits, Arc::new(h.clock))
            .await
            .unwrap_or_else(|e| panic!("connect to the cluster: {e}")),
    )
}

shoal_testkit::conformance_suite!(redis_cluster);
shoal_testkit::feed_suite!(redis_cluster);
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
        "+time",
        "+zremrangebyscore",
        "+hstrlen",
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

/// Killing the master that holds a session: the replica takes over and the store carries on
/// with the same session, its frames and its seqs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_master_failover() {
    let mut own = RedisCluster::start();
    let config = RedisConfig::new(own.url())
        .with_key_prefix("fo")
        .with_connect_timeout(std::time::Duration::from_secs(1))
        .with_response_timeout(std::time::Duration::from_secs(1));
    let store = RedisStore::connect(
        config,
        shoal_core::Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let id = SessionId::new("fo-1").unwrap_or_else(|e| panic!("{e}"));
    store
        .create(Session::new(id.clone(), Transport::StreamableHttp))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .append_frame(&id, NewFrame::new(Direction::ClientToServer, "before"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Bounded wait until the replicas hold as many keys as the masters.
    let count = |role: &str, c: &RedisCluster| -> u64 {
        c.nodes()
            .iter()
            .filter(|n| n.cli(&["ROLE"]).starts_with(role))
            .map(|n| n.cli(&["DBSIZE"]).trim().parse::<u64>().unwrap_or(0))
            .sum()
    };
    let mut synced = false;
    for _ in 0..200 {
        if count("master", &own) == count("slave", &own) {
            synced = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(synced, "the replicas did not catch up");
    let meta_key = "fo:{fo-1}:meta";
    let owner = own
        .nodes()
        .iter()
        .position(|n| {
            n.cli(&["ROLE"]).starts_with("master") && n.cli(&["EXISTS", meta_key]).trim() == "1"
        })
        .unwrap_or_else(|| panic!("no master holds {meta_key}"));
    own.nodes_mut()[owner].stop();

    let mut seq = None;
    for _ in 0..200 {
        match store
            .append_frame(&id, NewFrame::new(Direction::ServerToClient, "after"))
            .await
        {
            Ok(s) => {
                seq = Some(s);
                break;
            }
            Err(e) if e.is_transient() => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            Err(e) => panic!("not a transient error during failover: {e:?}"),
        }
    }
    assert_eq!(seq, Some(2), "the store did not reach the promoted replica");
    let page = store
        .frames(&id, &shoal_core::FrameQuery::after(0, 10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let contents: Vec<&[u8]> = page.frames.iter().map(|f| &f.content[..]).collect();
    assert_eq!(contents, [&b"before"[..], &b"after"[..]]);
    let listed = store
        .list(&ListQuery::first(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.sessions.len(), 1);
}

/// `wait_replicas` on a Cluster: `WAIT` goes to the master of the session's slot. Each master
/// has one replica: with 1 required, writes are acknowledged (once the replicas are in
/// sync); with 2 required, every write fails "not replicated", saying 1 of 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_the_replica_of_their_slot() {
    let connect = |n: u32| async move {
        let mut config = RedisConfig::new(cluster().url()).with_key_prefix(next_prefix());
        config.wait_replicas = n;
        config.wait_timeout = std::time::Duration::from_millis(300);
        RedisStore::connect(
            config,
            shoal_core::Limits::default(),
            Arc::new(ManualClock::starting_now()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let one = connect(1).await;
    let id = SessionId::new("waited").unwrap_or_else(|e| panic!("{e}"));
    // Fresh replicas start their full sync after a delay: bounded retries until they confirm.
    let mut created = false;
    for _ in 0..60 {
        if one
            .create(Session::new(id.clone(), Transport::StreamableHttp))
            .await
            .is_ok()
        {
            created = true;
            break;
        }
        let _ = one.delete(&id).await;
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(created, "no replica confirmed a write within 15 s");
    for _ in 0..10 {
        one.append_frame(&id, NewFrame::new(Direction::ServerToClient, "{}"))
            .await
            .unwrap_or_else(|e| panic!("append with one replica required: {e}"));
    }
    let two = connect(2).await;
    let other = SessionId::new("unwaited").unwrap_or_else(|e| panic!("{e}"));
    match two
        .create(Session::new(other.clone(), Transport::StreamableHttp))
        .await
    {
        Err(e) if e.is_not_replicated() => {
            assert!(e.to_string().contains("1 of 2 replicas"), "{e}");
        }
        other => panic!("a write two replicas cannot confirm: {other:?}"),
    }
}
