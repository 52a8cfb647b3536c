//! Two in-process replicas of an rmcp server on one real Redis, driven over HTTP: the 2025
//! session protocol (initialize on A, requests on B, a progress stream cut on A and resumed on
//! B, a message of no request sent by A's worker on the client's standalone stream open on B,
//! DELETE on B → 404 on A) and the 2026-07-28 stateless protocol (a request's stream cut on
//! A and resumed with `Last-Event-ID` on B).
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use axum::serve::ListenerExt as _;
use futures_util::StreamExt as _;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::wrapper::Parameters,
    model::{
        CallToolResult, ContentBlock, ProgressNotificationParam, ServerCapabilities, ServerConfig,
    },
    schemars::{self, JsonSchema},
    service::RequestContext,
    tool, tool_handler, tool_router,
    transport::streamable_http_server::StreamableHttpService,
};
use serde::Deserialize;
use serde_json::{Value, json};
use shoal_redis::stack::StackConfig;
use shoal_rmcp::ShoalRmcp;
use shoal_testkit::redis_server::RedisServer;

#[derive(Debug, Deserialize, JsonSchema)]
struct CountArgs {
    steps: u32,
    interval_ms: u64,
}

#[derive(Clone)]
struct Counter;

#[tool_router]
impl Counter {
    #[tool(description = "Count to `steps` with a progress notification per step")]
    async fn count(
        &self,
        Parameters(args): Parameters<CountArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let token = ctx.meta.get_progress_token();
        for step in 1..=args.steps.min(50) {
            tokio::time::sleep(Duration::from_millis(args.interval_ms.min(500))).await;
            if let Some(token) = &token {
                let p = ProgressNotificationParam::new(token.clone(), f64::from(step));
                let _ = ctx.peer.notify_progress(p).await;
            }
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "counted to {}",
            args.steps
        ))]))
    }

    #[tool(description = "Tell the client the tool list changed (a message of no request)")]
    async fn announce(&self, ctx: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        ctx.peer
            .notify_tool_list_changed()
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(CallToolResult::success(vec![ContentBlock::text(
            "announced",
        )]))
    }
}

#[tool_handler]
impl ServerHandler for Counter {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::default();
        info.capabilities = ServerCapabilities::builder().enable_tools().build();
        info
    }
}

/// A replica on `redis`; `stateless` serves the 2026-07-28 protocol only.
async fn replica(redis: &str, stateless: bool) -> (String, ShoalRmcp) {
    let shoal = ShoalRmcp::open_with(redis, &StackConfig::default(), ShoalRmcp::builder())
        .await
        .unwrap();
    let config = shoal.server_config().with_legacy_session_mode(!stateless);
    let mcp = StreamableHttpService::new(|| Ok(Counter), shoal.session_manager(), config);
    let app = axum::Router::new().nest_service("/mcp", mcp);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, shoal)
}

/// SSE events (id, data as JSON or null) of `resp`, until `stop` says so or the stream ends.
async fn events(
    resp: reqwest::Response,
    mut stop: impl FnMut(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut out: Vec<(String, Value)> = Vec::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut id = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if id.is_empty() && data.is_empty() {
                    continue;
                }
                out.push((id, serde_json::from_str(&data).unwrap_or(Value::Null)));
                if stop(&out) {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the stream in time");
    out
}

fn progress(events: &[(String, Value)]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|(_, v)| v.pointer("/params/progress").and_then(Value::as_f64))
        .map(|p| p as u64)
        .collect()
}

fn has_result(events: &[(String, Value)]) -> bool {
    events.iter().any(|(_, v)| v.get("result").is_some())
}

/// A GET with `Last-Event-ID` (and the session, if any) on `url`: the rest of a stream.
async fn resume(
    http: &reqwest::Client,
    url: &str,
    version: &str,
    session: Option<&str>,
    last: &str,
) -> Vec<(String, Value)> {
    let mut get = http
        .get(url)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", version)
        .header("last-event-id", last);
    if let Some(sid) = session {
        get = get.header("mcp-session-id", sid);
    }
    events(get.send().await.unwrap(), |_| false).await
}

/// An HTTP client. In a workspace build reqwest may be built without a TLS provider (the
/// proxy's `rustls-no-provider`): install ring first, as the proxy does.
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn post(http: &reqwest::Client, url: &str, version: &str) -> reqwest::RequestBuilder {
    http.post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2025_session_moves_between_replicas() {
    let redis = RedisServer::start();
    let (a, _ka) = replica(&redis.url(), false).await;
    let (b, _kb) = replica(&redis.url(), false).await;
    let http = http_client();
    const V: &str = "2025-06-18";
    let init = post(&http, &a, V)
        .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": V, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    drop(init);
    let with_sid = |r: reqwest::RequestBuilder| r.header("mcp-session-id", &sid);
    let r = with_sid(post(&http, &b, V))
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "B restores the session it never saw");

    // The progress stream: cut on A after two notifications, resumed on B.
    let call = with_sid(post(&http, &a, V))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "count", "arguments": {"steps": 6, "interval_ms": 80}, "_meta": {"progressToken": "p"}}}))
        .send()
        .await
        .unwrap();
    let before = events(call, |e| progress(e).len() == 2).await;
    let last = before.last().unwrap().0.clone();
    let after = resume(&http, &b, V, Some(&sid), &last).await;
    let mut all = progress(&before);
    all.extend(progress(&after));
    assert_eq!(
        all,
        vec![1, 2, 3, 4, 5, 6],
        "every notification exactly once: {after:?}"
    );
    assert!(has_result(&after), "then the result");

    // The client's standalone stream is on B; a message of no request sent by A's worker
    // reaches it (the stream is served from the store, not from B's worker alone).
    let standalone = with_sid(http.get(&b))
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", V)
        .send()
        .await
        .unwrap();
    assert!(standalone.status().is_success(), "{}", standalone.status());
    let listen = tokio::spawn(events(standalone, |e| {
        e.iter()
            .any(|(_, v)| v["method"] == "notifications/tools/list_changed")
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let announced = with_sid(post(&http, &a, V))
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "announce", "arguments": {}}}))
        .send()
        .await
        .unwrap();
    let answer = events(announced, |e| e.iter().any(|(_, v)| v.get("id").is_some())).await;
    assert!(has_result(&answer), "{answer:?}");
    let heard = listen.await.unwrap();
    let changed: Vec<_> = heard
        .iter()
        .filter(|(_, v)| v["method"] == "notifications/tools/list_changed")
        .collect();
    assert_eq!(changed.len(), 1, "once, on B's stream: {heard:?}");
    assert!(
        changed[0].0.contains("/common."),
        "a resumable id: {}",
        changed[0].0
    );

    // DELETE on B; A answers 404.
    let d = with_sid(http.delete(&b))
        .header("mcp-protocol-version", V)
        .send()
        .await
        .unwrap();
    assert!(d.status().is_success(), "{}", d.status());
    let gone = with_sid(post(&http, &a, V))
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2026_stateless_stream_resumes_on_another_replica() {
    let redis = RedisServer::start();
    let (a, _ka) = replica(&redis.url(), true).await;
    let (b, _kb) = replica(&redis.url(), true).await;
    let http = http_client();
    const V: &str = "2026-07-28";
    let call = post(&http, &a, V)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "count")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "count", "arguments": {"steps": 5, "interval_ms": 80},
            "_meta": {
                "progressToken": "p",
                "io.modelcontextprotocol/protocolVersion": V,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}}}),
        )
        .send()
        .await
        .unwrap();
    if !call.status().is_success() {
        panic!("{}: {}", call.status(), call.text().await.unwrap());
    }
    let before = events(call, |e| progress(e).len() == 2).await;
    let last = before
        .iter()
        .rev()
        .find(|(id, _)| !id.is_empty())
        .unwrap()
        .0
        .clone();
    assert!(last.starts_with("rmcp-stream-"), "{last}");
    let after = resume(&http, &b, V, None, &last).await;
    let mut all = progress(&before);
    all.extend(progress(&after));
    assert_eq!(
        all,
        vec![1, 2, 3, 4, 5],
        "every notification exactly once: {after:?}"
    );
    assert!(has_result(&after));
}
