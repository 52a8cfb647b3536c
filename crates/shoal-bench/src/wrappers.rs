//! `shoal-bench` with the cache (`--cache`) and the resilience wrapper (`--fallback`):
//! what the report adds for them.
//!
//! - **Timeline** (`--timeline`, on by itself with `--fallback`): per second of the timed
//!   phase, successful and failed calls, p99 of every call (successes and failures), the
//!   breaker's state and the journal's size; and every breaker transition, sampled every
//!   50 ms. This is what shows an outage: ops/s and p99 while Redis is stopped or down.
//! - **Resilience**: the wrapper's counters (breaker openings, journal, replay totals) and
//!   the `metrics` counters it reports (fallback ops, breaker transitions, calls refused by the
//!   open breaker, retries), read through a small in-process recorder.
//! - **Before `--verify`**: the run waits (bounded) until the breaker is closed and the outage
//!   journal is replayed, then translates the provisional seqs that appends acknowledged
//!   during the outage into their final seqs (`Resilient::resolve_seq`), so verify checks
//!   the frames where Redis finally has them.
//! - **Cache**: hits, misses, coalesced touches, touch writes (from [`CacheStats`]).
//! - **`--compare-cache N`**: N rounds, each the timed workload against the store without the
//!   cache, then with it, back to back (the cache is emptied after each uncached round, whose
//!   writes it did not see); per round get ops/s of both sides, and on Redis the server's
//!   command count (`INFO commandstats`, `INFO` itself excluded) per touch.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;
use shoal_core::{
    SessionStore,
    cached::CacheStats,
    resilient::{BreakerState, DrainReport, is_provisional},
};

use crate::{
    verify::Ack,
    workload::{self, Op, Plan},
};
use shoal_redis::stack::{CacheControl, ResilientRedis};

use crate::open::RedisBacking;

/// What the bench can see of the wrappers around the store under test.
#[derive(Default, Clone)]
pub(crate) struct Wrappers {
    /// The resilience wrapper, when on.
    pub(crate) resilient: Option<ResilientRedis>,
    /// The cache, when on.
    pub(crate) cache: Option<Arc<dyn CacheControl>>,
    /// The store without the cache (for `--compare-cache`).
    pub(crate) uncached: Option<Arc<dyn SessionStore>>,
    /// The Redis backend (for `INFO commandstats`).
    pub(crate) redis: Option<RedisBacking>,
}

// ---------------------------------------------------------------------------------------
// Live counters and the timeline
// ---------------------------------------------------------------------------------------

/// Counters the workers feed on every call while a timeline is kept.
#[derive(Debug)]
pub(crate) struct Live {
    ok: AtomicU64,
    err: AtomicU64,
    hist: Mutex<Histogram<u64>>,
}

impl Live {
    pub(crate) fn new() -> anyhow::Result<Self> {
        Ok(Live {
            ok: AtomicU64::new(0),
            err: AtomicU64::new(0),
            hist: Mutex::new(workload::new_hist()?),
        })
    }

    /// One finished call.
    pub(crate) fn record(&self, ok: bool, took: Duration) {
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.err.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.hist
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .saturating_record(ns.max(1));
    }

    /// (ok, errors, p99 µs, max µs) since the last take.
    fn take(&self) -> (u64, u64, f64, f64) {
        let ok = self.ok.swap(0, Ordering::Relaxed);
        let err = self.err.swap(0, Ordering::Relaxed);
        let mut h = self.hist.lock().unwrap_or_else(|e| e.into_inner());
        let (p99, max) = if h.is_empty() {
            (0.0, 0.0)
        } else {
            (
                h.value_at_quantile(0.99) as f64 / 1_000.0,
                h.max() as f64 / 1_000.0,
            )
        };
        h.reset();
        (ok, err, p99, max)
    }
}

/// One second of the timed phase.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct TimelineRow {
    /// Seconds since the timed phase started (end of this window).
    pub(crate) t_s: f64,
    /// Successful calls per second.
    pub(crate) ok_per_s: f64,
    /// Failed calls per second.
    pub(crate) errors_per_s: f64,
    /// p99 of every call in the window, µs.
    pub(crate) p99_us: f64,
    /// Slowest call in the window, µs.
    pub(crate) max_us: f64,
    /// The breaker's state at the end of the window (`-` without `--fallback`).
    pub(crate) breaker: String,
    /// Journal entries not yet replayed.
    pub(crate) journal_entries: usize,
}

/// A breaker transition seen by the sampler.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Transition {
    /// Seconds since the timed phase started.
    pub(crate) t_s: f64,
    /// From.
    pub(crate) from: String,
    /// To.
    pub(crate) to: String,
}

/// What the sampler saw.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Timeline {
    /// One row per second.
    pub(crate) rows: Vec<TimelineRow>,
    /// Breaker transitions (sampled every 50 ms, so a flap shorter than that can be missed;
    /// the `breaker_transitions` counters are exact).
    pub(crate) transitions: Vec<Transition>,
}

/// A running sampler; [`Sampler::finish`] stops it and returns what it saw.
pub(crate) struct Sampler {
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<Timeline>,
}

impl Sampler {
    /// Starts sampling `live` (and the breaker of `resilient`) now.
    pub(crate) fn start(live: Arc<Live>, resilient: Option<ResilientRedis>) -> Sampler {
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = Arc::clone(&stop);
        let _ = live.take();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut out = Timeline::default();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let state = |r: &Option<ResilientRedis>| {
                r.as_ref()
                    .map_or_else(|| "-".to_owned(), |r| r.breaker_state().to_string())
            };
            let mut last_state = state(&resilient);
            let mut window = Instant::now();
            loop {
                let done = tokio::select! {
                    () = stopped.notified() => true,
                    _ = tick.tick() => false,
                };
                let now = state(&resilient);
                if now != last_state {
                    out.transitions.push(Transition {
                        t_s: started.elapsed().as_secs_f64(),
                        from: std::mem::replace(&mut last_state, now.clone()),
                        to: now.clone(),
                    });
                }
                let span = window.elapsed();
                if span >= Duration::from_secs(1) || (done && span >= Duration::from_millis(200)) {
                    let (ok, err, p99, max) = live.take();
                    let secs = span.as_secs_f64();
                    out.rows.push(TimelineRow {
                        t_s: started.elapsed().as_secs_f64(),
                        ok_per_s: ok as f64 / secs,
                        errors_per_s: err as f64 / secs,
                        p99_us: p99,
                        max_us: max,
                        breaker: now,
                        journal_entries: resilient
                            .as_ref()
                            .map_or(0, |r| r.stats().journal_entries),
                    });
                    window = Instant::now();
                }
                if done {
                    return out;
                }
            }
        });
        Sampler { stop, task }
    }

    /// Stops the sampler.
    pub(crate) async fn finish(self) -> Timeline {
        self.stop.notify_one();
        self.task.await.unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// Metrics: a small recorder for the resilience counters
// ---------------------------------------------------------------------------------------

/// Counters kept by [`CountingRecorder`]: the wrapper's outage figures.
const COUNTED: &[&str] = &[
    "shoal_resilient_fallback_ops_total",
    "shoal_resilient_breaker_transitions_total",
    "shoal_resilient_retries_total",
    "shoal_resilient_journal_full_total",
    "shoal_resilient_replayed_total",
    "shoal_resilient_replay_dropped_total",
    "shoal_resilient_replay_ambiguous_total",
    "shoal_resilient_health_probes_total",
    "shoal_resilient_ops_total",
];

/// A `metrics` recorder that counts the resilience wrapper's counters in process (gauges and
/// histograms are dropped). `shoal_resilient_ops_total` is kept only for the results that
/// are not `ok` (rejected, timeout, unavailable, …).
#[derive(Debug, Default)]
pub(crate) struct CountingRecorder {
    counters: Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>,
}

type Counters = Arc<Mutex<BTreeMap<String, Arc<AtomicU64>>>>;

static COUNTERS: OnceLock<Counters> = OnceLock::new();

impl CountingRecorder {
    /// Installs the recorder for this process (once; before the store is opened, since the
    /// wrapper registers its handles at first use). `false` if another recorder was there.
    pub(crate) fn install() -> bool {
        let counters = Arc::clone(COUNTERS.get_or_init(Counters::default));
        metrics::set_global_recorder(CountingRecorder { counters }).is_ok()
    }

    /// The counters now: `name{label=value,…}` → count.
    pub(crate) fn snapshot() -> BTreeMap<String, u64> {
        COUNTERS.get().map_or_else(BTreeMap::new, |r| {
            r.lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
                .filter(|(_, v)| *v > 0)
                .collect()
        })
    }
}

impl metrics::Recorder for CountingRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let name = key.name();
        if !COUNTED.contains(&name) {
            return metrics::Counter::noop();
        }
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        if name == "shoal_resilient_ops_total" && labels.iter().any(|l| l == "result=ok") {
            return metrics::Counter::noop();
        }
        let full = format!("{name}{{{}}}", labels.join(","));
        let cell = Arc::clone(
            self.counters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(full)
                .or_default(),
        );
        metrics::Counter::from_arc(cell)
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

// ---------------------------------------------------------------------------------------
// Resilience: settling before verify, the report
// ---------------------------------------------------------------------------------------

/// How the wait for the outage journal ended.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Settle {
    /// Seconds waited.
    pub(crate) waited_s: f64,
    /// Whether the breaker was closed and the journal empty at the end.
    pub(crate) settled: bool,
    /// Acknowledged provisional seqs translated to final seqs.
    pub(crate) resolved_seqs: u64,
    /// Provisional seqs that could not be translated (verify then reports them).
    pub(crate) unresolved_seqs: u64,
}

/// Waits (at most `limit`) until the breaker is closed and the journal replayed, then
/// rewrites provisional seqs in `acks` to their final seqs.
pub(crate) async fn settle(
    resilient: &ResilientRedis,
    plan: &Plan,
    acks: &mut [Ack],
    limit: Duration,
) -> Settle {
    let started = Instant::now();
    let mut settled = false;
    while started.elapsed() < limit && !plan.stopped() {
        let st = resilient.stats();
        if st.breaker == BreakerState::Closed && st.journal_entries == 0 && st.marked_sessions == 0
        {
            settled = true;
            break;
        }
        if st.breaker == BreakerState::Closed {
            resilient.drain_journal().await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut out = Settle {
        waited_s: started.elapsed().as_secs_f64(),
        settled,
        ..Settle::default()
    };
    for a in acks.iter_mut().filter(|a| is_provisional(a.seq)) {
        let id = &plan.sessions[a.session as usize];
        match resilient.resolve_seq(id, a.seq) {
            Some(fin) => {
                a.seq = fin;
                out.resolved_seqs += 1;
            }
            None => out.unresolved_seqs += 1,
        }
    }
    out
}

/// The resilience section of the report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ResilienceReport {
    /// `none`, `memory` or `read-only`.
    pub(crate) fallback: String,
    /// The breaker's state at the end.
    pub(crate) breaker: String,
    /// Times the breaker opened during the run.
    pub(crate) breaker_opened: u64,
    /// Journal entries still not replayed at the end.
    pub(crate) journal_entries: usize,
    /// Writes refused because the journal was full.
    pub(crate) journal_full_rejections: u64,
    /// Every replay, summed.
    pub(crate) replay_entries: u64,
    /// Frames written by replays.
    pub(crate) replay_frames: u64,
    /// Local sessions copied into Redis.
    pub(crate) replay_restored: u64,
    /// Journaled touches / deletes applied.
    pub(crate) replay_touches: u64,
    /// Journaled deletes applied.
    pub(crate) replay_deletes: u64,
    /// Frames dropped at replay (session gone or refused).
    pub(crate) replay_dropped_frames: u64,
    /// Seconds spent replaying.
    pub(crate) replay_s: f64,
    /// The last health probe: ok, latency µs, error.
    pub(crate) last_probe: Option<String>,
    /// The wait before verify.
    pub(crate) settle: Option<Settle>,
    /// The wrapper's counters (`metrics`), non-zero ones.
    pub(crate) counters: BTreeMap<String, u64>,
}

impl ResilienceReport {
    pub(crate) fn new(r: &ResilientRedis, settle: Option<Settle>) -> Self {
        let st = r.stats();
        let t: &DrainReport = &st.drain_totals;
        ResilienceReport {
            fallback: r.config().fallback.to_string(),
            breaker: st.breaker.to_string(),
            breaker_opened: st.breaker_opened,
            journal_entries: st.journal_entries,
            journal_full_rejections: st.journal_full_rejections,
            replay_entries: t.entries,
            replay_frames: t.frames,
            replay_restored: t.restored,
            replay_touches: t.touches,
            replay_deletes: t.deletes,
            replay_dropped_frames: t.dropped_frames,
            replay_s: t.duration.as_secs_f64(),
            last_probe: st.last_probe.map(|p| {
                format!(
                    "{} in {} µs{}",
                    if p.ok { "ok" } else { "failed" },
                    p.latency.as_micros(),
                    p.error.map(|e| format!(": {e}")).unwrap_or_default()
                )
            }),
            settle,
            counters: CountingRecorder::snapshot(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cache: the report and --compare-cache
// ---------------------------------------------------------------------------------------

/// The cache section of the report (counters over the whole run, set-up included).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CacheReport {
    /// `local`, `invalidate` or `strict`.
    pub(crate) consistency: String,
    /// `write_through`, `write_behind` or `read_through`.
    pub(crate) write_mode: String,
    /// Touch coalescing interval.
    pub(crate) touch_interval: String,
    /// Reads answered from the cache.
    pub(crate) hits: u64,
    /// Reads loaded from the store.
    pub(crate) misses: u64,
    /// Reads sent to the store while the cache was off (bus down).
    pub(crate) bypassed: u64,
    /// hits ÷ (hits + misses + bypassed).
    pub(crate) hit_ratio: Option<f64>,
    /// Touches answered without a store write.
    pub(crate) touches_coalesced: u64,
    /// Touches written to the store.
    pub(crate) touch_writes: u64,
    /// Ids invalidated by other instances.
    pub(crate) invalidations_received: u64,
    /// `strict`: hits found out of date.
    pub(crate) stale_hits: u64,
    /// Entries evicted (size bound or ttl).
    pub(crate) evictions: u64,
    /// Write-behind: updates queued / flushed / dropped.
    pub(crate) writes_queued: u64,
    /// Write-behind updates written.
    pub(crate) writes_flushed: u64,
    /// Write-behind updates refused at flush.
    pub(crate) writes_dropped: u64,
    /// Whether the cache served hits at the end.
    pub(crate) enabled: bool,
}

impl CacheReport {
    pub(crate) fn new(c: &dyn CacheControl) -> Self {
        let s: CacheStats = c.stats();
        let cfg = c.config();
        let reads = s.hits + s.misses + s.bypassed;
        CacheReport {
            consistency: cfg.consistency.as_str().to_owned(),
            write_mode: cfg.write_mode.as_str().to_owned(),
            touch_interval: humantime::format_duration(cfg.touch_interval).to_string(),
            hits: s.hits,
            misses: s.misses,
            bypassed: s.bypassed,
            hit_ratio: (reads > 0).then(|| s.hits as f64 / reads as f64),
            touches_coalesced: s.touches_coalesced,
            touch_writes: s.touch_writes,
            invalidations_received: s.invalidations_received,
            stale_hits: s.stale_hits,
            evictions: s.evictions,
            writes_queued: s.writes_queued,
            writes_flushed: s.writes_flushed,
            writes_dropped: s.writes_dropped,
            enabled: s.enabled,
        }
    }
}

/// One side of one `--compare-cache` round.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SideFigures {
    /// Successful gets per second.
    pub(crate) get_ops_per_sec: f64,
    /// Successful touches per second.
    pub(crate) touch_ops_per_sec: f64,
    /// All successful calls per second.
    pub(crate) total_ops_per_sec: f64,
    /// Failed calls.
    pub(crate) errors: u64,
    /// Successful touches.
    pub(crate) touches: u64,
    /// Commands the Redis server ran during the round (`INFO` excluded), if known.
    pub(crate) redis_commands: Option<u64>,
    /// `redis_commands ÷ touches`.
    pub(crate) redis_commands_per_touch: Option<f64>,
    /// Cached side: touches the cache wrote to the store, per touch.
    pub(crate) touch_writes_per_touch: Option<f64>,
}

/// `--compare-cache`: the same workload without and with the cache, round by round.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CompareReport {
    /// Rounds (each: uncached, then cached).
    pub(crate) rounds: usize,
    /// Seconds per side per round.
    pub(crate) round_s: f64,
    /// Per round: the uncached side.
    pub(crate) uncached: Vec<SideFigures>,
    /// Per round: the cached side.
    pub(crate) cached: Vec<SideFigures>,
    /// Median get ops/s, uncached.
    pub(crate) median_get_uncached: f64,
    /// Median get ops/s, cached.
    pub(crate) median_get_cached: f64,
    /// `median_get_cached ÷ median_get_uncached`.
    pub(crate) get_ratio: Option<f64>,
    /// Median Redis commands per touch, uncached.
    pub(crate) median_commands_per_touch_uncached: Option<f64>,
    /// Median Redis commands per touch, cached (touch coalescing).
    pub(crate) median_commands_per_touch_cached: Option<f64>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Total commands the Redis server has run, `INFO` excluded (standalone `redis://` only).
async fn redis_commands(redis: Option<&RedisBacking>) -> Option<u64> {
    let r = redis?;
    if !r.config.url.starts_with("redis://") {
        return None;
    }
    let client = redis::Client::open(r.config.url.as_str()).ok()?;
    let mut con = tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .ok()?
    .ok()?;
    let info: String = tokio::time::timeout(
        Duration::from_secs(2),
        redis::cmd("INFO").arg("commandstats").query_async(&mut con),
    )
    .await
    .ok()?
    .ok()?;
    Some(
        info.lines()
            .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
            .filter_map(|l| {
                l.split_once("calls=")
                    .and_then(|(_, rest)| rest.split(',').next())
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum(),
    )
}

/// Runs `rounds` × (uncached phase, cached phase) of `bound` each. Sessions the creates left
/// alive go to `alive` (for the clean-up).
pub(crate) async fn compare_cache(
    w: &Wrappers,
    cached: &Arc<dyn SessionStore>,
    plan: &Arc<Plan>,
    bound: workload::Bound,
    rounds: usize,
    alive: &mut Vec<std::collections::VecDeque<shoal_core::SessionId>>,
) -> anyhow::Result<Option<CompareReport>> {
    let (Some(cache), Some(uncached)) = (&w.cache, &w.uncached) else {
        return Ok(None);
    };
    let mut report = CompareReport {
        rounds,
        round_s: bound.duration.map_or(0.0, |d| d.as_secs_f64()),
        uncached: Vec::new(),
        cached: Vec::new(),
        median_get_uncached: 0.0,
        median_get_cached: 0.0,
        get_ratio: None,
        median_commands_per_touch_uncached: None,
        median_commands_per_touch_cached: None,
    };
    let side = |phase: &workload::PhaseOutcome, cmds: Option<u64>, writes: Option<u64>| {
        let secs = phase.elapsed.as_secs_f64().max(1e-9);
        let count = |op: Op| phase.tallies[op.index()].hist.len();
        let touches = count(Op::Touch);
        let total: u64 = phase.tallies.iter().map(|t| t.hist.len()).sum();
        let per_touch = |n: u64| (touches > 0).then(|| n as f64 / touches as f64);
        SideFigures {
            get_ops_per_sec: count(Op::Get) as f64 / secs,
            touch_ops_per_sec: touches as f64 / secs,
            total_ops_per_sec: total as f64 / secs,
            errors: phase.tallies.iter().map(|t| t.errors).sum(),
            touches,
            redis_commands: cmds,
            redis_commands_per_touch: cmds.and_then(per_touch),
            touch_writes_per_touch: writes.and_then(per_touch),
        }
    };
    for round in 0..rounds {
        if plan.stopped() {
            break;
        }
        let phase = 10 + 2 * round as u32;
        let before = redis_commands(w.redis.as_ref()).await;
        let u = workload::run_phase(uncached, plan, bound, phase, std::mem::take(alive))
            .await
            .context("--compare-cache: uncached round")?;
        let after = redis_commands(w.redis.as_ref()).await;
        *alive = u.alive.clone();
        report.uncached.push(side(
            &u,
            before.zip(after).map(|(b, a)| a.saturating_sub(b)),
            None,
        ));
        // The uncached round's writes bypassed the cache.
        cache.invalidate_all();

        let writes_before = cache.stats().touch_writes;
        let before = redis_commands(w.redis.as_ref()).await;
        let c = workload::run_phase(cached, plan, bound, phase + 1, std::mem::take(alive))
            .await
            .context("--compare-cache: cached round")?;
        // Deferred touches count for this round.
        cache.flush().await.context("--compare-cache: flushing")?;
        let after = redis_commands(w.redis.as_ref()).await;
        *alive = c.alive.clone();
        let writes = cache.stats().touch_writes - writes_before;
        report.cached.push(side(
            &c,
            before.zip(after).map(|(b, a)| a.saturating_sub(b)),
            Some(writes),
        ));
    }
    report.median_get_uncached =
        median(report.uncached.iter().map(|s| s.get_ops_per_sec).collect()).unwrap_or(0.0);
    report.median_get_cached =
        median(report.cached.iter().map(|s| s.get_ops_per_sec).collect()).unwrap_or(0.0);
    report.get_ratio = (report.median_get_uncached > 0.0)
        .then(|| report.median_get_cached / report.median_get_uncached);
    report.median_commands_per_touch_uncached = median(
        report
            .uncached
            .iter()
            .filter_map(|s| s.redis_commands_per_touch)
            .collect(),
    );
    report.median_commands_per_touch_cached = median(
        report
            .cached
            .iter()
            .filter_map(|s| s.redis_commands_per_touch)
            .collect(),
    );
    Ok(Some(report))
}

// ---------------------------------------------------------------------------------------
// Text rendering
// ---------------------------------------------------------------------------------------

/// The text of the timeline, resilience, cache and compare sections (empty when absent).
pub(crate) fn render(r: &crate::report::Report) -> String {
    use std::fmt::Write as _;

    use crate::report::fmt_rate;

    let mut out = String::new();
    if let Some(t) = &r.timeline {
        let _ = writeln!(
            out,
            "\ntimeline (every call of the timed phase, per second):"
        );
        let _ = writeln!(
            out,
            "  {:>6}  {:>10}  {:>10}  {:>10}  {:>10}  {:<9}  {:>8}",
            "t s", "ok/s", "errors/s", "p99 µs", "max µs", "breaker", "journal"
        );
        for row in &t.rows {
            let _ = writeln!(
                out,
                "  {:>6.1}  {:>10}  {:>10}  {:>10.0}  {:>10.0}  {:<9}  {:>8}",
                row.t_s,
                fmt_rate(row.ok_per_s),
                fmt_rate(row.errors_per_s),
                row.p99_us,
                row.max_us,
                row.breaker,
                row.journal_entries
            );
        }
        for tr in &t.transitions {
            let _ = writeln!(out, "  breaker {} → {} at {:.2} s", tr.from, tr.to, tr.t_s);
        }
    }
    if let Some(x) = &r.resilience {
        let _ = writeln!(
            out,
            "\nresilience (fallback {}): breaker {} at the end, opened {} times; journal {} \
             entries left, {} writes refused (journal full)",
            x.fallback, x.breaker, x.breaker_opened, x.journal_entries, x.journal_full_rejections
        );
        let _ = writeln!(
            out,
            "  replayed: {} entries, {} frames, {} sessions restored, {} touches, {} deletes, \
             {} frames dropped, in {:.3} s",
            x.replay_entries,
            x.replay_frames,
            x.replay_restored,
            x.replay_touches,
            x.replay_deletes,
            x.replay_dropped_frames,
            x.replay_s
        );
        if let Some(p) = &x.last_probe {
            let _ = writeln!(out, "  last health probe: {p}");
        }
        if let Some(s) = &x.settle {
            let _ = writeln!(
                out,
                "  before verify: waited {:.2} s ({}), {} provisional seqs resolved, {} unresolved",
                s.waited_s,
                if s.settled {
                    "breaker closed, journal empty"
                } else {
                    "NOT settled"
                },
                s.resolved_seqs,
                s.unresolved_seqs
            );
        }
        for (k, v) in &x.counters {
            let _ = writeln!(out, "  {k} {v}");
        }
    }
    if let Some(c) = &r.cache {
        let _ = writeln!(
            out,
            "\ncache ({}, {}, touch_interval {}): {} hits, {} misses, {} bypassed (hit ratio {}); \
             touches: {} coalesced, {} written; {} invalidations received, {} stale hits, {} \
             evictions{}",
            c.consistency,
            c.write_mode,
            c.touch_interval,
            c.hits,
            c.misses,
            c.bypassed,
            c.hit_ratio
                .map_or_else(|| "-".to_owned(), |h| format!("{:.1}%", h * 100.0)),
            c.touches_coalesced,
            c.touch_writes,
            c.invalidations_received,
            c.stale_hits,
            c.evictions,
            if c.writes_queued > 0 {
                format!(
                    "; write-behind {} queued, {} flushed, {} dropped",
                    c.writes_queued, c.writes_flushed, c.writes_dropped
                )
            } else {
                String::new()
            }
        );
    }
    if let Some(cmp) = &r.compare_cache {
        let _ = writeln!(
            out,
            "\ncache comparison ({} rounds of {:.1} s per side, same workload, uncached then cached):",
            cmp.rounds, cmp.round_s
        );
        let cpt = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
        for (i, (u, c)) in cmp.uncached.iter().zip(&cmp.cached).enumerate() {
            let _ = writeln!(
                out,
                "  round {}: get ops/s uncached {} cached {} ({}); total ops/s {} vs {}; redis \
                 commands/touch {} vs {}; touch writes/touch {}; errors {} / {}",
                i + 1,
                fmt_rate(u.get_ops_per_sec),
                fmt_rate(c.get_ops_per_sec),
                if u.get_ops_per_sec > 0.0 {
                    format!("{:.1}x", c.get_ops_per_sec / u.get_ops_per_sec)
                } else {
                    "-".to_owned()
                },
                fmt_rate(u.total_ops_per_sec),
                fmt_rate(c.total_ops_per_sec),
                cpt(u.redis_commands_per_touch),
                cpt(c.redis_commands_per_touch),
                cpt(c.touch_writes_per_touch),
                u.errors,
                c.errors
            );
        }
        let _ = writeln!(
            out,
            "  median get ops/s: uncached {}, cached {}, ratio {}; median redis commands per \
             touch: uncached {}, cached {}",
            fmt_rate(cmp.median_get_uncached),
            fmt_rate(cmp.median_get_cached),
            cmp.get_ratio
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.1}x")),
            cpt(cmp.median_commands_per_touch_uncached),
            cpt(cmp.median_commands_per_touch_cached),
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "\nnote: {n}");
    }
    out
}
