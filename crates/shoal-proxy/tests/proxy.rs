//! The proxy against an in-process MCP Streamable HTTP server: two instances sharing one store
//! (memory, then a real Redis), requests alternating between them, an instance shut down
//! mid-session, an SSE stream cut on one instance and resumed on the other; followers woken
//! across instances over a pub/sub bus (in-process, and Redis standalone, Cluster and
//! Sentinel).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{collections::BTreeSet, sync::Arc};

use common::*;
use serde_json::{Value, json};
use shoal_core::{
    Direction, FrameQuery, MemoryStore, NotifyBus, RequestId, SessionId, SessionStore,
    store::MAX_PAGE_LIMIT,
};
use shoal_proxy::UpstreamConfig;

fn http(f: &Fake) -> UpstreamConfig {
    UpstreamConfig::Http { url: f.url() }
}

async fn two_proxies(f: &Fake, store: Arc<dyn SessionStore>) -> (Proxy, Proxy) {
    two_proxies_waking(f, store, None).await
}

/// One pub/sub bus per instance (A's, B's).
type Buses = Option<(Arc<dyn NotifyBus>, Arc<dyn NotifyBus>)>;

/// With `buses`: wake-ups on, and both the fallback poll and the lease so slow (60 s) that
/// live delivery across instances within the test's bounds shows the wake-ups work — without
/// them the follower would not read the store again before the test gives up.
async fn two_proxies_waking(
    f: &Fake,
    store: Arc<dyn SessionStore>,
    buses: Buses,
) -> (Proxy, Proxy) {
    let waking = buses.is_some();
    let cfg = |name: &str, bus: Option<Arc<dyn NotifyBus>>| {
        let mut c = config(http(f), name);
        if let Some(bus) = bus {
            c = c.with_bus(bus);
            c.poll_interval = std::time::Duration::from_secs(60);
            c.stream_lease = std::time::Duration::from_secs(60);
        }
        c
    };
    let (bus_a, bus_b) = buses.unzip();
    let a = start_proxy(cfg("a", bus_a), store.clone()).await;
    let b = start_proxy(cfg("b", bus_b), store).await;
    if waking {
        wait_for(|| a.handle.wakeups_connected() && b.handle.wakeups_connected()).await;
    }
    (a, b)
}

// ---------------------------------------------------------------- scenarios (any store)

async fn alternating(store: Arc<dyn SessionStore>) {
    let f = fake_upstream().await;
    let (a, b) = two_proxies(&f, store.clone()).await;
    let c = Client::new("2025-06-18");
    let sid = c.initialize(&a.url()).await;

    // The stored session.
    let id = SessionId::new(&sid).unwrap();
    let s = store.get(&id).await.unwrap().unwrap();
    assert_eq!(s.protocol_version.as_deref(), Some("2025-06-18"));
    assert_eq!(s.upstream_session_id.as_deref(), Some("up-1"));
    assert_eq!(
        s.initialize_params.as_ref().unwrap()["clientInfo"]["name"],
        "test-client"
    );
    assert_eq!(
        s.server_info.as_ref().unwrap()["serverInfo"]["name"],
        "fake-upstream"
    );
    assert_ne!(
        sid, "up-1",
        "the client never sees the upstream's session id"
    );
    assert_eq!(sid.len(), 32);

    for i in 1..=6u64 {
        let url = if i % 2 == 0 { a.url() } else { b.url() };
        let v = c.call(&url, &sid, i, "tools/list", json!({})).await;
        assert_eq!(v["id"], i);
        assert_eq!(v["result"]["tools"][0]["name"], "echo");
    }
    // The upstream saw its own session id and its own Host on every request.
    let v = c
        .call(
            &b.url(),
            &sid,
            7,
            "tools/call",
            json!({"name":"echo","arguments":{}}),
        )
        .await;
    let text = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(text, format!("session=up-1 host={}", f.addr));

    // Frames: both directions, every one with a stream id; requests and replies pair up.
    // (JSON replies are recorded just after they are sent: wait for them, bounded.)
    let count = |dir: Direction, page: &shoal_core::FramePage| {
        page.frames.iter().filter(|f| f.direction == dir).count()
    };
    let mut page = store
        .frames(&id, &FrameQuery::after(0, MAX_PAGE_LIMIT))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while count(Direction::ServerToClient, &page) < 8 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        page = store
            .frames(&id, &FrameQuery::after(0, MAX_PAGE_LIMIT))
            .await
            .unwrap();
    }
    assert_eq!(
        count(Direction::ClientToServer, &page),
        1 + 1 + 7,
        "initialize, initialized, 7 requests"
    );
    assert_eq!(count(Direction::ServerToClient, &page), 1 + 7);
    wait_for_async(|| async { store.list_pending(&id).await.unwrap().is_empty() }).await;
    assert!(page.frames.iter().all(|f| f.stream_id.is_some()));
    wait_for_async(|| async {
        store.get(&id).await.unwrap().unwrap().state == shoal_core::SessionState::Active
    })
    .await;
}

async fn shutdown_mid_session(store: Arc<dyn SessionStore>) {
    let f = fake_upstream().await;
    let (mut a, b) = two_proxies(&f, store).await;
    let c = Client::new("2025-11-25");
    let sid = c.initialize(&a.url()).await;
    let v = c.call(&a.url(), &sid, 1, "tools/list", json!({})).await;
    assert_eq!(v["id"], 1);
    a.shutdown().await;
    assert!(c.http.get(a.base() + "/healthz").send().await.is_err());
    for i in 2..5 {
        let v = c
            .call(
                &b.url(),
                &sid,
                i,
                "tools/call",
                json!({"name":"stream","arguments":{"count":2}}),
            )
            .await;
        assert_eq!(v["result"]["content"][0]["text"], "done 2");
    }
}

async fn cut_and_resume(store: Arc<dyn SessionStore>) {
    cut_and_resume_waking(store, None).await;
}

async fn cut_and_resume_waking(store: Arc<dyn SessionStore>, buses: Buses) -> Proxy {
    let waking = buses.is_some();
    let f = fake_upstream().await;
    let (a, b) = two_proxies_waking(&f, store.clone(), buses).await;
    let c = Client::new("2025-11-25");
    let sid = c.initialize(&a.url()).await;
    let total = 8u64;
    let resp = c
        .post_req(
            &a.url(),
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":"call-1","method":"tools/call",
                    "params":{"name":"gated","arguments":{"count":total,"before_gate":3}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got: Vec<u64> = Vec::new();
    let mut last_id = None;
    let mut r = SseReader::new(resp);
    // The priming event (2025-11-25): an id and no data.
    let prime = r.next().await.unwrap();
    assert!(prime.data.is_empty());
    assert!(prime.retry.is_some());
    let prime_id = prime.id.clone().unwrap();
    while got.len() < 3 {
        let ev = r.next().await.unwrap();
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        got.push(v["params"]["progress"].as_u64().unwrap());
        last_id = ev.id;
    }
    drop(r); // the client's connection is cut
    // The upstream goes on; instance A keeps recording. With wake-ups the gate opens once the
    // client has resumed on B, so some events reach B live (woken), not all from the replay.
    if !waking {
        f.open_gate();
    }

    // Resume on the other instance.
    let resp = c
        .http
        .get(b.url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", last_id.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut r = SseReader::new(resp);
    if waking {
        f.open_gate();
    }
    let run = read_progress(&mut r).await;
    got.extend(run.progress);
    assert_eq!(
        got,
        (0..total).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    let v = run.result.expect("the result arrives after the resume");
    assert_eq!(v["id"], "call-1");
    assert_eq!(v["result"]["content"][0]["text"], format!("done {total}"));
    // The stream ends after its response.
    assert!(r.next().await.is_none());

    // The priming id replays the whole stream, on either instance.
    for url in [a.url(), b.url()] {
        let resp = c
            .http
            .get(url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid)
            .header("last-event-id", &prime_id)
            .send()
            .await
            .unwrap();
        let mut r = SseReader::new(resp);
        let mut n = 0;
        let mut ids = BTreeSet::new();
        while let Some(ev) = r.next().await {
            assert!(ids.insert(ev.id.unwrap()));
            n += 1;
        }
        assert_eq!(n, total + 1);
    }
    let id = SessionId::new(&sid).unwrap();
    assert!(store.list_pending(&id).await.unwrap().is_empty());
    b
}

async fn delete_everywhere(store: Arc<dyn SessionStore>) {
    let f = fake_upstream().await;
    let (a, b) = two_proxies(&f, store.clone()).await;
    let c = Client::new("2025-06-18");
    let sid = c.initialize(&a.url()).await;
    // B has seen the session too (cached).
    c.call(&b.url(), &sid, 1, "ping", json!({})).await;
    let r = c
        .http
        .delete(a.url())
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(f.state.lock().unwrap().deleted, vec!["up-1".to_string()]);
    for url in [a.url(), b.url()] {
        let r = c
            .post_req(
                &url,
                Some(&sid),
                &json!({"jsonrpc":"2.0","id":2,"method":"ping"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = c
            .http
            .get(&url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    assert!(
        store
            .get(&SessionId::new(&sid).unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

async fn get_stream_followed_across_instances(store: Arc<dyn SessionStore>) {
    get_stream_followed_waking(store, None).await;
}

async fn get_stream_followed_waking(store: Arc<dyn SessionStore>, buses: Buses) -> Proxy {
    let f = fake_upstream().await;
    let (a, b) = two_proxies_waking(&f, store, buses).await;
    let c = Client::new("2025-06-18");
    let sid = c.initialize(&a.url()).await;
    let resp = c
        .http
        .get(a.url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut r = SseReader::new(resp);
    // Wait (bounded) until the upstream GET stream is open.
    tokio::time::timeout(WAIT, async {
        while !f.get_stream_open("up-1") {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert!(f.notify_get("up-1", 1).await);
    let ev = r.next().await.unwrap();
    let v: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(v["params"]["data"]["n"], 1);
    let last = ev.id.unwrap();
    drop(r);
    // Cut; more notifications arrive upstream while the client is away, held by instance A.
    assert!(f.notify_get("up-1", 2).await);
    let resp = c
        .http
        .get(b.url())
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .header("last-event-id", &last)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut r = SseReader::new(resp);
    let ev = r.next().await.unwrap();
    let v: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(v["params"]["data"]["n"], 2);
    // Live after the replay: B follows what A records.
    assert!(f.notify_get("up-1", 3).await);
    let ev = r.next().await.unwrap();
    let v: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(v["params"]["data"]["n"], 3);
    drop(a);
    b
}

async fn wait_for(what: impl Fn() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !what() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition not reached in time");
}

/// The instance holding the upstream GET stream goes away; the instance the client resumes on
/// finds the holder's lease gone and opens the stream again (a new upstream GET).
async fn get_stream_taken_over(store: Arc<dyn SessionStore>) {
    let f = fake_upstream().await;
    let (mut a, b) = two_proxies(&f, store).await;
    let c = Client::new("2025-11-25");
    let sid = c.initialize(&a.url()).await;
    let open = |url: String, last: Option<String>| {
        let mut r = c
            .http
            .get(url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid);
        if let Some(l) = last {
            r = r.header("last-event-id", l);
        }
        r.send()
    };
    let mut r = SseReader::new(open(a.url(), None).await.unwrap());
    let prime = r.next().await.unwrap();
    assert!(prime.data.is_empty());
    wait_for(|| f.state.lock().unwrap().gets == 1).await;
    assert!(f.notify_get("up-1", 1).await);
    let ev = r.next().await.unwrap();
    let last = ev.id.unwrap();
    drop(r);
    a.shutdown().await;
    let resp = open(b.url(), Some(last)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut r = SseReader::new(resp);
    wait_for(|| f.state.lock().unwrap().gets == 2).await;
    assert!(f.notify_get("up-1", 2).await);
    let ev = r.next().await.unwrap();
    let v: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(v["params"]["data"]["n"], 2);
    // B reads the session's standalone stream upstream now (A released it on shutdown, so
    // the resuming GET opened it at once instead of waiting for the lease to run out).
    assert_eq!(b.handle.metrics().standalone_streams.get(), 1);
}

/// Requests the upstream sends the client (here `sampling/createMessage` on a POST stream)
/// are pending in the store, under `s2c:<JSON id>` and with their stream, before the client
/// sees them; the client's response POSTed to the other instance takes them.
async fn server_requests_pending_until_answered(store: Arc<dyn SessionStore>) {
    let f = fake_upstream().await;
    let (a, b) = two_proxies(&f, store.clone()).await;
    let c = Client::new("2025-06-18");
    let sid = c.initialize(&a.url()).await;
    let id = SessionId::new(&sid).unwrap();
    let resp = c
        .post_req(
            &a.url(),
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ask","arguments":{}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut r = SseReader::new(resp);
    let ev = r.next().await.unwrap();
    let asked: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(asked["method"], "sampling/createMessage");
    assert_eq!(asked["id"], "srv-1");
    // Recorded before the event went out.
    let pending = store.list_pending(&id).await.unwrap();
    let s2c = pending
        .iter()
        .find(|p| p.method == "sampling/createMessage")
        .expect("the server's request is pending");
    assert_eq!(s2c.request_id, RequestId::from("s2c:\"srv-1\""));
    let call = pending
        .iter()
        .find(|p| p.request_id == RequestId::from(5))
        .expect("the client's request is pending");
    assert_eq!(s2c.stream_id, call.stream_id);
    assert!(s2c.stream_id.as_deref().is_some_and(|s| s.starts_with('p')));

    // The client answers on the other instance.
    let answer = c
        .post_req(
            &b.url(),
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":"srv-1","result":{"role":"assistant",
                    "content":{"type":"text","text":"hi"},"model":"m"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let ev = r.next().await.unwrap();
    let done: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(done["id"], 5);
    assert!(
        done["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("hi")
    );
    assert!(
        r.next().await.is_none(),
        "the stream ends after its response"
    );
    wait_for_async(|| async { store.list_pending(&id).await.unwrap().is_empty() }).await;
    // Both directions are recorded: the server's request on the stream, the client's answer.
    let page = store
        .frames(&id, &FrameQuery::after(0, MAX_PAGE_LIMIT))
        .await
        .unwrap();
    let has = |dir: Direction, needle: &str| {
        page.frames
            .iter()
            .any(|f| f.direction == dir && String::from_utf8_lossy(&f.content).contains(needle))
    };
    assert!(has(Direction::ServerToClient, "sampling/createMessage"));
    assert!(has(Direction::ClientToServer, "\"model\":\"m\""));
}

macro_rules! scenarios {
    ($mod:ident, $store:expr) => {
        mod $mod {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn requests_alternate_between_instances() {
                alternating($store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_instance_shut_down_mid_session() {
                shutdown_mid_session($store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sse_cut_and_resumed_on_the_other_instance() {
                cut_and_resume($store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delete_ends_the_session_on_every_instance() {
                delete_everywhere($store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_stream_resumed_and_followed_on_the_other_instance() {
                get_stream_followed_across_instances($store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_stream_taken_over_when_its_holder_is_gone() {
                get_stream_taken_over($store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn server_requests_are_pending_until_the_client_answers_on_any_instance() {
                server_requests_pending_until_answered($store).await;
            }
        }
    };
}

fn memory() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

scenarios!(memory_store, memory());

mod redis {
    use std::sync::OnceLock;

    use shoal_redis::{BusConfig, RedisConfig, RedisPubSub, RedisStore};
    use shoal_testkit::redis_server::RedisServer;

    use super::*;

    static SERVER: OnceLock<RedisServer> = OnceLock::new();

    /// A fresh key prefix on the shared test server.
    pub(super) fn config() -> RedisConfig {
        let server = SERVER.get_or_init(RedisServer::start);
        RedisConfig::new(server.url()).with_key_prefix(fresh_prefix())
    }

    /// A random key prefix, so tests sharing a server never meet.
    pub(super) fn fresh_prefix() -> String {
        let mut prefix = [0u8; 4];
        getrandom::fill(&mut prefix).unwrap();
        format!(
            "t{}",
            prefix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    }

    pub(super) async fn store() -> Arc<dyn SessionStore> {
        Arc::new(RedisStore::connect_default(config()).await.unwrap())
    }

    /// A store on `config` and one bus per instance on the same servers and key prefix.
    pub(super) async fn store_and_buses(config: RedisConfig) -> (Arc<dyn SessionStore>, Buses) {
        let store = Arc::new(RedisStore::connect_default(config.clone()).await.unwrap());
        let a = RedisPubSub::connect(&config, BusConfig::default())
            .await
            .unwrap();
        let b = RedisPubSub::connect(&config, BusConfig::default())
            .await
            .unwrap();
        (store, Some((Arc::new(a), Arc::new(b))))
    }
}

scenarios!(redis_store, redis::store().await);

/// Followers on instance B of streams instance A records get A's events long before their
/// 60 s poll: woken over the bus. Without wake-ups these would time out.
macro_rules! woken_across_instances {
    ($mod:ident, $store_and_buses:expr) => {
        mod $mod {

            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sse_resumed_on_the_other_instance_is_woken_by_pub_sub() {
                let (store, buses) = $store_and_buses;
                let b = cut_and_resume_waking(store, buses).await;
                assert!(b.handle.metrics().wakeups_received.get() > 0);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_stream_followed_on_the_other_instance_is_woken_by_pub_sub() {
                let (store, buses) = $store_and_buses;
                let b = get_stream_followed_waking(store, buses).await;
                assert!(b.handle.metrics().wakeups_received.get() > 0);
            }
        }
    };
}

/// Two instances in one process on one memory store, each with its endpoint of one
/// in-process bus.
fn memory_and_local_buses() -> (Arc<dyn SessionStore>, Buses) {
    let a = shoal_core::LocalBus::new();
    let b = a.endpoint();
    (memory(), Some((Arc::new(a), Arc::new(b))))
}

woken_across_instances!(memory_wakeups, memory_and_local_buses());
woken_across_instances!(redis_wakeups, redis::store_and_buses(redis::config()).await);

/// A 6-node Cluster (sharded pub/sub) and a Sentinel set, one of each for this binary.
mod topologies {
    use std::sync::OnceLock;

    use shoal_redis::RedisConfig;
    use shoal_testkit::redis_server::{RedisCluster, RedisSentinel};

    pub(super) fn cluster() -> RedisConfig {
        static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
        let url = CLUSTER.get_or_init(RedisCluster::start).url();
        RedisConfig::new(url).with_key_prefix(super::redis::fresh_prefix())
    }

    pub(super) fn sentinel() -> RedisConfig {
        static SENTINEL: OnceLock<RedisSentinel> = OnceLock::new();
        let url = SENTINEL.get_or_init(RedisSentinel::start).url();
        RedisConfig::new(url).with_key_prefix(super::redis::fresh_prefix())
    }
}

woken_across_instances!(
    cluster_wakeups,
    redis::store_and_buses(topologies::cluster()).await
);
woken_across_instances!(
    sentinel_wakeups,
    redis::store_and_buses(topologies::sentinel()).await
);

/// The instance holding an SSE POST response stream dies mid-stream (its runtime is dropped:
/// no graceful shutdown, no lease released); the client resumes on the other instance with
/// `Last-Event-ID`, which takes the stream over once the holder's lease has run out by resuming
/// the upstream from the last event the dead instance recorded: every event exactly once.
mod redis_takeover {
    use shoal_redis::RedisStore;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn post_stream_taken_over_when_its_holder_dies() {
        let f = fake_upstream().await;
        let rcfg = redis::config();
        let mut a = start_crashable(config(http(&f), "a"), rcfg.clone()).await;
        let store: Arc<dyn SessionStore> =
            Arc::new(RedisStore::connect_default(rcfg).await.unwrap());
        let b = start_proxy(config(http(&f), "b"), store.clone()).await;
        let c = Client::new("2025-11-25");
        let sid = c.initialize(&b.url()).await;
        let total = 8u64;
        let resp = c
            .post_req(
                &a.url(),
                Some(&sid),
                &json!({"jsonrpc":"2.0","id":"call-1","method":"tools/call",
                        "params":{"name":"resumable","arguments":{"count":total,"before_gate":3}}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut r = SseReader::new(resp);
        let prime = r.next().await.unwrap();
        assert!(prime.data.is_empty());
        let mut got: Vec<u64> = Vec::new();
        let mut last_id = None;
        while got.len() < 3 {
            let ev = r.next().await.unwrap();
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            got.push(v["params"]["progress"].as_u64().unwrap());
            last_id = ev.id;
        }
        // Instance A dies mid-stream; the upstream goes on (behind the gate) without it.
        a.crash();
        // The runtime's shutdown drops its tasks (the listener with them) in the background:
        // bounded wait until the dead instance no longer answers.
        let mut dead = false;
        for _ in 0..100 {
            let probe = c
                .http
                .get(a.url())
                .timeout(std::time::Duration::from_millis(200))
                .send()
                .await;
            if probe.is_err() {
                dead = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(dead, "the dead instance still answers");
        drop(r);
        f.open_resume_gate();

        let started = std::time::Instant::now();
        let resp = c
            .http
            .get(b.url())
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "2025-11-25")
            .header("last-event-id", last_id.unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut r = SseReader::new(resp);
        let run = read_progress(&mut r).await;
        let events = run.progress.len() + usize::from(run.result.is_some());
        assert_eq!(run.ids.len(), events, "every event has an id");
        let mut ids = BTreeSet::new();
        for id in &run.ids {
            assert!(ids.insert(id.clone()), "an event id came twice");
        }
        got.extend(run.progress);
        assert_eq!(
            got,
            (0..total).collect::<Vec<_>>(),
            "every event exactly once, in order"
        );
        let v = run.result.expect("the result arrives after the takeover");
        assert_eq!(v["id"], "call-1");
        assert_eq!(v["result"]["content"][0]["text"], format!("done {total}"));
        assert!(
            r.next().await.is_none(),
            "the stream ends after its response"
        );
        // B resumed the upstream exactly once, right after the last event A recorded.
        assert_eq!(f.state.lock().unwrap().resumes, vec!["r1-2".to_string()]);
        assert_eq!(b.handle.metrics().stream_takeovers.get(), 1);
        eprintln!(
            "takeover: the rest of the stream arrived {:?} after the resume (lease {:?})",
            started.elapsed(),
            config(http(&f), "x").stream_lease
        );
        let id = SessionId::new(&sid).unwrap();
        wait_for_async(|| async { store.list_pending(&id).await.unwrap().is_empty() }).await;
    }
}

/// Each instance with its own hot-session cache (`Cached<RedisStore>`, consistency
/// `invalidate`, the Redis invalidation bus), as `shoal proxy` runs with a `[cache]` section.
mod redis_cached {
    use shoal_core::cached::{CacheConfig, Cached, Consistency};
    use shoal_redis::{BusConfig, RedisConfig, RedisPubSub, RedisStore, cache_builder};

    use super::*;

    async fn cached(cfg: &RedisConfig, consistency: Consistency) -> Arc<Cached<RedisStore>> {
        let store = RedisStore::connect_default(cfg.clone()).await.unwrap();
        let bus = match consistency {
            Consistency::Invalidate => Some(
                RedisPubSub::connect(cfg, BusConfig::default())
                    .await
                    .unwrap(),
            ),
            _ => None,
        };
        let c = Arc::new(
            cache_builder(store, bus)
                .config(CacheConfig::default().with_consistency(consistency))
                .build()
                .unwrap(),
        );
        wait_for(|| c.is_enabled()).await;
        c
    }

    /// DELETE on A, then B (which served the session from its cache) answers 404 as soon as
    /// the bus delivered A's invalidation: the bound measured here, over 10 sessions.
    async fn delete_then_404_elsewhere(consistency: Consistency) -> (std::time::Duration, u32) {
        let f = fake_upstream().await;
        let rcfg = redis::config();
        let (sa, sb) = (
            cached(&rcfg, consistency).await,
            cached(&rcfg, consistency).await,
        );
        let a = start_proxy(config(http(&f), "a"), sa.clone()).await;
        let b = start_proxy(config(http(&f), "b"), sb.clone()).await;
        let c = Client::new("2025-06-18");
        let mut worst = std::time::Duration::ZERO;
        let mut stale_reads = 0u32;
        for _ in 0..10 {
            let sid = c.initialize(&a.url()).await;
            let id = SessionId::new(&sid).unwrap();
            for i in 1..=4u64 {
                let url = if i % 2 == 0 { a.url() } else { b.url() };
                let v = c.call(&url, &sid, i, "ping", json!({})).await;
                assert_eq!(v["id"], i);
            }
            // A's last writes (recorded just after its reply) invalidate B's copy; once they
            // are in, B reloads it once and then serves the session from its cache.
            let hits = sb.stats().hits;
            for i in 5..=10u64 {
                c.call(&b.url(), &sid, i, "ping", json!({})).await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            if consistency == Consistency::Invalidate {
                assert!(sb.stats().hits > hits, "B checks the session in its cache");
            }
            let r = c
                .http
                .delete(a.url())
                .header("mcp-session-id", &sid)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let t = std::time::Instant::now();
            while sb.get(&id).await.unwrap().is_some() {
                stale_reads += 1;
                assert!(
                    t.elapsed() < std::time::Duration::from_secs(1),
                    "B still serves a deleted session after 1 s"
                );
                tokio::time::sleep(std::time::Duration::from_micros(200)).await;
            }
            worst = worst.max(t.elapsed());
            let r = c
                .post_req(
                    &b.url(),
                    Some(&sid),
                    &json!({"jsonrpc":"2.0","id":11,"method":"ping"}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404);
        }
        (worst, stale_reads)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_on_one_instance_is_404_on_the_other_after_the_invalidation() {
        let (worst, stale) = delete_then_404_elsewhere(Consistency::Invalidate).await;
        eprintln!(
            "invalidate: B saw the delete at most {worst:?} after A answered it ({stale} stale reads in 10 deletes)"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_on_one_instance_is_404_on_the_other_at_once_when_strict() {
        let (_, stale) = delete_then_404_elsewhere(Consistency::Strict).await;
        assert_eq!(stale, 0, "strict revalidates every hit");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sse_cut_and_resumed_through_caches() {
        let f = fake_upstream().await;
        let rcfg = redis::config();
        let sa = cached(&rcfg, Consistency::Invalidate).await;
        let sb = cached(&rcfg, Consistency::Invalidate).await;
        let a = start_proxy(config(http(&f), "a"), sa).await;
        let b = start_proxy(config(http(&f), "b"), sb.clone()).await;
        let c = Client::new("2025-11-25");
        let sid = c.initialize(&a.url()).await;
        let resp = c
            .post_req(
                &a.url(),
                Some(&sid),
                &json!({"jsonrpc":"2.0","id":"call-1","method":"tools/call",
                        "params":{"name":"gated","arguments":{"count":6,"before_gate":2}}}),
            )
            .send()
            .await
            .unwrap();
        let mut r = SseReader::new(resp);
        let _prime = r.next().await.unwrap();
        let mut got = Vec::new();
        let mut last = None;
        while got.len() < 2 {
            let ev = r.next().await.unwrap();
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            got.push(v["params"]["progress"].as_u64().unwrap());
            last = ev.id;
        }
        drop(r);
        f.open_gate();
        let resp = c
            .http
            .get(b.url())
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid)
            .header("last-event-id", last.unwrap())
            .send()
            .await
            .unwrap();
        let mut r = SseReader::new(resp);
        while let Some(ev) = r.next().await {
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            if v.get("result").is_some() {
                break;
            }
            got.push(v["params"]["progress"].as_u64().unwrap());
        }
        assert_eq!(got, (0..6).collect::<Vec<_>>());
        let id = SessionId::new(&sid).unwrap();
        wait_for_async(|| async { sb.list_pending(&id).await.unwrap().is_empty() }).await;
    }
}
