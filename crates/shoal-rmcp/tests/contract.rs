//! The adapter's contract, run against every kind of store: memory, Redis, a 6-node Redis
//! Cluster, Redis with the hot-session cache (`invalidate`, `strict`), Redis behind the
//! resilience wrapper. Two "replicas" (two `ShoalRmcp` values; on Redis each with its own store
//! stack, cache and bus) share the store.
#![allow(clippy::unwrap_used, missing_docs)]

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt as _;
use rmcp::{
    model::{InitializeRequestParams, ServerJsonRpcMessage},
    transport::streamable_http_server::session::{
        ServerSseMessage, SessionManager as _, SessionState, SessionStore as _,
    },
};
use serde_json::json;
use shoal_core::{MemoryStore, SessionId, SessionStore};
use shoal_redis::stack::StackConfig;
use shoal_rmcp::{Builder, ShoalRmcp};
use shoal_testkit::redis_server::RedisServer;

const BOUND: Duration = Duration::from_secs(20);

/// Two replicas over one store, and what keeps that store alive.
struct Fleet {
    a: ShoalRmcp,
    b: ShoalRmcp,
    _redis: Option<RedisServer>,
}

fn config(json: serde_json::Value) -> StackConfig {
    serde_json::from_value(json).expect("stack config")
}

async fn memory(limits: serde_json::Value) -> Fleet {
    let limits = config(json!({ "limits": limits })).limits;
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::builder().limits(limits).build());
    Fleet {
        a: ShoalRmcp::with_store(store.clone()).await.expect("a"),
        b: ShoalRmcp::with_store(store).await.expect("b"),
        _redis: None,
    }
}

async fn redis_with(stack: serde_json::Value, limits: serde_json::Value) -> Fleet {
    let redis = RedisServer::start();
    let mut stack = stack;
    stack["limits"] = limits;
    let cfg = config(stack);
    let url = redis.url();
    let open = || ShoalRmcp::open_with(&url, &cfg, Builder::default());
    let a = open().await.expect("open a");
    let b = open().await.expect("open b");
    Fleet {
        a,
        b,
        _redis: Some(redis),
    }
}

async fn redis(limits: serde_json::Value) -> Fleet {
    redis_with(json!({}), limits).await
}

/// One 6-node cluster for the whole file; each fleet has a key prefix of its own (so its own
/// session limit and listing).
async fn redis_cluster(limits: serde_json::Value) -> Fleet {
    static CLUSTER: std::sync::OnceLock<shoal_testkit::redis_server::RedisCluster> =
        std::sync::OnceLock::new();
    static FLEETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let cluster = CLUSTER.get_or_init(shoal_testkit::redis_server::RedisCluster::start);
    let n = FLEETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cfg = config(json!({"limits": limits, "redis": {"key_prefix": format!("rmcp{n}")}}));
    let url = cluster.url();
    let open = || ShoalRmcp::open_with(&url, &cfg, Builder::default());
    let a = open().await.expect("open a");
    let b = open().await.expect("open b");
    Fleet { a, b, _redis: None }
}

async fn redis_cached(limits: serde_json::Value) -> Fleet {
    redis_with(
        json!({"cache": {"enabled": true, "consistency": "invalidate"}}),
        limits,
    )
    .await
}

async fn redis_cached_strict(limits: serde_json::Value) -> Fleet {
    redis_with(
        json!({"cache": {"enabled": true, "consistency": "strict"}}),
        limits,
    )
    .await
}

async fn redis_resilient(limits: serde_json::Value) -> Fleet {
    redis_with(json!({"resilience": {"fallback": "memory"}}), limits).await
}

fn init_params(name: &str) -> InitializeRequestParams {
    serde_json::from_value(json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {"elicitation": {}},
        "clientInfo": {"name": name, "version": "1.0.0"}
    }))
    .expect("params")
}

fn progress(n: u32) -> ServerSseMessage {
    let m: ServerJsonRpcMessage = serde_json::from_value(json!({
        "jsonrpc": "2.0", "method": "notifications/progress",
        "params": {"progressToken": "t", "progress": n, "total": 10}
    }))
    .expect("progress");
    ServerSseMessage::from_message(m)
}

fn response(id: u32) -> ServerSseMessage {
    let m: ServerJsonRpcMessage = serde_json::from_value(json!({
        "jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": "done"}]}
    }))
    .expect("response");
    ServerSseMessage::from_message(m)
}

fn priming() -> ServerSseMessage {
    ServerSseMessage::retry(Duration::from_secs(3))
}

/// What a replay yields, as (event id, JSON of the message or null), until it ends or
/// `limit` events came.
async fn collect(
    stream: impl futures_util::Stream<Item = ServerSseMessage> + Unpin,
    limit: usize,
) -> Vec<(String, serde_json::Value)> {
    let taken = stream.take(limit).map(|e| {
        (
            e.event_id.clone().unwrap_or_default(),
            e.message
                .as_deref()
                .map(|m| serde_json::to_value(m).expect("json"))
                .unwrap_or(serde_json::Value::Null),
        )
    });
    tokio::time::timeout(BOUND, taken.collect())
        .await
        .expect("replay ended or gave `limit` events in time")
}

fn progress_of(v: &serde_json::Value) -> Option<u64> {
    v.pointer("/params/progress")
        .and_then(|p| p.as_f64())
        .map(|p| p as u64)
}

/// A session created the way rmcp's service creates one, with its handshake recorded.
async fn session(f: &Fleet) -> Arc<str> {
    let manager = f.a.session_manager();
    let (id, _transport) = manager.create_session().await.expect("create session");
    f.a.session_store()
        .store(&id, &SessionState::new(init_params("contract")))
        .await
        .expect("store state");
    id
}

/// Waits (bounded) until `check` holds: what one replica changed reaches another's cache
/// when its invalidation arrives (`consistency = invalidate`), at once otherwise.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- the checks

async fn session_state_round_trips_and_deletes_everywhere(f: Fleet) {
    let id = session(&f).await;
    let on_b =
        f.b.session_store()
            .load(&id)
            .await
            .expect("load")
            .expect("found on b");
    assert_eq!(
        serde_json::to_value(&on_b.initialize_params).unwrap(),
        serde_json::to_value(init_params("contract")).unwrap()
    );
    let stored =
        f.b.store()
            .get(&SessionId::new(&*id).unwrap())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(stored.protocol_version.as_deref(), Some("2025-06-18"));
    assert_eq!(
        stored
            .client_info
            .as_ref()
            .and_then(|c| c.pointer("/clientInfo/name")),
        Some(&json!("contract"))
    );
    // Unknown, malformed and deleted ids load as None (rmcp answers 404).
    let store = f.a.session_store();
    assert!(store.load("no-such-session").await.unwrap().is_none());
    assert!(store.load("has space").await.unwrap().is_none());
    assert!(store.load("").await.unwrap().is_none());
    f.b.session_store().delete(&id).await.expect("delete on b");
    let a = f.a.session_store();
    eventually("A sees the delete", || async {
        a.load(&id).await.unwrap().is_none()
    })
    .await;
    // Deleting again is not an error.
    f.b.session_store().delete(&id).await.expect("delete twice");
}

async fn a_request_stream_replays_exactly_once_from_any_of_its_ids(f: Fleet) {
    let id = session(&f).await;
    let sid = SessionId::new(&*id).unwrap();
    let events = f.a.event_store();
    let stream = "9d1e6c1a-0000-4000-8000-00000000000a";
    let mut ids = vec![events.store_in(&sid, stream, &priming()).await.unwrap()];
    for n in 1..=3 {
        ids.push(events.store_in(&sid, stream, &progress(n)).await.unwrap());
    }
    ids.push(events.store_in(&sid, stream, &response(5)).await.unwrap());
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids are unique: {ids:?}");
    // From the priming id, on the other replica: every event once, then the stream ends.
    let got = collect(f.b.event_store().replay(&ids[0]).await.unwrap(), 100).await;
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(
        got.iter().map(|(_, v)| progress_of(v)).collect::<Vec<_>>(),
        vec![Some(1), Some(2), Some(3), None]
    );
    assert_eq!(got[3].1["id"], json!(5));
    assert_eq!(
        got.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(),
        ids[1..].to_vec(),
        "replayed events keep their ids"
    );
    // From the middle.
    let rest = collect(f.b.event_store().replay(&ids[2]).await.unwrap(), 100).await;
    assert_eq!(rest.len(), 2);
    assert_eq!(progress_of(&rest[0].1), Some(3));
    // The session's own events: other streams of the session are not mixed in.
    events
        .store_in(&sid, "9d1e6c1a-0000-4000-8000-00000000000b", &progress(9))
        .await
        .unwrap();
    let again = collect(f.b.event_store().replay(&ids[0]).await.unwrap(), 100).await;
    assert_eq!(again.len(), 4);
}

async fn a_replay_follows_events_another_replica_stores_later(f: Fleet) {
    let id = session(&f).await;
    let sid = SessionId::new(&*id).unwrap();
    let stream = "9d1e6c1a-0000-4000-8000-00000000000c";
    let a_events = f.a.event_store();
    a_events.store_in(&sid, stream, &priming()).await.unwrap();
    let first = a_events.store_in(&sid, stream, &progress(1)).await.unwrap();
    // The client resumes on B before A has stored the rest.
    let replay = f.b.event_store().replay(&first).await.unwrap();
    let writer = {
        let a_events = a_events.clone();
        let sid = sid.clone();
        tokio::spawn(async move {
            for n in 2..=5 {
                tokio::time::sleep(Duration::from_millis(40)).await;
                a_events.store_in(&sid, stream, &progress(n)).await.unwrap();
            }
            a_events.store_in(&sid, stream, &response(1)).await.unwrap();
        })
    };
    let got = collect(replay, 100).await;
    writer.await.unwrap();
    assert_eq!(
        got.iter().map(|(_, v)| progress_of(v)).collect::<Vec<_>>(),
        vec![Some(2), Some(3), Some(4), Some(5), None],
        "every later event exactly once, then the end: {got:?}"
    );
}

async fn the_standalone_stream_lives_in_its_session_and_never_brings_it_back(f: Fleet) {
    let id = session(&f).await;
    let common = format!("{id}:common");
    let first =
        f.a.event_store()
            .store(&common, &progress(1))
            .await
            .unwrap();
    assert!(first.starts_with(&format!("{id}/common.")), "{first}");
    f.a.event_store()
        .store(&common, &progress(2))
        .await
        .unwrap();
    let got = collect(f.b.event_store().replay(&first).await.unwrap(), 1).await;
    assert_eq!(progress_of(&got[0].1), Some(2));
    // Deleted on B: a late event on A is refused, and the session stays gone.
    f.b.session_store().delete(&id).await.unwrap();
    let late = f.a.event_store().store(&common, &progress(3)).await;
    assert!(late.is_err_and(|e| e.is_not_found()));
    assert!(
        f.a.store()
            .get(&SessionId::new(&*id).unwrap())
            .await
            .unwrap()
            .is_none()
    );
    // A replay of a deleted session's stream is an error, not an endless wait.
    assert!(f.b.event_store().replay(&first).await.is_err());
}

async fn forged_edited_and_foreign_ids_are_refused(f: Fleet) {
    let id = session(&f).await;
    let sid = SessionId::new(&*id).unwrap();
    let stream = "9d1e6c1a-0000-4000-8000-00000000000d";
    f.a.event_store()
        .store_in(&sid, stream, &priming())
        .await
        .unwrap();
    let good =
        f.a.event_store()
            .store_in(&sid, stream, &progress(1))
            .await
            .unwrap();
    assert!(f.b.event_store().replay(&good).await.is_ok());
    let (session_part, rest) = good.rsplit_once('/').unwrap();
    let mut parts: Vec<String> = rest.split('.').map(str::to_owned).collect();
    parts[1] = "0".into();
    let edited = format!("{session_part}/{}", parts.join("."));
    let other_session = good.replacen(&*id, "another-session", 1);
    for bad in [
        edited.as_str(),
        other_session.as_str(),
        "",
        "x",
        "a/b",
        "a/b.1.c",
    ] {
        assert!(f.b.event_store().replay(bad).await.is_err(), "{bad:?}");
    }
    // A replica with another key refuses this fleet's ids.
    let stranger = ShoalRmcp::builder()
        .store(f.a.store().clone())
        .event_id_key(shoal_core::event_id::EventIdKey::new(vec![9u8; 32]).unwrap())
        .build()
        .await
        .unwrap();
    assert!(stranger.event_store().replay(&good).await.is_err());
    // The session manager replays only the session's own streams.
    let other = session(&f).await;
    let manager = f.b.session_manager();
    manager.restore_session(other.clone()).await.unwrap();
    assert!(manager.resume(&other, good.clone()).await.is_err());
}

async fn a_session_deleted_on_one_replica_is_gone_on_the_other(f: Fleet) {
    let id = session(&f).await;
    let a = f.a.session_manager();
    assert!(a.has_session(&id).await.unwrap());
    f.b.session_store().delete(&id).await.unwrap();
    eventually("A stops serving it", || async {
        !a.has_session(&id).await.unwrap()
    })
    .await;
    assert_eq!(a.running(), 0, "A's worker for it ended");
    // And rmcp's restore finds nothing.
    assert!(f.a.session_store().load(&id).await.unwrap().is_none());
}

async fn the_store_refuses_an_initialize_over_its_session_limit(f: Fleet) {
    let manager = f.a.session_manager();
    manager.create_session().await.expect("first session");
    let refused = manager.create_session().await;
    assert!(
        refused.is_err(),
        "the second session is over max_sessions = 1"
    );
    assert_eq!(manager.running(), 1, "no worker for a refused session");
    let other = f.b.session_manager();
    assert!(
        other.create_session().await.is_err(),
        "the limit is fleet-wide"
    );
}

async fn a_worker_ending_here_keeps_a_live_session_but_not_a_failed_handshake(f: Fleet) {
    let manager = f.a.session_manager();
    // A worker that ends (idle keep-alive, a restart) leaves the session to other replicas.
    let live = session(&f).await;
    manager.close_session(&live).await.unwrap();
    let sid = SessionId::new(&*live).unwrap();
    assert!(f.a.store().get(&sid).await.unwrap().is_some());
    assert!(f.b.session_store().load(&live).await.unwrap().is_some());
    // One whose handshake never got recorded leaves nothing under the session limit.
    let (failed, _transport) = manager.create_session().await.unwrap();
    let fid = SessionId::new(&*failed).unwrap();
    assert!(
        f.a.store().get(&fid).await.unwrap().is_some(),
        "created with its worker"
    );
    manager.close_session(&failed).await.unwrap();
    assert!(f.a.store().get(&fid).await.unwrap().is_none());
}

async fn stateless_streams_get_their_own_session(f: Fleet) {
    let stream = "9d1e6c1a-0000-4000-8000-00000000000e";
    let events = f.a.event_store();
    let first = events.store(stream, &priming()).await.unwrap();
    assert!(first.starts_with("rmcp-stream-"), "{first}");
    events.store(stream, &progress(1)).await.unwrap();
    events.store(stream, &response(2)).await.unwrap();
    let got = collect(f.b.event_store().replay(&first).await.unwrap(), 100).await;
    assert_eq!(got.len(), 2);
    // Deleted a while after its response (here at once), not left for the session TTL.
    let mut quick = shoal_rmcp::ReplaySettings::default();
    quick.stateless_keep = Duration::ZERO;
    let c = ShoalRmcp::builder()
        .store(f.a.store().clone())
        .replay_settings(quick)
        .build()
        .await
        .unwrap();
    let other = "9d1e6c1a-0000-4000-8000-00000000000f";
    c.event_store().store(other, &priming()).await.unwrap();
    c.event_store().store(other, &response(3)).await.unwrap();
    let own = SessionId::new(format!("rmcp-stream-{other}")).unwrap();
    let store = f.a.store().clone();
    eventually("the finished stateless stream is deleted", || async {
        store.get(&own).await.unwrap().is_none()
    })
    .await;
    assert!(
        f.a.store()
            .get(&SessionId::new(format!("rmcp-stream-{stream}")).unwrap())
            .await
            .unwrap()
            .is_some(),
        "one kept for 60 s is still there"
    );
}

macro_rules! contract {
    ($($backend:ident),*) => {
        $(
            mod $backend {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn session_state_round_trips_and_deletes_everywhere() {
                    super::session_state_round_trips_and_deletes_everywhere(super::$backend(json!({})).await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_request_stream_replays_exactly_once_from_any_of_its_ids() {
                    super::a_request_stream_replays_exactly_once_from_any_of_its_ids(super::$backend(json!({})).await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_replay_follows_events_another_replica_stores_later() {
                    super::a_replay_follows_events_another_replica_stores_later(super::$backend(json!({})).await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn the_standalone_stream_lives_in_its_session_and_never_brings_it_back() {
                    super::the_standalone_stream_lives_in_its_session_and_never_brings_it_back(super::$backend(json!({})).await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn forged_edited_and_foreign_ids_are_refused() {
                    super::forged_edited_and_foreign_ids_are_refused(super::$backend(json!({})).await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_session_deleted_on_one_replica_is_gone_on_the_other() {
                    super::a_session_deleted_on_one_replica_is_gone_on_the_other(super::$backend(json!({})).await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn the_store_refuses_an_initialize_over_its_session_limit() {
                    super::the_store_refuses_an_initialize_over_its_session_limit(super::$backend(json!({"max_sessions": 1})).await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_worker_ending_here_keeps_a_live_session_but_not_a_failed_handshake() {
                    super::a_worker_ending_here_keeps_a_live_session_but_not_a_failed_handshake(super::$backend(json!({})).await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn stateless_streams_get_their_own_session() {
                    super::stateless_streams_get_their_own_session(super::$backend(json!({})).await).await;
                }
            }
        )*
    };
}

contract!(
    memory,
    redis,
    redis_cluster,
    redis_cached,
    redis_cached_strict,
    redis_resilient
);
