//! Streams under adversity: server requests on the standalone stream while the client's GET
//! is late or on the other instance, a follower of a quiet stream in a busy session, a store
//! that keeps failing under a follower, a client that stops reading, a holder held up past its
//! lease while the other instance takes its stream over, quiet streams.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering::Relaxed},
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use serde_json::{Value, json};
use shoal_core::{
    Direction, Error, FrameQuery, MemoryStore, NewFrame, Result, SessionId, SessionStore,
};
use shoal_proxy::{ProxyConfig, UpstreamConfig};
use shoal_testkit::forwarding::{Call, ForwardingStore, Hooks};

fn http(f: &Fake) -> UpstreamConfig {
    UpstreamConfig::Http { url: f.url() }
}

fn get(c: &Client, url: &str, sid: &str) -> reqwest::RequestBuilder {
    c.http
        .get(url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", sid)
}

/// Every server-to-client message stored for the session, in seq order, with its stream id.
async fn stored_server_messages(
    store: &dyn SessionStore,
    id: &SessionId,
) -> Vec<(Option<String>, Value)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .frames(id, &FrameQuery::after(after, 100))
            .await
            .unwrap();
        for f in &page.frames {
            after = f.seq;
            if f.direction == Direction::ServerToClient {
                out.push((
                    f.stream_id.clone(),
                    serde_json::from_slice(&f.content).unwrap(),
                ));
            }
        }
        if !page.has_more {
            return out;
        }
    }
}

/// The next event with data (skipping priming events).
async fn next_data(r: &mut SseReader) -> Value {
    loop {
        let ev = r.next().await.expect("the stream ended");
        if !ev.data.is_empty() {
            return serde_json::from_str(&ev.data).unwrap();
        }
    }
}

// ------------------------------------------- server requests on the standalone stream

/// The client POSTs a tool call at once after initializing, on the other instance, before it
/// has any GET open; the server asks the client on its standalone stream right then. The
/// proxy opened that stream when `notifications/initialized` passed, so the request is
/// recorded, and the client's GET — opened late, on either instance — gets it. Every round
/// trip completes: none is lost.
async fn standalone_requests_never_lost(store: Arc<dyn SessionStore>, rounds: usize) {
    let f = fake_upstream().await;
    let a = start_proxy(config(http(&f), "a"), store.clone()).await;
    let b = start_proxy(config(http(&f), "b"), store).await;
    let c = Client::new("2025-06-18");
    let mut lost = 0;
    for round in 0..rounds {
        let (first, second) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let sid = c.initialize(&first.url()).await;
        // The call first, on the other instance; no GET yet.
        let call = c
            .post_req(
                &second.url(),
                Some(&sid),
                &json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ask_standalone","arguments":{}}}),
            )
            .send();
        let call = tokio::time::timeout(WAIT, call).await.unwrap().unwrap();
        assert_eq!(call.status(), 200);
        let is_sse = call.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream");
        if !is_sse {
            // The upstream had no standalone stream open: it dropped its request.
            lost += 1;
            continue;
        }
        let mut call = SseReader::new(call);
        // The GET, late, on the instance that did not take the call.
        let resp = get(&c, &first.url(), &sid).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut standalone = SseReader::new(resp);
        let asked = next_data(&mut standalone).await;
        assert_eq!(asked["method"], "sampling/createMessage", "{asked}");
        let answer = c
            .post_req(
                &first.url(),
                Some(&sid),
                &json!({"jsonrpc":"2.0","id":asked["id"],"result":{"role":"assistant",
                        "content":{"type":"text","text":format!("r{round}")},"model":"m"}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        let done = next_data(&mut call).await;
        assert_eq!(done["id"], 1);
        let text = done["result"]["content"][0]["text"].as_str().unwrap();
        if !text.contains(&format!("r{round}")) {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "{lost} of {rounds} round trips lost");
    // A GET that reconnects without Last-Event-ID replays the stream, minus answered requests.
    let sid = c.initialize(&a.url()).await;
    let mut standalone = SseReader::new(get(&c, &b.url(), &sid).send().await.unwrap());
    for n in 1..=2 {
        wait_for_async(|| async { f.notify_get(&upstream_sid(&f, &sid).await, n).await }).await;
        let v = next_data(&mut standalone).await;
        assert_eq!(v["params"]["data"]["n"], n);
    }
    drop(standalone);
    let mut again = SseReader::new(get(&c, &a.url(), &sid).send().await.unwrap());
    assert_eq!(next_data(&mut again).await["params"]["data"]["n"], 1);
    assert_eq!(next_data(&mut again).await["params"]["data"]["n"], 2);
}

/// The upstream session id of the newest session of the fake (sessions are `up-<n>`).
async fn upstream_sid(f: &Fake, _sid: &str) -> String {
    let g = f.state.lock().unwrap();
    let newest = g
        .sessions
        .iter()
        .filter_map(|s| s.strip_prefix("up-").and_then(|n| n.parse::<u64>().ok()))
        .max()
        .unwrap();
    format!("up-{newest}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_requests_are_never_lost_on_memory() {
    standalone_requests_never_lost(Arc::new(MemoryStore::new()), 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_requests_are_never_lost_on_redis() {
    let server = shoal_testkit::redis_server::RedisServer::start();
    let store =
        shoal_redis::RedisStore::connect_default(shoal_redis::RedisConfig::new(server.url()))
            .await
            .unwrap();
    standalone_requests_never_lost(Arc::new(store), 40).await;
}

/// Without the proxy opening the standalone stream, the same race loses requests: the check
/// above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_early_standalone_stream_the_request_is_lost() {
    let f = fake_upstream().await;
    let mut cfg = config(http(&f), "a");
    cfg.open_standalone_stream = false;
    let a = start_proxy(cfg, Arc::new(MemoryStore::new())).await;
    let c = Client::new("2025-06-18");
    let sid = c.initialize(&a.url()).await;
    let v = c
        .call(
            &a.url(),
            &sid,
            1,
            "tools/call",
            json!({"name":"ask_standalone","arguments":{}}),
        )
        .await;
    assert_eq!(v["result"]["content"][0]["text"], "lost");
}

/// Holds every lease renewal while armed (a store that is slow for lease calls only).
#[derive(Debug, Default)]
struct SlowRenewals(std::sync::atomic::AtomicBool);

#[async_trait]
impl Hooks for SlowRenewals {
    type Ticket = ();
    async fn before(&self, call: Call<'_>) -> Result<()> {
        if let Call::Lease(_, shoal_core::LeaseRequest::Renew { .. }) = call {
            while self.0.load(Relaxed) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(())
    }
}

/// The standalone stream's pump loses its lease (its renewals are held past the lease while
/// another owner takes it, then gives it back); the session's next request opens the stream
/// again, so server requests are not left without a reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_stream_that_lost_its_lease_is_opened_again() {
    let f = fake_upstream().await;
    let hooks = Arc::new(ForwardingStore::new(
        MemoryStore::new(),
        SlowRenewals::default(),
    ));
    let store: Arc<dyn SessionStore> = hooks.clone();
    let mut cfg = config(http(&f), "a");
    cfg.stream_lease = Duration::from_millis(300);
    let a = start_proxy(cfg, store.clone()).await;
    let c = Client::new("2025-11-25");
    let sid = c.initialize(&a.url()).await;
    let id = SessionId::new(&sid).unwrap();
    let metrics = a.handle.metrics();
    assert_eq!(metrics.standalone_streams.get(), 1);
    assert_eq!(f.state.lock().unwrap().gets, 1);
    // Renewals stall; the lease runs out and another owner takes it, then gives it back.
    hooks.hooks().0.store(true, Relaxed);
    let take = shoal_core::LeaseRequest::Acquire {
        name: "stream.g0",
        owner: "intruder",
        ttl: Duration::from_secs(60),
    };
    wait_for_async(|| async { store.lease(&id, take).await.unwrap().granted }).await;
    hooks.hooks().0.store(false, Relaxed);
    wait_for_async(|| async { metrics.standalone_streams.get() == 0 }).await;
    assert!(metrics.leases_lost.get() >= 1);
    let give_back = shoal_core::LeaseRequest::Release {
        name: "stream.g0",
        owner: "intruder",
    };
    assert!(store.lease(&id, give_back).await.unwrap().granted);
    // The next request of the session opens the standalone stream again.
    let resp = c
        .post_req(
            &a.url(),
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":9,"method":"tools/call",
                    "params":{"name":"echo","arguments":{}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_for_async(|| async { metrics.standalone_streams.get() == 1 }).await;
    assert_eq!(f.state.lock().unwrap().gets, 2, "a second upstream GET");
}

// ------------------------------------------------------- follower cost in a busy session

/// Records the `after_seq` of every filtered frame read.
#[derive(Debug, Default)]
struct ReadLog(Mutex<Vec<(String, u64)>>);

#[async_trait]
impl Hooks for ReadLog {
    type Ticket = ();
    async fn before(&self, call: Call<'_>) -> Result<()> {
        if let Call::Frames(_, q) = call
            && let Some(s) = &q.stream_id
        {
            self.0.lock().unwrap().push((s.clone(), q.after_seq));
        }
        Ok(())
    }
}

/// A follower of the quiet standalone stream in a session where another stream wrote 10,000
/// frames reads past them once: every later read starts after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reads_only_new_frames() {
    let f = fake_upstream().await;
    let log = Arc::new(ForwardingStore::new(MemoryStore::new(), ReadLog::default()));
    let store: Arc<dyn SessionStore> = log.clone();
    let a = start_proxy(config(http(&f), "a"), store.clone()).await;
    let c = Client::new("2025-06-18");
    let sid = c.initialize(&a.url()).await;
    let id = SessionId::new(&sid).unwrap();
    let mut standalone = SseReader::new(get(&c, &a.url(), &sid).send().await.unwrap());
    assert!(f.notify_get("up-1", 1).await);
    assert_eq!(next_data(&mut standalone).await["params"]["data"]["n"], 1);
    let busy: Vec<NewFrame> = (0..10_000)
        .map(|i| {
            NewFrame::new(
                Direction::ServerToClient,
                Bytes::from(format!("{{\"n\":{i}}}")),
            )
            .with_stream("pbusy")
        })
        .collect();
    for chunk in busy.chunks(1000) {
        store.append_frames(&id, chunk.to_vec()).await.unwrap();
    }
    let newest = store.get(&id).await.unwrap().unwrap().last_seq;
    assert!(newest >= 10_000);
    // Let the follower poll a while (20 ms interval), then send it something.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mark = log.hooks().0.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(f.notify_get("up-1", 2).await);
    assert_eq!(next_data(&mut standalone).await["params"]["data"]["n"], 2);
    let reads = log.hooks().0.lock().unwrap()[mark..].to_vec();
    let standalone_reads: Vec<u64> = reads
        .iter()
        .filter(|(s, _)| s == "g0")
        .map(|(_, after)| *after)
        .collect();
    assert!(
        standalone_reads.len() >= 3,
        "the follower polled: {standalone_reads:?}"
    );
    assert!(
        standalone_reads.iter().all(|after| *after >= newest),
        "every read after the burst starts past it (newest {newest}): {standalone_reads:?}"
    );
}

// ------------------------------------------------------------- a store that keeps failing

/// Fails filtered frame reads while armed: 1 with `Unavailable`, 2 with `InvalidInput`.
#[derive(Debug, Default)]
struct FailingReads(AtomicU8);

#[async_trait]
impl Hooks for FailingReads {
    type Ticket = ();
    async fn before(&self, call: Call<'_>) -> Result<()> {
        if let Call::Frames(_, q) = call
            && q.stream_id.is_some()
        {
            match self.0.load(Relaxed) {
                1 => return Err(Error::unavailable("injected: store down")),
                2 => return Err(Error::invalid("injected: cannot resolve the position")),
                _ => {}
            }
        }
        Ok(())
    }
}

async fn stream_ends_when_reads_fail(mode: u8, deadline: Duration) -> Duration {
    let f = fake_upstream().await;
    let failing = Arc::new(ForwardingStore::new(
        MemoryStore::new(),
        FailingReads::default(),
    ));
    let mut cfg = config(http(&f), "a");
    cfg.stream_error_deadline = deadline;
    let a = start_proxy(cfg, failing.clone()).await;
    let c = Client::new("2025-06-18");
    let sid = c.initialize(&a.url()).await;
    let mut standalone = SseReader::new(get(&c, &a.url(), &sid).send().await.unwrap());
    assert!(f.notify_get("up-1", 1).await);
    assert_eq!(next_data(&mut standalone).await["params"]["data"]["n"], 1);
    failing.hooks().0.store(mode, Relaxed);
    let started = std::time::Instant::now();
    assert!(f.notify_get("up-1", 2).await);
    // The client's stream ends (bounded by WAIT inside `next`).
    while let Some(ev) = standalone.next().await {
        assert!(ev.data.is_empty(), "no event while reads fail: {}", ev.data);
    }
    let took = started.elapsed();
    assert_eq!(
        a.handle.metrics().streams_ended_on_error.get(),
        1,
        "counted"
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_the_store_keeps_failing() {
    let took = stream_ends_when_reads_fail(1, Duration::from_millis(500)).await;
    assert!(
        took >= Duration::from_millis(400),
        "retried until the deadline: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_at_once_on_an_unresolvable_position() {
    // A deadline far beyond the test's bounds: only the permanent error can end it in time.
    let took = stream_ends_when_reads_fail(2, Duration::from_secs(3600)).await;
    assert!(took < WAIT);
}

// ------------------------------------------------------------ a client that stops reading

/// The client reads two events of a long POST stream, then stops reading. The pump detaches
/// it after `client_send_timeout` and goes on recording: every upstream event is stored once
/// and in order, and the client resumes on the other instance with exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_never_stalls_the_recording() {
    let f = fake_upstream().await;
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let tweak = |mut c: ProxyConfig| {
        c.client_send_timeout = Duration::from_millis(100);
        c
    };
    let a = start_proxy(tweak(config(http(&f), "a")), store.clone()).await;
    let b = start_proxy(tweak(config(http(&f), "b")), store.clone()).await;
    let c = Client::new("2025-06-18");
    let sid = c.initialize(&a.url()).await;
    let id = SessionId::new(&sid).unwrap();
    // 500 events of ~64 KiB: far more than the channel and the loopback socket buffers
    // (which grow to several MiB) hold.
    let count = 500u64;
    let resp = c
        .post_req(
            &a.url(),
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"stream","arguments":{"count":count,"pad":65536}}}),
        )
        .send()
        .await
        .unwrap();
    let mut r = SseReader::new(resp);
    let mut last = None;
    for want in 0..2u64 {
        let ev = r.next().await.unwrap();
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(v["params"]["progress"], want);
        last = ev.id;
    }
    // Stop reading (hold the response). The recording finishes regardless.
    // (32 MB of frames: more than one page's bytes, so read them all.)
    wait_for_async(|| async {
        stored_server_messages(&*store, &id)
            .await
            .iter()
            .any(|(_, v)| v["id"] == 7)
    })
    .await;
    assert!(a.handle.metrics().clients_detached.get() >= 1);
    drop(r);
    // Exactly once, in order: progress 0..count, then the result.
    let mut progress = Vec::new();
    let mut stream = None;
    for (stream_id, v) in stored_server_messages(&*store, &id).await {
        if let Some(p) = v["params"]["progress"].as_u64() {
            stream.get_or_insert_with(|| stream_id.clone());
            assert_eq!(stream.as_ref().unwrap(), &stream_id);
            progress.push(p);
        }
    }
    assert_eq!(progress, (0..count).collect::<Vec<_>>());
    // The client resumes on B after the last event it read: exactly the rest.
    let resp = get(&c, &b.url(), &sid)
        .header("last-event-id", last.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut r = SseReader::new(resp);
    let run = read_progress(&mut r).await;
    assert_eq!(run.progress, (2..count).collect::<Vec<_>>());
    assert_eq!(run.result.unwrap()["id"], 7);
}

/// The stream's holder is held up longer than its lease (its client stops reading and the
/// send deadline is several times the lease); the client resumes on the other instance, which
/// takes the stream over from the last recorded upstream event. When the first holder wakes
/// it finds its lease gone and stops: every upstream event is stored exactly once, in order,
/// and the client gets exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_up_holder_stops_after_a_takeover() {
    let f = fake_upstream().await;
    f.open_resume_gate();
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let tweak = |mut c: ProxyConfig| {
        c.stream_lease = Duration::from_millis(600);
        c.client_send_timeout = Duration::from_secs(4);
        // Only the POST stream has a pump, so A's pump count says when it stopped.
        c.open_standalone_stream = false;
        c
    };
    let a = start_proxy(tweak(config(http(&f), "a")), store.clone()).await;
    let b = start_proxy(tweak(config(http(&f), "b")), store.clone()).await;
    let c = Client::new("2025-11-25");
    let sid = c.initialize(&a.url()).await;
    let id = SessionId::new(&sid).unwrap();
    // 300 events of ~64 KiB: more than the client channel and socket buffers hold.
    let count = 300u64;
    let resp = c
        .post_req(
            &a.url(),
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":"held","method":"tools/call",
                    "params":{"name":"resumable","arguments":{"count":count,"pad":65536}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stalled = SseReader::new(resp);
    let mut last = None;
    while last.is_none() {
        let ev = stalled.next().await.unwrap();
        if !ev.data.is_empty() {
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            assert_eq!(v["params"]["progress"], 0);
            last = ev.id;
        }
    }
    // Stop reading on A (the response stays open) and resume on B after event 0.
    let resp = get(&c, &b.url(), &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", last.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut r = SseReader::new(resp);
    let run = read_progress(&mut r).await;
    assert_eq!(
        run.progress,
        (1..count).collect::<Vec<_>>(),
        "the client gets exactly the rest, in order"
    );
    assert_eq!(run.result.unwrap()["id"], "held");
    // (Under heavy load B's own pump may miss a renewal and B take the stream over again:
    // still exactly once, from the last recorded event.)
    let metrics_b = b.handle.metrics();
    assert!(
        metrics_b.stream_takeovers.get() >= 1,
        "B took the stream over"
    );
    // A wakes (its client send times out), finds its lease gone and stops.
    let metrics_a = a.handle.metrics();
    wait_for_async(|| async { metrics_a.open_pumps.get() == 0 }).await;
    assert!(
        metrics_a.clients_detached.get() >= 1,
        "A's client was detached"
    );
    assert!(
        metrics_a.leases_lost.get() >= 1,
        "A's pump stopped on its lease"
    );
    drop(stalled);
    // Exactly once, in order, in the store: progress 0..count, then one result.
    let mut progress = Vec::new();
    let mut results = 0;
    for (_, v) in stored_server_messages(&*store, &id).await {
        if let Some(p) = v["params"]["progress"].as_u64() {
            progress.push(p);
        } else if v["id"] == "held" {
            results += 1;
        }
    }
    assert_eq!(
        progress,
        (0..count).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert_eq!(results, 1);
    assert!(
        !f.state.lock().unwrap().resumes.is_empty(),
        "the upstream was resumed"
    );
}

// ------------------------------------------------------------------- request bounds

/// A request whose upstream does not answer within `request_timeout` gets a 504 with a
/// JSON-RPC error body at the deadline, not at the upstream's answer; with
/// `max_concurrent_requests` 1 a second request waits for the slot until the first one's
/// deadline frees it, then passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_end_at_their_deadline_and_wait_for_a_slot() {
    let f = fake_upstream().await;
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let mut cfg = config(http(&f), "a");
    cfg.request_timeout = Duration::from_millis(600);
    cfg.max_concurrent_requests = 1;
    let a = start_proxy(cfg, store).await;
    let c = Client::new("2025-11-25");
    let sid = c.initialize(&a.url()).await;
    let slow = |id: u64, ms: u64| {
        c.post_req(
            &a.url(),
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                    "params":{"name":"slow","arguments":{"ms":ms}}}),
        )
        .send()
    };
    let started = std::time::Instant::now();
    let (first, second) = tokio::join!(
        async {
            let r = slow(1, 20_000).await;
            (r, started.elapsed())
        },
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let queued = std::time::Instant::now();
            let r = slow(2, 0).await;
            (r, queued.elapsed())
        }
    );
    let (first, first_took) = first;
    let resp = first.unwrap();
    assert_eq!(resp.status(), 504);
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(v["jsonrpc"], "2.0", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("timeout"),
        "{v}"
    );
    assert!(
        first_took < Duration::from_secs(10),
        "ended at its deadline, not at the upstream's answer (20 s): {first_took:?}"
    );
    assert_eq!(a.handle.metrics().requests_timed_out.get(), 1);
    let (second, second_took) = second;
    let resp = second.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the queued call passes once the slot is free"
    );
    assert!(
        second_took >= Duration::from_millis(300),
        "it waited for the slot (held until the first call's deadline): {second_took:?}"
    );
}

// ---------------------------------------------------------------- zero-config event ids

/// A stream cut on A resumes on B: with `key_of` giving each instance its event id key.
/// Returns the status of the resuming GET on B and the progress it got.
async fn resume_across(
    store_a: Arc<dyn SessionStore>,
    store_b: Arc<dyn SessionStore>,
    key_a: shoal_proxy::EventIdKey,
    key_b: shoal_proxy::EventIdKey,
) -> (u16, Vec<u64>) {
    let f = fake_upstream().await;
    let a = start_proxy(config(http(&f), "a").with_event_id_key(key_a), store_a).await;
    let b = start_proxy(config(http(&f), "b").with_event_id_key(key_b), store_b).await;
    let c = Client::new("2025-11-25");
    let sid = c.initialize(&a.url()).await;
    let resp = c
        .post_req(
            &a.url(),
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
                    "params":{"name":"stream","arguments":{"count":5}}}),
        )
        .send()
        .await
        .unwrap();
    let mut r = SseReader::new(resp);
    let mut last = None;
    while last.is_none() {
        let ev = r.next().await.unwrap();
        if !ev.data.is_empty() {
            last = ev.id;
        }
    }
    drop(r);
    let resp = get(&c, &b.url(), &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", last.unwrap())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status != 200 {
        return (status, Vec::new());
    }
    let mut r = SseReader::new(resp);
    (status, read_progress(&mut r).await.progress)
}

/// Two instances started without a key agree on one through the store (Redis: two separate
/// connections to one server), so a stream cut on one resumes on the other; with a random
/// key each (what they had before), the resume is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_without_a_key_agree_on_one_through_the_store() {
    let server = shoal_testkit::redis_server::RedisServer::start();
    let connect = || async {
        let store =
            shoal_redis::RedisStore::connect_default(shoal_redis::RedisConfig::new(server.url()))
                .await
                .unwrap();
        Arc::new(store) as Arc<dyn SessionStore>
    };
    let (store_a, store_b) = (connect().await, connect().await);
    let key_a = shoal_proxy::EventIdKey::shared(&*store_a, shoal_proxy::EVENT_ID_KEY_NAME)
        .await
        .unwrap();
    let key_b = shoal_proxy::EventIdKey::shared(&*store_b, shoal_proxy::EVENT_ID_KEY_NAME)
        .await
        .unwrap();
    assert_eq!(key_a, key_b, "one key for the fleet");
    let (status, progress) = resume_across(store_a.clone(), store_b.clone(), key_a, key_b).await;
    assert_eq!(status, 200);
    assert_eq!(
        progress,
        vec![1, 2, 3, 4],
        "the rest of the stream, on the other instance"
    );
    // Control: a random key per instance cannot resume across them.
    let (status, _) = resume_across(
        store_a,
        store_b,
        shoal_proxy::EventIdKey::random(),
        shoal_proxy::EventIdKey::random(),
    )
    .await;
    assert_eq!(status, 400, "ids signed by A's own key are refused by B");
}

// --------------------------------------------------------------------------- keep-alive

/// A quiet stream gets a comment every `sse_keepalive`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_streams_get_keep_alive_comments() {
    let f = fake_upstream().await;
    let mut cfg = config(http(&f), "a");
    cfg.sse_keepalive = Duration::from_millis(50);
    let a = start_proxy(cfg, Arc::new(MemoryStore::new())).await;
    let c = Client::new("2025-06-18");
    let sid = c.initialize(&a.url()).await;
    let mut resp = get(&c, &a.url(), &sid).send().await.unwrap();
    let mut seen = String::new();
    tokio::time::timeout(WAIT, async {
        while seen.matches(": keep-alive").count() < 2 {
            let chunk = resp.chunk().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap();
    assert!(a.handle.metrics().keepalives_sent.get() >= 2);
}
