//! Test harness: an honest, minimal MCP Streamable HTTP server (axum), proxies on free loopback
//! ports, and a small client.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::any,
};
use serde_json::{Value, json};
use shoal_core::SessionStore;
use shoal_proxy::{
    EventIdKey, ProxyConfig, UpstreamConfig,
    sse::{SseEvent, SseParser},
};
use tokio::sync::{Notify, mpsc, oneshot};

/// Bounds every wait in the tests; a hang fails instead of blocking CI.
pub const WAIT: Duration = Duration::from_secs(20);

pub const SUPPORTED: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];

/// What the fake upstream saw.
#[derive(Default)]
pub struct UpState {
    next: u64,
    pub sessions: HashSet<String>,
    pub deleted: Vec<String>,
    pub hosts: Vec<String>,
    /// Every request's headers, lowercase names, in arrival order.
    pub headers: Vec<Vec<(String, String)>>,
    pub methods: Vec<String>,
    /// Opens the gate of the `gated` tool.
    pub gate: Arc<Notify>,
    /// Senders of open GET streams per upstream session.
    pub get_streams: HashMap<String, mpsc::Sender<Bytes>>,
    /// GET streams opened so far.
    pub gets: u64,
    /// The `resumable` tool's streams: (count, before_gate, request id, pad bytes) by stream
    /// number.
    pub resumable: HashMap<u64, (u64, u64, Value, usize)>,
    /// Opens the gate of every `resumable` stream (and stays open).
    pub resume_gate: Arc<std::sync::atomic::AtomicBool>,
    /// GETs that resumed a `resumable` stream (their `Last-Event-ID`s).
    pub resumes: Vec<String>,
    /// Responses clients POSTed (answers to the upstream's own requests).
    pub client_responses: Vec<Value>,
}

#[derive(Clone)]
pub struct Fake {
    pub state: Arc<Mutex<UpState>>,
    pub addr: SocketAddr,
}

impl Fake {
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn open_gate(&self) {
        self.state.lock().unwrap().gate.notify_waiters();
        self.state.lock().unwrap().gate.notify_one();
    }

    /// Sends a notification on the upstream GET stream of `upstream_sid`.
    pub async fn notify_get(&self, upstream_sid: &str, n: u64) -> bool {
        let tx = self
            .state
            .lock()
            .unwrap()
            .get_streams
            .get(upstream_sid)
            .cloned();
        match tx {
            Some(tx) => {
                let msg = json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"n":n}}});
                tx.send(sse_event(None, &msg)).await.is_ok()
            }
            None => false,
        }
    }

    /// Opens the gate of every `resumable` stream, for good.
    pub fn open_resume_gate(&self) {
        let g = self.state.lock().unwrap().resume_gate.clone();
        g.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn get_stream_open(&self, upstream_sid: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .get_streams
            .contains_key(upstream_sid)
    }
}

fn sse_event(id: Option<&str>, v: &Value) -> Bytes {
    let mut s = String::new();
    if let Some(id) = id {
        s.push_str(&format!("id: {id}\n"));
    }
    s.push_str(&format!("data: {v}\n\n"));
    Bytes::from(s)
}

fn json_resp(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn sse_resp(rx: mpsc::Receiver<Bytes>) -> Response {
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    let mut r = Body::from_stream(s).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r
}

/// The events of a `resumable` stream from `from` on: progress `r<n>-<i>` for `i < count`
/// (waiting for the resume gate from `before_gate` on), then the result `r<n>-<count>`. The
/// same stream resumed with `Last-Event-ID` continues after the index it names.
fn resumable_events(
    n: u64,
    from: u64,
    (count, before_gate, id, pad): (u64, u64, Value, usize),
    gate: Arc<std::sync::atomic::AtomicBool>,
) -> mpsc::Receiver<Bytes> {
    let pad = "x".repeat(pad);
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        for i in from..=count {
            if i >= before_gate {
                while !gate.load(std::sync::atomic::Ordering::SeqCst) {
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let msg = if i < count {
                json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":i,"message":format!("event {i}{pad}")}})
            } else {
                json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":format!("done {count}")}]}})
            };
            if tx
                .send(sse_event(Some(&format!("r{n}-{i}")), &msg))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    rx
}

/// Starts the fake upstream on a free loopback port.
pub async fn fake_upstream() -> Fake {
    let state = Arc::new(Mutex::new(UpState::default()));
    let app = Router::new()
        .route("/mcp", any(fake_handler))
        .with_state(state.clone());
    let addr = serve_on_loopback(app).await;
    Fake { state, addr }
}

/// Serves `app` on a free loopback port (TCP_NODELAY, as the proxy's own listener); its address.
pub async fn serve_on_loopback(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn fake_handler(
    State(st): State<Arc<Mutex<UpState>>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let seen: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    {
        let mut guard = st.lock().unwrap();
        guard.hosts.push(host);
        guard.headers.push(seen);
    }
    let sid = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let known = |st: &Arc<Mutex<UpState>>, sid: &Option<String>| {
        sid.as_ref()
            .is_some_and(|s| st.lock().unwrap().sessions.contains(s))
    };
    match method {
        Method::GET => {
            if !known(&st, &sid) {
                return StatusCode::NOT_FOUND.into_response();
            }
            let last = headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if let Some(last) = last {
                // Resuming a `resumable` stream: `r<stream>-<index>`.
                let parsed = last
                    .strip_prefix('r')
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(n, i)| Some((n.parse::<u64>().ok()?, i.parse::<u64>().ok()?)));
                let mut g = st.lock().unwrap();
                let Some((n, i)) = parsed else {
                    return StatusCode::BAD_REQUEST.into_response();
                };
                let Some(spec) = g.resumable.get(&n).cloned() else {
                    return StatusCode::NOT_FOUND.into_response();
                };
                g.resumes.push(last.clone());
                let gate = g.resume_gate.clone();
                drop(g);
                return sse_resp(resumable_events(n, i + 1, spec, gate));
            }
            let (tx, rx) = mpsc::channel(16);
            let mut g = st.lock().unwrap();
            g.gets += 1;
            g.get_streams.insert(sid.clone().unwrap(), tx);
            drop(g);
            sse_resp(rx)
        }
        Method::DELETE => {
            if !known(&st, &sid) {
                return StatusCode::NOT_FOUND.into_response();
            }
            let sid = sid.unwrap();
            let mut g = st.lock().unwrap();
            g.sessions.remove(&sid);
            g.deleted.push(sid);
            StatusCode::OK.into_response()
        }
        Method::POST => {
            let v: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) => return StatusCode::BAD_REQUEST.into_response(),
            };
            let sessionless = headers
                .get("mcp-protocol-version")
                .is_some_and(|v| v == "2026-07-28");
            let msgs: Vec<Value> = match &v {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            for m in &msgs {
                if let Some(meth) = m.get("method").and_then(Value::as_str) {
                    st.lock().unwrap().methods.push(meth.to_owned());
                }
            }
            let first = &msgs[0];
            if first.get("method").and_then(Value::as_str) == Some("initialize") {
                let asked = first["params"]["protocolVersion"].as_str().unwrap_or("");
                let version = if SUPPORTED.contains(&asked) {
                    asked
                } else {
                    "2025-06-18"
                };
                let new_sid = {
                    let mut g = st.lock().unwrap();
                    g.next += 1;
                    let s = format!("up-{}", g.next);
                    g.sessions.insert(s.clone());
                    s
                };
                let resp = json!({"jsonrpc":"2.0","id":first["id"],"result":{
                    "protocolVersion": version,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "fake-upstream", "version": "1.0.0"}
                }});
                let sse = headers.get("x-test-sse-init").is_some();
                let mut r = if sse {
                    let (tx, rx) = mpsc::channel(4);
                    tx.try_send(sse_event(Some("u-init"), &resp)).unwrap();
                    drop(tx);
                    sse_resp(rx)
                } else {
                    json_resp(StatusCode::OK, &resp)
                };
                r.headers_mut()
                    .insert("mcp-session-id", HeaderValue::from_str(&new_sid).unwrap());
                return r;
            }
            if !sessionless {
                if sid.is_none() {
                    return StatusCode::BAD_REQUEST.into_response();
                }
                if !known(&st, &sid) {
                    return StatusCode::NOT_FOUND.into_response();
                }
            }
            let requests: Vec<&Value> = msgs
                .iter()
                .filter(|m| m.get("method").is_some() && m.get("id").is_some())
                .collect();
            if requests.is_empty() {
                let mut g = st.lock().unwrap();
                for m in &msgs {
                    if m.get("method").is_none() && m.get("id").is_some() {
                        g.client_responses.push(m.clone());
                    }
                }
                return StatusCode::ACCEPTED.into_response();
            }
            if v.is_array() {
                let out: Vec<Value> = requests
                    .iter()
                    .map(|r| json!({"jsonrpc":"2.0","id":r["id"],"result":{}}))
                    .collect();
                return json_resp(StatusCode::OK, &Value::Array(out));
            }
            let req = requests[0];
            let id = req["id"].clone();
            match req["method"].as_str().unwrap_or("") {
                "tools/list" => json_resp(
                    StatusCode::OK,
                    &json!({"jsonrpc":"2.0","id":id,"result":{"tools":[
                        {"name":"echo","inputSchema":{"type":"object"}},
                        {"name":"stream","inputSchema":{"type":"object"}},
                        {"name":"gated","inputSchema":{"type":"object"}}
                    ]}}),
                ),
                "tools/call" => {
                    let name = req["params"]["name"].as_str().unwrap_or("");
                    let args = req["params"]["arguments"].clone();
                    match name {
                        "slow" => {
                            // Answers with JSON after `ms` milliseconds.
                            let ms = args["ms"].as_u64().unwrap_or(0);
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            json_resp(
                                StatusCode::OK,
                                &json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":"slow"}]}}),
                            )
                        }
                        "echo" => json_resp(
                            StatusCode::OK,
                            &json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":
                                format!("session={} host={}", sid.clone().unwrap_or_default(),
                                    headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or(""))}]}}),
                        ),
                        "resumable" => {
                            let count = args["count"].as_u64().unwrap_or(3);
                            let before_gate = args["before_gate"].as_u64().unwrap_or(count);
                            let pad = usize::try_from(args["pad"].as_u64().unwrap_or(0)).unwrap();
                            let spec = (count, before_gate, id, pad);
                            let mut g = st.lock().unwrap();
                            let n = g.resumable.len() as u64 + 1;
                            g.resumable.insert(n, spec.clone());
                            let gate = g.resume_gate.clone();
                            drop(g);
                            sse_resp(resumable_events(n, 0, spec, gate))
                        }
                        "ask" => {
                            // Asks the client (a server→client request on this stream), waits
                            // for its answer, then answers the tool call with it.
                            let (tx, rx) = mpsc::channel(8);
                            let st = st.clone();
                            tokio::spawn(async move {
                                let ask = json!({"jsonrpc":"2.0","id":"srv-1","method":"sampling/createMessage",
                                    "params":{"messages":[],"maxTokens":1}});
                                if tx.send(sse_event(Some("a0"), &ask)).await.is_err() {
                                    return;
                                }
                                let answer = loop {
                                    let found = st
                                        .lock()
                                        .unwrap()
                                        .client_responses
                                        .iter()
                                        .find(|r| r["id"] == "srv-1")
                                        .cloned();
                                    if let Some(a) = found {
                                        break a;
                                    }
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                };
                                let done = json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text",
                                    "text":format!("answer {}", answer["result"])}]}});
                                let _ = tx.send(sse_event(Some("a1"), &done)).await;
                            });
                            sse_resp(rx)
                        }
                        "ask_standalone" => {
                            // Asks the client on the session's GET stream (no related request),
                            // the way SDK servers send requests outside a call. With no GET
                            // stream open the request is dropped, as real servers do, and the
                            // call answers "lost".
                            let get = sid
                                .as_ref()
                                .and_then(|s| st.lock().unwrap().get_streams.get(s).cloned());
                            let n = {
                                let mut g = st.lock().unwrap();
                                g.next += 1;
                                g.next
                            };
                            let ask_id = format!("srv-s{n}");
                            let ask = json!({"jsonrpc":"2.0","id":ask_id,"method":"sampling/createMessage",
                                "params":{"messages":[],"maxTokens":1}});
                            let sent = match get {
                                Some(tx) => tx.send(sse_event(None, &ask)).await.is_ok(),
                                None => false,
                            };
                            if !sent {
                                return json_resp(
                                    StatusCode::OK,
                                    &json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":"lost"}]}}),
                                );
                            }
                            let (tx, rx) = mpsc::channel(8);
                            let st = st.clone();
                            tokio::spawn(async move {
                                let answer = loop {
                                    let found = st
                                        .lock()
                                        .unwrap()
                                        .client_responses
                                        .iter()
                                        .find(|r| r["id"] == ask_id.as_str())
                                        .cloned();
                                    if let Some(a) = found {
                                        break a;
                                    }
                                    if tx.is_closed() {
                                        return;
                                    }
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                };
                                let done = json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text",
                                    "text":format!("answer {}", answer["result"])}]}});
                                let _ = tx.send(sse_event(None, &done)).await;
                            });
                            sse_resp(rx)
                        }
                        "stream" | "gated" => {
                            let count = args["count"].as_u64().unwrap_or(3);
                            let before_gate = args["before_gate"].as_u64().unwrap_or(count);
                            let pad = "x".repeat(
                                usize::try_from(args["pad"].as_u64().unwrap_or(0)).unwrap(),
                            );
                            let gate = st.lock().unwrap().gate.clone();
                            let (tx, rx) = mpsc::channel(64);
                            let gated = name == "gated";
                            tokio::spawn(async move {
                                for i in 0..count {
                                    if gated && i == before_gate {
                                        gate.notified().await;
                                    }
                                    let n = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":i,"message":format!("event {i}{pad}")}});
                                    if tx
                                        .send(sse_event(Some(&format!("u{i}")), &n))
                                        .await
                                        .is_err()
                                    {
                                        return;
                                    }
                                }
                                let done = json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":format!("done {count}")}]}});
                                let _ = tx.send(sse_event(Some("u-final"), &done)).await;
                            });
                            sse_resp(rx)
                        }
                        _ => json_resp(
                            StatusCode::OK,
                            &json!({"jsonrpc":"2.0","id":id,"error":{"code":-32602,"message":"unknown tool"}}),
                        ),
                    }
                }
                "ping" => json_resp(
                    StatusCode::OK,
                    &json!({"jsonrpc":"2.0","id":id,"result":{}}),
                ),
                _ => json_resp(
                    StatusCode::OK,
                    &json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"method not found"}}),
                ),
            }
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

/// One proxy instance on a free loopback port.
pub struct Proxy {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub handle: shoal_proxy::ProxyHandle,
}

impl Proxy {
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown, waited for.
    pub async fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, t).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn key() -> EventIdKey {
    EventIdKey::new(b"a shared test key, 32 bytes long".to_vec()).unwrap()
}

pub fn config(upstream: UpstreamConfig, name: &str) -> ProxyConfig {
    let mut c = ProxyConfig::new(upstream)
        .with_event_id_key(key())
        .with_instance_id(name);
    c.poll_interval = Duration::from_millis(20);
    c.stream_lease = Duration::from_millis(900);
    c
}

pub async fn start_proxy(cfg: ProxyConfig, store: Arc<dyn SessionStore>) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let (fut, handle) = shoal_proxy::prepare(listener, cfg, store, async move {
        let _ = rx.await;
    })
    .unwrap();
    let task = tokio::spawn(fut);
    Proxy {
        addr,
        stop: Some(tx),
        task: Some(task),
        handle,
    }
}

/// A proxy on its own runtime with its own Redis connections: [`Crashable::crash`] stops
/// everything at once — server, pumps, lease renewals, store connections — with no graceful
/// shutdown and no lease released, like a killed process.
pub struct Crashable {
    pub addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
    pub handle: shoal_proxy::ProxyHandle,
}

impl Crashable {
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn crash(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Crashable {
    fn drop(&mut self) {
        self.crash();
    }
}

pub async fn start_crashable(cfg: ProxyConfig, redis: shoal_redis::RedisConfig) -> Crashable {
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (addr, handle) = rt.block_on(async move {
            let store = shoal_redis::RedisStore::connect_default(redis)
                .await
                .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (fut, handle) =
                shoal_proxy::prepare(listener, cfg, Arc::new(store), std::future::pending())
                    .unwrap();
            tokio::spawn(fut);
            (addr, handle)
        });
        Crashable {
            addr,
            rt: Some(rt),
            handle,
        }
    })
    .await
    .unwrap()
}

/// A minimal MCP client over reqwest.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub version: String,
}

impl Client {
    pub fn new(version: &str) -> Self {
        shoal_proxy::ensure_crypto_provider();
        Client {
            http: reqwest::Client::builder().build().unwrap(),
            version: version.into(),
        }
    }

    pub fn post_req(&self, url: &str, sid: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(s) = sid {
            r = r
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", &self.version);
        }
        r
    }

    /// initialize + notifications/initialized; returns the proxy's session id.
    pub async fn initialize(&self, url: &str) -> String {
        let body = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion": self.version, "capabilities": {},
            "clientInfo": {"name":"test-client","version":"0"}}});
        let resp = self.post_req(url, None, &body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let sid = resp.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let v = read_json_or_sse(resp).await;
        assert_eq!(v["result"]["protocolVersion"], self.version.as_str());
        let r = self
            .post_req(
                url,
                Some(&sid),
                &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        sid
    }

    pub async fn call(&self, url: &str, sid: &str, id: u64, method: &str, params: Value) -> Value {
        let resp = self
            .post_req(
                url,
                Some(sid),
                &json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        read_json_or_sse(resp).await
    }
}

/// The response message of a JSON or SSE reply (the last SSE event that has an id field in the
/// JSON-RPC sense).
pub async fn read_json_or_sse(resp: reqwest::Response) -> Value {
    let is_sse = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    if !is_sse {
        return serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    }
    let mut events = SseReader::new(resp);
    while let Some(ev) = events.next().await {
        if ev.data.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        if v.get("result").is_some() || v.get("error").is_some() {
            return v;
        }
    }
    panic!("SSE stream ended without a response");
}

/// Reads SSE events from a response, bounded by [`WAIT`] per event.
pub struct SseReader {
    resp: reqwest::Response,
    parser: SseParser,
    queue: std::collections::VecDeque<SseEvent>,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        SseReader {
            resp,
            parser: SseParser::new(1 << 22),
            queue: Default::default(),
        }
    }

    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            let chunk = tokio::time::timeout(WAIT, self.resp.chunk())
                .await
                .expect("no SSE event in time")
                .ok()??;
            self.queue.extend(self.parser.push(&chunk).unwrap());
        }
    }
}

/// A progress stream read to its end: the `progress` value of every notification, the
/// final response, and every event id seen (in order).
pub struct ProgressRun {
    pub progress: Vec<u64>,
    pub result: Option<Value>,
    pub ids: Vec<String>,
}

/// Reads `progress` notifications from `r` until the response arrives (or the stream ends).
pub async fn read_progress(r: &mut SseReader) -> ProgressRun {
    let mut run = ProgressRun {
        progress: Vec::new(),
        result: None,
        ids: Vec::new(),
    };
    while let Some(ev) = r.next().await {
        if let Some(id) = &ev.id {
            run.ids.push(id.clone());
        }
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        if v.get("result").is_some() {
            run.result = Some(v);
            break;
        }
        run.progress.push(v["params"]["progress"].as_u64().unwrap());
    }
    run
}

/// Waits (bounded by [`WAIT`]) until `cond` holds; panics otherwise. For effects the proxy
/// completes just after answering (recording a JSON reply, settling pending requests).
pub async fn wait_for_async<F, Fut>(cond: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    tokio::time::timeout(WAIT, async {
        while !cond().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition not reached in time");
}
