//! Fault tests: `Resilient<RedisStore, MemoryStore>` (fallback mode `memory`, health monitor
//! running) against a real `redis-server`, each with a bounded workload — 4 tasks, each
//! creating 5 sessions (staggered, so some are created during the fault) and appending 300
//! frames round robin — running through one fault:
//!
//! | test | fault |
//! |---|---|
//! | `sigstop` | `SIGSTOP` for 3 s, then `SIGCONT` |
//! | `kill_restart` | `kill -9`, restart on the same port after 5 s (AOF, `appendfsync always`) |
//! | `client_pause_write` | `CLIENT PAUSE 3000 WRITE` |
//! | `connection_resets` | `CLIENT KILL TYPE normal` every 250 ms for 3 s |
//! | `proxy_blackhole` | the TCP proxy black-holes every byte for 3 s |
//! | `proxy_cut_replies` | the TCP proxy cuts every reply mid-way for 3 s |
//! | `proxy_flapping` | reply cuts on and off every 700 ms for 6 s (interrupts replays) |
//!
//! Afterwards every acknowledged frame must be in Redis exactly once and in acknowledged
//! order, every acknowledged seq must resolve to the frame's final seq, no frame may be
//! stored twice (also unacknowledged ones, which may or may not be stored), and the breaker
//! must be closed with an empty journal within a bounded wait. The tests assert outcomes,
//! never durations; the figures (time to open, p99 latency during the outage, time to
//! recover, replay rate, lost, duplicated) are printed — run with `--nocapture`:
//!
//! ```text
//! cargo test -p shoal-redis --test faults -- --nocapture --test-threads 1
//! ```
//!
//! The tests take a process-wide lock, so they run one at a time even without
//! `--test-threads 1` (figures from concurrent faults would be meaningless on two cores).

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use shoal_core::{
    Direction, Limits, MemoryStore, NewFrame, Session, SessionId, SessionStore, SystemClock,
    Transport,
    resilient::{BreakerState, Resilient},
};
use shoal_redis::{RedisConfig, RedisStore};
use shoal_testkit::{
    fault::{Fault, FaultProxy, client_kill_all, client_pause, freeze, kill_and_restart_after},
    redis_server::RedisServer,
};
use support::{Attempt, SessionLog, Verdict, config, sample, stored};

type Store = Resilient<RedisStore, MemoryStore>;

/// One fault test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const TASKS: usize = 4;
const SESSIONS_PER_TASK: usize = 5;
const STEPS_PER_TASK: usize = 300;
/// Workload time before the fault and after it ends.
const BEFORE: Duration = Duration::from_secs(1);
const AFTER: Duration = Duration::from_secs(2);
/// Bound on recovery after the fault ends (generous: this is not a timing assertion).
const RECOVERY_BOUND: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    SigStop,
    KillRestart,
    PauseWrite,
    ClientKill,
    Blackhole,
    CutReplies,
    Flapping,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::SigStop => "SIGSTOP 3 s",
            Kind::KillRestart => "kill -9, restart after 5 s",
            Kind::PauseWrite => "CLIENT PAUSE WRITE 3 s",
            Kind::ClientKill => "CLIENT KILL every 250 ms, 3 s",
            Kind::Blackhole => "proxy black hole 3 s",
            Kind::CutReplies => "proxy cuts replies 3 s",
            Kind::Flapping => "proxy cuts replies on/off every 700 ms, 6 s",
        }
    }

    fn length(self) -> Duration {
        match self {
            Kind::KillRestart => Duration::from_secs(5),
            Kind::Flapping => Duration::from_secs(6),
            _ => Duration::from_secs(3),
        }
    }

    fn via_proxy(self) -> bool {
        matches!(self, Kind::Blackhole | Kind::CutReplies | Kind::Flapping)
    }
}

#[derive(Debug, Default)]
struct TaskLog {
    sessions: Vec<SessionLog>,
    /// Creates that failed (the session may or may not exist; it is not used).
    failed_creates: usize,
    /// Every create and append: (started, latency).
    latencies: Vec<(Instant, Duration)>,
}

async fn task(store: Arc<Store>, t: usize, pace: Duration) -> TaskLog {
    let mut log = TaskLog::default();
    let gap = STEPS_PER_TASK / (2 * SESSIONS_PER_TASK);
    let mut created = 0;
    let mut counters: Vec<usize> = Vec::new();
    let mut tick = tokio::time::interval(pace);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for step in 0..STEPS_PER_TASK {
        tick.tick().await;
        if created < SESSIONS_PER_TASK && step % gap == 0 {
            created += 1;
            let id = SessionId::generate();
            let started = Instant::now();
            let r = store
                .create(Session::new(id.clone(), Transport::StreamableHttp))
                .await;
            log.latencies.push((started, started.elapsed()));
            match r {
                Ok(_) => {
                    log.sessions.push(SessionLog {
                        id,
                        appends: Vec::new(),
                    });
                    counters.push(0);
                }
                Err(_) => log.failed_creates += 1,
            }
        }
        if log.sessions.is_empty() {
            continue;
        }
        let k = step % log.sessions.len();
        let n = counters[k];
        counters[k] += 1;
        let content = format!("t{t}-s{k}-n{n}");
        let frame = NewFrame::new(Direction::ServerToClient, content.clone());
        let s = &mut log.sessions[k];
        let started = Instant::now();
        let r = store.append_frame(&s.id, frame).await;
        let latency = started.elapsed();
        log.latencies.push((started, latency));
        s.appends.push(Attempt {
            content,
            result: r.map_err(|e| e.to_string()),
            started,
            latency,
        });
    }
    log
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

async fn verify(store: &Store, logs: &[TaskLog]) -> Verdict {
    let mut v = Verdict::default();
    for log in logs {
        for s in &log.sessions {
            let held = stored(store.primary(), &s.id).await;
            v.check(&held, s, |seq| store.resolve_seq(&s.id, seq));
        }
    }
    v
}

/// The first moment (polled every 5 ms) at which the breaker is closed and the journal empty.
async fn recovered(store: Arc<Store>, since: Instant, kind: Kind) -> Instant {
    loop {
        let s = store.stats();
        if s.breaker == BreakerState::Closed && s.journal_entries == 0 {
            return Instant::now();
        }
        assert!(
            since.elapsed() < RECOVERY_BOUND,
            "{}: not recovered {RECOVERY_BOUND:?} after the fault ended: {s:?}",
            kind.name()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (bounded) until the breaker is closed and the journal empty.
async fn recovered_state(store: &Store, kind: Kind) {
    let started = Instant::now();
    loop {
        let s = store.stats();
        if s.breaker == BreakerState::Closed && s.journal_entries == 0 {
            return;
        }
        assert!(
            started.elapsed() < RECOVERY_BOUND,
            "{}: not recovered at the end: {s:?}",
            kind.name()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn run(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(scenario(kind));
}

async fn scenario(kind: Kind) {
    let mut server = if kind == Kind::KillRestart {
        RedisServer::builder()
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .start()
    } else {
        RedisServer::start()
    };
    let proxy = if kind.via_proxy() {
        Some(FaultProxy::start(server.port()).await)
    } else {
        None
    };
    let url = proxy
        .as_ref()
        .map_or_else(|| server.url(), FaultProxy::redis_url);
    let redis = RedisStore::connect(
        RedisConfig::new(url)
            .with_key_prefix("faults")
            .with_connect_timeout(Duration::from_millis(500))
            .with_response_timeout(Duration::from_millis(500)),
        Limits::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"));
    let store = Arc::new(
        Resilient::new(redis, MemoryStore::new(), config())
            .unwrap_or_else(|e| panic!("config: {e}")),
    );
    let monitor = store.spawn_monitor();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample(Arc::clone(&store), Arc::clone(&stop)));

    let span = BEFORE + kind.length() + AFTER;
    let pace = span / STEPS_PER_TASK as u32;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| tokio::spawn(task(Arc::clone(&store), t, pace)))
        .collect();

    tokio::time::sleep(BEFORE).await;
    let fault_start = Instant::now();
    match kind {
        Kind::SigStop => {
            let frozen = freeze(&server);
            tokio::time::sleep(kind.length()).await;
            frozen.thaw();
        }
        Kind::KillRestart => {
            server = tokio::task::spawn_blocking(move || {
                kill_and_restart_after(&mut server, kind.length());
                server
            })
            .await
            .unwrap_or_else(|e| panic!("restart: {e}"));
        }
        Kind::PauseWrite => {
            assert_eq!(client_pause(&server, kind.length(), true), "OK");
            tokio::time::sleep(kind.length()).await;
        }
        Kind::ClientKill => {
            let until = Instant::now() + kind.length();
            while Instant::now() < until {
                client_kill_all(&server);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Kind::Blackhole | Kind::CutReplies => {
            let p = proxy.as_ref().unwrap_or_else(|| panic!("proxy"));
            p.set(if kind == Kind::Blackhole {
                Fault::Blackhole
            } else {
                Fault::CutReplies
            });
            tokio::time::sleep(kind.length()).await;
            p.heal();
        }
        Kind::Flapping => {
            // Healthy windows long enough for the breaker to close and a replay to start,
            // cut windows that can interrupt it mid-way.
            let p = proxy.as_ref().unwrap_or_else(|| panic!("proxy"));
            let until = Instant::now() + kind.length();
            while Instant::now() < until {
                p.set(Fault::CutReplies);
                tokio::time::sleep(Duration::from_millis(700)).await;
                p.heal();
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        }
    }
    let healed = Instant::now();
    // Recovery: breaker closed and journal replayed (first moment after the fault ended),
    // within a generous bound; the workload keeps writing meanwhile.
    let recovery = tokio::spawn(recovered(Arc::clone(&store), healed, kind));

    let mut logs = Vec::new();
    for t in tasks {
        logs.push(t.await.unwrap_or_else(|e| panic!("workload task: {e}")));
    }
    let recovered = recovery
        .await
        .unwrap_or_else(|e| panic!("recovery watcher: {e}"));
    // And recovered at the end too (the workload may have written after recovery).
    recovered_state(&store, kind).await;
    stop.store(true, Ordering::Relaxed);
    let transitions = sampler.await.unwrap_or_else(|e| panic!("sampler: {e}"));
    monitor.stop().await;

    let verdict = verify(&store, &logs).await;
    let stats = store.stats();

    // Figures.
    let opened = transitions
        .iter()
        .find(|(at, s)| *at >= fault_start && *s == BreakerState::Open)
        .map(|(at, _)| *at - fault_start);
    let during: Vec<Duration> = logs
        .iter()
        .flat_map(|l| l.latencies.iter())
        .filter(|(at, _)| *at >= fault_start && *at <= recovered)
        .map(|(_, d)| *d)
        .collect();
    let calls_during = during.len();
    let p50 = percentile(during.clone(), 0.50);
    let p99 = percentile(during.clone(), 0.99);
    let max = percentile(during, 1.0);
    // Calls that started while the breaker was open: these must not wait for the primary.
    let open_windows: Vec<(Instant, Instant)> = transitions
        .iter()
        .enumerate()
        .filter(|(_, (_, s))| *s == BreakerState::Open)
        .map(|(i, (at, _))| {
            let end = transitions.get(i + 1).map_or(recovered, |(t, _)| *t);
            (*at, end)
        })
        .collect();
    let while_open: Vec<Duration> = logs
        .iter()
        .flat_map(|l| l.latencies.iter())
        .filter(|(at, _)| open_windows.iter().any(|(a, b)| at >= a && at < b))
        .map(|(_, d)| *d)
        .collect();
    let calls_open = while_open.len();
    let p99_open = percentile(while_open.clone(), 0.99);
    let max_open = percentile(while_open, 1.0);
    let totals = &stats.drain_totals;
    let attempts: usize = logs
        .iter()
        .flat_map(|l| l.sessions.iter())
        .map(|s| s.appends.len())
        .sum();
    let slow = logs
        .iter()
        .flat_map(|l| l.sessions.iter())
        .flat_map(|s| s.appends.iter())
        .filter(|a| a.started >= fault_start && a.latency >= Duration::from_millis(500))
        .count();
    let failed_creates: usize = logs.iter().map(|l| l.failed_creates).sum();
    eprintln!(
        "\n=== fault: {} ===\n\
         time to open:        {}\n\
         latency during outage ({calls_during} calls): p50 {p50:?}, p99 {p99:?}, max {max:?} \
         ({slow} appends waited >= 500 ms)\n\
         while open ({calls_open} calls): p99 {p99_open:?}, max {max_open:?}\n\
         time to recover:     {:?} after the fault ended (breaker closed, journal empty)\n\
         breaker opened:      {} times\n\
         replay:              {} entries, {} frames, {} sessions restored in {:?} \
         ({:.0} entries/s, {:.0} frames/s); {} in-doubt batches found applied\n\
         workload:            {} sessions ({} creates failed), {attempts} appends: {} acked \
         ({} with provisional seqs), {} errors ({} of them stored anyway)\n\
         lost {}, duplicated {}, out of order {}, unknown {}, seq mismatches {}",
        kind.name(),
        opened.map_or_else(|| "never opened".to_owned(), |d| format!("{d:?}")),
        recovered - healed,
        stats.breaker_opened,
        totals.entries,
        totals.frames,
        totals.restored,
        totals.duration,
        totals.entries_per_sec(),
        totals.frames_per_sec(),
        totals.ambiguous_applied,
        verdict.sessions,
        failed_creates,
        verdict.acked,
        verdict.provisional_acks,
        verdict.unacked,
        verdict.unacked_stored,
        verdict.lost,
        verdict.duplicated,
        verdict.out_of_order,
        verdict.unknown,
        verdict.seq_mismatch,
    );

    assert!(verdict.acked > 0, "the workload made progress");
    assert_eq!(verdict.lost, 0, "acknowledged frames lost: {verdict:?}");
    assert_eq!(verdict.duplicated, 0, "frames stored twice: {verdict:?}");
    assert_eq!(
        verdict.out_of_order, 0,
        "acknowledged order broken: {verdict:?}"
    );
    assert_eq!(verdict.unknown, 0, "frames nobody wrote: {verdict:?}");
    assert_eq!(
        verdict.seq_mismatch, 0,
        "acknowledged seqs that do not resolve to the final seq: {verdict:?}"
    );
    assert_eq!(store.breaker_state(), BreakerState::Closed);
    assert_eq!(stats.journal_entries, 0);
    assert_eq!(stats.marked_sessions, 0);
    drop(proxy);
    drop(server);
}

#[test]
fn sigstop() {
    run(Kind::SigStop);
}

#[test]
fn kill_restart() {
    run(Kind::KillRestart);
}

#[test]
fn client_pause_write() {
    run(Kind::PauseWrite);
}

#[test]
fn connection_resets() {
    run(Kind::ClientKill);
}

#[test]
fn proxy_blackhole() {
    run(Kind::Blackhole);
}

#[test]
fn proxy_cut_replies() {
    run(Kind::CutReplies);
}

#[test]
fn proxy_flapping() {
    run(Kind::Flapping);
}
