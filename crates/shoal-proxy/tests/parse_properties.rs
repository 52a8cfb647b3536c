//! Property tests over what the proxy reads from a client it does not trust: random header
//! values, bodies and `Last-Event-ID`s, first against the parsing functions (many cases), then
//! against a running proxy over TCP (every answer is a well-formed HTTP answer with a JSON-RPC
//! error on refusal, and the proxy keeps serving). "No panic in N cases": a panic fails the
//! case, and proptest shrinks it to a minimal input.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use common::*;
use proptest::prelude::*;
use shoal_core::MemoryStore;
use shoal_proxy::{
    UpstreamConfig,
    event_id::EventIdCodec,
    protocol::{self, Body},
    sse::SseParser,
};

/// Cases of the pure parsing property (fast: microseconds each).
const PARSE_CASES: u32 = 5_000;
/// Cases of the whole-proxy property (one HTTP request each, under 1 ms).
const PROXY_CASES: u32 = 2_000;

/// Header values as clients send them, valid or not: text, JSON fragments, control bytes,
/// long runs, numbers, the names the proxy cares about.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[ -~]{0,40}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..64),
        Just(b"2025-11-25".to_vec()),
        Just(b"application/json, text/event-stream".to_vec()),
        Just(b"http://localhost:1".to_vec()),
        "p[0-9]{1,3}\\.[0-9]{1,20}\\.[A-Za-z0-9_-]{0,30}".prop_map(String::into_bytes),
        "[ -~]{200,2000}".prop_map(String::into_bytes),
    ]
}

fn header_map() -> impl Strategy<Value = HeaderMap> {
    let names = prop::sample::select(vec![
        "accept",
        "content-type",
        "origin",
        "host",
        "mcp-protocol-version",
        "mcp-session-id",
        "last-event-id",
        "mcp-method",
        "mcp-name",
        "authorization",
        "connection",
        "x-forwarded-for",
    ]);
    prop::collection::vec((names, header_value()), 0..8).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                h.append(HeaderName::from_static(k), v);
            }
        }
        h
    })
}

/// Bodies: arbitrary bytes, JSON-RPC-shaped values with odd ids, methods and params, batches.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "[ -~]{0,20}".prop_map(serde_json::Value::from),
        Just(serde_json::json!({"nested": [1, 2]})),
    ];
    let method = prop_oneof![
        Just("initialize".to_owned()),
        Just("tools/call".to_owned()),
        Just("notifications/initialized".to_owned()),
        Just("server/discover".to_owned()),
        "[ -~]{0,30}",
    ];
    let message = (id, method, any::<bool>(), any::<bool>()).prop_map(|(id, m, has_id, result)| {
        let mut o = serde_json::json!({"jsonrpc": "2.0", "method": m,
            "params": {"protocolVersion": "2025-11-25", "name": "x", "_meta": {"protocolVersion": "2026-07-28"}}});
        if has_id {
            o["id"] = id;
        }
        if result {
            o["result"] = serde_json::json!({});
        }
        o
    });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        message.clone().prop_map(|m| m.to_string().into_bytes()),
        prop::collection::vec(message, 0..4)
            .prop_map(|ms| serde_json::Value::Array(ms).to_string().into_bytes()),
        "[ -~]{0,200}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: PARSE_CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every parser the request path uses returns (an answer or a refusal) for any input.
    #[test]
    fn request_parsing_never_panics(
        headers in header_map(),
        body in body(),
        last_event_id in "[ -~]{0,80}",
        sse in prop::collection::vec(any::<u8>(), 0..512),
        upstream in "[ -~]{0,60}",
    ) {
        let allowed = vec!["localhost".to_owned(), "mcp.example.com:443".to_owned()];
        let _ = protocol::version_header(&headers);
        let _ = protocol::accepts(&headers, "text/event-stream");
        let _ = protocol::is_json_content_type(headers.get("content-type"));
        let _ = protocol::origin_allowed(&headers, &allowed);
        let _ = protocol::host_allowed(&headers, Some(&last_event_id), &allowed);
        let _ = protocol::is_empty_batch(&body);
        if let Some(parsed) = Body::parse(&body) {
            let _ = parsed.kinds();
            let _ = protocol::check_mirrored_headers(&headers, &parsed);
            for m in &parsed.messages {
                let _ = protocol::classify(m);
                let _ = protocol::response_ids(m);
                let _ = protocol::meta_revision(m);
            }
        }
        let codec = EventIdCodec::new(&key());
        let decoded = codec.decode("session-1", &last_event_id);
        // A random id is never accepted (the MAC protects it).
        prop_assert!(decoded.is_err(), "accepted {last_event_id:?}");
        let mut parser = SseParser::new(1024);
        let _ = parser.push(&sse);
        parser.finish();
        let _ = UpstreamConfig::parse(&upstream);
    }
}

/// One case against the running proxy: the answer is an HTTP status the proxy uses; a refusal
/// carries a JSON-RPC error body.
async fn one_request(
    c: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
    get: bool,
) {
    let mut req = if get {
        c.get(url)
    } else {
        c.post(url).body(body)
    };
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        // reqwest refuses some header combinations itself (e.g. a bad Host): nothing was sent.
        Err(e) if e.is_builder() || e.is_request() => return,
        Err(e) => panic!("the proxy did not answer: {e}"),
    };
    let status = resp.status().as_u16();
    assert!(
        [
            200, 202, 400, 401, 403, 404, 405, 406, 413, 415, 429, 502, 503
        ]
        .contains(&status),
        "unexpected status {status}"
    );
    if status >= 400 {
        let text = resp.text().await.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("status {status} without a JSON-RPC error ({e}): {text}"));
        assert!(v["error"]["code"].is_i64(), "{v}");
    }
}

/// Random requests (headers, bodies, `Last-Event-ID`) against a proxy in front of the test
/// upstream: each gets a proper answer, and the proxy still serves a real client after them.
#[test]
fn the_proxy_answers_any_request() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (url, base, _f, _p) = rt.block_on(async {
        let f = fake_upstream().await;
        let mut cfg = config(UpstreamConfig::Http { url: f.url() }, "fuzz");
        cfg.quota.sessions_per_address_per_minute = 0;
        let p = start_proxy(cfg, Arc::new(MemoryStore::new())).await;
        (p.url(), p.base(), f, p)
    });
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: PROXY_CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(header_map(), body(), any::<bool>()),
            |(headers, body, get)| {
                rt.block_on(one_request(&http, &url, &headers, body, get));
                Ok(())
            },
        )
        .unwrap();
    eprintln!(
        "{PROXY_CASES} random requests answered in {:?}",
        started.elapsed()
    );
    rt.block_on(async {
        let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(health.status(), 200);
        let c = Client::new("2025-11-25");
        let sid = c.initialize(&url).await;
        assert!(!sid.is_empty(), "a real client still gets a session");
    });
}
