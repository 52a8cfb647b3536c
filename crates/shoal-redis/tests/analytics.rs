//! Session analytics against an exact count: a seeded workload through a real Redis (a
//! standalone server and the 6-node Cluster), the analytics worker run to the end of the feed,
//! and every figure compared with a full scan of the frames the store holds.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use shoal_core::{
    ChangeFeed, Direction, FeedConfig, Frame, FrameQuery, Limits, NewFrame, Session, SessionId,
    SessionStore, SystemClock, Timestamp, Transport,
    feed::{FrameSummary, GroupStart},
};
use shoal_redis::{
    RedisConfig, RedisStore,
    analytics::{
        AnalyticsConfig, AnalyticsReport, AnalyticsWorker, histogram::Histogram, read_report,
    },
};
use shoal_testkit::redis_server::{RedisCluster, RedisServer};

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

fn prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("an{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn store(url: String) -> RedisStore {
    let mut feed = FeedConfig::default();
    feed.cluster_shards = 3;
    let config = RedisConfig::new(url)
        .with_key_prefix(prefix())
        .with_feed(feed);
    RedisStore::connect(config, Limits::default(), Arc::new(SystemClock))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// xorshift64*: a seeded, reproducible workload.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

const CLIENTS: [(&str, &str); 3] = [
    ("claude-code", "2.1"),
    ("cursor", "1.0"),
    ("inspector", "0.17"),
];
const PROTOCOLS: [&str; 2] = ["2025-06-18", "2025-11-25"];
const TOOLS: [&str; 3] = ["add", "echo", "fail"];

/// Writes the workload: `sessions` sessions, each with requests (tool calls, resource
/// reads, pings, some answered with errors, one never answered), notifications, responses
/// with chosen latencies. Returns the ids, the third of them deleted at the end.
async fn workload(
    store: &RedisStore,
    seed: u64,
    sessions: usize,
) -> (Vec<SessionId>, Vec<SessionId>) {
    let mut rng = Rng(seed);
    let base = Timestamp::now().as_millis();
    let mut ids = Vec::new();
    for i in 0..sessions {
        let id = sid(&format!("an-{seed}-{i}"));
        let (name, version) = CLIENTS[rng.below(3) as usize];
        let mut s = Session::new(id.clone(), Transport::StreamableHttp);
        s.protocol_version = Some(PROTOCOLS[rng.below(2) as usize].into());
        s.client_info = Some(serde_json::json!({"name": name, "version": version}));
        store
            .create(s)
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
        let mut frames = Vec::new();
        let mut t = base + i as u64 * 10_000;
        for n in 0..(5 + rng.below(10)) {
            let (method, params) = match rng.below(4) {
                0 | 1 => {
                    let tool = TOOLS[rng.below(3) as usize];
                    (
                        "tools/call",
                        serde_json::json!({"name": tool, "arguments": {"x": n}}),
                    )
                }
                2 => ("resources/read", serde_json::json!({"uri": "file:///a"})),
                _ => ("ping", serde_json::json!({})),
            };
            let rid = if rng.below(2) == 0 {
                serde_json::json!(n)
            } else {
                serde_json::json!(format!("r{n}"))
            };
            let req = serde_json::json!({"jsonrpc": "2.0", "id": rid, "method": method, "params": params});
            frames.push(
                NewFrame::new(Direction::ClientToServer, req.to_string())
                    .with_timestamp(Timestamp(t)),
            );
            if rng.below(3) == 0 {
                let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": n}});
                frames.push(
                    NewFrame::new(Direction::ServerToClient, note.to_string())
                        .with_timestamp(Timestamp(t + 1)),
                );
            }
            if rng.below(10) == 0 {
                continue; // never answered
            }
            let latency = 1 + rng.below(2_000);
            let reply = match (params.get("name").and_then(|v| v.as_str()), rng.below(8)) {
                (Some("fail"), _) => {
                    serde_json::json!({"jsonrpc": "2.0", "id": rid, "result": {"content": [], "isError": true}})
                }
                (_, 0) => {
                    serde_json::json!({"jsonrpc": "2.0", "id": rid, "error": {"code": -32603, "message": "boom"}})
                }
                _ => serde_json::json!({"jsonrpc": "2.0", "id": rid, "result": {}}),
            };
            frames.push(
                NewFrame::new(Direction::ServerToClient, reply.to_string())
                    .with_timestamp(Timestamp(t + latency)),
            );
            t += latency + 5;
        }
        // Several appends per session, as a proxy records them.
        for chunk in frames.chunks(3) {
            store
                .append_frames(&id, chunk.to_vec())
                .await
                .unwrap_or_else(|e| panic!("append: {e}"));
        }
        ids.push(id);
    }
    let deleted: Vec<SessionId> = ids.iter().step_by(3).cloned().collect();
    (ids, deleted)
}

/// What a full scan of the frames says, computed the way the analytics define it.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    methods: BTreeMap<String, u64>,
    method_errors: BTreeMap<String, u64>,
    method_latency: BTreeMap<String, Histogram>,
    tools: BTreeMap<String, u64>,
    tool_errors: BTreeMap<String, u64>,
    tool_latency: BTreeMap<String, Histogram>,
    frames: u64,
    bytes: u64,
    live_by_client: BTreeMap<String, u64>,
}

async fn all_frames(store: &RedisStore, id: &SessionId) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .frames(id, &FrameQuery::after(after, 500))
            .await
            .unwrap_or_else(|e| panic!("frames: {e}"));
        let Some(last) = page.frames.last() else {
            break;
        };
        after = last.seq;
        out.extend(page.frames);
    }
    out
}

async fn scan(store: &RedisStore, ids: &[SessionId], deleted: &[SessionId]) -> Expected {
    let mut e = Expected::default();
    for id in ids {
        let session = store
            .get(id)
            .await
            .unwrap_or_else(|err| panic!("{err}"))
            .unwrap_or_else(|| panic!("{id} gone"));
        if !deleted.contains(id) {
            let info = session.client_info.unwrap_or_default();
            let client = format!(
                "{}/{}",
                info["name"].as_str().unwrap_or(""),
                info["version"].as_str().unwrap_or("")
            );
            *e.live_by_client.entry(client).or_default() += 1;
        }
        let mut waiting: HashMap<String, (u64, String, Option<String>)> = HashMap::new();
        for f in all_frames(store, id).await {
            let s = FrameSummary::of(&f.to_new_frame());
            e.frames += 1;
            e.bytes += s.size;
            if let Some(m) = &s.method {
                *e.methods.entry(m.clone()).or_default() += 1;
                if let Some(t) = &s.tool {
                    *e.tools.entry(t.clone()).or_default() += 1;
                }
                if let Some(rid) = &s.rpc_id {
                    waiting.insert(
                        rid.clone(),
                        (s.timestamp.as_millis(), m.clone(), s.tool.clone()),
                    );
                }
            } else if let Some(rid) = &s.rpc_id
                && let Some((at, m, tool)) = waiting.remove(rid)
            {
                let latency = s.timestamp.as_millis() - at;
                e.method_latency
                    .entry(m.clone())
                    .or_default()
                    .record(latency);
                if s.error.is_some() {
                    *e.method_errors.entry(m.clone()).or_default() += 1;
                }
                if let Some(t) = tool {
                    e.tool_latency.entry(t.clone()).or_default().record(latency);
                    if s.error.is_some() {
                        *e.tool_errors.entry(t).or_default() += 1;
                    }
                }
            }
        }
    }
    e
}

/// Runs the worker until the analytics group has nothing pending or undelivered.
async fn drain(store: &RedisStore) -> AnalyticsReport {
    let mut config = AnalyticsConfig::default();
    config.lease = Duration::from_secs(2);
    let worker = AnalyticsWorker::spawn(store.clone(), config).unwrap_or_else(|| panic!("no feed"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = read_report(store, Duration::from_secs(3600), 100)
            .await
            .unwrap_or_else(|e| panic!("report: {e}"));
        let g = r
            .feed
            .groups
            .iter()
            .find(|g| g.name == "analytics")
            .cloned();
        if g.is_some_and(|g| g.pending == 0 && g.lag == Some(0)) {
            drop(worker);
            // The figures are read before the feed's state: read them again now that
            // everything is applied.
            return read_report(store, Duration::from_secs(3600), 100)
                .await
                .unwrap_or_else(|e| panic!("report: {e}"));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the analytics did not catch up: {:?}",
            r.feed
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check(report: &AnalyticsReport, e: &Expected, created: u64, ended: u64) {
    let by_name = |v: &[shoal_redis::analytics::CallStats]| -> BTreeMap<String, shoal_redis::analytics::CallStats> {
        v.iter().map(|c| (c.name.clone(), c.clone())).collect()
    };
    let methods = by_name(&report.methods);
    assert_eq!(
        methods
            .iter()
            .map(|(k, v)| (k.clone(), v.count))
            .collect::<BTreeMap<_, _>>(),
        e.methods
    );
    for (m, c) in &methods {
        assert_eq!(
            c.errors,
            e.method_errors.get(m).copied().unwrap_or(0),
            "{m} errors"
        );
        assert_eq!(
            c.latency,
            e.method_latency.get(m).and_then(Histogram::percentiles),
            "{m} latency"
        );
    }
    let tools = by_name(&report.tools);
    assert_eq!(
        tools
            .iter()
            .map(|(k, v)| (k.clone(), v.count))
            .collect::<BTreeMap<_, _>>(),
        e.tools
    );
    for (t, c) in &tools {
        assert_eq!(
            c.errors,
            e.tool_errors.get(t).copied().unwrap_or(0),
            "{t} errors"
        );
        assert_eq!(
            c.latency,
            e.tool_latency.get(t).and_then(Histogram::percentiles),
            "{t} latency"
        );
    }
    assert_eq!(report.totals.get("frames").copied(), Some(e.frames));
    assert_eq!(report.totals.get("bytes").copied(), Some(e.bytes));
    assert_eq!(report.totals.get("created").copied(), Some(created));
    assert_eq!(report.totals.get("ended").copied().unwrap_or(0), ended);
    assert_eq!(report.live_by_client, e.live_by_client);
    assert_eq!(report.live_sessions, created - ended);
    assert_eq!(report.durations.as_ref().map_or(0, |d| d.samples), ended);
    let started: u64 = report.per_minute.iter().map(|m| m.started).sum();
    assert_eq!(started, created);
}

async fn exact_against_a_full_scan(store: RedisStore) {
    let (ids, deleted) = workload(&store, 7, 24).await;
    let expected = scan(&store, &ids, &deleted).await;
    assert!(
        expected.methods.len() >= 4 && !expected.tool_errors.is_empty(),
        "{expected:?}"
    );
    for id in &deleted {
        assert!(store.delete(id).await.unwrap_or_else(|e| panic!("{e}")));
    }
    let report = drain(&store).await;
    check(&report, &expected, ids.len() as u64, deleted.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_analytics_match_a_full_scan() {
    exact_against_a_full_scan(store(server().url()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_analytics_match_a_full_scan() {
    exact_against_a_full_scan(store(cluster().url()).await).await;
}

/// A consumer that read a batch and died before applying it, and a batch applied twice: the
/// figures still match the scan exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_consumers_batch_is_applied_once() {
    let store = store(server().url()).await;
    let feed = store.feed().unwrap_or_else(|| panic!("no feed"));
    feed.create_group("analytics", GroupStart::Beginning)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (ids, _) = workload(&store, 11, 9).await;
    let expected = scan(&store, &ids, &[]).await;
    // "doomed" reads half the feed and dies without applying it.
    let taken = feed
        .read_group("analytics", "doomed", 60, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(taken.len(), 60);
    // A zombie applies another consumer's batch twice: the second time counts nothing.
    let other = feed
        .read_group("analytics", "zombie", 20, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let config = AnalyticsConfig::default();
    let first = shoal_redis::analytics::apply::apply(&store, &config, &other)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = shoal_redis::analytics::apply::apply(&store, &config, &other)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((first, second), (20, 0));
    let report = drain(&store).await;
    check(&report, &expected, ids.len() as u64, 0);
}

/// The feed stream disappears under a running consumer (a server restarted empty, a flush):
/// the worker creates its group again and counts what comes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_recovers_when_the_feed_disappears() {
    let store = store(server().url()).await;
    let mut config = AnalyticsConfig::default();
    config.lease = Duration::from_secs(2);
    let _worker =
        AnalyticsWorker::spawn(store.clone(), config).unwrap_or_else(|| panic!("no feed"));
    let created = |n: u64| {
        let store = store.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let r = read_report(&store, Duration::from_secs(3600), 10)
                    .await
                    .unwrap_or_else(|e| panic!("report: {e}"));
                if r.totals.get("created").copied() == Some(n) {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "created {:?}, want {n}",
                    r.totals.get("created")
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    for i in 0..3 {
        store
            .create(Session::new(sid(&format!("gone-a{i}")), Transport::Http))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    created(3).await;
    let mut del = redis::cmd("DEL");
    del.arg(format!("{}:feed:{{f0}}", store.key_prefix()));
    let client = redis::Client::open(server().url()).unwrap_or_else(|e| panic!("{e}"));
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _: i64 = del
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..2 {
        store
            .create(Session::new(sid(&format!("gone-b{i}")), Transport::Http))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    created(5).await;
}
