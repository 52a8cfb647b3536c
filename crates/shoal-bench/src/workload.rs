//! The workload: operation mix, deterministic random numbers, the set-up phase, the timed
//! phases (many tasks issuing a weighted mix of operations), and the append-scaling
//! measurement.
//!
//! Every phase is a pure function of the store, a [`Plan`] and a seed, so the store under test
//! and the baseline see the same shape of operations.

use std::{
    collections::VecDeque,
    fmt,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde_json::json;
use shoal_core::{
    Direction, FrameQuery, ListQuery, NewFrame, Session, SessionId, SessionStore, Transport,
};

use crate::verify::{Ack, Fingerprint, frame_content};

/// Highest latency a histogram tracks exactly, in nanoseconds (60 s); larger values saturate.
const HIST_MAX_NS: u64 = 60_000_000_000;

/// A new latency histogram (nanoseconds, 3 significant digits).
pub(crate) fn new_hist() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).context("creating a latency histogram")
}

/// Nanoseconds of `d`, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One kind of operation the workload issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Op {
    /// `get` of a random pool session.
    Get,
    /// `touch` of a random pool session.
    Touch,
    /// `append_frame` of one frame to a random pool session.
    Append,
    /// `frames`: one page from a random position of a random pool session.
    Frames,
    /// `list`: the next page of a paged scan of all sessions.
    List,
    /// `create` of a new session.
    Create,
}

impl Op {
    /// Every op, in report order.
    pub(crate) const ALL: [Op; 6] = [
        Op::Get,
        Op::Touch,
        Op::Append,
        Op::Frames,
        Op::List,
        Op::Create,
    ];

    /// The op's name in `--mix`, reports and JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Touch => "touch",
            Op::Append => "append",
            Op::Frames => "frames",
            Op::List => "list",
            Op::Create => "create",
        }
    }

    /// Position in [`Op::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            Op::Get => 0,
            Op::Touch => 1,
            Op::Append => 2,
            Op::Frames => 3,
            Op::List => 4,
            Op::Create => 5,
        }
    }

    /// Parses an op name; a few aliases (the `SessionStore` method names) are accepted.
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "get" => Op::Get,
            "touch" => Op::Touch,
            "append" | "append_frame" => Op::Append,
            "frames" => Op::Frames,
            "list" => Op::List,
            "create" => Op::Create,
            _ => return None,
        })
    }
}

/// Relative weights of the operations, e.g. `get=45,touch=20,append=25,frames=5,list=1,create=4`.
///
/// The default models a proxy under steady load: every proxied message validates its session
/// (`get`) and records activity (`touch`) and the frames that crossed (`append`); resuming
/// clients replay a page of frames now and then (`frames`); new sessions start at a low rate
/// (`create`); an admin or dashboard pages through sessions rarely (`list`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mix {
    /// Weight per op, indexed by [`Op::index`].
    weights: [u32; 6],
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            weights: [45, 20, 25, 5, 1, 4],
        }
    }
}

impl Mix {
    /// The weight of `op`.
    pub(crate) fn weight(&self, op: Op) -> u32 {
        self.weights[op.index()]
    }

    /// Sum of all weights (never 0 for a parsed mix).
    pub(crate) fn total(&self) -> u64 {
        self.weights.iter().map(|w| u64::from(*w)).sum()
    }

    /// The ops with a non-zero weight, in report order.
    pub(crate) fn active(&self) -> impl Iterator<Item = Op> + '_ {
        Op::ALL.into_iter().filter(|op| self.weight(*op) > 0)
    }

    /// The op for a number `r` in `0..total()`: each op owns a band as wide as its weight.
    pub(crate) fn pick(&self, r: u64) -> Op {
        let mut acc = 0u64;
        for op in Op::ALL {
            acc += u64::from(self.weight(op));
            if r < acc {
                return op;
            }
        }
        // Only reachable when r >= total(); fall back to the last op with weight.
        self.active().last().unwrap_or(Op::Get)
    }

    /// The weights as a JSON object.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for op in Op::ALL {
            m.insert(op.name().to_owned(), json!(self.weight(op)));
        }
        serde_json::Value::Object(m)
    }
}

impl FromStr for Mix {
    type Err = String;

    /// Parses `op=weight` pairs separated by commas. Ops not named get weight 0; at least one
    /// weight must be positive.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights = [0u32; 6];
        let mut seen = [false; 6];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("mix entry {part:?} is not op=weight"))?;
            let name = name.trim();
            let op = Op::parse(name).ok_or_else(|| {
                format!(
                    "unknown op {name:?} in mix; expected one of: {}",
                    Op::ALL.map(Op::name).join(", ")
                )
            })?;
            let weight: u32 = weight.trim().parse().map_err(|_| {
                format!(
                    "weight {:?} of {name} is not a non-negative integer",
                    weight.trim()
                )
            })?;
            if weight > 1_000_000 {
                return Err(format!("weight {weight} of {name} is above 1000000"));
            }
            if seen[op.index()] {
                return Err(format!("op {} appears twice in mix", op.name()));
            }
            seen[op.index()] = true;
            weights[op.index()] = weight;
        }
        if weights.iter().all(|w| *w == 0) {
            return Err("mix has no op with a positive weight".to_owned());
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Op::ALL
            .iter()
            .map(|op| format!("{}={}", op.name(), self.weight(*op)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// SplitMix64: small, fast, deterministic; good enough to pick ops and sessions.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator for one worker of one phase, derived from the run's seed.
    pub(crate) fn for_worker(seed: u64, phase: u64, worker: u64) -> Self {
        let mut base = Rng::new(seed ^ phase.rotate_left(32) ^ worker.rotate_left(17));
        Rng::new(base.next_u64())
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0), by multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Everything a phase needs to know, shared by all workers.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Prefix of every session id the bench creates (`bench-<random>-`).
    pub(crate) prefix: String,
    /// The pool: sessions created in set-up; get, touch, append and frames pick from these.
    pub(crate) sessions: Vec<SessionId>,
    /// Frames appended to each pool session in set-up.
    pub(crate) frames_per_session: usize,
    /// Content bytes per frame.
    pub(crate) frame_bytes: usize,
    /// Concurrent tasks.
    pub(crate) concurrency: usize,
    /// Operation weights.
    pub(crate) mix: Mix,
    /// Page size of `frames` and `list`.
    pub(crate) page: usize,
    /// Sessions each worker keeps alive from its `create` ops; beyond that it deletes its
    /// oldest one (untimed), so creates never fill the store.
    pub(crate) create_cap_per_worker: usize,
    /// Whether appends are recorded for `--verify`.
    pub(crate) record_acks: bool,
    /// Run seed.
    pub(crate) seed: u64,
    /// Set on Ctrl-C: every phase stops at its next operation.
    pub(crate) stop: Arc<AtomicBool>,
    /// Per-second counters for `--timeline` (`None`: not kept, no cost per call).
    pub(crate) live: Option<Arc<crate::wrappers::Live>>,
    /// `--rate`: operations per second over all workers (`None`: as fast as the store
    /// answers). Each worker issues its share on a fixed schedule, like a proxy whose
    /// offered load does not change when the store gets faster or slower.
    pub(crate) rate: Option<f64>,
}

impl Plan {
    /// Whether the run was interrupted.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The id of pool session `i`.
    pub(crate) fn pool_id(prefix: &str, i: usize) -> anyhow::Result<SessionId> {
        SessionId::new(format!("{prefix}s{i}")).context("building a bench session id")
    }
}

/// The session the bench creates: shaped like one a proxy stores after `initialize`.
pub(crate) fn bench_session(id: SessionId) -> Session {
    let mut s = Session::new(id, Transport::StreamableHttp);
    s.protocol_version = Some("2025-11-25".to_owned());
    s.client_info = Some(json!({"name": "shoal-bench", "version": "1.0.0"}));
    s.upstream_session_id = Some("upstream-bench".to_owned());
    s
}

/// When a phase stops: whichever bound is reached first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bound {
    /// Wall-clock bound.
    pub(crate) duration: Option<Duration>,
    /// Operation-count bound, over all workers.
    pub(crate) ops: Option<u64>,
}

/// Counts and latencies of one op in one phase.
#[derive(Debug, Clone)]
pub(crate) struct OpTally {
    /// Latencies of the successful calls, in nanoseconds.
    pub(crate) hist: Histogram<u64>,
    /// Failed calls.
    pub(crate) errors: u64,
    /// The first failure's message.
    pub(crate) first_error: Option<String>,
}

impl OpTally {
    fn new() -> anyhow::Result<Self> {
        Ok(OpTally {
            hist: new_hist()?,
            errors: 0,
            first_error: None,
        })
    }

    fn fail(&mut self, msg: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(msg());
        }
    }

    fn merge(&mut self, other: &OpTally) -> anyhow::Result<()> {
        self.hist
            .add(&other.hist)
            .context("merging latency histograms")?;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        Ok(())
    }
}

/// What one phase measured.
#[derive(Debug)]
pub(crate) struct PhaseOutcome {
    /// Wall time from the start to the last worker's end.
    pub(crate) elapsed: Duration,
    /// Per op, indexed by [`Op::index`].
    pub(crate) tallies: Vec<OpTally>,
    /// Appends the store acknowledged (only when the plan records them).
    pub(crate) acks: Vec<Ack>,
    /// Per worker, the sessions its creates left alive (carried into the next phase).
    pub(crate) alive: Vec<VecDeque<SessionId>>,
}

/// One worker's share of a phase.
struct WorkerSpec {
    writer: u32,
    quota: Option<u64>,
    deadline: Option<Instant>,
    rng: Rng,
    alive: VecDeque<SessionId>,
}

struct WorkerOutcome {
    tallies: Vec<OpTally>,
    acks: Vec<Ack>,
    alive: VecDeque<SessionId>,
}

/// Runs one timed phase: `plan.concurrency` tasks issue the mix until `bound`.
///
/// `phase` numbers the phase (it seeds the workers and names their writers, so fingerprints
/// and created ids never repeat across phases); `alive` carries each worker's created sessions
/// over from the previous phase (missing entries start empty).
pub(crate) async fn run_phase(
    store: &Arc<dyn SessionStore>,
    plan: &Arc<Plan>,
    bound: Bound,
    phase: u32,
    mut alive: Vec<VecDeque<SessionId>>,
) -> anyhow::Result<PhaseOutcome> {
    let c = plan.concurrency.max(1);
    alive.resize_with(c, VecDeque::new);
    let started = Instant::now();
    // A deadline past the clock's range is no deadline (the arguments bound it anyway).
    let deadline = bound.duration.and_then(|d| started.checked_add(d));
    let mut handles = Vec::with_capacity(c);
    for (index, alive) in alive.into_iter().enumerate() {
        let quota = bound.ops.map(|ops| {
            let c = c as u64;
            ops / c + u64::from((index as u64) < ops % c)
        });
        let spec = WorkerSpec {
            writer: phase * 100_000 + index as u32,
            quota,
            deadline,
            rng: Rng::for_worker(plan.seed, u64::from(phase), index as u64),
            alive,
        };
        handles.push(tokio::spawn(worker(
            Arc::clone(store),
            Arc::clone(plan),
            spec,
        )));
    }
    let mut outcome = PhaseOutcome {
        elapsed: Duration::ZERO,
        tallies: Op::ALL
            .iter()
            .map(|_| OpTally::new())
            .collect::<anyhow::Result<_>>()?,
        acks: Vec::new(),
        alive: Vec::with_capacity(c),
    };
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(w)) => {
                for (mine, theirs) in outcome.tallies.iter_mut().zip(&w.tallies) {
                    mine.merge(theirs)?;
                }
                outcome.acks.extend(w.acks);
                outcome.alive.push(w.alive);
            }
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(e) => first_err = first_err.or(Some(anyhow::anyhow!("bench worker failed: {e}"))),
        }
    }
    outcome.elapsed = started.elapsed();
    match first_err {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// One worker: picks ops from its own generator and times each call.
async fn worker(
    store: Arc<dyn SessionStore>,
    plan: Arc<Plan>,
    mut w: WorkerSpec,
) -> anyhow::Result<WorkerOutcome> {
    let mut tallies: Vec<OpTally> = Op::ALL
        .iter()
        .map(|_| OpTally::new())
        .collect::<anyhow::Result<_>>()?;
    let mut acks = Vec::new();
    let total = plan.mix.total();
    let pool = plan.sessions.len() as u64;
    let mut done = 0u64;
    let mut appended = 0u64;
    let mut created = 0u64;
    let mut list_cursor: Option<String> = None;
    let pace = plan
        .rate
        .map(|r| Duration::from_secs_f64(plan.concurrency.max(1) as f64 / r));
    let mut next_at = tokio::time::Instant::now();
    while w.quota.is_none_or(|q| done < q) {
        if let Some(p) = pace {
            // Fixed schedule; a late worker does not burst to catch up more than one call.
            let now = tokio::time::Instant::now();
            next_at = next_at.max(now.checked_sub(p).unwrap_or(now)) + p;
            tokio::time::sleep_until(next_at).await;
        }
        if w.deadline.is_some_and(|d| Instant::now() >= d) || plan.stopped() {
            break;
        }
        let op = plan.mix.pick(w.rng.below(total));
        let session = w.rng.below(pool) as usize;
        let tally = &mut tallies[op.index()];
        let (started, errors_before) = (Instant::now(), tally.errors);
        let end = match op {
            Op::Get => {
                let id = &plan.sessions[session];
                let t = Instant::now();
                let r = store.get(id).await;
                let end = Instant::now();
                match r {
                    Ok(Some(_)) => tally.hist.saturating_record(nanos(end - t)),
                    Ok(None) => tally.fail(|| format!("get: pool session {id} is missing")),
                    Err(e) => tally.fail(|| format!("get: {e}")),
                }
                end
            }
            Op::Touch => {
                let id = &plan.sessions[session];
                let t = Instant::now();
                let r = store.touch(id).await;
                let end = Instant::now();
                match r {
                    Ok(_) => tally.hist.saturating_record(nanos(end - t)),
                    Err(e) => tally.fail(|| format!("touch: {e}")),
                }
                end
            }
            Op::Append => {
                let id = &plan.sessions[session];
                let fp = Fingerprint {
                    writer: w.writer,
                    n: appended,
                };
                appended += 1;
                let direction = if fp.n.is_multiple_of(2) {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                };
                let frame = NewFrame::new(direction, frame_content(id, fp, plan.frame_bytes));
                let t = Instant::now();
                let r = store.append_frame(id, frame).await;
                let end = Instant::now();
                match r {
                    Ok(seq) => {
                        tally.hist.saturating_record(nanos(end - t));
                        if plan.record_acks {
                            acks.push(Ack {
                                session: session as u32,
                                fp,
                                seq,
                            });
                        }
                    }
                    Err(e) => tally.fail(|| format!("append: {e}")),
                }
                end
            }
            Op::Frames => {
                let id = &plan.sessions[session];
                let after = w.rng.below(plan.frames_per_session as u64 + 1);
                let q = FrameQuery::after(after, plan.page);
                let t = Instant::now();
                let r = store.frames(id, &q).await;
                let end = Instant::now();
                match r {
                    Ok(_) => tally.hist.saturating_record(nanos(end - t)),
                    Err(e) => tally.fail(|| format!("frames: {e}")),
                }
                end
            }
            Op::List => {
                let q = ListQuery::first(plan.page).with_cursor(list_cursor.take());
                let t = Instant::now();
                let r = store.list(&q).await;
                let end = Instant::now();
                match r {
                    Ok(page) => {
                        tally.hist.saturating_record(nanos(end - t));
                        list_cursor = page.next_cursor;
                    }
                    Err(e) => tally.fail(|| format!("list: {e}")),
                }
                end
            }
            Op::Create => {
                let id = SessionId::new(format!("{}c{}-{created}", plan.prefix, w.writer))
                    .context("building a bench session id")?;
                created += 1;
                let s = bench_session(id.clone());
                let t = Instant::now();
                let r = store.create(s).await;
                let end = Instant::now();
                match r {
                    Ok(_) => {
                        tally.hist.saturating_record(nanos(end - t));
                        w.alive.push_back(id);
                    }
                    Err(e) => tally.fail(|| format!("create: {e}")),
                }
                // Untimed: keep the population bounded.
                while w.alive.len() > plan.create_cap_per_worker {
                    if let Some(old) = w.alive.pop_front() {
                        let _ = store.delete(&old).await;
                    }
                }
                end
            }
        };
        if let Some(live) = &plan.live {
            live.record(tallies[op.index()].errors == errors_before, end - started);
        }
        done += 1;
        if w.deadline.is_some_and(|d| end >= d) {
            break;
        }
        // Each call of a real proxy sits between network I/O; yield so all tasks interleave
        // even when the store never has to wait.
        tokio::task::yield_now().await;
    }
    Ok(WorkerOutcome {
        tallies,
        acks,
        alive: w.alive,
    })
}

/// Writer ids at or above this one belong to set-up tasks.
const SETUP_WRITER: u32 = 4_000_000_000;

/// Frames per `append_frames` call in set-up.
const SETUP_BATCH: usize = 100;

/// Creates the pool and fills each session with `plan.frames_per_session` frames, with
/// `plan.concurrency` tasks. Returns the acknowledged frames (when the plan records them).
pub(crate) async fn setup(
    store: &Arc<dyn SessionStore>,
    plan: &Arc<Plan>,
) -> anyhow::Result<Vec<Ack>> {
    let c = plan.concurrency.max(1);
    let mut handles = Vec::with_capacity(c);
    for t in 0..c {
        let store = Arc::clone(store);
        let plan = Arc::clone(plan);
        handles.push(tokio::spawn(async move {
            let writer = SETUP_WRITER + t as u32;
            let mut n = 0u64;
            let mut acks = Vec::new();
            for i in (t..plan.sessions.len()).step_by(c) {
                if plan.stopped() {
                    break;
                }
                let id = &plan.sessions[i];
                store
                    .create(bench_session(id.clone()))
                    .await
                    .with_context(|| format!("set-up: creating session {id}"))?;
                let mut left = plan.frames_per_session;
                while left > 0 {
                    let k = left.min(SETUP_BATCH);
                    let fps: Vec<Fingerprint> = (n..n + k as u64)
                        .map(|n| Fingerprint { writer, n })
                        .collect();
                    n += k as u64;
                    let frames = fps
                        .iter()
                        .map(|fp| {
                            NewFrame::new(
                                Direction::ServerToClient,
                                frame_content(id, *fp, plan.frame_bytes),
                            )
                        })
                        .collect();
                    let seqs = store
                        .append_frames(id, frames)
                        .await
                        .with_context(|| format!("set-up: appending frames to {id}"))?;
                    if plan.record_acks {
                        acks.extend(fps.into_iter().zip(seqs).map(|(fp, seq)| Ack {
                            session: i as u32,
                            fp,
                            seq,
                        }));
                    }
                    left -= k;
                }
            }
            Ok::<_, anyhow::Error>(acks)
        }));
    }
    let mut acks = Vec::new();
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(a)) => acks.extend(a),
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(e) => first_err = first_err.or(Some(anyhow::anyhow!("set-up task failed: {e}"))),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(acks),
    }
}

/// Deletes `ids` with up to `concurrency` tasks; returns how many existed.
pub(crate) async fn delete_all(
    store: &Arc<dyn SessionStore>,
    ids: Vec<SessionId>,
    concurrency: usize,
) -> anyhow::Result<u64> {
    let c = concurrency.max(1);
    let ids = Arc::new(ids);
    let mut handles = Vec::with_capacity(c);
    for t in 0..c {
        let store = Arc::clone(store);
        let ids = Arc::clone(&ids);
        handles.push(tokio::spawn(async move {
            let mut existed = 0u64;
            let mut first_err = None;
            for id in ids.iter().skip(t).step_by(c) {
                match store.delete(id).await {
                    Ok(true) => existed += 1,
                    Ok(false) => {}
                    Err(e) => {
                        first_err = first_err.or(Some(anyhow::anyhow!("deleting {id}: {e}")));
                    }
                }
            }
            match first_err {
                Some(e) => Err(e),
                None => Ok(existed),
            }
        }));
    }
    let mut existed = 0;
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(n)) => existed += n,
            Ok(Err(e)) => first_err = first_err.or(Some(e)),
            Err(e) => first_err = first_err.or(Some(anyhow::anyhow!("clean-up task failed: {e}"))),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(existed),
    }
}

/// Appends per timing block of the append-scaling measurement; the two cases alternate
/// block by block so drift (other load, frequency changes) hits both alike.
const SCALING_BLOCK: u64 = 1_000;

/// Appends between two (untimed) trims of the scaling sessions back to their size.
const SCALING_TRIM_EVERY: u64 = 10;

/// One case of the append-scaling measurement.
#[derive(Debug, Clone)]
pub(crate) struct ScalingCase {
    /// Frames the session held when each append was made (±[`SCALING_TRIM_EVERY`]).
    pub(crate) frames: usize,
    /// Appends timed.
    pub(crate) appends: u64,
    /// Sum of the timed calls.
    pub(crate) busy: Duration,
    /// Latencies in nanoseconds.
    pub(crate) hist: Histogram<u64>,
    /// Appends per second of each timed block, in time order.
    pub(crate) block_rates: Vec<f64>,
}

/// What the append-scaling measurement found.
#[derive(Debug)]
pub(crate) struct Scaling {
    /// The session of 10 frames.
    pub(crate) small: ScalingCase,
    /// The session of 10,000 frames (or the store's cap): at the default cap, every append
    /// also trims the oldest frame, as for any long-lived session.
    pub(crate) large: ScalingCase,
    /// A session just below the cap (10 frames less; trimmed back untimed like the small one),
    /// so the store never trims: separates the cost of size from the cost of trimming.
    /// `None` when the cap is too small for it.
    pub(crate) below_cap: Option<ScalingCase>,
}

/// Times `appends` single-frame appends to a session holding 10 frames and to one holding
/// 10,000 (or the store's `max_frames_per_session` if smaller), one call at a time; and, as a
/// diagnostic, to one holding 10 frames less than that (never trimmed by the store).
///
/// After every [`SCALING_TRIM_EVERY`] appends each session is trimmed back to its size with
/// an untimed `delete_frames`, so the sizes stay put; at the store's cap the store trims
/// itself, as it does for a long-lived session.
pub(crate) async fn append_scaling(
    store: &Arc<dyn SessionStore>,
    plan: &Plan,
    appends: u64,
) -> anyhow::Result<Scaling> {
    let cap = store.limits().max_frames_per_session.max(1);
    let large = cap.min(10_000);
    let small = large.min(10);
    let below = large.saturating_sub(SCALING_TRIM_EVERY as usize);
    let mut sizes = vec![small, large];
    if below > small {
        sizes.push(below);
    }
    let ids: Vec<SessionId> = scaling_ids(&plan.prefix)?
        .into_iter()
        .take(sizes.len())
        .collect();
    let frame_bytes = plan.frame_bytes;
    let template = new_hist()?;
    let writer = SETUP_WRITER - 1;
    let mut n = 0u64;
    for (id, &size) in ids.iter().zip(&sizes) {
        store
            .create(bench_session(id.clone()))
            .await
            .with_context(|| format!("append scaling: creating {id}"))?;
        let mut left = size;
        while left > 0 {
            let k = left.min(500);
            let frames = (0..k)
                .map(|_| {
                    n += 1;
                    NewFrame::new(
                        Direction::ServerToClient,
                        frame_content(id, Fingerprint { writer, n }, frame_bytes),
                    )
                })
                .collect();
            store
                .append_frames(id, frames)
                .await
                .with_context(|| format!("append scaling: filling {id}"))?;
            left -= k;
        }
    }
    let mut cases: Vec<ScalingCase> = sizes
        .iter()
        .map(|&frames| ScalingCase {
            frames,
            appends: 0,
            busy: Duration::ZERO,
            hist: Histogram::new_from(&template),
            block_rates: Vec::new(),
        })
        .collect();
    // One untimed block per case first: the allocator and caches settle (the first appends
    // after filling a session are measurably slower), then timed blocks alternate.
    for (case, id) in cases.iter_mut().zip(&ids) {
        let block = SCALING_BLOCK.min(appends);
        append_block(
            store,
            id,
            case.frames,
            block,
            &mut n,
            writer,
            frame_bytes,
            None,
        )
        .await?;
    }
    while cases.iter().any(|c| c.appends < appends) && !plan.stopped() {
        for (case, id) in cases.iter_mut().zip(&ids) {
            let block = SCALING_BLOCK.min(appends - case.appends);
            if block == 0 {
                continue;
            }
            let busy = append_block(
                store,
                id,
                case.frames,
                block,
                &mut n,
                writer,
                frame_bytes,
                Some(&mut case.hist),
            )
            .await?;
            case.busy += busy;
            case.appends += block;
            case.block_rates.push(rate(block, busy));
        }
    }
    let mut cases = cases.into_iter();
    match (cases.next(), cases.next()) {
        (Some(small), Some(large)) => Ok(Scaling {
            small,
            large,
            below_cap: cases.next(),
        }),
        _ => anyhow::bail!("append scaling: the measurement lost a case"),
    }
}

/// `n` per second of `busy` (0 when `busy` is zero).
fn rate(n: u64, busy: Duration) -> f64 {
    let s = busy.as_secs_f64();
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

/// Appends `count` frames to `id` one call at a time, trimming it back to `size` frames
/// (untimed) every [`SCALING_TRIM_EVERY`]; records each call in `hist` when given. Returns the
/// time spent inside the append calls.
#[allow(clippy::too_many_arguments)]
async fn append_block(
    store: &Arc<dyn SessionStore>,
    id: &SessionId,
    size: usize,
    count: u64,
    n: &mut u64,
    writer: u32,
    frame_bytes: usize,
    mut hist: Option<&mut Histogram<u64>>,
) -> anyhow::Result<Duration> {
    let mut busy = Duration::ZERO;
    for k in 0..count {
        *n += 1;
        let frame = NewFrame::new(
            Direction::ClientToServer,
            frame_content(id, Fingerprint { writer, n: *n }, frame_bytes),
        );
        let t = Instant::now();
        let seq = store
            .append_frame(id, frame)
            .await
            .with_context(|| format!("append scaling: appending to {id}"))?;
        let d = t.elapsed();
        busy += d;
        if let Some(h) = hist.as_deref_mut() {
            h.saturating_record(nanos(d));
        }
        if (k + 1) % SCALING_TRIM_EVERY == 0 && seq > size as u64 {
            store
                .delete_frames(id, Some(seq - size as u64))
                .await
                .with_context(|| format!("append scaling: trimming {id}"))?;
        }
    }
    Ok(busy)
}

/// The median of the per-block ratios `small / large` of blocks timed back to back: robust
/// against load bursts from other processes, which hit neighbouring blocks alike.
pub(crate) fn paired_ratio(small: &[f64], large: &[f64]) -> Option<f64> {
    let mut r: Vec<f64> = small
        .iter()
        .zip(large)
        .filter(|(_, l)| **l > 0.0)
        .map(|(s, l)| s / l)
        .filter(|x| x.is_finite())
        .collect();
    if r.is_empty() {
        return None;
    }
    r.sort_by(f64::total_cmp);
    let mid = r.len() / 2;
    Some(if r.len() % 2 == 1 {
        r[mid]
    } else {
        (r[mid - 1] + r[mid]) / 2.0
    })
}

/// The ids of the append-scaling sessions (small, large, below the cap).
pub(crate) fn scaling_ids(prefix: &str) -> anyhow::Result<[SessionId; 3]> {
    let id = |name: &str| {
        SessionId::new(format!("{prefix}scale-{name}")).context("building a bench session id")
    };
    Ok([id("small")?, id("large")?, id("below-cap")?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mix_round_trips_and_sums_to_100() {
        let m = Mix::default();
        assert_eq!(m.total(), 100);
        assert_eq!(
            m.to_string(),
            "get=45,touch=20,append=25,frames=5,list=1,create=4"
        );
        assert_eq!(m.to_string().parse::<Mix>().unwrap(), m);
    }

    #[test]
    fn mix_parses_partial_lists_with_spaces_and_aliases() {
        let m: Mix = " get = 3 , append_frame=1,".parse().unwrap();
        assert_eq!(m.weight(Op::Get), 3);
        assert_eq!(m.weight(Op::Append), 1);
        assert_eq!(m.weight(Op::Touch), 0);
        assert_eq!(m.weight(Op::Create), 0);
        assert_eq!(m.total(), 4);
        assert_eq!(m.active().collect::<Vec<_>>(), vec![Op::Get, Op::Append]);
    }

    #[test]
    fn mix_rejects_bad_input_with_a_reason() {
        for (bad, needle) in [
            ("get=1,bogus=2", "unknown op \"bogus\""),
            ("get", "not op=weight"),
            ("get=-1", "not a non-negative integer"),
            ("get=x", "not a non-negative integer"),
            ("get=1,get=2", "appears twice"),
            ("get=0,touch=0", "no op with a positive weight"),
            ("", "no op with a positive weight"),
            ("get=2000000", "above 1000000"),
        ] {
            let err = bad.parse::<Mix>().unwrap_err();
            assert!(err.contains(needle), "{bad:?}: {err}");
        }
    }

    #[test]
    fn pick_gives_each_op_a_band_as_wide_as_its_weight() {
        let m: Mix = "get=2,touch=0,append=3,create=1".parse().unwrap();
        let picks: Vec<Op> = (0..m.total()).map(|r| m.pick(r)).collect();
        assert_eq!(
            picks,
            vec![
                Op::Get,
                Op::Get,
                Op::Append,
                Op::Append,
                Op::Append,
                Op::Create
            ]
        );
        // Out of range falls back to the last weighted op rather than panicking.
        assert_eq!(m.pick(1_000), Op::Create);
    }

    #[test]
    fn rng_is_deterministic_and_below_stays_in_range() {
        let mut a = Rng::for_worker(7, 1, 3);
        let mut b = Rng::for_worker(7, 1, 3);
        let mut c = Rng::for_worker(7, 1, 4);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..100).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        let mut r = Rng::new(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            let v = r.below(10);
            assert!(v < 10);
            counts[v as usize] += 1;
        }
        // Roughly uniform: every bucket within 10% of 10,000.
        assert!(
            counts.iter().all(|c| (9_000..11_000).contains(c)),
            "{counts:?}"
        );
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn paired_ratio_is_the_median_of_block_ratios() {
        // One block pair hit by a load burst does not move the median.
        let small = [100.0, 100.0, 100.0, 10.0, 100.0];
        let large = [100.0, 50.0, 100.0, 100.0, 100.0];
        assert_eq!(paired_ratio(&small, &large), Some(1.0));
        assert_eq!(paired_ratio(&[3.0, 1.0], &[1.0, 1.0]), Some(2.0));
        assert_eq!(paired_ratio(&[1.0], &[0.0]), None);
        assert_eq!(paired_ratio(&[], &[]), None);
    }

    #[test]
    fn mix_frequencies_follow_the_weights() {
        let m = Mix::default();
        let mut r = Rng::new(42);
        let mut counts = [0u64; 6];
        let n = 200_000;
        for _ in 0..n {
            counts[m.pick(r.below(m.total())).index()] += 1;
        }
        for op in Op::ALL {
            let expected = n * u64::from(m.weight(op)) / m.total();
            let got = counts[op.index()];
            let tolerance = expected / 10 + 100;
            assert!(
                got.abs_diff(expected) <= tolerance,
                "{}: {got} vs {expected}",
                op.name()
            );
        }
    }
}
