//! Redis evicting a session's keys one at a time (what `maxmemory` with any policy but
//! `noeviction` does): every read or write that meets the hole reports `Corrupt` naming
//! "evicted" — never an empty page or a missing response that looks normal — and removes what
//! is left of the session, so it is whole or absent, and counts it. Then the same against a
//! real `maxmemory` + `allkeys-lru` server under load, and the connect-time policy check.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use shoal_core::{
    Direction, Error, FrameQuery, Limits, ManualClock, NewFrame, PendingRequest, RequestId,
    Session, SessionFilter, SessionId, SessionStore, Transport,
};
use shoal_redis::{EvictingPolicy, RedisConfig, RedisStore};
use shoal_testkit::redis_server::RedisServer;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("ev{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn store_at(url: String, prefix: &str) -> RedisStore {
    RedisStore::connect(
        RedisConfig::new(url).with_key_prefix(prefix),
        Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn request(n: i64) -> PendingRequest {
    PendingRequest::new(RequestId::Number(n), "tools/call")
}

/// `Corrupt` naming `what` and eviction, else a panic describing what came instead.
fn assert_evicted<T: std::fmt::Debug>(got: shoal_core::Result<T>, what: &str) {
    match got {
        Err(Error::Corrupt { what: w, reason }) => assert!(
            w.contains(what) && reason.contains("evicted"),
            "expected {what} evicted, got {w}: {reason}"
        ),
        other => panic!("expected {what} evicted, got {other:?}"),
    }
}

/// The session and all of its keys are gone, and it is not listed.
async fn assert_removed_whole(store: &RedisStore, prefix: &str, id: &SessionId) {
    assert!(
        store
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("get: {e}"))
            .is_none(),
        "what is left of {id} was not removed"
    );
    for key in ["meta", "frames", "requests"] {
        let k = format!("{prefix}:{{{}}}:{key}", id.as_str());
        assert_eq!(server().cli(&["EXISTS", &k]).trim(), "0", "{k} was left");
    }
    let listed = store
        .list(&shoal_core::ListQuery::default())
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert!(
        listed.sessions.iter().all(|s| &s.id != id),
        "{id} is still listed"
    );
}

async fn with_frames(store: &RedisStore, id: &SessionId, n: usize) {
    store
        .create(Session::new(id.clone(), Transport::StreamableHttp))
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    for _ in 0..n {
        store
            .append_frame(id, NewFrame::new(Direction::ServerToClient, "{}"))
            .await
            .unwrap_or_else(|e| panic!("append: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_frames_list_fails_the_replay_and_removes_the_session() {
    let p = prefix();
    let store = store_at(server().url(), &p).await;
    let id = sid("frames-read");
    with_frames(&store, &id, 3).await;
    server().cli(&["DEL", &format!("{p}:{{frames-read}}:frames")]);
    assert_evicted(
        store.frames(&id, &FrameQuery::after(0, 100)).await,
        "frames",
    );
    assert_removed_whole(&store, &p, &id).await;

    // An append over the hole: refused, and no frame of it survives.
    let id = sid("frames-write");
    with_frames(&store, &id, 3).await;
    server().cli(&["DEL", &format!("{p}:{{frames-write}}:frames")]);
    assert_evicted(
        store
            .append_frame(&id, NewFrame::new(Direction::ServerToClient, "{}"))
            .await,
        "frames",
    );
    assert_removed_whole(&store, &p, &id).await;
    let m = store.metrics().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.evicted, 2, "each removal is counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_requests_hash_is_reported_by_every_pending_call() {
    let p = prefix();
    let store = store_at(server().url(), &p).await;
    type Call = for<'a> fn(
        &'a RedisStore,
        &'a SessionId,
    ) -> futures_util::future::BoxFuture<'a, shoal_core::Result<()>>;
    let calls: [(&str, Call); 3] = [
        ("take", |s, id| {
            Box::pin(async move { s.take_pending(id, &RequestId::Number(1)).await.map(|_| ()) })
        }),
        ("list", |s, id| {
            Box::pin(async move { s.list_pending(id).await.map(|_| ()) })
        }),
        ("add", |s, id| {
            Box::pin(async move { s.add_pending(id, request(9)).await })
        }),
    ];
    for (name, call) in calls {
        let id = sid(&format!("req-{name}"));
        with_frames(&store, &id, 1).await;
        for n in 1..=3 {
            store
                .add_pending(&id, request(n))
                .await
                .unwrap_or_else(|e| panic!("add: {e}"));
        }
        server().cli(&["DEL", &format!("{p}:{{req-{name}}}:requests")]);
        assert_evicted(call(&store, &id).await, "pending requests");
        assert_removed_whole(&store, &p, &id).await;
    }
    // Answered requests are not an eviction: take all, then a miss is a plain None.
    let id = sid("req-normal");
    with_frames(&store, &id, 1).await;
    store
        .add_pending(&id, request(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let taken = store
        .take_pending(&id, &RequestId::Number(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(taken.is_some());
    let again = store
        .take_pending(&id, &RequestId::Number(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.is_none());
    assert!(
        store
            .list_pending(&id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_is_checked_at_connect_and_in_health() {
    let p = prefix();
    let evicting = RedisServer::builder()
        .args(["--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"])
        .start();
    let mut config = RedisConfig::new(evicting.url()).with_key_prefix(&p);
    config.evicting_policy = EvictingPolicy::Refuse;
    match RedisStore::connect(
        config,
        Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    {
        Err(Error::InvalidInput { reason }) => {
            assert!(
                reason.contains("volatile-lru") && reason.contains("noeviction"),
                "{reason}"
            );
        }
        other => panic!("an evicting server was accepted under refuse: {other:?}"),
    }
    let warned = store_at(evicting.url(), &p).await;
    let health = warned.health().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        health.details.get("maxmemory_policy").map(String::as_str),
        Some("volatile-lru")
    );
    assert!(
        health
            .details
            .get("warning")
            .is_some_and(|w| w.contains("noeviction")),
        "{health:?}"
    );
    let fine = store_at(server().url(), &p).await;
    let health = fine.health().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!health.details.contains_key("warning"), "{health:?}");
}

/// A real server with a small `maxmemory` and `allkeys-lru`, written past its limit by many
/// sessions: whatever Redis evicts, every session reads back whole (its frames all there,
/// in order) or is reported evicted/absent — never a partial history that looks whole — and
/// no session is left half-removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_evicting_server_under_load_never_serves_a_partial_history() {
    let p = prefix();
    let lru = RedisServer::builder()
        .args(["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"])
        .start();
    let store = store_at(lru.url(), &p).await;
    let payload = "x".repeat(2_000);
    let sessions = 300usize;
    let frames_each = 8usize;
    let mut appended: Vec<usize> = vec![0; sessions];
    let mut write_errors = 0usize;
    for round in 0..frames_each {
        for (i, count) in appended.iter_mut().enumerate() {
            let id = sid(&format!("load{i}"));
            if round == 0 {
                match store
                    .create(Session::new(id.clone(), Transport::StreamableHttp))
                    .await
                {
                    Ok(_) => {}
                    Err(_) => {
                        write_errors += 1;
                        continue;
                    }
                }
            }
            match store
                .append_frame(
                    &id,
                    NewFrame::new(Direction::ServerToClient, payload.clone()),
                )
                .await
            {
                Ok(_) => *count += 1,
                Err(Error::NotFound { .. } | Error::Corrupt { .. }) => write_errors += 1,
                Err(e) => panic!("append under eviction failed untyped: {e}"),
            }
        }
    }
    let evicted_keys: u64 = lru
        .cli(&["INFO", "stats"])
        .lines()
        .find_map(|l| l.trim().strip_prefix("evicted_keys:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        evicted_keys > 0,
        "the server evicted nothing; the test wrote too little to prove anything"
    );
    let (mut whole, mut reported, mut absent) = (0usize, 0usize, 0usize);
    for i in 0..sessions {
        let id = sid(&format!("load{i}"));
        match store.frames(&id, &FrameQuery::after(0, 1_000)).await {
            Ok(page) => {
                let seqs: Vec<u64> = page.frames.iter().map(|f| f.seq).collect();
                let expected: Vec<u64> = (1..=page.last_seq).collect();
                assert_eq!(
                    seqs, expected,
                    "load{i} served a history with holes (last seq {})",
                    page.last_seq
                );
                assert!(!page.trimmed, "nothing was trimmed on purpose");
                whole += 1;
            }
            Err(Error::Corrupt { reason, .. }) if reason.contains("evicted") => reported += 1,
            Err(Error::NotFound { .. }) => absent += 1,
            Err(e) => panic!("load{i}: {e}"),
        }
    }
    // Eviction goes on while the server is over its limit (also during the reads above),
    // so keys can be left without their meta at any moment; what matters is that the next
    // call that meets such a session removes the rest instead of using it.
    let keys: BTreeSet<String> = lru
        .cli(&["--scan", "--pattern", &format!("{p}:{{load*")])
        .lines()
        .map(str::to_owned)
        .collect();
    let mut orphans = Vec::new();
    for k in &keys {
        if let Some(base) = k
            .strip_suffix(":frames")
            .or_else(|| k.strip_suffix(":requests"))
        {
            let meta = format!("{base}:meta");
            if !keys.contains(&meta) && lru.cli(&["EXISTS", &meta]).trim() == "0" {
                orphans.push(k.clone());
            }
        }
    }
    for k in &orphans {
        let sid_text = k
            .split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(s, _)| s.to_owned())
            .unwrap_or_default();
        let id = sid(&sid_text);
        match store.frames(&id, &FrameQuery::after(0, 1_000)).await {
            Err(Error::NotFound { .. }) => {}
            other => panic!("{k} without meta read as {other:?}"),
        }
        assert_eq!(
            lru.cli(&["EXISTS", k]).trim(),
            "0",
            "{k} was left after the session was met without its meta"
        );
    }
    let listed = store
        .count(&SessionFilter::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "evicted_keys {evicted_keys}, write errors {write_errors}, whole {whole}, reported \
         evicted {reported}, absent {absent}, counted {listed}, keys left without meta then \
         removed {}",
        orphans.len()
    );
    assert_eq!(whole + reported + absent, sessions);
    drop(appended);
    tokio::time::sleep(Duration::from_millis(1)).await;
}
