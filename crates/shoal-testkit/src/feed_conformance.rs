//! The change feed's conformance cases: one `pub async fn` per case, each taking a
//! [`StoreFactory`] whose stores apply [`Harness::feed`]. Run them all with
//! [`feed_suite!`](crate::feed_suite).
//!
//! What every backend must show: each change has exactly one entry, a session's entries are
//! in the order of its changes, the entries say what the changes were (without payloads), a
//! consumer group delivers each entry to one member, a dead member's entries are claimed by
//! another, and the cap holds.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};

use shoal_core::{
    Change, ChangeFeed, ChangeKind, Direction, FeedConfig, FeedCursor, FeedId, Limits, NewFrame,
    Session, SessionId, SessionStatus, SessionStore, Transport,
    feed::{FrameError, GroupStart},
};

use crate::{Harness, StoreFactory};

/// Expands to one test per feed case in a module (default `feed_conformance`).
#[macro_export]
macro_rules! feed_suite {
    ($module:ident, $factory:path) => {
        $crate::feed_suite!(@module $module, $factory;
            every_change_has_one_entry_in_session_order,
            groups_deliver_every_entry_once,
            a_dead_consumers_entries_are_claimed,
            the_cap_holds,
            without_frames_the_feed_carries_the_lifecycle,
            a_waiting_read_sees_the_next_entry,
            bad_reads_are_refused,
        );
    };
    ($factory:path) => {
        $crate::feed_suite!(feed_conformance, $factory);
    };
    (@module $module:ident, $factory:path; $($case:ident),+ $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    $crate::feed_conformance::$case($factory).await;
                }
            )+
        }
    };
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("session id {s:?}: {e}"))
}

fn ok<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn fed_store(
    factory: &impl StoreFactory,
    harness: Harness,
) -> (Arc<dyn SessionStore>, Arc<dyn ChangeFeed>) {
    let store = factory.make(harness).await;
    let feed = store
        .change_feed()
        .unwrap_or_else(|| panic!("the {} store has no change feed", store.backend_name()));
    (store, feed)
}

fn harness(feed: FeedConfig) -> Harness {
    let mut limits = Limits::default();
    limits.session_ttl = Duration::from_secs(60);
    let mut h = Harness::new(limits);
    h.feed = feed;
    h
}

fn feed_config(touch_every: Duration, cap: u64) -> FeedConfig {
    let mut f = FeedConfig::default();
    f.touch_every = touch_every;
    f.cap = cap;
    f.cluster_shards = 4;
    f
}

/// Every entry of the feed, oldest first (bounded: at most 100,000).
pub async fn read_all(feed: &dyn ChangeFeed) -> Vec<Change> {
    let mut cursor = FeedCursor::beginning(feed.shards());
    let mut out = Vec::new();
    for _ in 0..100 {
        let page = ok("feed read", feed.read(&cursor, 1000, None).await);
        if page.is_empty() {
            break;
        }
        cursor.advance(&page);
        out.extend(page);
    }
    out
}

fn of_session<'a>(all: &'a [Change], id: &str) -> Vec<&'a Change> {
    all.iter().filter(|c| c.session_id == id).collect()
}

fn kinds(changes: &[&Change]) -> Vec<ChangeKind> {
    changes.iter().map(|c| c.kind).collect()
}

/// One session through its whole life, and three that end otherwise: exactly the expected
/// entries, in order, with what each change was.
pub async fn every_change_has_one_entry_in_session_order(factory: impl StoreFactory) {
    let h = harness(feed_config(Duration::from_secs(1), 100_000));
    let clock = h.clock.clone();
    let (store, feed) = fed_store(&factory, h).await;

    let a = sid("feed-a");
    let mut s = Session::new(a.clone(), Transport::StreamableHttp);
    s.protocol_version = Some("2025-11-25".into());
    s.client_info = Some(serde_json::json!({"name": "probe", "version": "0.9"}));
    s.principal = Some("alice".into());
    let created = ok("create", store.create(s).await);
    let mut done = created.clone();
    done.status = SessionStatus::Completed;
    ok("update", store.update(&done).await);
    clock.advance(Duration::from_millis(1500));
    ok("touch", store.touch(&a).await);
    ok("touch again in the same window", store.touch(&a).await);
    let frames = vec![
        NewFrame::new(
            Direction::ClientToServer,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1}}}"#,
        )
        .with_stream("post-1"),
        NewFrame::new(
            Direction::ServerToClient,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#,
        )
        .with_stream("post-1"),
        NewFrame::new(
            Direction::ServerToClient,
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#,
        )
        .with_stream("post-1"),
    ];
    ok("append", store.append_frames(&a, frames).await);
    assert!(ok("delete", store.delete(&a).await));
    // Two sessions swept, one expired when read.
    for id in ["feed-b", "feed-c"] {
        ok(
            "create",
            store.create(Session::new(sid(id), Transport::Stdio)).await,
        );
    }
    clock.advance(Duration::from_secs(61));
    ok("sweep", store.sweep_expired().await);
    let d = sid("feed-d");
    ok(
        "create",
        store.create(Session::new(d.clone(), Transport::Http)).await,
    );
    clock.advance(Duration::from_secs(61));
    assert!(ok("get", store.get(&d).await).is_none());

    let all = read_all(feed.as_ref()).await;
    let mine = of_session(&all, "feed-a");
    assert_eq!(
        kinds(&mine),
        [
            ChangeKind::Created,
            ChangeKind::Updated,
            ChangeKind::Touched,
            ChangeKind::Frame,
            ChangeKind::Frame,
            ChangeKind::Frame,
            ChangeKind::Deleted
        ],
        "session a's entries: {mine:#?}"
    );
    let summary = mine[0].session.clone().unwrap_or_default();
    assert_eq!(summary.transport, "streamable_http");
    assert_eq!(summary.protocol_version.as_deref(), Some("2025-11-25"));
    assert_eq!(summary.client_name.as_deref(), Some("probe"));
    assert_eq!(summary.client_version.as_deref(), Some("0.9"));
    assert_eq!(summary.principal.as_deref(), Some("alice"));
    assert_eq!(mine[1].status, Some(SessionStatus::Completed));
    assert_eq!(mine[1].revision, Some(2));
    let seqs: Vec<Option<u64>> = mine[3..6].iter().map(|c| c.seq).collect();
    assert_eq!(seqs, [Some(1), Some(2), Some(3)]);
    let request = mine[3]
        .frame
        .clone()
        .unwrap_or_else(|| panic!("no frame summary"));
    assert_eq!(request.method.as_deref(), Some("tools/call"));
    assert_eq!(request.tool.as_deref(), Some("add"));
    assert_eq!(request.rpc_id.as_deref(), Some("1"));
    assert_eq!(request.stream_id.as_deref(), Some("post-1"));
    assert_eq!(request.direction, Direction::ClientToServer);
    let reply = mine[5]
        .frame
        .clone()
        .unwrap_or_else(|| panic!("no frame summary"));
    assert!(reply.is_response());
    assert_eq!(reply.error, Some(FrameError::Tool));
    assert_eq!(mine[6].created_at, Some(created.created_at));
    for id in ["feed-b", "feed-c", "feed-d"] {
        let theirs = of_session(&all, id);
        assert_eq!(
            kinds(&theirs),
            [ChangeKind::Created, ChangeKind::Expired],
            "session {id}: {theirs:#?}"
        );
        assert!(theirs[1].created_at.is_some(), "{id}: {theirs:#?}");
    }
    assert_eq!(all.len(), 7 + 6, "no other entries: {all:#?}");
    assert!(all.iter().all(|c| c.kind != ChangeKind::Other));
    // Ids increase within a shard.
    let mut last: BTreeMap<u16, FeedId> = BTreeMap::new();
    for c in &all {
        if let Some(prev) = last.insert(c.id.shard, c.id) {
            assert!(prev < c.id, "{prev} then {}", c.id);
        }
    }
}

/// Writers and two group members at once: every entry delivered once, to one member; a
/// session's frame entries in seq order.
pub async fn groups_deliver_every_entry_once(factory: impl StoreFactory) {
    let (store, feed) = fed_store(&factory, harness(feed_config(Duration::ZERO, 100_000))).await;
    assert!(ok(
        "create group",
        feed.create_group("g", GroupStart::Beginning).await
    ));
    assert!(!ok(
        "create group again",
        feed.create_group("g", GroupStart::Beginning).await
    ));
    const SESSIONS: usize = 8;
    const APPENDS: usize = 25;
    let mut writers = Vec::new();
    for i in 0..SESSIONS {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            let id = sid(&format!("g-{i}"));
            ok(
                "create",
                store
                    .create(Session::new(id.clone(), Transport::Http))
                    .await,
            );
            for n in 0..APPENDS {
                let f = NewFrame::new(
                    Direction::ClientToServer,
                    format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"ping"}}"#),
                );
                ok("append", store.append_frame(&id, f).await);
            }
        }));
    }
    let expected = SESSIONS * (1 + APPENDS);
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut members = Vec::new();
    for name in ["m1", "m2"] {
        let feed = Arc::clone(&feed);
        let writing = Arc::clone(&writing);
        members.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while tokio::time::Instant::now() < deadline {
                let batch = ok(
                    "read group",
                    feed.read_group("g", name, 7, Some(Duration::from_millis(100)))
                        .await,
                );
                if batch.is_empty() && !writing.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let ids: Vec<FeedId> = batch.iter().map(|c| c.id).collect();
                assert_eq!(ok("ack", feed.ack("g", &ids).await), ids.len() as u64);
                got.extend(batch);
            }
            got
        }));
    }
    for w in writers {
        ok("writer", w.await);
    }
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut delivered = Vec::new();
    for m in members {
        delivered.extend(ok("member", m.await));
    }
    let ids: HashSet<FeedId> = delivered.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), delivered.len(), "an entry was delivered twice");
    let all = read_all(feed.as_ref()).await;
    assert_eq!(all.len(), expected);
    let every: HashSet<FeedId> = all.iter().map(|c| c.id).collect();
    assert_eq!(ids, every, "delivered ≠ written");
    for i in 0..SESSIONS {
        let theirs = of_session(&all, &format!("g-{i}"));
        assert_eq!(theirs[0].kind, ChangeKind::Created);
        let seqs: Vec<u64> = theirs[1..].iter().filter_map(|c| c.seq).collect();
        assert_eq!(seqs, (1..=APPENDS as u64).collect::<Vec<_>>(), "g-{i}");
    }
    let stats = ok("stats", feed.stats().await);
    let g = stats
        .groups
        .iter()
        .find(|g| g.name == "g")
        .unwrap_or_else(|| panic!("{stats:?}"));
    assert_eq!((g.pending, g.lag), (0, Some(0)), "{stats:?}");
}

/// A member that read a batch and died before acknowledging it: another claims exactly those
/// entries, and nothing is left pending.
pub async fn a_dead_consumers_entries_are_claimed(factory: impl StoreFactory) {
    let (store, feed) = fed_store(&factory, harness(feed_config(Duration::ZERO, 100_000))).await;
    ok(
        "create group",
        feed.create_group("work", GroupStart::End).await,
    );
    for i in 0..12 {
        ok(
            "create",
            store
                .create(Session::new(sid(&format!("c-{i}")), Transport::Http))
                .await,
        );
    }
    let mut taken = Vec::new();
    for _ in 0..20 {
        if taken.len() >= 10 {
            break;
        }
        let want = 10 - taken.len();
        taken.extend(ok(
            "read",
            feed.read_group("work", "doomed", want, Some(Duration::from_millis(200)))
                .await,
        ));
    }
    assert_eq!(taken.len(), 10);
    // "doomed" dies here without acknowledging.
    let fresh = ok(
        "claim",
        feed.claim_stale("work", "heir", Duration::from_secs(60), 100)
            .await,
    );
    assert!(
        fresh.is_empty(),
        "entries pending for less than min_idle were claimed: {fresh:?}"
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let claimed = ok(
        "claim",
        feed.claim_stale("work", "heir", Duration::from_millis(100), 100)
            .await,
    );
    let want: HashSet<FeedId> = taken.iter().map(|c| c.id).collect();
    let got: HashSet<FeedId> = claimed.iter().map(|c| c.id).collect();
    assert_eq!(got, want);
    let ids: Vec<FeedId> = claimed.iter().map(|c| c.id).collect();
    assert_eq!(ok("ack", feed.ack("work", &ids).await), 10);
    assert_eq!(
        ok("late ack", feed.ack("work", &ids).await),
        0,
        "acknowledged twice"
    );
    // The last two are still undelivered.
    let rest = ok(
        "read",
        feed.read_group("work", "heir", 100, Some(Duration::from_millis(200)))
            .await,
    );
    assert_eq!(rest.len(), 2);
    let ids: Vec<FeedId> = rest.iter().map(|c| c.id).collect();
    ok("ack", feed.ack("work", &ids).await);
    let stats = ok("stats", feed.stats().await);
    let g = stats
        .groups
        .iter()
        .find(|g| g.name == "work")
        .unwrap_or_else(|| panic!("{stats:?}"));
    assert_eq!(g.pending, 0, "{stats:?}");
}

/// 2,000 entries into a feed capped at 200: it holds about the cap (Redis trims whole stream
/// nodes, up to 100 entries more) and the newest entries.
pub async fn the_cap_holds(factory: impl StoreFactory) {
    let (store, feed) = fed_store(&factory, harness(feed_config(Duration::ZERO, 200))).await;
    let id = sid("cap");
    ok(
        "create",
        store
            .create(Session::new(id.clone(), Transport::Http))
            .await,
    );
    for _ in 0..40 {
        let batch = (0..50)
            .map(|_| NewFrame::new(Direction::ClientToServer, "{}"))
            .collect();
        ok("append", store.append_frames(&id, batch).await);
    }
    let stats = ok("stats", feed.stats().await);
    let per_shard_bound = 200 + 100;
    assert!(
        stats.length >= 200 && stats.length <= per_shard_bound,
        "{} entries held with cap 200",
        stats.length
    );
    let all = read_all(feed.as_ref()).await;
    assert_eq!(all.last().and_then(|c| c.seq), Some(2000));
}

/// `frames = false`: appends leave no entries; every lifecycle change still has one.
pub async fn without_frames_the_feed_carries_the_lifecycle(factory: impl StoreFactory) {
    let mut config = feed_config(Duration::ZERO, 100_000);
    config.frames = false;
    let (store, feed) = fed_store(&factory, harness(config)).await;
    let id = sid("no-frames");
    ok(
        "create",
        store
            .create(Session::new(id.clone(), Transport::Http))
            .await,
    );
    let batch = (0..3)
        .map(|_| NewFrame::new(Direction::ClientToServer, "{}"))
        .collect();
    ok("append", store.append_frames(&id, batch).await);
    ok(
        "append",
        store
            .append_frame(&id, NewFrame::new(Direction::ServerToClient, "{}"))
            .await,
    );
    assert!(ok("delete", store.delete(&id).await));
    let all = read_all(feed.as_ref()).await;
    assert_eq!(
        kinds(&all.iter().collect::<Vec<_>>()),
        [ChangeKind::Created, ChangeKind::Deleted],
        "{all:#?}"
    );
}

/// A reader waiting at the end gets an entry written while it waits.
pub async fn a_waiting_read_sees_the_next_entry(factory: impl StoreFactory) {
    let (store, feed) = fed_store(&factory, harness(feed_config(Duration::ZERO, 100_000))).await;
    ok(
        "create",
        store
            .create(Session::new(sid("w-0"), Transport::Http))
            .await,
    );
    let end = ok("end", feed.end().await);
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ok(
            "create",
            store
                .create(Session::new(sid("w-1"), Transport::Http))
                .await,
        );
    });
    let got = ok(
        "read",
        feed.read(&end, 10, Some(Duration::from_secs(10))).await,
    );
    ok("writer", writer.await);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].session_id, "w-1");
    assert_eq!(got[0].kind, ChangeKind::Created);
}

/// Bad counts, group and consumer names, and unknown groups: clear errors.
pub async fn bad_reads_are_refused(factory: impl StoreFactory) {
    let (_store, feed) = fed_store(&factory, harness(feed_config(Duration::ZERO, 100_000))).await;
    let start = FeedCursor::beginning(feed.shards());
    assert!(feed.read(&start, 0, None).await.is_err());
    assert!(feed.read(&start, 10_001, None).await.is_err());
    assert!(feed.create_group("a b", GroupStart::End).await.is_err());
    ok(
        "create group",
        feed.create_group("ok", GroupStart::End).await,
    );
    assert!(feed.read_group("ok", "", 1, None).await.is_err());
    let e = feed.read_group("missing", "c", 1, None).await.err();
    assert!(
        e.as_ref()
            .is_some_and(|e| e.to_string().contains("missing")),
        "{e:?}"
    );
}
