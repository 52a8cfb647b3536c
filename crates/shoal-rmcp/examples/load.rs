//! Requests/s and latency of an rmcp server on Shoal: the same tool call against in-process
//! replicas on the memory store, on Redis, on Redis with the hot-session cache, and on two
//! Redis replicas taking turns, in interleaved rounds of the same run.
//!
//! ```text
//! cargo run --release -p shoal-rmcp --example load -- --redis redis://127.0.0.1:6379 \
//!     [--clients 16] [--seconds 2] [--rounds 3]
//! ```
//! Each client initializes its own session, then calls the `add` tool in a closed loop
//! (answered as SSE, as rmcp does by default). Every round runs each setup for `--seconds`;
//! the report is the median of the rounds' requests/s, p50 and p99, and each setup's ratio to
//! the memory store's requests/s in the same round.
//!
//! With `--redis`, then: how long an event stored by one replica takes to reach a replay
//! (a resumed stream) on another — 200 events, 7 ms apart, p50/p99 of store-call start →
//! delivered, beside the replays' fallback poll interval (wake-ups over Redis pub/sub make it
//! much shorter than that).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::serve::ListenerExt as _;
use clap::Parser;
use rmcp::{
    ErrorData, ServerHandler,
    handler::server::wrapper::Parameters,
    model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig},
    schemars::{self, JsonSchema},
    tool, tool_handler, tool_router,
    transport::streamable_http_server::StreamableHttpService,
};
use serde::Deserialize;
use shoal_core::{MemoryStore, SessionStore};
use shoal_redis::stack::StackConfig;
use shoal_rmcp::ShoalRmcp;

#[derive(Parser, Debug)]
struct Args {
    /// A Redis server for the Redis setups (without it only the memory store is measured).
    #[arg(long)]
    redis: Option<String>,
    /// Concurrent clients, each with its own session.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds per setup per round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Rounds (the report is their median).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Clone)]
struct Adder;

#[tool_router]
impl Adder {
    #[tool(description = "Add two integers")]
    async fn add(
        &self,
        Parameters(args): Parameters<AddArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![ContentBlock::text(
            args.a.wrapping_add(args.b).to_string(),
        )]))
    }
}

#[tool_handler]
impl ServerHandler for Adder {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::default();
        info.capabilities = ServerCapabilities::builder().enable_tools().build();
        info
    }
}

/// Serves an rmcp server over `shoal` on a free loopback port; returns its URL.
async fn serve(shoal: &ShoalRmcp) -> String {
    let mcp =
        StreamableHttpService::new(|| Ok(Adder), shoal.session_manager(), shoal.server_config());
    let app = axum::Router::new().nest_service("/mcp", mcp);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    // SSE answers are several small writes: without TCP_NODELAY each waits for a delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

struct Setup {
    name: &'static str,
    urls: Vec<String>,
    _keep: Vec<ShoalRmcp>,
}

const ACCEPT: &str = "application/json, text/event-stream";

async fn post(
    http: &reqwest::Client,
    url: &str,
    sid: Option<&str>,
    body: serde_json::Value,
) -> (Option<String>, String) {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", ACCEPT)
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(sid) = sid {
        req = req.header("mcp-session-id", sid);
    }
    let resp = req.json(&body).send().await.expect("request");
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert!(status.is_success(), "{status}: {text}");
    (sid, text)
}

/// One client: initialize on the first URL, then `add` round robin over `urls` until
/// `deadline`; returns each call's latency in µs.
async fn client(http: reqwest::Client, urls: Vec<String>, deadline: Instant) -> Vec<u64> {
    let (sid, _) = post(
        &http,
        &urls[0],
        None,
        serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "load", "version": "1"}}}),
    )
    .await;
    let sid = sid.expect("session id");
    post(
        &http,
        &urls[0],
        Some(&sid),
        serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    let mut latencies = Vec::new();
    let mut i: u64 = 1;
    while Instant::now() < deadline && i < 1_000_000 {
        let url = &urls[(i as usize) % urls.len()];
        let start = Instant::now();
        let (_, body) = post(
            &http,
            url,
            Some(&sid),
            serde_json::json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": i, "b": 1}}}),
        )
        .await;
        latencies.push(start.elapsed().as_micros() as u64);
        assert!(body.contains(&format!("\"text\":\"{}\"", i + 1)), "{body}");
        i += 1;
    }
    let _ = http
        .delete(&urls[0])
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await;
    latencies
}

struct Round {
    rps: f64,
    p50: f64,
    p99: f64,
}

async fn run(setup: &Setup, clients: usize, seconds: f64) -> Round {
    // In a workspace build reqwest may lack a TLS provider (the proxy's `rustls-no-provider`).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client(http.clone(), setup.urls.clone(), deadline)))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pick = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    Round {
        rps: all.len() as f64 / elapsed,
        p50: pick(0.5),
        p99: pick(0.99),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut setups = Vec::new();
    let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let m = ShoalRmcp::with_store(memory).await.unwrap();
    setups.push(Setup {
        name: "memory",
        urls: vec![serve(&m).await],
        _keep: vec![m],
    });
    if let Some(redis) = &args.redis {
        let plain = StackConfig::default();
        let mut cached = StackConfig::default();
        cached.cache.enabled = true;
        let r = ShoalRmcp::open_with(redis, &plain, ShoalRmcp::builder())
            .await
            .unwrap();
        setups.push(Setup {
            name: "redis",
            urls: vec![serve(&r).await],
            _keep: vec![r],
        });
        let c = ShoalRmcp::open_with(redis, &cached, ShoalRmcp::builder())
            .await
            .unwrap();
        setups.push(Setup {
            name: "redis + cache",
            urls: vec![serve(&c).await],
            _keep: vec![c],
        });
        let a = ShoalRmcp::open_with(redis, &plain, ShoalRmcp::builder())
            .await
            .unwrap();
        let b = ShoalRmcp::open_with(redis, &plain, ShoalRmcp::builder())
            .await
            .unwrap();
        let urls = vec![serve(&a).await, serve(&b).await];
        setups.push(Setup {
            name: "redis, 2 replicas taking turns",
            urls,
            _keep: vec![a, b],
        });
    }
    println!(
        "rmcp `add` tool calls (SSE answers), {} clients, {} s per setup, {} rounds, interleaved",
        args.clients, args.seconds, args.rounds
    );
    let mut results: Vec<Vec<Round>> = setups.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds.max(1) {
        for (i, s) in setups.iter().enumerate() {
            let r = run(s, args.clients, args.seconds).await;
            println!(
                "  round {}: {:<32} {:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms",
                round + 1,
                s.name,
                r.rps,
                r.p50,
                r.p99
            );
            results[i].push(r);
        }
    }
    println!("\nmedian of {} rounds:", args.rounds);
    println!(
        "  {:<32} {:>9} {:>9} {:>9} {:>14}",
        "setup", "req/s", "p50 ms", "p99 ms", "÷ memory req/s"
    );
    let base: Vec<f64> = results[0].iter().map(|r| r.rps).collect();
    for (s, rounds) in setups.iter().zip(&results) {
        let ratio = median(rounds.iter().zip(&base).map(|(r, b)| r.rps / b).collect());
        println!(
            "  {:<32} {:>9.0} {:>9.2} {:>9.2} {:>13.2}x",
            s.name,
            median(rounds.iter().map(|r| r.rps).collect()),
            median(rounds.iter().map(|r| r.p50).collect()),
            median(rounds.iter().map(|r| r.p99).collect()),
            ratio
        );
    }
    if let Some(redis) = &args.redis {
        replay_latency(redis).await;
    }
}

/// Store on replica A → delivered to a replay of the same stream on replica B.
async fn replay_latency(redis: &str) {
    use futures_util::StreamExt as _;
    use rmcp::{
        model::ServerJsonRpcMessage,
        transport::streamable_http_server::session::{
            ServerSseMessage, SessionManager as _, SessionState, SessionStore as _,
        },
    };
    let config = StackConfig::default();
    let open = || ShoalRmcp::open_with(redis, &config, ShoalRmcp::builder());
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    let (id, _worker) = a.session_manager().create_session().await.unwrap();
    let params = serde_json::from_value(serde_json::json!({"protocolVersion": "2025-06-18",
        "capabilities": {}, "clientInfo": {"name": "load", "version": "1"}}))
    .unwrap();
    a.session_store()
        .store(&id, &SessionState::new(params))
        .await
        .unwrap();
    let sid = shoal_core::SessionId::new(&*id).unwrap();
    let stream = "9d1e6c1a-0000-4000-8000-00000000100a";
    let priming = ServerSseMessage::retry(Duration::from_secs(3));
    let first = a
        .event_store()
        .store_in(&sid, stream, &priming)
        .await
        .unwrap();
    let mut replay = b.event_store().replay(&first).await.unwrap();
    let mut latencies = Vec::new();
    for n in 1..=200u32 {
        tokio::time::sleep(Duration::from_millis(7)).await;
        let event: ServerJsonRpcMessage = serde_json::from_value(serde_json::json!({
            "jsonrpc": "2.0", "method": "notifications/progress",
            "params": {"progressToken": "t", "progress": n}}))
        .unwrap();
        let start = Instant::now();
        a.event_store()
            .store_in(&sid, stream, &ServerSseMessage::from_message(event))
            .await
            .unwrap();
        replay
            .next()
            .await
            .expect("the replay delivers every event");
        latencies.push(start.elapsed().as_micros() as u64);
    }
    latencies.sort_unstable();
    let pick =
        |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    println!(
        "\nstored on replica A → delivered to a replay on replica B (200 events): p50 {:.2} ms, p99 {:.2} ms (fallback poll: {} ms)",
        pick(0.5),
        pick(0.99),
        shoal_rmcp::ReplaySettings::default()
            .poll_interval
            .as_millis()
    );
}
