//! `Resilient<P, F>`: the failure model against a primary whose faults the test controls
//! (down, hanging, applying a write and losing the reply), with Tokio's paused clock so
//! nothing really waits. The conformance suite over `Resilient<Memory, Memory>` and
//! `Resilient<Redis, Memory>` runs in `crates/shoal-redis/tests/resilience.rs`.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use shoal_core::{
    Direction, Error, FrameQuery, HealthStatus, ListQuery, MemoryStore, NewFrame, PendingRequest,
    Result, Session, SessionId, SessionStore, Timestamp, Transport,
    resilient::{
        BreakerState, FallbackMode, PROVISIONAL_SEQ_BASE, ResilienceConfig, Resilient,
        is_provisional,
    },
};
use shoal_testkit::forwarding::{Call, ForwardingStore, Hooks, Op, Outcome};

// ----------------------------------------------------------------------------------------
// A primary with controllable faults
// ----------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Answers normally.
    Up,
    /// Refuses every call at once (`Unavailable`): connection refused.
    Down,
    /// Never answers: a stopped server or a black hole.
    Hang,
    /// Applies the call, then loses the reply (`Unavailable`): a reply cut mid-way.
    ApplyThenFail,
    /// Reads answer; writes are applied and their replies lost.
    LoseWriteReplies,
}

/// A memory primary with the faults of [`Faults`].
type Faulty = ForwardingStore<MemoryStore, Faults>;

/// The primary's fault switches (shared by its clones).
#[derive(Debug, Clone)]
struct Faults {
    mode: Arc<Mutex<Mode>>,
    calls: Arc<AtomicU64>,
    /// Calls still to fail (with `Unavailable`) before `mode` applies.
    fail_next: Arc<AtomicU64>,
}

impl Faults {
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

fn faulty() -> Faulty {
    let faults = Faults {
        mode: Arc::new(Mutex::new(Mode::Up)),
        calls: Arc::new(AtomicU64::new(0)),
        fail_next: Arc::new(AtomicU64::new(0)),
    };
    ForwardingStore::new(MemoryStore::new(), faults).with_backend_name("faulty")
}

#[async_trait]
impl Hooks for Faults {
    /// Whether the reply is lost once the call is applied.
    type Ticket = bool;

    async fn before(&self, call: Call<'_>) -> Result<bool> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::unavailable("injected: connection reset"));
        }
        let mode = *self.mode.lock().unwrap_or_else(|e| e.into_inner());
        match mode {
            Mode::Up => Ok(false),
            Mode::Down => Err(Error::unavailable("injected: connection refused")),
            Mode::Hang => std::future::pending().await,
            Mode::LoseWriteReplies if !call.op().is_write() => Ok(false),
            Mode::ApplyThenFail | Mode::LoseWriteReplies => Ok(true),
        }
    }

    async fn after(&self, _: Op, lose_reply: bool, _: Outcome<'_>) -> Option<Error> {
        lose_reply.then(|| Error::unavailable("injected: connection lost mid-reply"))
    }
}

type Store = Resilient<Faulty, MemoryStore>;

fn config(mode: FallbackMode) -> ResilienceConfig {
    let mut c = ResilienceConfig::default().with_fallback(mode);
    c.op_timeout = Duration::from_millis(100);
    c.bulk_timeout = Duration::from_millis(200);
    c.breaker.failure_threshold = 3;
    c.breaker.cooldown = Duration::from_secs(1);
    c.breaker.close_after = 2;
    c.retry.max_retries = 1;
    c.health.timeout = Duration::from_millis(100);
    c
}

fn setup(mode: FallbackMode) -> (Store, Faulty) {
    setup_with(config(mode))
}

fn setup_with(c: ResilienceConfig) -> (Store, Faulty) {
    let primary = faulty();
    let store = Resilient::new(primary.clone(), MemoryStore::new(), c)
        .unwrap_or_else(|e| panic!("config: {e}"));
    (store, primary)
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn frame(content: &str) -> NewFrame {
    NewFrame::new(Direction::ServerToClient, content.to_owned())
        .with_timestamp(Timestamp(1_700_000_000_000))
}

async fn create(store: &Store, id: &str) -> SessionId {
    let id = sid(id);
    store
        .create(Session::new(id.clone(), Transport::StreamableHttp))
        .await
        .unwrap_or_else(|e| panic!("create {id}: {e}"));
    id
}

/// Opens the breaker with failing calls (the primary in its current fault mode).
async fn open(store: &Store) {
    for i in 0..10 {
        if store.breaker_state() == BreakerState::Open {
            return;
        }
        let _ = store.get(&sid(&format!("probe-{i}"))).await;
    }
    assert_eq!(store.breaker_state(), BreakerState::Open, "breaker opens");
}

/// Lets the cooldown pass and probes until closed, then drains.
async fn recover(store: &Store) -> shoal_core::resilient::DrainReport {
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..2 {
        let p = store.probe().await;
        assert!(p.ok, "probe: {:?}", p.error);
    }
    assert_eq!(
        store.breaker_state(),
        BreakerState::Closed,
        "closed after probes"
    );
    store.drain_journal().await
}

/// Every frame content of `id` in the primary's own store, in seq order, with seqs.
async fn stored(primary: &Faulty, id: &SessionId) -> Vec<(u64, String)> {
    let page = primary
        .inner()
        .frames(id, &FrameQuery::after(0, 10_000))
        .await
        .unwrap_or_else(|e| panic!("frames {id}: {e}"));
    page.frames
        .iter()
        .map(|f| (f.seq, String::from_utf8_lossy(&f.content).into_owned()))
        .collect()
}

fn contents(v: &[(u64, String)]) -> Vec<&str> {
    v.iter().map(|(_, c)| c.as_str()).collect()
}

fn is_unavailable<T: std::fmt::Debug>(r: &Result<T>) -> bool {
    matches!(r, Err(Error::Unavailable { .. }))
}

// ----------------------------------------------------------------------------------------
// Breaker, deadlines, retries
// ----------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_hanging_primary_times_out_then_the_breaker_fails_fast() {
    let (store, primary) = setup(FallbackMode::None);
    let id = create(&store, "s1").await;
    primary.hooks().set(Mode::Hang);
    let before = primary.hooks().calls();
    let r = store.touch(&id).await;
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert_eq!(primary.hooks().calls(), before + 2, "touch is retried once");
    open(&store).await;
    let before = primary.hooks().calls();
    for _ in 0..100 {
        assert!(is_unavailable(&store.get(&id).await));
    }
    assert_eq!(
        primary.hooks().calls(),
        before,
        "the open breaker fails fast: no call reached the primary"
    );
    let h = store
        .health()
        .await
        .unwrap_or_else(|e| panic!("health: {e}"));
    assert_eq!(h.status, HealthStatus::Unhealthy, "mode none + open");
    assert_eq!(h.details["breaker_state"], "open");
}

#[tokio::test(start_paused = true)]
async fn idempotent_calls_are_retried_and_others_are_not() {
    let (store, primary) = setup(FallbackMode::Memory);
    let id = create(&store, "s1").await;
    primary.hooks().fail_next.store(1, Ordering::SeqCst);
    let got = store.get(&id).await;
    assert!(matches!(got, Ok(Some(_))), "get retried: {got:?}");
    primary.hooks().fail_next.store(1, Ordering::SeqCst);
    let r = store.append_frame(&id, frame("a")).await;
    assert!(is_unavailable(&r), "append not retried: {r:?}");
    // A lost reply is reported, never retried: the frame is stored at most once.
    primary.hooks().set(Mode::ApplyThenFail);
    let r = store.append_frame(&id, frame("b")).await;
    assert!(is_unavailable(&r));
    primary.hooks().set(Mode::Up);
    assert_eq!(contents(&stored(&primary, &id).await), ["b"]);
    assert_eq!(store.breaker_state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_probes_close_or_reopen() {
    let (store, primary) = setup(FallbackMode::None);
    primary.hooks().set(Mode::Down);
    open(&store).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(store.breaker_state(), BreakerState::HalfOpen);
    let p = store.probe().await;
    assert!(!p.ok);
    assert_eq!(
        store.breaker_state(),
        BreakerState::Open,
        "failed probe reopens"
    );
    primary.hooks().set(Mode::Up);
    tokio::time::advance(Duration::from_secs(1)).await;
    // A live call is a probe too.
    assert!(matches!(store.get(&sid("x")).await, Ok(None)));
    assert_eq!(store.breaker_state(), BreakerState::HalfOpen);
    assert!(store.probe().await.ok);
    assert_eq!(store.breaker_state(), BreakerState::Closed);
    let stats = store.stats();
    assert_eq!(stats.breaker_opened, 2);
    assert!(stats.last_probe.is_some_and(|p| p.ok));
}

// ----------------------------------------------------------------------------------------
// Fallback modes
// ----------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn read_only_mode_serves_reads_the_fallback_holds_and_refuses_writes() {
    let (store, primary) = setup(FallbackMode::ReadOnly);
    let held = create(&store, "held").await;
    let other = create(&store, "other").await;
    // The fallback holds a copy of one session (a replica would hold all of them).
    store
        .fallback()
        .create(Session::new(held.clone(), Transport::StreamableHttp))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .fallback()
        .append_frame(&held, frame("replica"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    primary.hooks().set(Mode::Down);
    open(&store).await;
    assert!(matches!(store.get(&held).await, Ok(Some(_))));
    let page = store.frames(&held, &FrameQuery::after(0, 10)).await;
    assert_eq!(page.map(|p| p.frames.len()).ok(), Some(1));
    let r = store.get(&other).await;
    assert!(
        is_unavailable(&r),
        "not held: Unavailable, never None: {r:?}"
    );
    let r = store.frames(&other, &FrameQuery::after(0, 10)).await;
    assert!(
        is_unavailable(&r),
        "not held: Unavailable, never NotFound: {r:?}"
    );
    let gm = store
        .get_many(&[held.clone(), other.clone()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(gm.found.len(), 1);
    assert!(gm.missing.is_empty());
    assert_eq!(gm.errors.len(), 1);
    for r in [
        store.append_frame(&held, frame("x")).await.map(|_| ()),
        store.touch(&held).await.map(|_| ()),
        store.delete(&held).await.map(|_| ()),
        store
            .create(Session::new(sid("new"), Transport::Stdio))
            .await
            .map(|_| ()),
    ] {
        let e = r.expect_err("writes refused");
        assert!(e.to_string().contains("read-only"), "{e}");
    }
    assert!(is_unavailable(&store.list(&ListQuery::first(10)).await));
    let h = store.health().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.status, HealthStatus::Degraded);
}

#[tokio::test(start_paused = true)]
async fn memory_mode_outage_then_drain_keeps_every_acknowledged_frame_once_in_order() {
    let (store, primary) = setup(FallbackMode::Memory);
    let old = create(&store, "old").await;
    assert_eq!(store.append_frame(&old, frame("o1")).await.ok(), Some(1));

    primary.hooks().set(Mode::Down);
    open(&store).await;

    // A session the fallback does not hold: reads are Unavailable, never NotFound / None.
    assert!(is_unavailable(&store.get(&old).await));
    assert!(is_unavailable(
        &store.frames(&old, &FrameQuery::after(0, 10)).await
    ));
    assert!(is_unavailable(&store.list(&ListQuery::first(10)).await));

    // Appends to it are journaled with provisional seqs.
    let p1 = store
        .append_frame(&old, frame("o2"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let p23 = store
        .append_frames(&old, vec![frame("o3"), frame("o4")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(is_provisional(p1) && p1 > PROVISIONAL_SEQ_BASE);
    assert_eq!(p23, [p1 + 1, p1 + 2]);
    assert!(store.touch(&old).await.is_ok());
    // Writes that need the primary's state are refused.
    assert!(is_unavailable(
        &store
            .update(&Session::new(old.clone(), Transport::Http))
            .await
    ));

    // A session created now lives in the fallback, marked local, fully usable.
    let new = create(&store, "new").await;
    assert!(store.is_local(&new));
    assert_eq!(store.append_frame(&new, frame("n1")).await.ok(), Some(1));
    assert_eq!(store.append_frame(&new, frame("n2")).await.ok(), Some(2));
    assert!(matches!(store.get(&new).await, Ok(Some(s)) if s.last_seq == 2));
    store
        .add_pending(&new, PendingRequest::new(7, "tools/call"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let stats = store.stats();
    assert_eq!(stats.local_sessions, 1);
    assert_eq!(stats.marked_sessions, 2);
    assert!(stats.journal_entries >= 6, "{stats:?}");
    let h = store.health().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.status, HealthStatus::Degraded);
    assert_eq!(h.details["breaker_state"], "open");
    assert_eq!(h.details["local_sessions"], "1");

    primary.hooks().set(Mode::Up);
    let rep = recover(&store).await;
    assert!(rep.complete, "{rep:?}");
    assert_eq!(rep.restored, 1);
    assert_eq!(rep.frames, 5, "3 appended + 2 restored");
    assert_eq!(rep.dropped_frames, 0);

    let o = stored(&primary, &old).await;
    assert_eq!(contents(&o), ["o1", "o2", "o3", "o4"]);
    assert_eq!(store.resolve_seq(&old, p1), Some(2));
    assert_eq!(store.resolve_seq(&old, p1 + 2), Some(4));
    // A client resuming after a provisional event id gets the frames after its final seq.
    let page = store
        .frames(&old, &FrameQuery::after(p1, 10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        page.frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
        [3, 4]
    );
    let unknown = store.frames(&old, &FrameQuery::after(p1 + 1_000, 10)).await;
    assert!(
        matches!(unknown, Err(Error::InvalidInput { .. })),
        "{unknown:?}"
    );

    // The local session kept its seqs and pending request, and left the fallback.
    assert_eq!(
        stored(&primary, &new).await,
        [(1, "n1".to_owned()), (2, "n2".to_owned())]
    );
    assert_eq!(
        primary
            .inner()
            .list_pending(&new)
            .await
            .map(|p| p.len())
            .ok(),
        Some(1)
    );
    assert!(!store.is_local(&new));
    assert!(matches!(store.fallback().get(&new).await, Ok(None)));
    let stats = store.stats();
    assert_eq!((stats.journal_entries, stats.marked_sessions), (0, 0));
    // Later writes go straight to the primary.
    assert_eq!(store.append_frame(&new, frame("n3")).await.ok(), Some(3));
    assert_eq!(store.append_frame(&old, frame("o5")).await.ok(), Some(5));
    let h = store.health().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.status, HealthStatus::Healthy);
    assert_eq!(h.details["breaker_state"], "closed");
    assert!(h.details.contains_key("last_probe_at"));
}

#[tokio::test(start_paused = true)]
async fn writes_after_recovery_wait_behind_the_journal() {
    let (store, primary) = setup(FallbackMode::Memory);
    let id = create(&store, "s").await;
    primary.hooks().set(Mode::Down);
    open(&store).await;
    store
        .append_frame(&id, frame("during"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    primary.hooks().set(Mode::Up);
    tokio::time::advance(Duration::from_secs(1)).await;
    store.probe().await;
    store.probe().await;
    assert_eq!(store.breaker_state(), BreakerState::Closed);
    // Not drained yet: this write is journaled behind the first one, not sent ahead of it.
    let seq = store
        .append_frame(&id, frame("after"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(is_provisional(seq));
    assert!(is_unavailable(
        &store.frames(&id, &FrameQuery::after(0, 10)).await
    ));
    let rep = store.drain_journal().await;
    assert!(rep.complete);
    assert_eq!(contents(&stored(&primary, &id).await), ["during", "after"]);
    assert_eq!(store.append_frame(&id, frame("direct")).await.ok(), Some(3));
}

#[tokio::test(start_paused = true)]
async fn the_monitor_closes_the_breaker_and_drains() {
    let mut c = config(FallbackMode::Memory);
    c.health.interval = Duration::from_millis(100);
    let (store, primary) = setup_with(c);
    let id = create(&store, "s").await;
    primary.hooks().set(Mode::Hang);
    let monitor = store.spawn_monitor();
    open(&store).await;
    for i in 0..5 {
        store
            .append_frame(&id, frame(&format!("f{i}")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    primary.hooks().set(Mode::Up);
    let mut waited = Duration::ZERO;
    while store.stats().journal_entries > 0 || store.breaker_state() != BreakerState::Closed {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
        assert!(
            waited < Duration::from_secs(30),
            "recovered in bounded time"
        );
    }
    monitor.stop().await;
    assert_eq!(
        contents(&stored(&primary, &id).await),
        ["f0", "f1", "f2", "f3", "f4"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_journal_is_a_clear_error() {
    let mut c = config(FallbackMode::Memory);
    c.journal.max_entries = 3;
    let (store, primary) = setup_with(c);
    let id = create(&store, "s").await;
    primary.hooks().set(Mode::Down);
    open(&store).await;
    for i in 0..3 {
        store
            .append_frame(&id, frame(&format!("f{i}")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let e = store
        .append_frame(&id, frame("too many"))
        .await
        .expect_err("journal full");
    assert!(
        matches!(e, Error::Unavailable { .. }) && e.to_string().contains("journal is full"),
        "{e}"
    );
    let e = store
        .create(Session::new(sid("n"), Transport::Stdio))
        .await
        .expect_err("journal full");
    assert!(e.to_string().contains("journal is full"), "{e}");
    assert!(
        !store.is_local(&sid("n")),
        "a refused create leaves no mark"
    );
    assert_eq!(store.stats().journal_full_rejections, 2);
    primary.hooks().set(Mode::Up);
    let rep = recover(&store).await;
    assert!(rep.complete);
    assert_eq!(contents(&stored(&primary, &id).await), ["f0", "f1", "f2"]);
}

// ----------------------------------------------------------------------------------------
// Conflict rules
// ----------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn frames_of_a_session_deleted_elsewhere_are_dropped_and_counted() {
    let (store, primary) = setup(FallbackMode::Memory);
    let id = create(&store, "s").await;
    primary.hooks().set(Mode::Down);
    open(&store).await;
    store
        .append_frames(&id, vec![frame("a"), frame("b")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Another instance deletes the session meanwhile.
    assert!(primary.inner().delete(&id).await.unwrap_or(false));
    primary.hooks().set(Mode::Up);
    let rep = recover(&store).await;
    assert!(rep.complete);
    assert_eq!(rep.dropped_frames, 2);
    assert!(matches!(store.get(&id).await, Ok(None)), "not resurrected");
}

#[tokio::test(start_paused = true)]
async fn frames_appended_elsewhere_meanwhile_come_first() {
    let (store, primary) = setup(FallbackMode::Memory);
    let id = create(&store, "s").await;
    primary.hooks().set(Mode::Down);
    open(&store).await;
    let p = store
        .append_frame(&id, frame("ours"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    primary
        .inner()
        .append_frame(&id, frame("theirs"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    primary.hooks().set(Mode::Up);
    recover(&store).await;
    assert_eq!(
        stored(&primary, &id).await,
        [(1, "theirs".to_owned()), (2, "ours".to_owned())]
    );
    assert_eq!(store.resolve_seq(&id, p), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_local_session_whose_id_the_primary_holds_loses_to_it() {
    let (store, primary) = setup(FallbackMode::Memory);
    primary.hooks().set(Mode::Down);
    open(&store).await;
    let id = create(&store, "dup").await;
    store
        .append_frame(&id, frame("local"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    primary
        .inner()
        .create(Session::new(id.clone(), Transport::Stdio))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    primary.hooks().set(Mode::Up);
    let rep = recover(&store).await;
    assert!(rep.complete);
    assert_eq!(
        (rep.conflicts, rep.dropped_sessions, rep.dropped_frames),
        (1, 1, 1)
    );
    assert!(
        stored(&primary, &id).await.is_empty(),
        "the primary's session wins"
    );
    assert!(!store.is_local(&id));
}

#[tokio::test(start_paused = true)]
async fn deletes_during_the_outage() {
    let (store, primary) = setup(FallbackMode::Memory);
    let held = create(&store, "held").await;
    primary.hooks().set(Mode::Down);
    open(&store).await;
    // A local session deleted before the drain never reaches the primary.
    let local = create(&store, "local").await;
    assert_eq!(store.delete(&local).await.ok(), Some(true));
    assert!(!store.is_local(&local));
    // A delete of a session the primary holds is journaled; the session reads as gone here.
    store
        .append_frame(&held, frame("x"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.delete(&held).await.ok(), Some(true));
    assert!(matches!(store.get(&held).await, Ok(None)));
    assert!(matches!(
        store.append_frame(&held, frame("y")).await,
        Err(Error::NotFound { .. })
    ));
    primary.hooks().set(Mode::Up);
    let rep = recover(&store).await;
    assert!(rep.complete);
    assert_eq!(rep.deletes, 1);
    assert!(matches!(primary.inner().get(&held).await, Ok(None)));
    assert!(matches!(primary.inner().get(&local).await, Ok(None)));
}

// ----------------------------------------------------------------------------------------
// Ambiguous drain: a write applied whose answer was lost
// ----------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn an_append_applied_during_a_failed_drain_is_not_applied_twice() {
    let (store, primary) = setup(FallbackMode::Memory);
    let id = create(&store, "s").await;
    primary.hooks().set(Mode::Down);
    open(&store).await;
    let p = store
        .append_frames(&id, vec![frame("a"), frame("b")])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .append_frame(&id, frame("c"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    primary.hooks().set(Mode::Up);
    tokio::time::advance(Duration::from_secs(1)).await;
    store.probe().await;
    store.probe().await;
    // The drain's `get` succeeds, its first append is applied but the answer is lost.
    primary.hooks().set(Mode::LoseWriteReplies);
    let rep = store.drain_journal().await;
    assert!(!rep.complete);
    assert_eq!(
        store.breaker_state(),
        BreakerState::Open,
        "a failed drain opens"
    );
    primary.hooks().set(Mode::Up);
    let rep = recover(&store).await;
    assert!(rep.complete, "{rep:?}");
    assert_eq!(rep.ambiguous_applied, 1);
    assert_eq!(contents(&stored(&primary, &id).await), ["a", "b", "c"]);
    assert_eq!(store.resolve_seq(&id, p[0]), Some(1));
    assert_eq!(store.resolve_seq(&id, p[1]), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_restore_applied_during_a_failed_drain_is_settled_once() {
    let (store, primary) = setup(FallbackMode::Memory);
    primary.hooks().set(Mode::Down);
    open(&store).await;
    let id = create(&store, "local").await;
    store
        .append_frame(&id, frame("a"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    primary.hooks().set(Mode::Up);
    tokio::time::advance(Duration::from_secs(1)).await;
    store.probe().await;
    store.probe().await;
    primary.hooks().set(Mode::ApplyThenFail);
    let rep = store.drain_journal().await;
    assert!(!rep.complete);
    // In doubt: reads are served, writes wait for the next drain.
    assert!(matches!(store.get(&id).await, Ok(Some(_))));
    let e = store
        .append_frame(&id, frame("b"))
        .await
        .expect_err("in doubt");
    assert!(e.to_string().contains("settles"), "{e}");
    primary.hooks().set(Mode::Up);
    let rep = recover(&store).await;
    assert!(rep.complete);
    assert_eq!((rep.ambiguous_applied, rep.conflicts), (1, 0));
    assert_eq!(stored(&primary, &id).await, [(1, "a".to_owned())]);
    assert_eq!(store.append_frame(&id, frame("b")).await.ok(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn drain_survives_being_cancelled() {
    let (store, primary) = setup(FallbackMode::Memory);
    let id = create(&store, "s").await;
    primary.hooks().set(Mode::Down);
    open(&store).await;
    store
        .append_frame(&id, frame("a"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    primary.hooks().set(Mode::Up);
    tokio::time::advance(Duration::from_secs(1)).await;
    store.probe().await;
    store.probe().await;
    primary.hooks().set(Mode::Hang);
    // Abandon the drain while its call hangs: the entry goes back to the journal.
    let r = tokio::time::timeout(Duration::from_millis(10), store.drain_journal()).await;
    assert!(r.is_err());
    assert_eq!(store.stats().journal_entries, 1);
    primary.hooks().set(Mode::Up);
    let rep = store.drain_journal().await;
    assert!(rep.complete);
    assert_eq!(contents(&stored(&primary, &id).await), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn none_mode_refuses_everything_while_open() {
    let (store, primary) = setup(FallbackMode::None);
    primary.hooks().set(Mode::Down);
    open(&store).await;
    let e = store
        .create(Session::new(sid("n"), Transport::Stdio))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("fallback mode none"), "{e}");
    assert!(is_unavailable(
        &store.append_frame(&sid("n"), frame("x")).await
    ));
    assert_eq!(store.stats().journal_entries, 0);
}

#[tokio::test(start_paused = true)]
async fn a_refused_write_during_the_outage_leaves_no_mark() {
    let (store, primary) = setup(FallbackMode::Memory);
    let id = create(&store, "s").await;
    primary.hooks().set(Mode::Down);
    open(&store).await;
    let big = "x".repeat(store.limits().max_frame_bytes + 1);
    let r = store.append_frame(&id, frame(&big)).await;
    assert!(matches!(r, Err(Error::LimitExceeded { .. })), "{r:?}");
    let stats = store.stats();
    assert_eq!((stats.marked_sessions, stats.journal_entries), (0, 0));
    primary.hooks().set(Mode::Up);
    let rep = recover(&store).await;
    assert!(rep.complete);
    assert!(store.frames(&id, &FrameQuery::after(0, 10)).await.is_ok());
}
