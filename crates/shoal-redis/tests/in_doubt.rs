//! The in-doubt path of `Resilient<RedisStore, MemoryStore>` against a real `redis-server`:
//! a journal replay's `append_frames` that Redis **executes** but whose reply the client
//! never sees (the TCP fault proxy forwards the request, then cuts the reply mid-way and
//! resets the connection). The replay must mark that batch in doubt, stop and open the
//! breaker; the next replay must find the batch in Redis (read-back rule, README "failure
//! model") instead of appending it again.
//!
//! | test | what |
//! |---|---|
//! | `replayed_append_executed_but_unanswered_is_stored_once` | driven by hand, one session: the cut reply, then recovery; exact figures |
//! | `replayed_append_with_a_truncated_reply_is_stored_once` | the same, but the reply is truncated by a graceful close: the client gets a parse error (`Error::Backend`), not a lost connection |
//! | `replayed_append_lost_before_redis_is_appended_once` | the same, but the connection is reset before the request reaches Redis (the other branch of the rule) |
//! | `in_doubt_replay_under_a_concurrent_workload` | 4 tasks appending through an outage, the health monitor replaying, the first replayed append cut |
//!
//! The cut is aimed, not sprayed: [`Trap`] (the hooks of a forwarding store between
//! `Resilient` and the `RedisStore`), when armed, switches the proxy to
//! [`Fault::CutReplies`] just before the next `append_frames` and back to [`Fault::None`] as
//! soon as the proxy reports the cut. Redis is real; the trap only chooses the moment. Right after the cut the trap reads the session
//! directly (not through the proxy) to record whether Redis had executed the append.
//!
//! Afterwards every frame is read back from Redis with a fresh `RedisStore` and compared
//! with what the workload was told: every acknowledged frame exactly once and in
//! acknowledged order, nothing stored twice (also unacknowledged frames), nothing unknown,
//! every acknowledged (provisional) seq resolving to the frame's final seq, the breaker
//! closed and the journal empty. Figures are printed — run with `--nocapture`:
//!
//! ```text
//! cargo test -p shoal-redis --test in_doubt -- --nocapture --test-threads 1
//! ```
//!
//! Every wait is bounded; the tests take a process-wide lock so they run one at a time.

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use std::net::Ipv4Addr;

use async_trait::async_trait;
use shoal_core::{
    Direction, Error, Limits, MemoryStore, NewFrame, Result, Session, SessionId, SessionStore,
    SystemClock, Transport,
    resilient::{BreakerState, ResilienceConfig, Resilient, is_provisional},
};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::{
    fault::{Fault, FaultProxy},
    forwarding::{Call, ForwardingStore, Hooks, Op, Outcome},
    redis_server::RedisServer,
};
use support::{Attempt, SessionLog, Verdict, sample, stored};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// One test at a time (two shared cores; figures from concurrent tests mean nothing).
static SERIAL: Mutex<()> = Mutex::new(());

/// Bound on any wait for the breaker, the cut or recovery (not a timing assertion).
const BOUND: Duration = Duration::from_secs(60);

fn config() -> ResilienceConfig {
    let mut c = support::config();
    // One session replayed at a time: the trap cuts "the next reply", which must be the
    // trapped append's — with concurrent session replays on the one multiplexed connection
    // the cut could land on another session's reply. (Concurrent replay itself is covered by
    // shoal-core's tests/resilient_replay.rs and by tests/faults.rs here.)
    c.journal.replay_concurrency = 1;
    c
}

async fn redis(url: String, prefix: &str) -> RedisStore {
    RedisStore::connect(
        RedisConfig::new(url)
            .with_key_prefix(prefix)
            .with_connect_timeout(Duration::from_millis(500))
            .with_response_timeout(Duration::from_millis(500)),
        Limits::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"))
}

// ----------------------------------------------------------------------------------------
// The trap
// ----------------------------------------------------------------------------------------

/// What the trap did to one aimed `append_frames`.
#[derive(Clone, Debug)]
struct Sprung {
    id: SessionId,
    contents: Vec<String>,
    /// What the caller (the replay) was told.
    result: std::result::Result<Vec<u64>, String>,
    /// Whether Redis holds every frame of the batch (read directly right after the cut).
    executed: bool,
    /// Copies of the batch's first frame in Redis right after the cut.
    copies: usize,
    at: Instant,
}

/// A second, minimal proxy (client → this → [`FaultProxy`] → Redis) for the one fault the
/// fault proxy cannot aim: when armed, it forwards the next server → client chunk up to a
/// point inside a line of the reply ([`cut_point`]) and then closes the client side
/// gracefully (FIN), so the client reads a truncated reply followed by end-of-file.
/// redis-rs then reports a *parse error* ("Unexpected end of input") — not a lost connection —
/// which shoal-redis maps to `Error::Unavailable` as well (redis-rs drops that connection; the
/// outcome is unknown). The fault proxy's own cut (half a chunk, then
/// FIN and RST) produces the same error by chance, depending on where the half falls and on
/// what the client reads first; this makes it deterministic.
#[derive(Debug)]
struct HalfClose {
    port: u16,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl HalfClose {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|e| panic!("half-close proxy: bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("half-close proxy: addr: {e}"))
            .port();
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (a, c) = (Arc::clone(&armed), Arc::clone(&cuts));
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                tokio::spawn(relay(client, upstream, Arc::clone(&a), Arc::clone(&c)));
            }
        });
        HalfClose {
            port,
            armed,
            cuts,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for HalfClose {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Where to cut a reply: inside the first integer (`:<digits>\r\n`) starting in its second
/// half, just after its first digit. redis-rs's parser takes whole lines into its partial
/// state, so a cut at a line boundary leaves nothing in its buffer and the end of file reads
/// as a closed connection (`Unavailable`); a cut inside a line leaves bytes it cannot parse,
/// and the end of file is a parse error (also `Unavailable`, see [`HalfClose`]). Both happen with arbitrary cut points;
/// this picks the second.
fn cut_point(reply: &[u8]) -> usize {
    let half = reply.len() / 2;
    reply[half..]
        .iter()
        .position(|b| *b == b':')
        .map_or(half.max(1), |i| half + i + 2)
        .min(reply.len() - 1)
        .max(1)
}

async fn relay(client: TcpStream, upstream: u16, armed: Arc<AtomicBool>, cuts: Arc<AtomicUsize>) {
    let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if armed.swap(false, Ordering::SeqCst) {
            let half = cut_point(&buf[..n]);
            let _ = cw.write_all(&buf[..half]).await;
            let _ = cw.flush().await;
            cuts.fetch_add(1, Ordering::SeqCst);
            // FIN after half a reply: the client sees a truncated reply, then EOF.
            let _ = cw.shutdown().await;
            break;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = cw.shutdown().await;
    up.abort();
}

/// Heals the proxy when dropped.
struct HealOnDrop(Arc<FaultProxy>);

impl Drop for HealOnDrop {
    fn drop(&mut self) {
        self.0.heal();
    }
}

/// How the trap loses the next append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aim {
    /// The request reaches Redis; the reply is cut mid-way (half a reply, then a reset).
    CutReply,
    /// Every open connection is reset before the request is forwarded.
    ResetBefore,
    /// The request reaches Redis; half the reply arrives, then a graceful close (FIN): the
    /// client sees a parse error (mapped to `Error::Unavailable`) instead of a lost connection.
    HalfClose,
}

/// The primary as `Resilient` sees it: the `RedisStore` (through the proxies) behind the
/// [`Trap`].
type Trapped = ForwardingStore<RedisStore, Trap>;

/// The hooks in front of the primary that, when armed, lose the reply of the next
/// `append_frames` with the proxy. Everything else passes through untouched.
#[derive(Debug)]
struct Trap {
    proxy: Arc<FaultProxy>,
    half_close: HalfClose,
    /// Reads Redis without the proxy.
    direct: RedisStore,
    armed: Mutex<Option<Aim>>,
    appends: AtomicUsize,
    sprung: Mutex<Vec<Sprung>>,
}

/// An aimed `append_frames` on its way through Redis: what [`Trap`] records once it answers.
struct Aimed {
    aim: Aim,
    id: SessionId,
    contents: Vec<String>,
    /// Heals also if the caller's deadline drops the call mid-way.
    _heal: HealOnDrop,
    /// [`Aim::CutReply`]: heals the proxy the moment it has cut one reply.
    healer: Option<tokio::task::JoinHandle<()>>,
    /// The half-close proxy's cuts before the call.
    half_close_cuts: usize,
}

impl Trap {
    fn arm(&self, aim: Aim) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some(aim);
    }

    fn sprung(&self) -> Vec<Sprung> {
        self.sprung
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets up the fault for an aimed append of `frames` to `id`.
    fn spring(&self, aim: Aim, id: &SessionId, frames: &[NewFrame]) -> Aimed {
        let contents: Vec<String> = frames
            .iter()
            .map(|f| String::from_utf8_lossy(&f.content).into_owned())
            .collect();
        let before = self.proxy.stats();
        let heal = HealOnDrop(Arc::clone(&self.proxy));
        let mut healer = None;
        let half_close_cuts = self.half_close.cuts.load(Ordering::SeqCst);
        match aim {
            Aim::CutReply => {
                self.proxy.set(Fault::CutReplies);
                // Heal the moment the proxy has cut one reply, so that the reconnection is
                // served normally.
                let proxy = Arc::clone(&self.proxy);
                healer = Some(tokio::spawn(async move {
                    let until = Instant::now() + BOUND;
                    while proxy.stats().cuts == before.cuts && Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    proxy.heal();
                }));
            }
            Aim::ResetBefore => {
                // Every open connection is reset before it forwards another byte; the
                // reconnection is served normally.
                self.proxy.reset_all();
            }
            Aim::HalfClose => self.half_close.armed.store(true, Ordering::SeqCst),
        }
        Aimed {
            aim,
            id: id.clone(),
            contents,
            _heal: heal,
            healer,
            half_close_cuts,
        }
    }

    /// Ends an aimed append that answered `outcome`: heals, reads Redis directly, records.
    async fn record(&self, aimed: Aimed, outcome: Outcome<'_>) {
        match aimed.aim {
            Aim::CutReply => {
                if let Some(healer) = aimed.healer {
                    if outcome.is_ok() {
                        // Nothing was cut (cannot happen with this test's traffic): stop waiting.
                        healer.abort();
                    } else {
                        let _ = tokio::time::timeout(BOUND, healer).await;
                    }
                }
            }
            Aim::ResetBefore => {}
            Aim::HalfClose => {
                self.half_close.armed.store(false, Ordering::SeqCst);
                assert!(
                    outcome.is_ok()
                        || self.half_close.cuts.load(Ordering::SeqCst) == aimed.half_close_cuts + 1,
                    "the half-close proxy cut the reply"
                );
            }
        }
        self.proxy.heal();
        let held = stored(&self.direct, &aimed.id).await;
        let count = |c: &str| held.iter().filter(|(_, s)| s == c).count();
        let copies = aimed.contents.first().map_or(0, |c| count(c));
        let executed = aimed.contents.iter().all(|c| count(c) == 1);
        let result = match outcome.error() {
            Some(e) => Err(e.to_string()),
            None => Ok(outcome
                .value::<Vec<u64>>()
                .cloned()
                .unwrap_or_else(|| panic!("append_frames answers seqs"))),
        };
        self.sprung
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Sprung {
                id: aimed.id,
                contents: aimed.contents,
                result,
                executed,
                copies,
                at: Instant::now(),
            });
    }
}

#[async_trait]
impl Hooks for Trap {
    /// The aimed append, if this call is one.
    type Ticket = Option<Aimed>;

    async fn before(&self, call: Call<'_>) -> Result<Option<Aimed>> {
        let Call::AppendFrames(id, frames) = call else {
            return Ok(None);
        };
        self.appends.fetch_add(1, Ordering::Relaxed);
        let aim = self.armed.lock().unwrap_or_else(|e| e.into_inner()).take();
        Ok(aim.map(|aim| self.spring(aim, id, frames)))
    }

    async fn after(&self, _: Op, aimed: Option<Aimed>, outcome: Outcome<'_>) -> Option<Error> {
        if let Some(aimed) = aimed {
            self.record(aimed, outcome).await;
        }
        None
    }
}

type Store = Resilient<Arc<Trapped>, MemoryStore>;

struct Rig {
    server: RedisServer,
    proxy: Arc<FaultProxy>,
    trap: Arc<Trapped>,
    store: Arc<Store>,
    prefix: String,
}

async fn rig(prefix: &str) -> Rig {
    let server = RedisServer::start();
    let proxy = Arc::new(FaultProxy::start(server.port()).await);
    let half_close = HalfClose::start(proxy.port()).await;
    let primary = redis(half_close.url(), prefix).await;
    let trap = Trap {
        proxy: Arc::clone(&proxy),
        half_close,
        direct: redis(server.url(), prefix).await,
        armed: Mutex::new(None),
        appends: AtomicUsize::new(0),
        sprung: Mutex::new(Vec::new()),
    };
    let trap = Arc::new(ForwardingStore::new(primary, trap));
    let store = Arc::new(
        Resilient::new(Arc::clone(&trap), MemoryStore::new(), config())
            .unwrap_or_else(|e| panic!("config: {e}")),
    );
    Rig {
        server,
        proxy,
        trap,
        store,
        prefix: prefix.to_owned(),
    }
}

// ----------------------------------------------------------------------------------------
// Verification
// ----------------------------------------------------------------------------------------

/// Reads every session back with a fresh `RedisStore` straight to the server and compares it
/// with the workload's log.
async fn verify(rig: &Rig, logs: &[SessionLog]) -> Verdict {
    let fresh = redis(rig.server.url(), &rig.prefix).await;
    let mut v = Verdict::default();
    for s in logs {
        let held = stored(&fresh, &s.id).await;
        v.check(&held, s, |seq| rig.store.resolve_seq(&s.id, seq));
    }
    v
}

fn assert_clean(v: &Verdict) {
    assert!(v.acked > 0, "the workload made progress: {v:?}");
    assert_eq!(v.lost, 0, "acknowledged frames lost: {v:?}");
    assert_eq!(v.duplicated, 0, "frames stored twice: {v:?}");
    assert_eq!(v.out_of_order, 0, "acknowledged order broken: {v:?}");
    assert_eq!(v.unknown, 0, "frames nobody wrote: {v:?}");
    assert_eq!(v.seq_mismatch, 0, "acked seqs not resolving: {v:?}");
    assert_eq!(v.seq_gaps, 0, "seqs not contiguous: {v:?}");
}

async fn append(store: &Store, log: &mut SessionLog, content: String) {
    let started = Instant::now();
    let r = store
        .append_frame(
            &log.id,
            NewFrame::new(Direction::ServerToClient, content.clone()),
        )
        .await;
    log.appends.push(Attempt {
        content,
        result: r.map_err(|e| e.to_string()),
        started,
        latency: started.elapsed(),
    });
}

/// Probes by hand until the breaker is closed (bounded).
async fn close_by_probing(store: &Store) -> Duration {
    let started = Instant::now();
    while store.breaker_state() != BreakerState::Closed {
        assert!(
            started.elapsed() < BOUND,
            "breaker not closed: {:?}",
            store.stats()
        );
        store.probe().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

fn run<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(f());
}

// ----------------------------------------------------------------------------------------
// Driven by hand
// ----------------------------------------------------------------------------------------

/// Opens the breaker with a reset-everything outage and appends through it; returns the
/// time to open and the provisional seqs.
async fn outage(rig: &Rig, log: &mut SessionLog, journaled: usize) -> Duration {
    rig.proxy.set(Fault::Reset);
    let started = Instant::now();
    let mut n = 0;
    while rig.store.breaker_state() != BreakerState::Open {
        assert!(started.elapsed() < BOUND, "never opened");
        append(&rig.store, log, format!("opening-{n}")).await;
        n += 1;
    }
    let to_open = started.elapsed();
    for k in 0..journaled {
        append(&rig.store, log, format!("outage-{k}")).await;
    }
    to_open
}

async fn by_hand(aim: Aim, prefix: &str, journaled: usize) {
    let rig = rig(prefix).await;
    let store = &rig.store;
    let id = SessionId::generate();
    store
        .create(Session::new(id.clone(), Transport::StreamableHttp))
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    let mut log = SessionLog {
        id: id.clone(),
        appends: Vec::new(),
    };
    for k in 0..10 {
        append(store, &mut log, format!("before-{k}")).await;
    }
    assert!(log.appends.iter().all(|a| a.result.is_ok()), "{log:?}");

    // Outage: the breaker opens, `journaled` appends are journaled with provisional seqs.
    let to_open = outage(&rig, &mut log, journaled).await;
    let opening_errors = log.appends.iter().filter(|a| a.result.is_err()).count();
    assert!(
        log.appends
            .iter()
            .filter(|a| a.content.starts_with("outage-"))
            .all(|a| a.result.as_ref().is_ok_and(|s| is_provisional(*s))),
        "journaled appends are acknowledged with provisional seqs: {log:?}"
    );
    assert_eq!(store.stats().journal_entries, journaled);

    // The primary comes back; the first replayed append is lost on its way back.
    rig.proxy.heal();
    let to_close = close_by_probing(store).await;
    rig.trap.hooks().arm(aim);
    let rep = store.drain_journal().await;
    let sprung = rig.trap.hooks().sprung();
    assert_eq!(sprung.len(), 1, "the trap fired once: {sprung:?}");
    let cut = &sprung[0];
    assert!(cut.result.is_err(), "the replay saw no answer: {cut:?}");
    assert_eq!(
        cut.contents.len(),
        journaled,
        "one batch of the journaled frames"
    );
    match aim {
        Aim::CutReply => {
            assert!(cut.executed, "Redis executed the append: {cut:?}");
            // The aimed reply was cut (above); on a loaded machine the heal can land after
            // another connection's reply (a health probe's) was cut too: not one more
            // append, so the count is at least one rather than exactly one.
            assert!(rig.proxy.stats().cuts >= 1);
        }
        Aim::ResetBefore => assert_eq!(cut.copies, 0, "Redis never saw it: {cut:?}"),
        Aim::HalfClose => {
            assert!(cut.executed, "Redis executed the append: {cut:?}");
            assert_eq!(rig.trap.hooks().half_close.cuts.load(Ordering::SeqCst), 1);
        }
    }
    assert!(!rep.complete, "{rep:?}");
    assert!(rep.error.is_some(), "{rep:?}");
    assert_eq!(rep.frames, 0, "{rep:?}");
    // A lost connection or a truncated reply (a parse error: redis-rs drops the connection)
    // says the primary is failing: the breaker opens, the batch waits for the next replay.
    assert_eq!(
        store.breaker_state(),
        BreakerState::Open,
        "after the lost answer: {cut:?} {rep:?}"
    );
    let cut_to_open = store.stats().breaker_for;
    assert_eq!(
        store.stats().journal_entries,
        journaled,
        "the batch stays journaled"
    );

    // More writes while it is open again: journaled behind the in-doubt batch.
    for k in 0..5 {
        append(store, &mut log, format!("reopened-{k}")).await;
    }
    assert_eq!(store.stats().journal_entries, journaled + 5);

    // Recovery: the next replay reads the primary back before appending.
    let started = Instant::now();
    close_by_probing(store).await;
    let rep = store.drain_journal().await;
    let recovery = started.elapsed();
    assert!(rep.complete, "{rep:?}");
    assert_eq!(rep.error, None);
    let expect_applied = u64::from(aim != Aim::ResetBefore);
    assert_eq!(rep.ambiguous_applied, expect_applied, "{rep:?}");
    assert_eq!(rep.frames, journaled as u64 + 5, "{rep:?}");
    assert_eq!(rep.dropped_frames, 0, "{rep:?}");
    let stats = store.stats();
    assert_eq!(stats.breaker, BreakerState::Closed);
    assert_eq!(stats.journal_entries, 0);
    assert_eq!(stats.marked_sessions, 0);
    assert_eq!(
        stats.breaker_opened, 2,
        "opened by the outage and by the lost answer"
    );

    let v = verify(&rig, std::slice::from_ref(&log)).await;
    assert_clean(&v);
    assert_eq!(
        v.unacked_stored, 0,
        "the reset outage forwarded nothing: {v:?}"
    );
    let total = 10 + journaled + 5;
    assert_eq!((v.acked, v.stored), (total, total), "{v:?}");
    // Exactly the acknowledged frames, in order, seqs 1..=total.
    let fresh = redis(rig.server.url(), &rig.prefix).await;
    let held = stored(&fresh, &id).await;
    let acked: Vec<(u64, String)> = log
        .appends
        .iter()
        .filter(|a| a.result.is_ok())
        .zip(1..)
        .map(|(a, seq)| (seq, a.content.clone()))
        .collect();
    assert_eq!(held, acked);
    // A live append after recovery goes straight to Redis.
    let seq = store
        .append_frame(&id, NewFrame::new(Direction::ServerToClient, "after"))
        .await
        .unwrap_or_else(|e| panic!("append after recovery: {e}"));
    assert_eq!(seq, total as u64 + 1);

    eprintln!(
        "\n=== in doubt, by hand ({aim:?}, {journaled} journaled frames) ===\n\
         time to open (reset outage): {to_open:?} ({opening_errors} appends failed on the way)\n\
         breaker closed by probes in:  {to_close:?}\n\
         trapped replay append:        {} frames, answer {:?}, executed by Redis: {} ({} copies)\n\
         breaker after the cut:        {:?} (for {cut_to_open:?} when checked), opened {} times\n\
         recovery replay:              {:?} (probes + replay): {} entries, {} frames, \
         {} in-doubt batch(es) found applied, complete {}\n\
         read back: {} frames stored, {} acked ({} provisional), {} unacked ({} stored), \
         lost {}, duplicated {}, out of order {}, unknown {}, seq mismatches {}",
        cut.contents.len(),
        cut.result,
        cut.executed,
        cut.copies,
        BreakerState::Open,
        stats.breaker_opened,
        recovery,
        rep.entries,
        rep.frames,
        rep.ambiguous_applied,
        rep.complete,
        v.stored,
        v.acked,
        v.provisional_acks,
        v.unacked,
        v.unacked_stored,
        v.lost,
        v.duplicated,
        v.out_of_order,
        v.unknown,
        v.seq_mismatch,
    );
}

#[test]
fn replayed_append_executed_but_unanswered_is_stored_once() {
    run(|| by_hand(Aim::CutReply, "indoubt-cut", 20));
}

/// The reply truncated by a graceful close: the client gets a parse error (`Unavailable`),
/// which says nothing about whether the append was applied — it was.
#[test]
fn replayed_append_with_a_truncated_reply_is_stored_once() {
    run(|| by_hand(Aim::HalfClose, "indoubt-half-close", 20));
}

#[test]
fn replayed_append_lost_before_redis_is_appended_once() {
    run(|| by_hand(Aim::ResetBefore, "indoubt-reset", 20));
}

// ----------------------------------------------------------------------------------------
// Under a concurrent workload, with the health monitor
// ----------------------------------------------------------------------------------------

const TASKS: usize = 4;
const SESSIONS_PER_TASK: usize = 2;
const STEPS_PER_TASK: usize = 400;
const PACE: Duration = Duration::from_millis(15);

async fn task(store: Arc<Store>, t: usize) -> Vec<SessionLog> {
    let mut logs = Vec::new();
    for _ in 0..SESSIONS_PER_TASK {
        let id = SessionId::generate();
        store
            .create(Session::new(id.clone(), Transport::StreamableHttp))
            .await
            .unwrap_or_else(|e| panic!("create (before the fault): {e}"));
        logs.push(SessionLog {
            id,
            appends: Vec::new(),
        });
    }
    let mut tick = tokio::time::interval(PACE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for step in 0..STEPS_PER_TASK {
        tick.tick().await;
        let k = step % logs.len();
        let content = format!("t{t}-s{k}-n{}", step / logs.len());
        append(&store, &mut logs[k], content).await;
    }
    logs
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> Instant {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < BOUND, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Instant::now()
}

async fn concurrent() {
    let rig = rig("indoubt-load").await;
    let store = Arc::clone(&rig.store);
    let monitor = store.spawn_monitor();
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(Arc::clone(&store), Arc::clone(&stop_sampler)));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| tokio::spawn(task(Arc::clone(&store), t)))
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    // Outage: every connection reset for 2 s; the tasks keep appending.
    let fault_start = Instant::now();
    rig.proxy.set(Fault::Reset);
    wait_for("the breaker to open", || {
        store.breaker_state() == BreakerState::Open
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let journaled = store.stats().journal_entries;
    // The first append the monitor's replay sends is executed by Redis, its reply cut.
    rig.trap.hooks().arm(Aim::CutReply);
    rig.proxy.heal();
    let healed = Instant::now();
    wait_for("the trap", || !rig.trap.hooks().sprung().is_empty()).await;
    let recovered = wait_for("recovery", || {
        let s = store.stats();
        s.breaker == BreakerState::Closed && s.journal_entries == 0
    })
    .await;

    let mut logs = Vec::new();
    for t in tasks {
        let joined = tokio::time::timeout(BOUND, t)
            .await
            .unwrap_or_else(|_| panic!("workload task did not finish"));
        logs.extend(joined.unwrap_or_else(|e| panic!("workload task: {e}")));
    }
    wait_for("the final state", || {
        let s = store.stats();
        s.breaker == BreakerState::Closed && s.journal_entries == 0
    })
    .await;
    stop_sampler.store(true, Ordering::Relaxed);
    let transitions = sampler.await.unwrap_or_else(|e| panic!("sampler: {e}"));
    monitor.stop().await;

    let sprung = rig.trap.hooks().sprung();
    let v = verify(&rig, &logs).await;
    let stats = store.stats();
    let totals = &stats.drain_totals;
    let opened: Vec<Duration> = transitions
        .iter()
        .filter(|(at, s)| *at >= fault_start && *s == BreakerState::Open)
        .map(|(at, _)| *at - fault_start)
        .collect();
    let cut = &sprung[0];
    let cut_to_open = transitions
        .iter()
        .find(|(at, s)| *at >= healed && *s == BreakerState::Open)
        .map(|(at, _)| at.saturating_duration_since(cut.at));
    let appends: usize = logs.iter().map(|l| l.appends.len()).sum();
    eprintln!(
        "\n=== in doubt under load ({TASKS} tasks, {} sessions, {appends} appends) ===\n\
         time to open (reset outage): {:?}; journaled when healed: {journaled} entries\n\
         trapped replay append:       {} frames of session {}, answer {:?}, executed by Redis: {} ({} copies)\n\
         breaker re-opened:           {} after the cut (opened {} times; transitions seen at {opened:?})\n\
         recovered:                   {:?} after the heal (breaker closed, journal empty)\n\
         replays:                     {} entries, {} frames, {} sessions, {} in-doubt batch(es) found applied\n\
         read back: {} frames stored, {} acked ({} provisional), {} unacked ({} stored), \
         lost {}, duplicated {}, out of order {}, unknown {}, seq mismatches {}, seq gaps {}",
        v.sessions,
        opened.first(),
        cut.contents.len(),
        cut.id,
        cut.result,
        cut.executed,
        cut.copies,
        cut_to_open.map_or_else(|| "never seen".to_owned(), |d| format!("{d:?}")),
        stats.breaker_opened,
        recovered - healed,
        totals.entries,
        totals.frames,
        totals.sessions,
        totals.ambiguous_applied,
        v.stored,
        v.acked,
        v.provisional_acks,
        v.unacked,
        v.unacked_stored,
        v.lost,
        v.duplicated,
        v.out_of_order,
        v.unknown,
        v.seq_mismatch,
        v.seq_gaps,
    );

    assert_eq!(sprung.len(), 1, "the trap fired once: {sprung:?}");
    assert!(cut.result.is_err(), "the replay saw no answer: {cut:?}");
    assert!(cut.executed, "Redis executed the trapped append: {cut:?}");
    assert_eq!(cut.copies, 1, "{cut:?}");
    // The fault proxy's cut ends in FIN then RST: redis-rs reports a lost connection or, when
    // it reads the FIN first, a truncated reply (a parse error). Both map to `Unavailable`
    // (the replay re-opens the breaker) and both are in doubt.
    let lost_connection = cut
        .result
        .as_ref()
        .is_err_and(|e| e.starts_with("store unavailable"));
    assert!(
        stats.breaker_opened >= if lost_connection { 2 } else { 1 },
        "opened by the outage (and by the lost answer): {stats:?}"
    );
    assert!(
        totals.ambiguous_applied >= 1,
        "the in-doubt batch was found in Redis: {totals:?}"
    );
    assert!(v.provisional_acks > 0, "frames were journaled: {v:?}");
    assert_clean(&v);
    assert_eq!(stats.breaker, BreakerState::Closed);
    assert_eq!(stats.journal_entries, 0);
    assert_eq!(stats.marked_sessions, 0);
    assert!(
        rig.trap.hooks().appends.load(Ordering::Relaxed) > 0,
        "the primary saw appends"
    );
}

#[test]
fn in_doubt_replay_under_a_concurrent_workload() {
    run(concurrent);
}
