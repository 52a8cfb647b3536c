//! The proxy against an in-process MCP Streamable HTTP server: two instances sharing one store
//! (memory, then a real Redis), requests alternating between them, an instance shut down
//! mid-session, an SSE stream cut on one instance and resumed on the other.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{collections::BTreeSet, sync::Arc};

use common::*;
use serde_json::{Value, json};
use shoal_core::{
    Direction, FrameQuery, MemoryStore, SessionId, SessionStore, store::MAX_PAGE_LIMIT,
};
use shoal_proxy::UpstreamConfig;

fn http(f: &Fake) -> UpstreamConfig {
    UpstreamConfig::Http { url: f.url() }
}

async fn two_proxies(f: &Fake, store: Arc<dyn SessionStore>) -> (Proxy, Proxy) {
    two_proxies_waking(f, store, None).await
}

/// With `wake = Some(redis URL)`: pub/sub wake-ups on, and the fallback poll so slow (a third
/// of a 60 s lease) that live delivery across instances within the test's bounds shows the
/// wake-ups work.
async fn two_proxies_waking(
    f: &Fake,
    store: Arc<dyn SessionStore>,
    wake: Option<String>,
) -> (Proxy, Proxy) {
    let mut prefix = [0u8; 4];
    getrandom::fill(&mut prefix).unwrap();
    let prefix = format!(
        "wake{:02x}{:02x}{:02x}{:02x}",
        prefix[0], prefix[1], prefix[2], prefix[3]
    );
    let cfg = |name: &str| {
        let mut c = config(http(f), name);
        if let Some(url) = &wake {
            c.wakeup_redis_url = Some(url.clone());
            c.wakeup_channel_prefix.clone_from(&prefix);
            c.stream_lease = std::time::Duration::from_secs(60);
        }
        c
    };
    let a = start_proxy(cfg("a"), store.clone()).await;
    let b = start_proxy(cfg("b"), store).await;
    if wake.is_some() {
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

async fn cut_and_resume_waking(store: Arc<dyn SessionStore>, wake: Option<String>) -> Proxy {
    let f = fake_upstream().await;
    let (a, b) = two_proxies_waking(&f, store.clone(), wake).await;
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
    f.open_gate(); // the upstream goes on; instance A keeps recording

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
    let mut final_result = None;
    while let Some(ev) = r.next().await {
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        if v.get("result").is_some() {
            final_result = Some(v);
            break;
        }
        got.push(v["params"]["progress"].as_u64().unwrap());
    }
    assert_eq!(
        got,
        (0..total).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    let v = final_result.expect("the result arrives after the resume");
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

async fn get_stream_followed_waking(store: Arc<dyn SessionStore>, wake: Option<String>) -> Proxy {
    let f = fake_upstream().await;
    let (a, b) = two_proxies_waking(&f, store, wake).await;
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
/// finds the holder's lease gone and takes the stream over (a new upstream GET).
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
    assert_eq!(
        b.handle
            .metrics()
            .stream_takeovers
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
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
        }
    };
}

fn memory() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

scenarios!(memory_store, memory());

mod redis {
    use std::sync::OnceLock;

    use shoal_redis::{RedisConfig, RedisStore};
    use shoal_testkit::redis_server::RedisServer;

    use super::*;

    static SERVER: OnceLock<RedisServer> = OnceLock::new();

    pub(super) fn url() -> String {
        SERVER.get_or_init(RedisServer::start).url()
    }

    pub(super) async fn store() -> Arc<dyn SessionStore> {
        let server = SERVER.get_or_init(RedisServer::start);
        let mut prefix = [0u8; 4];
        getrandom::fill(&mut prefix).unwrap();
        let prefix = format!(
            "t{}",
            prefix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Arc::new(
            RedisStore::connect_default(RedisConfig::new(server.url()).with_key_prefix(prefix))
                .await
                .unwrap(),
        )
    }
}

scenarios!(redis_store, redis::store().await);

mod redis_wakeups {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sse_resumed_on_the_other_instance_is_woken_by_pub_sub() {
        let b = cut_and_resume_waking(redis::store().await, Some(redis::url())).await;
        assert!(b.handle.metrics().wakeups_received.load(Relaxed) > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_stream_followed_on_the_other_instance_is_woken_by_pub_sub() {
        let b = get_stream_followed_waking(redis::store().await, Some(redis::url())).await;
        assert!(b.handle.metrics().wakeups_received.load(Relaxed) > 0);
    }
}
