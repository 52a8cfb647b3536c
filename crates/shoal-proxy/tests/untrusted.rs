//! The proxy facing clients it does not trust: session quotas shared by two instances
//! through a real Redis, no stdio process for a refused initialize, the Host allowlist, and
//! the header allowlist towards the upstream.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::*;
use serde_json::{Value, json};
use shoal_core::{MemoryStore, SessionStore};
use shoal_proxy::{ProxyConfig, UpstreamConfig};

const V: &str = "2025-11-25";

fn init_body() -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion": V, "capabilities": {},
        "clientInfo": {"name":"untrusted-test","version":"0"}}})
}

/// POSTs an initialize with extra headers; returns the status, the session id (if any),
/// `Retry-After` and the JSON body.
async fn init_with(
    c: &Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Option<String>, Value) {
    let mut req = c.post_req(url, None, &init_body());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = read_json_or_sse(resp).await;
    (status, sid, retry, body)
}

async fn redis_store(url: &str) -> Arc<dyn SessionStore> {
    Arc::new(
        shoal_redis::RedisStore::connect_default(shoal_redis::RedisConfig::new(url))
            .await
            .unwrap(),
    )
}

fn quota_config(f: &Fake, name: &str) -> ProxyConfig {
    let mut cfg = config(UpstreamConfig::Http { url: f.url() }, name);
    cfg.quota.client_address_header = Some("x-forwarded-for".into());
    cfg.principal_header = Some("x-user".into());
    cfg.quota.sessions_per_address = 0;
    cfg.quota.sessions_per_address_per_minute = 4;
    cfg.quota.sessions_per_principal = 3;
    cfg.quota.sessions_per_principal_per_minute = 0;
    cfg
}

/// One address opening sessions in a loop, alternating between two instances that share a
/// Redis, is cut off after its 4 per minute on both; a client from another address still gets
/// in on both. One principal is cut off at 3 live sessions from any address; a DELETE on the
/// other instance gives one back; another principal still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_quotas_hold_across_two_instances() {
    let server = shoal_testkit::redis_server::RedisServer::start();
    let f = fake_upstream().await;
    let a = start_proxy(quota_config(&f, "a"), redis_store(&server.url()).await).await;
    let b = start_proxy(quota_config(&f, "b"), redis_store(&server.url()).await).await;
    let c = Client::new(V);
    let urls = [a.url(), b.url()];

    // Per address and minute.
    let attacker = [("x-forwarded-for", "10.0.0.1, 198.51.100.7")];
    let mut created = 0;
    let mut refused = Vec::new();
    for i in 0..10 {
        let (status, sid, retry, body) = init_with(&c, &urls[i % 2], &attacker).await;
        match status {
            200 => {
                assert!(sid.is_some());
                created += 1;
            }
            429 => {
                assert!(sid.is_none(), "no session on a refusal");
                let secs: u64 = retry.as_deref().unwrap().parse().unwrap();
                assert!((1..=60).contains(&secs), "Retry-After {secs}");
                assert_eq!(body["error"]["code"], -32000, "{body}");
                let msg = body["error"]["message"].as_str().unwrap();
                assert!(msg.contains("per minute"), "{msg}");
                refused.push(i % 2);
            }
            other => panic!("initialize {i}: status {other}: {body}"),
        }
    }
    assert_eq!(created, 4, "4 per minute across both instances");
    assert!(
        refused.contains(&0) && refused.contains(&1),
        "both instances refuse: {refused:?}"
    );
    let upstream_inits = f.state.lock().unwrap().sessions.len();
    assert_eq!(
        upstream_inits, 4,
        "no upstream work for a refused initialize"
    );
    for url in &urls {
        let (status, ..) = init_with(&c, url, &[("x-forwarded-for", "203.0.113.5")]).await;
        assert_eq!(status, 200, "another address gets in on {url}");
    }

    // Per principal, live: three sessions from three addresses, the fourth refused.
    let mut mallory = Vec::new();
    for i in 0..4 {
        let ip = format!("192.0.2.{}", 10 + i);
        let h = [("x-forwarded-for", ip.as_str()), ("x-user", "mallory")];
        let (status, sid, _, body) = init_with(&c, &urls[i % 2], &h).await;
        if i < 3 {
            assert_eq!(status, 200, "{body}");
            mallory.push(sid.unwrap());
        } else {
            assert_eq!(status, 429, "{body}");
            let msg = body["error"]["message"].as_str().unwrap();
            assert!(
                msg.contains("open sessions") && msg.contains("principal"),
                "{msg}"
            );
        }
    }
    let h = [("x-forwarded-for", "192.0.2.99"), ("x-user", "alice")];
    let (status, ..) = init_with(&c, &urls[1], &h).await;
    assert_eq!(status, 200, "another principal gets in");
    // Ending one of mallory's sessions on the other instance gives its place back.
    let resp = c
        .http
        .delete(&urls[1])
        .header("mcp-session-id", &mallory[0])
        .header("mcp-protocol-version", V)
        .header("x-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = [("x-forwarded-for", "192.0.2.50"), ("x-user", "mallory")];
    let (status, _, _, body) = init_with(&c, &urls[0], &h).await;
    assert_eq!(
        status, 200,
        "a deleted session's place is free again: {body}"
    );
    let metrics = reqwest::get(format!("{}/metrics", a.base()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("shoal_proxy_quota_refusals_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// With a stdio upstream, a refused initialize starts no server process: a wrapper script
/// counts the starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_initialize_starts_no_stdio_process() {
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !python {
        eprintln!("SKIP: python3 is not installed; the stdio fixture needs it");
        return;
    }
    let dir = std::env::temp_dir().join(format!("shoal-untrusted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let starts = dir.join("starts");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stdio_server.py"
    );
    let upstream = UpstreamConfig::Stdio {
        command: "sh".into(),
        args: vec![
            "-c".into(),
            format!(
                "echo started >> '{}'; exec python3 -u '{script}'",
                starts.display()
            ),
        ],
        env: vec![],
    };
    let mut cfg = config(upstream, "s");
    cfg.quota.sessions_per_address_per_minute = 2;
    let p = start_proxy(cfg, Arc::new(MemoryStore::new())).await;
    let c = Client::new(V);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(init_with(&c, &p.url(), &[]).await.0);
    }
    assert_eq!(statuses, vec![200, 200, 429, 429, 429]);
    let started = std::fs::read_to_string(&starts).unwrap_or_default();
    assert_eq!(
        started.lines().count(),
        2,
        "one process per admitted session only"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `Host: evil.example` is refused with 403 before anything else (even with an allowed
/// Origin); the loopback names the proxy listens on pass; a configured list replaces them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_outside_the_allowlist_are_refused() {
    let f = fake_upstream().await;
    let p = start_proxy(
        config(UpstreamConfig::Http { url: f.url() }, "h"),
        Arc::new(MemoryStore::new()),
    )
    .await;
    let c = Client::new(V);
    let (status, _, _, body) = init_with(&c, &p.url(), &[("host", "evil.example")]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["message"], "Forbidden: Host not allowed");
    let port = p.addr.port().to_string();
    let localhost = format!("localhost:{port}");
    let (status, ..) = init_with(&c, &p.url(), &[("host", localhost.as_str())]).await;
    assert_eq!(status, 200);
    assert_eq!(
        f.state.lock().unwrap().sessions.len(),
        1,
        "the refused request reached nothing"
    );

    let mut cfg = config(UpstreamConfig::Http { url: f.url() }, "h2");
    cfg.allowed_hosts = vec!["mcp.example.com".into()];
    let p2 = start_proxy(cfg, Arc::new(MemoryStore::new())).await;
    let (status, ..) = init_with(&c, &p2.url(), &[]).await;
    assert_eq!(status, 403, "127.0.0.1 is not on an explicit list");
    let (status, ..) = init_with(&c, &p2.url(), &[("host", "mcp.example.com")]).await;
    assert_eq!(status, 200);
}

/// A proxy listening on a non-loopback address with no Host list does not start.
#[tokio::test]
async fn a_public_listener_needs_a_host_list() {
    let Ok(listener) = tokio::net::TcpListener::bind("0.0.0.0:0").await else {
        eprintln!("SKIP: cannot bind 0.0.0.0");
        return;
    };
    let cfg = config(
        UpstreamConfig::Http {
            url: "http://127.0.0.1:9/mcp".into(),
        },
        "pub",
    );
    let err = shoal_proxy::prepare(listener, cfg, Arc::new(MemoryStore::new()), async {})
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("allowed_hosts"), "{err}");
}

/// What reaches the upstream is the allowlist: a client-sent principal header, cookies and
/// headers named in `Connection` never do; `Authorization` does unless switched off; a
/// configured principal header carries the trusted layer's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_headers_reach_the_upstream() {
    let f = fake_upstream().await;
    let mut cfg = config(UpstreamConfig::Http { url: f.url() }, "fwd");
    cfg.forward_headers = vec!["x-request-id".into()];
    let p = start_proxy(cfg, Arc::new(MemoryStore::new())).await;
    let c = Client::new(V);
    let spoof = [
        ("x-authenticated-user", "admin"),
        ("x-user", "admin"),
        ("cookie", "session=stolen"),
        ("authorization", "Bearer client-token"),
        ("x-request-id", "r-1"),
        ("x-debug", "1"),
        ("connection", "x-debug, x-request-id"),
    ];
    let (status, ..) = init_with(&c, &p.url(), &spoof).await;
    assert_eq!(status, 200);
    let seen = f.state.lock().unwrap().headers.last().cloned().unwrap();
    let names: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    for absent in [
        "x-authenticated-user",
        "x-user",
        "cookie",
        "x-debug",
        "x-request-id",
        "connection",
        "origin",
    ] {
        assert!(
            !names.contains(&absent),
            "{absent} reached the upstream: {seen:?}"
        );
    }
    assert!(
        seen.contains(&("authorization".into(), "Bearer client-token".into())),
        "{seen:?}"
    );

    let mut cfg = config(UpstreamConfig::Http { url: f.url() }, "fwd2");
    cfg.forward_authorization = false;
    cfg.principal_header = Some("x-user".into());
    let p2 = start_proxy(cfg, Arc::new(MemoryStore::new())).await;
    let (status, ..) = init_with(
        &c,
        &p2.url(),
        &[("x-user", "alice"), ("authorization", "Bearer t")],
    )
    .await;
    assert_eq!(status, 200);
    let seen = f.state.lock().unwrap().headers.last().cloned().unwrap();
    assert!(
        seen.contains(&("x-user".into(), "alice".into())),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|(k, _)| k == "authorization"),
        "switched off: {seen:?}"
    );
}

/// With `require_principal`, a request without one is 401 and reaches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_principal_is_required() {
    let f = fake_upstream().await;
    let mut cfg = config(UpstreamConfig::Http { url: f.url() }, "rp");
    cfg.quota.require_principal = true;
    let p = start_proxy(cfg, Arc::new(MemoryStore::new())).await;
    let c = Client::new(V);
    let (status, _, _, body) = init_with(&c, &p.url(), &[]).await;
    assert_eq!(status, 401, "{body}");
    assert!(f.state.lock().unwrap().sessions.is_empty());
    let (status, ..) = init_with(&c, &p.url(), &[("authorization", "Bearer t")]).await;
    assert_eq!(status, 200);
}

/// A session whose traffic passes its byte budget keeps working: the store refuses the write
/// that would pass it, the proxy deletes the oldest half of the history and records the event;
/// every event reaches the client, none goes unrecorded, and the stored session stays within
/// its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_its_byte_budget_keeps_its_newest_history() {
    let f = fake_upstream().await;
    let mut limits = shoal_core::Limits::default();
    limits.max_frame_bytes = 64 * 1024;
    limits.max_page_bytes = 256 * 1024;
    limits.max_session_bytes = 256 * 1024;
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::builder().limits(limits).build());
    let p = start_proxy(
        config(UpstreamConfig::Http { url: f.url() }, "budget"),
        store.clone(),
    )
    .await;
    let c = Client::new("2025-06-18");
    let sid = c.initialize(&p.url()).await;
    // 40 events of 16 KiB: 640 KiB through a 256 KiB budget.
    let count = 40u64;
    let resp = c
        .post_req(
            &p.url(),
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"stream","arguments":{"count":count,"pad":16384}}}),
        )
        .send()
        .await
        .unwrap();
    let mut r = SseReader::new(resp);
    let run = read_progress(&mut r).await;
    assert_eq!(run.progress, (0..count).collect::<Vec<_>>());
    assert_eq!(run.result.unwrap()["id"], 3);
    let m = p.handle.metrics();
    assert!(m.budget_trims.get() > 0, "history was trimmed");
    assert_eq!(m.frame_errors.get(), 0, "every event was recorded");
    let id = shoal_core::SessionId::new(&sid).unwrap();
    let mut after = 0;
    let mut bytes = 0;
    loop {
        let page = store
            .frames(&id, &shoal_core::FrameQuery::after(after, 1000))
            .await
            .unwrap();
        bytes += page
            .frames
            .iter()
            .map(shoal_core::Frame::size)
            .sum::<usize>();
        after = page.next_after(after);
        if !page.has_more {
            break;
        }
    }
    assert!(bytes <= 256 * 1024, "{bytes} bytes stored");
}

/// Applies the next `create`, then loses its reply (a connection cut mid-reply).
#[derive(Clone, Debug, Default)]
struct LoseCreateReply(Arc<std::sync::atomic::AtomicBool>);

#[async_trait::async_trait]
impl shoal_testkit::forwarding::Hooks for LoseCreateReply {
    type Ticket = bool;

    async fn before(&self, call: shoal_testkit::forwarding::Call<'_>) -> shoal_core::Result<bool> {
        Ok(call.op() == shoal_testkit::forwarding::Op::Create
            && self.0.swap(false, std::sync::atomic::Ordering::SeqCst))
    }

    async fn after(
        &self,
        _: shoal_testkit::forwarding::Op,
        lose: bool,
        _: shoal_testkit::forwarding::Outcome<'_>,
    ) -> Option<shoal_core::Error> {
        lose.then(|| shoal_core::Error::connection_lost("injected: reply cut"))
    }
}

/// An `initialize` whose `create` was applied but not answered fails (503), and the proxy
/// removes the orphan session in the background — its id was never handed out, so it would
/// only hold a place until its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_doubt_create_leaves_no_orphan_session() {
    let f = fake_upstream().await;
    let memory = MemoryStore::new();
    let hooks = LoseCreateReply(Arc::new(std::sync::atomic::AtomicBool::new(true)));
    let store: Arc<dyn SessionStore> = Arc::new(shoal_testkit::forwarding::ForwardingStore::new(
        memory.clone(),
        hooks,
    ));
    let mut p = start_proxy(
        config(UpstreamConfig::Http { url: f.url() }, "orphan"),
        store,
    )
    .await;
    let c = Client::new(V);
    let (status, sid, _, _) = init_with(&c, &p.url(), &[]).await;
    assert_eq!(status, 503, "the lost create reply is an error");
    assert!(sid.is_none());
    assert_eq!(
        memory
            .count(&shoal_core::SessionFilter::default())
            .await
            .unwrap(),
        1,
        "the create was applied"
    );
    // Bounded wait for the background clean-up.
    let mut left = 1;
    for _ in 0..100 {
        left = memory
            .count(&shoal_core::SessionFilter::default())
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "the orphan session was not removed");
    // The next initialize works as usual.
    let (status, sid, _, _) = init_with(&c, &p.url(), &[]).await;
    assert_eq!(status, 200);
    assert!(sid.is_some());
    p.shutdown().await;
}
