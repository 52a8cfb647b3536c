//! The Streamable HTTP rules the proxy enforces, one by one, against the in-process server.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::*;
use serde_json::{Value, json};
use shoal_core::{MemoryStore, SessionId, SessionStore};
use shoal_proxy::UpstreamConfig;

struct Env {
    f: Fake,
    p: Proxy,
    c: Client,
    store: Arc<dyn SessionStore>,
}

async fn env(version: &str) -> Env {
    env_with(version, |_| {}).await
}

async fn env_with(version: &str, tweak: impl FnOnce(&mut shoal_proxy::ProxyConfig)) -> Env {
    let f = fake_upstream().await;
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let mut cfg = config(UpstreamConfig::Http { url: f.url() }, "a");
    tweak(&mut cfg);
    let p = start_proxy(cfg, store.clone()).await;
    Env {
        f,
        p,
        c: Client::new(version),
        store,
    }
}

fn ping(id: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"ping"})
}

#[tokio::test]
async fn session_id_rules() {
    let e = env("2025-06-18").await;
    let url = e.p.url();
    // Missing on a non-initialize request: 400.
    let r = e.c.post_req(&url, None, &ping(1)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Unknown or malformed: 404.
    for bad in ["0123456789abcdef0123456789abcdef", "has{brace", "x"] {
        let r =
            e.c.post_req(&url, Some(bad), &ping(1))
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 404, "{bad}");
    }
    // initialize carrying a session id is refused.
    let sid = e.c.initialize(&url).await;
    let init = json!({"jsonrpc":"2.0","id":9,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"0"}}});
    let r = e.c.post_req(&url, Some(&sid), &init).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Ids are CSPRNG hex, distinct per session.
    let sid2 = e.c.initialize(&url).await;
    assert_ne!(sid, sid2);
    assert!(sid.bytes().all(|b| b.is_ascii_hexdigit()) && sid.len() == 32);
}

#[tokio::test]
async fn protocol_version_header_rules() {
    let e = env("2025-06-18").await;
    let url = e.p.url();
    let sid = e.c.initialize(&url).await;
    let r =
        e.c.post_req(&url, None, &ping(1))
            .header("mcp-session-id", &sid)
            .header("mcp-protocol-version", "1999-01-01")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
    // Absent: accepted (the negotiated revision applies).
    let r =
        e.c.post_req(&url, None, &ping(2))
            .header("mcp-session-id", &sid)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    // On initialize too.
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"0"}}});
    let r =
        e.c.post_req(&url, None, &init)
            .header("mcp-protocol-version", "nope")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn origin_accept_and_content_type_rules() {
    let e = env("2025-06-18").await;
    let url = e.p.url();
    let sid = e.c.initialize(&url).await;
    let r =
        e.c.post_req(&url, Some(&sid), &ping(1))
            .header("origin", "http://evil.example")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 403);
    let r =
        e.c.http
            .get(&url)
            .header("origin", "http://evil.example")
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 403);
    let r =
        e.c.post_req(&url, Some(&sid), &ping(2))
            .header("origin", "http://localhost:5173")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    // Accept must list both types on POST.
    let r =
        e.c.http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .header("mcp-session-id", &sid)
            .body(ping(3).to_string())
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 406);
    // GET needs text/event-stream.
    let r =
        e.c.http
            .get(&url)
            .header("accept", "application/json")
            .header("mcp-session-id", &sid)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 406);
    // Content-Type.
    let r =
        e.c.http
            .post(&url)
            .header("content-type", "text/plain")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &sid)
            .body(ping(4).to_string())
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 415);
    // Not JSON; not JSON-RPC.
    for body in ["{", "{\"hello\":1}", "[]"] {
        let r =
            e.c.http
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", &sid)
                .body(body)
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert!(v["error"]["code"].is_i64());
    }
    // Other methods: 405.
    let r = e.c.http.put(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn notifications_and_responses_get_202() {
    let e = env("2025-06-18").await;
    let url = e.p.url();
    let sid = e.c.initialize(&url).await;
    let r =
        e.c.post_req(
            &url,
            Some(&sid),
            &json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r =
        e.c.post_req(
            &url,
            Some(&sid),
            &json!({"jsonrpc":"2.0","id":"srv-1","result":{}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn batches_only_where_the_revision_allows() {
    let batch = json!([ping(1), ping(2)]);
    let e = env("2025-06-18").await;
    let sid = e.c.initialize(&e.p.url()).await;
    let r =
        e.c.post_req(&e.p.url(), Some(&sid), &batch)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);

    let e = env("2025-03-26").await;
    let sid = e.c.initialize(&e.p.url()).await;
    let r =
        e.c.post_req(&e.p.url(), Some(&sid), &batch)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let id = SessionId::new(&sid).unwrap();
    wait_for_async(|| async { e.store.list_pending(&id).await.unwrap().is_empty() }).await;
    // initialize never in a batch.
    let init = json!([{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}]);
    let r = e.c.post_req(&e.p.url(), None, &init).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn sessionless_revision_passes_through_and_refuses_get_delete() {
    let e = env("2026-07-28").await;
    let url = e.p.url();
    let r =
        e.c.http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/list")
            .header("mcp-session-id", "ignored")
            .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}).to_string())
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("mcp-session-id").is_none());
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["result"]["tools"][0]["name"], "echo");
    assert_eq!(e.store.count(&Default::default()).await.unwrap(), 0);
    for m in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r =
            e.c.http
                .request(m.clone(), &url)
                .header("accept", "text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), 405, "{m}");
    }
    // Mirrored headers that are missing or disagree with the body never reach the upstream.
    let methods_before = e.f.state.lock().unwrap().methods.len();
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}});
    for (method, name) in [
        (Some("tools/call"), Some("delete_everything")),
        (Some("tools/list"), Some("echo")),
        (Some("tools/call"), None),
        (None, None),
    ] {
        let mut req =
            e.c.http
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28");
        if let Some(m) = method {
            req = req.header("mcp-method", m);
        }
        if let Some(n) = name {
            req = req.header("mcp-name", n);
        }
        let r = req.body(call.to_string()).send().await.unwrap();
        assert_eq!(r.status(), 400, "{method:?} {name:?}");
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(v["error"]["code"], -32020, "{method:?} {name:?}");
    }
    assert_eq!(e.f.state.lock().unwrap().methods.len(), methods_before);
}

#[tokio::test]
async fn an_empty_batch_is_an_invalid_request() {
    let e = env("2025-03-26").await;
    let sid = e.c.initialize(&e.p.url()).await;
    let r =
        e.c.post_req(&e.p.url(), Some(&sid), &json!([]))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["error"]["code"], -32600);
}

#[tokio::test]
async fn last_event_id_must_belong_to_the_session() {
    let e = env("2025-11-25").await;
    let url = e.p.url();
    let s1 = e.c.initialize(&url).await;
    let s2 = e.c.initialize(&url).await;
    let resp =
        e.c.post_req(
            &url,
            Some(&s1),
            &json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"stream","arguments":{"count":1}}}),
        )
        .send()
        .await
        .unwrap();
    let mut r = SseReader::new(resp);
    let prime = r.next().await.unwrap();
    let id = prime.id.unwrap();
    while r.next().await.is_some() {}
    let get = |sid: &str, lei: &str| {
        e.c.http
            .get(&url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", sid)
            .header("last-event-id", lei)
    };
    assert_eq!(get(&s2, &id).send().await.unwrap().status(), 400);
    let tampered = id.replacen(".0.", ".1.", 1);
    assert_eq!(get(&s1, &tampered).send().await.unwrap().status(), 400);
    assert_eq!(get(&s1, "garbage").send().await.unwrap().status(), 400);
    assert_eq!(get(&s1, &id).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn limits_body_size_and_streams_per_session() {
    let e = env_with("2025-06-18", |c| {
        c.max_body_bytes = 1024;
        c.max_streams_per_session = 1;
    })
    .await;
    let url = e.p.url();
    let sid = e.c.initialize(&url).await;
    let big = json!({"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"x".repeat(4096)}});
    let r = e.c.post_req(&url, Some(&sid), &big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["error"]["code"], -32600, "a JSON-RPC error body: {v}");
    let open = || {
        e.c.http
            .get(&url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid)
            .send()
    };
    let first = open().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = open().await.unwrap();
    assert_eq!(second.status(), 429);
    drop(first);
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let e = env("2025-06-18").await;
    let sid = e.c.initialize(&e.p.url()).await;
    e.c.call(&e.p.url(), &sid, 1, "ping", json!({})).await;
    let base = e.p.base();
    assert_eq!(
        e.c.http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        e.c.http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let text =
        e.c.http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert!(
        text.contains("shoal_proxy_sessions_created_total 1"),
        "{text}"
    );
    assert!(
        text.contains("shoal_proxy_requests_total{method=\"POST\"} 3"),
        "{text}"
    );
}

#[tokio::test]
async fn initialize_answered_over_sse() {
    // The fake upstream answers over SSE when asked by a header the proxy forwards only when
    // told to.
    let e = env_with("2025-11-25", |c| {
        c.forward_headers = vec!["x-test-sse-init".into()]
    })
    .await;
    let url = e.p.url();
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"0"}}});
    let resp =
        e.c.post_req(&url, None, &init)
            .header("x-test-sse-init", "1")
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let sid = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut r = SseReader::new(resp);
    let prime = r.next().await.unwrap();
    assert!(prime.data.is_empty() && prime.id.is_some());
    let ev = r.next().await.unwrap();
    assert!(
        ev.id.unwrap().contains('.'),
        "our event id, not the upstream's"
    );
    let v: Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(v["result"]["protocolVersion"], "2025-11-25");
    assert!(r.next().await.is_none());
    let s = e
        .store
        .get(&SessionId::new(&sid).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.upstream_session_id.as_deref(), Some("up-1"));
    drop(e.f);
}

#[tokio::test]
async fn sessions_are_bound_to_their_principal() {
    let e = env("2025-06-18").await;
    let url = e.p.url();
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"0"}}});
    let resp =
        e.c.post_req(&url, None, &init)
            .header("authorization", "Bearer secret-token-1")
            .send()
            .await
            .unwrap();
    let sid = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let s = e
        .store
        .get(&SessionId::new(&sid).unwrap())
        .await
        .unwrap()
        .unwrap();
    let p = s.principal.unwrap();
    assert!(
        p.starts_with("token-sha256:") && !p.contains("secret"),
        "{p}"
    );
    let with = |tok: Option<&str>| {
        let mut r = e.c.post_req(&url, Some(&sid), &ping(1));
        if let Some(t) = tok {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.send()
    };
    assert_eq!(with(Some("secret-token-2")).await.unwrap().status(), 404);
    assert_eq!(with(None).await.unwrap().status(), 404);
    assert_eq!(with(Some("secret-token-1")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn upstream_down_is_502() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    // A port nothing listens on.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/mcp", l.local_addr().unwrap());
    drop(l);
    let p = start_proxy(config(UpstreamConfig::Http { url: dead }, "a"), store).await;
    let c = Client::new("2025-06-18");
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"0"}}});
    let r = c.post_req(&p.url(), None, &init).send().await.unwrap();
    assert_eq!(r.status(), 502);
}

#[tokio::test]
async fn upstream_losing_the_session_ends_it() {
    let e = env("2025-06-18").await;
    let url = e.p.url();
    let sid = e.c.initialize(&url).await;
    e.f.state.lock().unwrap().sessions.clear();
    let r =
        e.c.post_req(&url, Some(&sid), &ping(1))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        e.store
            .get(&SessionId::new(&sid).unwrap())
            .await
            .unwrap()
            .is_none()
    );
}
