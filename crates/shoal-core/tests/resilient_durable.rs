//! The durable outage journal (`journal.path`): an instance that stops during an outage —
//! dropped here without draining, as a killed process is — and starts again replays from the
//! file every write it acknowledged, and the drain then stores each exactly once; a crash in
//! the middle of a drain does not write anything twice; a torn tail, a second process on the
//! same file and a bad path are refused or reported. (A real SIGKILL of a process writing
//! through a frozen Redis: `crates/shoal-redis/tests/durable_journal.rs`.)

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use shoal_core::{
    Direction, Error, FrameQuery, MemoryStore, NewFrame, PendingRequest, RequestId, Result,
    Session, SessionId, SessionStore, Timestamp, Transport,
    resilient::{BreakerState, FallbackMode, FsyncPolicy, ResilienceConfig, Resilient},
};
use shoal_testkit::forwarding::{Call, ForwardingStore, Hooks, Op, Outcome};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Up,
    /// Every call refused at once.
    Down,
    /// Writes are applied, then never answered (the process dies waiting).
    ApplyThenHang,
}

#[derive(Clone, Debug)]
struct Switch(Arc<Mutex<Mode>>);

impl Switch {
    fn set(&self, m: Mode) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = m;
    }
    fn get(&self) -> Mode {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Hooks for Switch {
    type Ticket = bool;

    async fn before(&self, call: Call<'_>) -> Result<bool> {
        match self.get() {
            Mode::Up => Ok(false),
            Mode::Down => Err(Error::unavailable("injected: connection refused")),
            Mode::ApplyThenHang => Ok(call.op().is_write()),
        }
    }

    async fn after(&self, _: Op, hang: bool, _: Outcome<'_>) -> Option<Error> {
        if hang {
            std::future::pending::<()>().await;
        }
        None
    }
}

type Primary = ForwardingStore<MemoryStore, Switch>;
type Store = Resilient<Primary, MemoryStore>;

fn primary() -> (Primary, Switch) {
    let switch = Switch(Arc::new(Mutex::new(Mode::Up)));
    let p = ForwardingStore::new(MemoryStore::new(), switch.clone()).with_backend_name("switch");
    (p, switch)
}

fn config(path: &Path) -> ResilienceConfig {
    let mut c = ResilienceConfig::default().with_fallback(FallbackMode::Memory);
    c.op_timeout = Duration::from_secs(2);
    c.breaker.failure_threshold = 2;
    c.breaker.cooldown = Duration::from_millis(50);
    c.breaker.close_after = 1;
    c.retry.max_retries = 0;
    c.health.timeout = Duration::from_millis(200);
    c.journal.path = Some(path.to_owned());
    c.journal.fsync = FsyncPolicy::Always;
    c
}

fn open(p: &Primary, path: &Path) -> Store {
    Resilient::new(p.clone(), MemoryStore::new(), config(path))
        .unwrap_or_else(|e| panic!("open: {e}"))
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn frame(n: u64) -> NewFrame {
    NewFrame::new(Direction::ServerToClient, format!("{{\"n\":{n}}}"))
        .with_timestamp(Timestamp(1_700_000_000_000 + n))
}

/// Trips the breaker: calls against a refusing primary until it opens.
async fn trip(store: &Store) {
    for _ in 0..10 {
        let _ = store.get(&sid("probe")).await;
        if store.breaker_state() == BreakerState::Open {
            return;
        }
    }
    panic!("the breaker did not open");
}

/// Probes until the breaker closes, then drains until the journal is empty (bounded).
async fn recover_and_drain(store: &Store) {
    for _ in 0..200 {
        store.probe().await;
        if store.breaker_state() == BreakerState::Closed {
            store.drain_journal().await;
            if store.stats().journal_entries == 0 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the journal did not drain: {:?}", store.stats());
}

async fn contents(p: &Primary, id: &SessionId) -> Vec<String> {
    p.frames(id, &FrameQuery::after(0, 1_000))
        .await
        .unwrap_or_else(|e| panic!("frames: {e}"))
        .frames
        .iter()
        .map(|f| String::from_utf8_lossy(&f.content).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_restarted_after_an_outage_replays_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("journal");
    let (p, switch) = primary();
    let held = sid("held");
    p.create(Session::new(held.clone(), Transport::StreamableHttp))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    p.append_frames(&held, vec![frame(0)])
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let a = open(&p, &path);
    switch.set(Mode::Down);
    trip(&a).await;
    // Acknowledged during the outage: appends to a session Redis holds, a new session with
    // frames, metadata and a pending request.
    let mut acked_held = vec!["{\"n\":0}".to_owned()];
    for n in 1..=20 {
        a.append_frames(&held, vec![frame(n)])
            .await
            .unwrap_or_else(|e| panic!("journaled append: {e}"));
        acked_held.push(format!("{{\"n\":{n}}}"));
    }
    a.touch(&held).await.unwrap_or_else(|e| panic!("{e}"));
    let local = sid("local");
    let mut s = a
        .create(Session::new(local.clone(), Transport::StreamableHttp))
        .await
        .unwrap_or_else(|e| panic!("local create: {e}"));
    for n in 100..110 {
        a.append_frames(&local, vec![frame(n)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    s.metadata.insert("k".into(), "v".into());
    let s = a.update(&s).await.unwrap_or_else(|e| panic!("{e}"));
    a.add_pending(
        &local,
        PendingRequest::new(RequestId::Number(7), "tools/call"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let journal_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(journal_bytes > 8, "nothing reached the journal file");
    // The process dies: no drain.
    drop(a);

    switch.set(Mode::Up);
    let b = open(&p, &path);
    let report = b.recover().await.unwrap_or_else(|e| panic!("recover: {e}"));
    assert_eq!(report.refused, 0, "{report:?}");
    assert_eq!(report.replayed, 20 + 1 + 1 + 10 + 1 + 1, "{report:?}");
    // The primary answers: recovery closed the breaker and drained at once.
    assert_eq!(report.drained, report.replayed, "{report:?}");
    assert_eq!(b.stats().marked_sessions, 0);
    recover_and_drain(&b).await;

    assert_eq!(
        contents(&p, &held).await,
        acked_held,
        "each acknowledged frame once, in order"
    );
    let stored = p
        .get(&local)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the local session was not restored"));
    assert_eq!(stored.metadata, s.metadata);
    assert_eq!(stored.last_seq, 10);
    assert_eq!(
        p.list_pending(&local)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .len(),
        1
    );
    // Drained: the file is emptied down to its header.
    assert_eq!(std::fs::metadata(&path).map(|m| m.len()).ok(), Some(8));
    // Restarting again replays nothing.
    drop(b);
    let c = open(&p, &path);
    assert_eq!(
        c.recover().await.unwrap_or_else(|e| panic!("{e}")).replayed,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_drain_writes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("journal");
    let (p, switch) = primary();
    let held = sid("held");
    p.create(Session::new(held.clone(), Transport::StreamableHttp))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let a = open(&p, &path);
    switch.set(Mode::Down);
    trip(&a).await;
    for n in 1..=5 {
        a.append_frames(&held, vec![frame(n)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // The primary is back but the drain's append is applied and never answered: the
    // process dies while it waits.
    switch.set(Mode::ApplyThenHang);
    for _ in 0..100 {
        a.probe().await;
        if a.breaker_state() == BreakerState::Closed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.breaker_state(), BreakerState::Closed);
    let cut = tokio::time::timeout(Duration::from_millis(300), a.drain_journal()).await;
    assert!(cut.is_err(), "the drain was meant to hang");
    assert_eq!(
        contents(&p, &held).await.len(),
        5,
        "the drain's append was applied"
    );
    drop(a);

    switch.set(Mode::Up);
    let b = open(&p, &path);
    let report = b.recover().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.in_doubt, 1, "{report:?}");
    recover_and_drain(&b).await;
    let expected: Vec<String> = (1..=5).map(|n| format!("{{\"n\":{n}}}")).collect();
    assert_eq!(
        contents(&p, &held).await,
        expected,
        "stored once, not twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_a_second_process_and_a_bad_path_are_handled() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("journal");
    let (p, switch) = primary();
    let a = open(&p, &path);
    let second = Resilient::new(p.clone(), MemoryStore::new(), config(&path));
    match second {
        Err(Error::InvalidInput { reason }) => {
            assert!(reason.contains("in use by another process"), "{reason}");
        }
        other => panic!("two writers on one journal: {other:?}"),
    }
    switch.set(Mode::Down);
    trip(&a).await;
    let id = sid("t");
    a.create(Session::new(id.clone(), Transport::Http))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(a);
    // A write cut by the crash: half a record at the end.
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let b = open(&p, &path);
    let report = b.recover().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.replayed, report.torn_bytes), (1, 7), "{report:?}");
    assert!(b.is_local(&id));

    let mut bad = config(dir.path());
    bad.journal.path = Some(dir.path().to_owned());
    assert!(matches!(
        Resilient::new(p.clone(), MemoryStore::new(), bad),
        Err(Error::InvalidInput { .. })
    ));
}
