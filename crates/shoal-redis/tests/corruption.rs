//! Damaged data in Redis: every unreadable item is `Corrupt`, named, and confined to itself.
//! Also checks the key schema (every key carries a hash tag) and failure mapping.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use shoal_core::{
    Direction, Error, FrameQuery, Limits, ListQuery, ManualClock, NewFrame, PendingRequest,
    RequestId, Session, SessionId, SessionStore, Transport,
};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::redis_server::RedisServer;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("c{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn store(prefix: &str) -> RedisStore {
    RedisStore::connect(
        RedisConfig::new(server().url()).with_key_prefix(prefix),
        Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

/// Three sessions a, b, c with a frame and a pending request each.
async fn three(store: &RedisStore) -> [SessionId; 3] {
    let ids = [sid("a"), sid("b"), sid("c")];
    for id in &ids {
        store
            .create(Session::new(id.clone(), Transport::StreamableHttp))
            .await
            .unwrap_or_else(|e| panic!("create {id}: {e}"));
        store
            .append_frame(id, NewFrame::new(Direction::ClientToServer, "{}"))
            .await
            .unwrap_or_else(|e| panic!("append {id}: {e}"));
        store
            .add_pending(id, PendingRequest::new(1, "tools/call"))
            .await
            .unwrap_or_else(|e| panic!("add_pending {id}: {e}"));
    }
    ids
}

fn assert_corrupt<T: std::fmt::Debug>(r: shoal_core::Result<T>, mentions: &[&str]) {
    match r {
        Err(e @ Error::Corrupt { .. }) => {
            let msg = e.to_string();
            for m in mentions {
                assert!(msg.contains(m), "{msg:?} should mention {m:?}");
            }
        }
        other => panic!("expected Corrupt mentioning {mentions:?}, got {other:?}"),
    }
}

/// The other sessions still read normally.
async fn others_fine(store: &RedisStore, ids: &[SessionId]) {
    for id in ids {
        assert!(
            store
                .get(id)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_some()
        );
        let page = store
            .frames(id, &FrameQuery::after(0, 10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.frames.len(), 1);
        assert_eq!(
            store
                .list_pending(id)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .len(),
            1
        );
    }
}

/// `get_many` and `list` still return the readable sessions, never call the bad one
/// missing, and name it in `errors`.
async fn multi_reads_skip(store: &RedisStore, bad: &SessionId, good: &[SessionId]) {
    let mut all = good.to_vec();
    all.push(bad.clone());
    let many = store.get_many(&all).await.unwrap_or_else(|e| panic!("{e}"));
    let found: Vec<&SessionId> = many.found.iter().map(|s| &s.id).collect();
    assert_eq!(found.len(), good.len(), "{many:?}");
    assert!(
        !many.missing.contains(bad),
        "a corrupt session is not missing: {many:?}"
    );
    assert_eq!(many.errors.len(), 1, "{many:?}");
    assert_eq!(&many.errors[0].id, bad);
    assert!(matches!(many.errors[0].error, Error::Corrupt { .. }));
    let page = store
        .list(&ListQuery::first(100))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listed: Vec<&SessionId> = page.sessions.iter().map(|s| &s.id).collect();
    for g in good {
        assert!(listed.contains(&g), "{listed:?}");
    }
    assert!(!listed.contains(&bad));
    assert_eq!(page.errors.len(), 1, "the bad session is named: {page:?}");
    for e in &page.errors {
        assert_eq!(&e.id, bad);
        assert!(matches!(e.error, Error::Corrupt { .. }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_of_the_wrong_type() {
    let p = prefix();
    let store = store(&p).await;
    let [a, b, c] = three(&store).await;
    let key = format!("{p}:{{b}}:meta");
    server().cli(&["DEL", &key]);
    server().cli(&["SET", &key, "not a hash"]);
    assert_corrupt(store.get(&b).await, &["\"b\""]);
    assert_corrupt(store.touch(&b).await, &["\"b\""]);
    assert_corrupt(
        store
            .append_frame(&b, NewFrame::new(Direction::ClientToServer, "x"))
            .await,
        &["\"b\""],
    );
    assert_corrupt(store.count_frames(&b).await, &["\"b\""]);
    multi_reads_skip(&store, &b, &[a.clone(), c.clone()]).await;
    others_fine(&store, &[a, c]).await;
    // A corrupt session can always be deleted.
    assert!(store.delete(&b).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(
        store
            .get(&b)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_a_meta_field() {
    let p = prefix();
    let store = store(&p).await;
    let [a, b, c] = three(&store).await;
    let key = format!("{p}:{{b}}:meta");
    let good = server().cli(&["HGET", &key, "a"]).trim().to_owned();
    // A bad counter (seq) in field a.
    let mut parts: Vec<&str> = good.split(':').collect();
    parts[3] = "12x";
    server().cli(&["HSET", &key, "a", &parts.join(":")]);
    assert_corrupt(store.get(&b).await, &["\"b\"", "\"a\""]);
    assert_corrupt(store.touch(&b).await, &["\"b\"", "\"a\""]);
    assert_corrupt(
        store
            .append_frame(&b, NewFrame::new(Direction::ClientToServer, "x"))
            .await,
        &["\"b\"", "\"a\""],
    );
    assert_corrupt(store.frames(&b, &FrameQuery::after(0, 5)).await, &["\"a\""]);
    assert_corrupt(store.count_frames(&b).await, &["\"a\""]);
    assert_corrupt(store.list_pending(&b).await, &["\"a\""]);
    assert_corrupt(
        store.add_pending(&b, PendingRequest::new(7, "m")).await,
        &["\"a\""],
    );
    multi_reads_skip(&store, &b, &[a.clone(), c.clone()]).await;
    others_fine(&store, &[a, c]).await;

    server().cli(&["HSET", &key, "a", "soon"]);
    assert_corrupt(store.get(&b).await, &["\"a\""]);
    assert_corrupt(store.touch(&b).await, &["\"a\""]);
    assert_corrupt(store.count_frames(&b).await, &["\"a\""]);
    server().cli(&["HDEL", &key, "a"]);
    assert_corrupt(store.get(&b).await, &["\"a\"", "missing"]);
    assert_corrupt(store.touch(&b).await, &["\"a\"", "missing"]);
    assert_corrupt(store.count_frames(&b).await, &["\"a\"", "missing"]);
    server().cli(&["HSET", &key, "a", &good, "d", "\u{1}\u{c1}"]);
    assert_corrupt(store.get(&b).await, &["\"b\"", "\"d\""]);
    server().cli(&["HDEL", &key, "d"]);
    assert_corrupt(store.get(&b).await, &["\"b\"", "\"d\"", "missing"]);
    assert!(store.delete(&b).await.unwrap_or_else(|e| panic!("{e}")));
}

/// A session written by the schema-1 layout (plain fields, builds before 2026-11-25) is `Corrupt`,
/// naming the old layout, for every operation; never misread, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema1_sessions_are_corrupt_and_named() {
    let p = prefix();
    let store = store(&p).await;
    let [a, b, c] = three(&store).await;
    let key = format!("{p}:{{b}}:meta");
    server().cli(&["DEL", &key]);
    server().cli(&[
        "HSET",
        &key,
        "id",
        "b",
        "transport",
        "streamable_http",
        "status",
        "active",
        "state",
        "initializing",
        "created_at",
        "1",
        "last_activity",
        "1",
        "expires_at",
        "99999999999999",
        "seq",
        "1",
        "first_seq",
        "1",
        "frame_count",
        "1",
        "revision",
        "1",
        "pending_seq",
        "1",
    ]);
    let old = &["\"b\"", "schema-1"];
    assert_corrupt(store.get(&b).await, old);
    assert_corrupt(store.touch(&b).await, old);
    assert_corrupt(
        store
            .append_frame(&b, NewFrame::new(Direction::ClientToServer, "x"))
            .await,
        old,
    );
    assert_corrupt(store.frames(&b, &FrameQuery::after(0, 5)).await, old);
    assert_corrupt(store.count_frames(&b).await, old);
    assert_corrupt(store.list_pending(&b).await, old);
    assert_corrupt(
        store.add_pending(&b, PendingRequest::new(7, "m")).await,
        old,
    );
    assert_corrupt(store.take_pending(&b, &RequestId::from(1)).await, old);
    assert_corrupt(store.delete_frames(&b, None).await, old);
    let mut s = Session::new(b.clone(), Transport::StreamableHttp);
    s.revision = 1;
    assert_corrupt(store.update(&s).await, old);
    assert_corrupt(
        store
            .create(Session::new(b.clone(), Transport::StreamableHttp))
            .await,
        old,
    );
    multi_reads_skip(&store, &b, &[a.clone(), c.clone()]).await;
    // The sweeper leaves it alone (unreadable) and the count still works.
    store
        .sweep_expired()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    others_fine(&store, &[a, c]).await;
    assert!(store.delete(&b).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(
        store
            .get(&b)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_envelope_version() {
    let p = prefix();
    let store = store(&p).await;
    let [a, b, c] = three(&store).await;
    let key = format!("{p}:{{b}}:meta");
    server().cli(&["HSET", &key, "d", "\u{7}payload"]);
    assert_corrupt(
        store.get(&b).await,
        &["\"b\"", "\"d\"", "unsupported envelope version 0x07"],
    );
    multi_reads_skip(&store, &b, &[a.clone(), c.clone()]).await;
    others_fine(&store, &[a, c]).await;
    // Writes that do not read the blob still work; the blob stays unreadable until replaced.
    store.touch(&b).await.unwrap_or_else(|e| panic!("{e}"));
    store
        .append_frame(&b, NewFrame::new(Direction::ClientToServer, "x"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store
            .count_frames(&b)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );
    // An update replaces it (the revision is the one stored; create and two appends left
    // it at 1).
    let mut s = Session::new(b.clone(), Transport::StreamableHttp);
    s.revision = 1;
    let stored = store.update(&s).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.revision, 2);
    assert_eq!(stored.last_seq, 2);
    assert_eq!(
        store.get(&b).await.unwrap_or_else(|e| panic!("{e}")),
        Some(stored)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frame_entry() {
    let p = prefix();
    let store = store(&p).await;
    let [a, b, c] = three(&store).await;
    store
        .append_frame(&b, NewFrame::new(Direction::ServerToClient, "second"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = format!("{p}:{{b}}:frames");
    server().cli(&["LSET", &key, "0", "garbage"]);
    assert_corrupt(
        store.frames(&b, &FrameQuery::after(0, 10)).await,
        &["\"b\"", "frame 1"],
    );
    // The intact frame after it still reads.
    let page = store
        .frames(&b, &FrameQuery::after(1, 10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.frames.len(), 1);
    assert_eq!(page.frames[0].seq, 2);
    assert_eq!(&page.frames[0].content[..], b"second");
    // The session itself is fine.
    assert!(
        store
            .get(&b)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
    assert_eq!(
        store
            .count_frames(&b)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );
    others_fine(&store, &[a, c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_and_requests_of_the_wrong_type() {
    let p = prefix();
    let store = store(&p).await;
    let [a, b, c] = three(&store).await;
    let frames = format!("{p}:{{b}}:frames");
    server().cli(&["DEL", &frames]);
    server().cli(&["SET", &frames, "x"]);
    let before = store
        .get(&b)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("b exists"));
    assert_corrupt(
        store
            .append_frame(&b, NewFrame::new(Direction::ClientToServer, "x"))
            .await,
        &["\"b\""],
    );
    // Nothing was written: the seq did not move.
    let after = store
        .get(&b)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("b exists"));
    assert_eq!(after.last_seq, before.last_seq);
    assert_corrupt(
        store.frames(&b, &FrameQuery::after(0, 10)).await,
        &["\"b\""],
    );

    let requests = format!("{p}:{{b}}:requests");
    server().cli(&["DEL", &requests]);
    server().cli(&["SET", &requests, "x"]);
    assert_corrupt(store.list_pending(&b).await, &["\"b\""]);
    assert_corrupt(
        store.add_pending(&b, PendingRequest::new(2, "m")).await,
        &["\"b\""],
    );
    assert_corrupt(
        store.take_pending(&b, &RequestId::from(1)).await,
        &["\"b\""],
    );
    others_fine(&store, &[a, c]).await;
    assert!(store.delete(&b).await.unwrap_or_else(|e| panic!("{e}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_pending_request() {
    let p = prefix();
    let store = store(&p).await;
    let [a, b, c] = three(&store).await;
    let key = format!("{p}:{{b}}:requests");
    server().cli(&["HSET", &key, "n:9", "\u{1}\u{c1}"]);
    assert_corrupt(
        store.list_pending(&b).await,
        &["\"b\"", "pending request", "n:9"],
    );
    assert_corrupt(store.take_pending(&b, &RequestId::from(9)).await, &["n:9"]);
    // The intact one is still there.
    assert!(
        store
            .take_pending(&b, &RequestId::from(1))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
    others_fine(&store, &[a, c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangling_index_entries_are_repaired() {
    let p = prefix();
    let store = store(&p).await;
    let [a, b, c] = three(&store).await;
    // b's keys vanish behind the store's back (e.g. the server-side TTL fired).
    for k in ["meta", "frames", "requests"] {
        server().cli(&["DEL", &format!("{p}:{{b}}:{k}")]);
    }
    let page = store
        .list(&ListQuery::first(100))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listed: Vec<SessionId> = page.sessions.iter().map(|s| s.id.clone()).collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&a) && listed.contains(&c));
    // The reader removed b from the index.
    let members = server().cli(&[
        "ZRANGE",
        &format!("{p}:idx:{{b{:04}}}:all", bucket(&b)),
        "0",
        "-1",
    ]);
    assert!(!members.lines().any(|l| l.trim() == "b"), "{members}");
    assert_eq!(
        store
            .count(&Default::default())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );
}

/// A live session missing from its listing bucket (a create whose listing write failed) is
/// listed again by the next sweep that meets its capacity entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_lists_live_sessions_again() {
    let p = prefix();
    let store = store(&p).await;
    let [a, b, c] = three(&store).await;
    let lex = format!("{p}:idx:{{b{:04}}}:all", bucket(&b));
    server().cli(&["ZREM", &lex, "b"]);
    // Its capacity entry's score lags behind (touches do not move it): the sweeper visits it.
    server().cli(&["ZADD", &format!("{p}:idx:{{cap}}:live"), "XX", "1", "b"]);
    let listed = |page: shoal_core::ListPage| -> Vec<SessionId> {
        page.sessions.iter().map(|s| s.id.clone()).collect()
    };
    let before = listed(
        store
            .list(&ListQuery::first(100))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(!before.contains(&b), "{before:?}");
    let report = store
        .sweep_expired()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.removed, report.repaired), (0, 1), "{report:?}");
    let after = listed(
        store
            .list(&ListQuery::first(100))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(
        after.contains(&a) && after.contains(&b) && after.contains(&c),
        "{after:?}"
    );
    let score = server().cli(&["ZSCORE", &format!("{p}:idx:{{cap}}:live"), "b"]);
    assert!(
        score.trim().parse::<u64>().is_ok_and(|s| s > 1),
        "re-scored: {score}"
    );
}

/// The bucket of an id, as the store computes it (FNV-1a 32 modulo 1,024).
fn bucket(id: &SessionId) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.as_str().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_carries_a_hash_tag() {
    let p = prefix();
    let store = store(&p).await;
    let ids = three(&store).await;
    store
        .take_pending(&ids[0], &RequestId::from(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .delete(&ids[1])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .sweep_expired()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store.metrics().await.unwrap_or_else(|e| panic!("{e}"));
    store
        .list(&ListQuery::first(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let keys = server().cli(&["--scan", "--pattern", &format!("{p}:*")]);
    let keys: Vec<&str> = keys
        .lines()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect();
    assert!(keys.len() >= 6, "{keys:?}");
    for key in keys {
        let rest = key
            .strip_prefix(&format!("{p}:"))
            .unwrap_or_else(|| panic!("{key} lacks the prefix"));
        let ok = if let Some(tagged) = rest.strip_prefix('{') {
            // {sid}:meta|frames|requests
            let (sid, kind) = tagged
                .split_once("}:")
                .unwrap_or_else(|| panic!("{key}: no closing tag"));
            SessionId::new(sid).is_ok() && ["meta", "frames", "requests"].contains(&kind)
        } else if rest == "idx:{cap}:live" {
            true
        } else if let Some(idx) = rest.strip_prefix("idx:{b") {
            let (n, kind) = idx
                .split_once("}:")
                .unwrap_or_else(|| panic!("{key}: no closing tag"));
            n.len() == 4 && n.parse::<u32>().is_ok_and(|n| n < 1024) && kind == "all"
        } else if let Some(m) = rest.strip_prefix("metrics:") {
            [
                "created",
                "completed",
                "failed",
                "deleted",
                "frames",
                "evicted",
            ]
            .contains(&m)
        } else {
            ["sweep:lease", "dataset", "dataset:loss"].contains(&rest)
        };
        assert!(ok, "unexpected key {key}");
    }
    let m = store.metrics().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.created, 3);
    assert_eq!(m.deleted, 1);
    assert_eq!(m.frames, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_unavailable_at_connect() {
    // A port nobody listens on: refused at once.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
    };
    let config = RedisConfig::new(format!("redis://127.0.0.1:{port}"))
        .with_connect_timeout(Duration::from_millis(500));
    let err = RedisStore::connect(
        config,
        Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("connected to nothing"));
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");

    // A listener that accepts but never answers: bounded by the connect timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = silent.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let config = RedisConfig::new(format!("redis://u:hunter2@127.0.0.1:{port}"))
        .with_connect_timeout(Duration::from_millis(500));
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        RedisStore::connect(
            config,
            Limits::default(),
            Arc::new(ManualClock::starting_now()),
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("connect was not bounded by its timeout"));
    let err = r
        .err()
        .unwrap_or_else(|| panic!("connected to a silent port"));
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(
        !err.to_string().contains("hunter2"),
        "the password leaked: {err}"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_unavailable_then_recovers() {
    let mut own = RedisServer::start();
    let config = RedisConfig::new(own.url())
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_millis(500));
    let store = RedisStore::connect(
        config,
        Limits::default(),
        Arc::new(ManualClock::starting_now()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let id = sid("r1");
    store
        .create(Session::new(id.clone(), Transport::Http))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    own.stop();
    let err = store
        .get(&id)
        .await
        .err()
        .unwrap_or_else(|| panic!("read from a stopped server"));
    assert!(err.is_transient(), "{err:?}");
    assert!(
        matches!(err, Error::Unavailable { .. } | Error::Timeout { .. }),
        "{err:?}"
    );
    own.restart();
    // The connection comes back by itself; scripts are reloaded after NOSCRIPT.
    let mut recovered = None;
    for _ in 0..100 {
        match store
            .create(Session::new(id.clone(), Transport::Http))
            .await
        {
            Ok(s) => {
                recovered = Some(s);
                break;
            }
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(recovered.is_some(), "the store did not reconnect");
    let seq = store
        .append_frame(&id, NewFrame::new(Direction::ClientToServer, "x"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seq, 1);
}
