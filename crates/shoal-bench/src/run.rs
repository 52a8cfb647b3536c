//! `shoal-bench`: a bounded, mixed workload against any store, side by side with the original
//! design measured in the same run, plus an append-scaling measurement and `--verify`.
//!
//! # What a run does
//! 1. **Set-up** (untimed): creates `--sessions` sessions (ids `bench-<random>-s<i>`) and
//!    appends `--frames` frames of `--frame-bytes` to each.
//! 2. **Warm-up** (`--warmup`, untimed), then the **timed phase**: `--concurrency` tasks issue
//!    the `--mix` of operations until `--duration` or `--ops` is reached, whichever comes
//!    first (without either: 5 s / 1,000,000 ops). Every call is timed with `Instant` into an
//!    HDR histogram. Tasks yield between calls, as a proxy's would between network reads.
//! 3. **Verify** (`--verify`): every pool session is read back with paged `frames` calls and
//!    compared with the appends the store acknowledged (see [`verify`]).
//! 4. **Append scaling**: one task times single appends to a session of 10 frames and to one of
//!    10,000 (at the default cap, so each append there also trims the oldest frame), plus a
//!    diagnostic session just below the cap that the store never trims; the ratio is the
//!    median over pairs of blocks timed back to back (see [`workload::append_scaling`]).
//! 5. **Clean-up**: every session the bench created is deleted (unless `--keep`).
//! 6. **Baseline** (unless `--no-baseline`): steps 1–2 again, same seed and plan, against
//!    [`baseline::BaselineStore`], the original `RwLock<HashMap>` design.
//!
//! With a standalone Redis store, between steps 4 and 5 (while the pool exists) come the
//! **Redis baselines** (unless `--no-redis-baseline`): each op alone through Shoal and as the
//! same commands through raw redis-rs, raw `GET` of a blob, and `redis-benchmark` (see
//! [`redis_baseline`]).
//!
//! Per-op `ops/s` is successful calls of that op per second of the timed phase's wall time
//! (so with one mix, ops are comparable across stores, and the total is their sum).
//!
//! Frames are never trimmed by default (the pool's sessions stay far below the default
//! retention cap of 10,000); when they are (small caps, long runs), verify counts frames older
//! than a capped session's `first_seq` as `trimmed`, not `lost`.

use std::{
    collections::{BTreeMap, VecDeque},
    io::IsTerminal as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use shoal_core::{SessionFilter, SessionId, SessionStore};

use crate::{
    args::BenchArgs,
    baseline,
    open::RedisBacking,
    redis_baseline, report,
    report::{AppendScaling, OpStats, Report},
    verify,
    verify::{Ack, VerifyReport},
    workload,
    workload::{Bound, Op, PhaseOutcome, Plan},
    wrappers,
    wrappers::{CacheReport, ResilienceReport, Sampler, Settle, Timeline, Wrappers},
};

/// Longest wait before `--verify` for the breaker to close and the journal to be replayed.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Default bound on the timed phase's duration when neither `--duration` nor `--ops` is given.
pub(crate) const DEFAULT_DURATION: Duration = Duration::from_secs(5);
/// Default bound on the timed phase's operations when neither `--duration` nor `--ops` is given.
pub(crate) const DEFAULT_OPS: u64 = 1_000_000;

/// Progress lines on stderr: only for a terminal, never with `--json`.
pub(crate) struct Progress {
    enabled: bool,
}

impl Progress {
    fn new(json: bool) -> Self {
        Progress {
            enabled: !json && std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn say(&self, msg: impl FnOnce() -> String) {
        if self.enabled {
            eprintln!("shoal-bench: {}", msg());
        }
    }
}

/// What one store's run produced.
struct StoreRun {
    setup: Duration,
    measured: PhaseOutcome,
    verify: Option<VerifyReport>,
    scaling: Option<AppendScaling>,
    timeline: Option<Timeline>,
    settle: Option<Settle>,
}

/// Runs the benchmark against `store` and prints the report (a table, or with `json` exactly
/// one JSON object on stdout). `Ok(false)` means `--verify` found lost, duplicated or
/// out-of-order frames.
pub(crate) async fn run(
    args: &BenchArgs,
    store: Arc<dyn SessionStore>,
    redis: Option<&RedisBacking>,
    wrappers: &Wrappers,
    json: bool,
) -> anyhow::Result<bool> {
    // Ctrl-C stops the current phase; the bench's sessions are still deleted, then the command
    // ends as interrupted. A second Ctrl-C exits at once.
    let stop = Arc::new(AtomicBool::new(false));
    let listener = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::Relaxed);
                eprintln!("shoal-bench: interrupted; cleaning up (Ctrl-C again to exit now)");
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        })
    };
    let result = execute(args, store, redis, wrappers, &Progress::new(json), &stop).await;
    listener.abort();
    let (report, ok) = result?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).context("serialising the report")?
        );
    } else {
        print!("{}", report::render_table(&report, &args.summary()));
    }
    Ok(ok)
}

/// Everything but the printing: measures, verifies, cleans up, and builds the report.
async fn execute(
    args: &BenchArgs,
    store: Arc<dyn SessionStore>,
    redis: Option<&RedisBacking>,
    wrappers: &Wrappers,
    progress: &Progress,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(Report, bool)> {
    args.validate()
        .map_err(|e| crate::error::UsageError(e.to_string()))?;
    let limits = store.limits().clone();
    if args.frame_bytes > limits.max_frame_bytes {
        bail!(
            "--frame-bytes {} exceeds the store's max_frame_bytes {}",
            args.frame_bytes,
            limits.max_frame_bytes
        );
    }
    let existing = store
        .count(&SessionFilter::default())
        .await
        .context("counting the sessions already in the store")?;
    let existing = usize::try_from(existing).unwrap_or(usize::MAX);
    let room = limits.max_sessions.saturating_sub(existing);
    let needed = args.sessions.saturating_add(3);
    if needed > room {
        bail!(
            "--sessions {} needs {needed} sessions (the pool plus 3 for append scaling), but the \
             store allows max_sessions {} and already holds {existing}; lower --sessions or raise \
             the store's max_sessions",
            args.sessions,
            limits.max_sessions,
        );
    }
    // Creates keep at most as many extra sessions alive as the pool, within the store's room.
    let create_total = args.sessions.min(room - needed);

    let prefix = format!("bench-{}-", &SessionId::generate().as_str()[..8]);
    let sessions = (0..args.sessions)
        .map(|i| Plan::pool_id(&prefix, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let plan = Arc::new(Plan {
        prefix,
        sessions,
        frames_per_session: args.frames,
        frame_bytes: args.frame_bytes,
        concurrency: args.concurrency,
        mix: args.mix.clone(),
        page: args.page,
        create_cap_per_worker: create_total / args.concurrency,
        record_acks: args.verify,
        seed: args.seed,
        stop: Arc::clone(stop),
        live: (args.timeline || wrappers.resilient.is_some())
            .then(wrappers::Live::new)
            .transpose()?
            .map(Arc::new),
        rate: args.rate,
    });

    let name = store.backend_name();
    progress.say(|| format!("{name}: {}", args.summary()));
    let mut alive = Vec::new();
    let outcome = run_store(args, &store, &plan, progress, wrappers, true, &mut alive).await;
    // The Redis baselines need the pool: before the clean-up. They compare the bare store
    // with raw Redis, so they are skipped when a wrapper is on.
    let wrapped = wrappers.cache.is_some() || wrappers.resilient.is_some();
    let mut notes = Vec::new();
    if wrapped && redis.is_some() && !args.redis.no_redis_baseline {
        notes.push(
            "Redis baselines skipped: they compare the bare store with raw Redis (run without \
             --cache/--fallback)"
                .to_owned(),
        );
    }
    let redis_report = match redis {
        Some(r)
            if outcome.is_ok() && !args.redis.no_redis_baseline && !plan.stopped() && !wrapped =>
        {
            Some(redis_baseline::run(args, &store, r, &plan, progress).await)
        }
        _ => None,
    };
    let compare = if outcome.is_ok() && args.compare_cache > 0 && !plan.stopped() {
        if wrappers.cache.is_none() {
            notes.push("--compare-cache needs --cache: not run".to_owned());
            None
        } else {
            progress.say(|| format!("{name}: {} rounds uncached vs cached", args.compare_cache));
            let mut a = std::mem::take(&mut alive);
            let r = wrappers::compare_cache(
                wrappers,
                &store,
                &plan,
                args.bound(),
                args.compare_cache,
                &mut a,
            )
            .await;
            alive = a;
            Some(r)
        }
    } else {
        None
    };
    if args.keep {
        progress.say(|| format!("kept the sessions with ids starting {}", plan.prefix));
    } else {
        progress.say(|| format!("{name}: deleting the bench's sessions"));
        let mut ids = plan.sessions.clone();
        ids.extend(workload::scaling_ids(&plan.prefix)?);
        ids.extend(alive.into_iter().flatten());
        let cleanup = workload::delete_all(&store, ids, args.concurrency).await;
        // A failed run's error matters more than a failed clean-up.
        if let Err(e) = cleanup
            && outcome.is_ok()
        {
            return Err(e.context("deleting the bench's sessions"));
        }
    }
    let tested = outcome?;
    let redis_report = redis_report.transpose().context("the Redis baselines")?;
    let compare = compare.transpose()?.flatten();
    interrupted(&plan)?;

    let baseline = if args.no_baseline {
        None
    } else {
        progress.say(|| "baseline (original RwLock<HashMap> design): same workload".to_owned());
        let b: Arc<dyn SessionStore> = Arc::new(baseline::BaselineStore::new());
        let mut ignored = Vec::new();
        let none = Wrappers::default();
        Some(run_store(args, &b, &plan, progress, &none, false, &mut ignored).await?)
    };
    interrupted(&plan)?;

    let active: Vec<Op> = args.mix.active().collect();
    let (results, total, errors) = stats_of(&tested.measured, &active)?;
    let mut report = Report {
        store: name.to_owned(),
        config: args.to_json(),
        setup_s: tested.setup.as_secs_f64(),
        elapsed_s: tested.measured.elapsed.as_secs_f64(),
        results,
        total,
        baseline: None,
        baseline_total: None,
        baseline_elapsed_s: None,
        ratios: None,
        append_scaling: tested.scaling,
        verify: tested.verify,
        errors,
        baseline_errors: BTreeMap::new(),
        redis_baseline: redis_report,
        timeline: tested.timeline,
        resilience: wrappers
            .resilient
            .as_ref()
            .map(|r| ResilienceReport::new(r, tested.settle)),
        cache: wrappers.cache.as_deref().map(CacheReport::new),
        compare_cache: compare,
        notes,
    };
    if let Some(b) = &baseline {
        let (results, total, errors) = stats_of(&b.measured, &active)?;
        let mut ratios = report::ratios(&report.results, &results);
        ratios.extend(report::ratios(
            std::slice::from_ref(&report.total),
            std::slice::from_ref(&total),
        ));
        report.ratios = Some(ratios);
        report.baseline = Some(results);
        report.baseline_total = Some(total);
        report.baseline_elapsed_s = Some(b.measured.elapsed.as_secs_f64());
        report.baseline_errors = errors;
    }
    let ok = report.verify.is_none_or(|v| v.ok());
    Ok((report, ok))
}

/// `Err(Interrupted)` once Ctrl-C was pressed.
fn interrupted(plan: &Plan) -> anyhow::Result<()> {
    if plan.stopped() {
        return Err(anyhow::Error::new(crate::error::Interrupted));
    }
    Ok(())
}

/// Per-op figures, the total, and the first error per op, of one timed phase.
fn stats_of(
    phase: &PhaseOutcome,
    active: &[Op],
) -> anyhow::Result<(Vec<OpStats>, OpStats, BTreeMap<String, String>)> {
    let mut all = workload::new_hist()?;
    let mut errors_total = 0;
    let mut firsts = BTreeMap::new();
    let mut results = Vec::with_capacity(active.len());
    for op in active {
        let t = &phase.tallies[op.index()];
        all.add(&t.hist).context("merging latency histograms")?;
        errors_total += t.errors;
        if let Some(e) = &t.first_error {
            firsts.insert(op.name().to_owned(), e.clone());
        }
        results.push(report::op_stats(
            op.name(),
            &t.hist,
            t.errors,
            phase.elapsed,
        ));
    }
    let total = report::op_stats("total", &all, errors_total, phase.elapsed);
    Ok((results, total, firsts))
}

/// Set-up, warm-up, timed phase and (for the store under test) verify and append scaling
/// against one store. `alive` receives the sessions the creates left alive, also when a later
/// step fails, so they can be cleaned up.
async fn run_store(
    args: &BenchArgs,
    store: &Arc<dyn SessionStore>,
    plan: &Arc<Plan>,
    progress: &Progress,
    wrappers: &Wrappers,
    under_test: bool,
    alive: &mut Vec<VecDeque<SessionId>>,
) -> anyhow::Result<StoreRun> {
    let name = store.backend_name();
    progress.say(|| {
        format!(
            "{name}: set-up: {} sessions × {} frames",
            args.sessions, args.frames
        )
    });
    let started = Instant::now();
    let mut acks: Vec<Ack> = workload::setup(store, plan).await?;
    let setup = started.elapsed();
    interrupted(plan)?;

    if !args.warmup.is_zero() {
        progress.say(|| {
            format!(
                "{name}: warm-up {}",
                humantime::format_duration(args.warmup)
            )
        });
        let warm = workload::run_phase(
            store,
            plan,
            Bound {
                duration: Some(args.warmup),
                ops: None,
            },
            1,
            Vec::new(),
        )
        .await?;
        acks.extend(warm.acks);
        *alive = warm.alive;
    }

    progress.say(|| format!("{name}: timed phase"));
    let sampler = match &plan.live {
        Some(live) if under_test => {
            Some(Sampler::start(Arc::clone(live), wrappers.resilient.clone()))
        }
        _ => None,
    };
    let measured = workload::run_phase(store, plan, args.bound(), 2, std::mem::take(alive)).await;
    let timeline = match sampler {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    let mut measured = measured?;
    *alive = std::mem::take(&mut measured.alive);
    acks.append(&mut measured.acks);
    interrupted(plan)?;

    let settle = match &wrappers.resilient {
        Some(r) if under_test && args.verify => {
            progress.say(|| {
                format!("{name}: waiting for the breaker to close and the journal to replay")
            });
            Some(wrappers::settle(r, plan, &mut acks, SETTLE_LIMIT).await)
        }
        _ => None,
    };

    let verify = if under_test && args.verify {
        progress.say(|| format!("{name}: verifying {} acknowledged frames", acks.len()));
        Some(verify::verify_store(store, plan, &acks).await?)
    } else {
        None
    };
    drop(acks);

    let scaling = if under_test && args.scaling_appends > 0 {
        progress.say(|| format!("{name}: append scaling"));
        let m = workload::append_scaling(store, plan, args.scaling_appends).await?;
        Some(AppendScaling::new(&m, args.scaling_appends))
    } else {
        None
    };
    Ok(StoreRun {
        setup,
        measured,
        verify,
        scaling,
        timeline,
        settle,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use clap::Parser;
    use shoal_core::{
        FramePage, FrameQuery, GetMany, Health, Limits, ListPage, ListQuery, MemoryStore, NewFrame,
        PendingRequest, RequestId, Result, Session, SessionRecord, SweepReport, Timestamp,
    };

    use super::*;
    use crate::workload::Mix;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(extra: &[&str]) -> BenchArgs {
        let mut argv = vec!["bench"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().bench
    }

    fn no_stop() -> Arc<AtomicBool> {
        Arc::new(AtomicBool::new(false))
    }

    /// `execute` on `store` without Redis baselines, wrappers or progress output.
    async fn run_plain(
        a: &BenchArgs,
        store: Arc<dyn SessionStore>,
        stop: &Arc<AtomicBool>,
    ) -> anyhow::Result<(Report, bool)> {
        execute(
            a,
            store,
            None,
            &Wrappers::default(),
            &Progress { enabled: false },
            stop,
        )
        .await
    }

    fn small(extra: &[&str]) -> BenchArgs {
        let mut v = vec![
            "--sessions",
            "20",
            "--frames",
            "5",
            "--frame-bytes",
            "64",
            "--concurrency",
            "4",
            "--ops",
            "3000",
            "--warmup",
            "0s",
            "--scaling-appends",
            "200",
        ];
        v.extend_from_slice(extra);
        args(&v)
    }

    #[test]
    fn defaults_are_bounded_and_documented() {
        let a = args(&[]);
        assert_eq!(
            a.bound(),
            Bound {
                duration: Some(DEFAULT_DURATION),
                ops: Some(DEFAULT_OPS)
            }
        );
        assert_eq!(a.mix, Mix::default());
        let a = args(&["--duration", "10s"]);
        assert_eq!(
            a.bound(),
            Bound {
                duration: Some(Duration::from_secs(10)),
                ops: None
            }
        );
        let a = args(&["--ops", "5", "--mix", "get=1"]);
        assert_eq!(a.bound().ops, Some(5));
        assert_eq!(a.bound().duration, None);
        assert_eq!(a.mix.total(), 1);
        assert!(Cli::try_parse_from(["bench", "--mix", "nope=1"]).is_err());
        assert!(Cli::try_parse_from(["bench", "--duration", "ten"]).is_err());
        let c = args(&["--concurrency", "0"]).validate().unwrap_err();
        assert!(c.to_string().contains("--concurrency"), "{c}");
        assert!(args(&["--page", "0"]).validate().is_err());
        assert!(args(&["--ops", "0"]).validate().is_err());
        assert!(args(&["--sessions", "0"]).validate().is_err());
        // No rate panics the pacing arithmetic: out of range is refused.
        for rate in ["1e-20", "1e30", "NaN", "inf", "-1", "0"] {
            let refused = Cli::try_parse_from(["bench", "--rate", rate])
                .map_err(|e| e.to_string())
                .and_then(|c| c.bench.validate().map_err(|e| e.to_string()));
            assert!(refused.is_err(), "--rate {rate}");
        }
        assert!(args(&["--rate", "0.5"]).validate().is_ok());
        // Nor does a duration past the deadline arithmetic.
        for flag in ["--duration", "--warmup", "--redis-duration"] {
            let e = args(&[flag, "1000000y"]).validate().expect_err(flag);
            assert!(e.to_string().contains(flag), "{e}");
        }
        assert!(args(&["--duration", "30days"]).validate().is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_against_memory_verifies_and_cleans_up() {
        let store = MemoryStore::new();
        let dyn_store: Arc<dyn SessionStore> = Arc::new(store.clone());
        let a = small(&["--verify"]);
        let (report, ok) = run_plain(&a, dyn_store, &no_stop()).await.unwrap();
        assert!(ok);
        let v = report.verify.unwrap();
        assert_eq!(
            (v.lost, v.duplicated, v.out_of_order, v.trimmed),
            (0, 0, 0, 0)
        );
        // Set-up frames plus every acknowledged append of the timed phase.
        let appends = report
            .results
            .iter()
            .find(|r| r.op == "append")
            .unwrap()
            .count;
        assert_eq!(v.checked, 20 * 5 + appends);
        assert_eq!(v.sessions, 20);
        assert_eq!(report.total.count + report.total.errors, 3000);
        assert_eq!(report.total.errors, 0, "{:?}", report.errors);
        let ops: Vec<&str> = report.results.iter().map(|r| r.op.as_str()).collect();
        assert_eq!(ops, ["get", "touch", "append", "frames", "list", "create"]);
        // Same seed, same shape: the baseline issued exactly the same number of each op.
        let base = report.baseline.as_ref().unwrap();
        for (s, b) in report.results.iter().zip(base) {
            assert_eq!((s.op.as_str(), s.count), (b.op.as_str(), b.count));
        }
        assert!(report.ratios.as_ref().unwrap().contains_key("total"));
        let sc = report.append_scaling.unwrap();
        assert_eq!(
            (sc.frames_small, sc.frames_large, sc.appends),
            (10, 10_000, 200)
        );
        assert!(sc.ops_per_sec_10 > 0.0 && sc.ops_per_sec_10000 > 0.0);
        // Everything the bench created is gone.
        assert_eq!(store.len(), 0);
        let json = serde_json::to_value(&report.config).unwrap();
        assert_eq!(json["sessions"], 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_leaves_the_sessions_and_limits_are_checked() {
        let store = MemoryStore::new();
        let dyn_store: Arc<dyn SessionStore> = Arc::new(store.clone());
        let a = small(&["--keep", "--no-baseline", "--mix", "get=1"]);
        let (report, ok) = run_plain(&a, dyn_store, &no_stop()).await.unwrap();
        assert!(ok);
        assert!(report.baseline.is_none() && report.ratios.is_none() && report.verify.is_none());
        assert_eq!(store.len(), 23);
        let page = store.list(&ListQuery::first(100)).await.unwrap();
        assert!(
            page.sessions
                .iter()
                .all(|s| s.id.as_str().starts_with("bench-"))
        );

        let mut limits = Limits::default();
        limits.max_sessions = 21;
        let tight: Arc<dyn SessionStore> = Arc::new(MemoryStore::builder().limits(limits).build());
        let err = run_plain(&small(&[]), tight, &no_stop()).await.unwrap_err();
        assert!(err.to_string().contains("max_sessions 21"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trimming_at_a_small_cap_is_counted_as_trimmed_not_lost() {
        let mut limits = Limits::default();
        limits.max_frames_per_session = 8;
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::builder().limits(limits).build());
        let a = small(&["--verify", "--no-baseline", "--mix", "append=1"]);
        let (report, ok) = run_plain(&a, store, &no_stop()).await.unwrap();
        let v = report.verify.unwrap();
        assert!(ok, "{v:?}");
        assert!(v.trimmed > 0);
        assert_eq!(v.lost, 0);
        assert_eq!(v.checked, 20 * 5 + 3000);
        let sc = report.append_scaling.unwrap();
        assert_eq!((sc.frames_small, sc.frames_large), (8, 8));
        assert_eq!(sc.frames_below_cap, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ctrl_c_stops_the_run_and_still_cleans_up() {
        let store = MemoryStore::new();
        let dyn_store: Arc<dyn SessionStore> = Arc::new(store.clone());
        let stop = no_stop();
        let flag = Arc::clone(&stop);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            flag.store(true, Ordering::Relaxed);
        });
        let a = args(&["--sessions", "50", "--frames", "5", "--duration", "60s"]);
        let started = Instant::now();
        let err = run_plain(&a, dyn_store, &stop).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(
            err.downcast_ref::<crate::error::Interrupted>().is_some(),
            "{err:#}"
        );
        assert_eq!(store.len(), 0);
    }

    /// A memory store that acknowledges every 50th append without storing it.
    #[derive(Debug)]
    struct Lossy {
        inner: MemoryStore,
        appends: AtomicU64,
    }

    type BoxFut<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

    macro_rules! delegate {
        ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {$(
            fn $name<'s, 'a>(&'s self, $($arg: $ty),*) -> BoxFut<'a, $out>
            where
                's: 'a,
            {
                Box::pin(async move { self.inner.$name($($arg),*).await })
            }
        )*};
    }

    // The `async_trait` expansion, written out (this crate does not use the macro); the
    // reference arguments need their own lifetimes, so those methods are spelled out.
    impl SessionStore for Lossy {
        fn backend_name(&self) -> &'static str {
            "lossy"
        }
        fn limits(&self) -> &Limits {
            self.inner.limits()
        }
        delegate! {
            create(session: Session) -> Session;
            sweep_expired() -> SweepReport;
            health() -> Health;
            restore(record: SessionRecord) -> ();
        }
        fn get<'s, 'i, 'a>(&'s self, id: &'i SessionId) -> BoxFut<'a, Option<Session>>
        where
            's: 'a,
            'i: 'a,
        {
            Box::pin(self.inner.get(id))
        }
        fn get_many<'s, 'i, 'a>(&'s self, ids: &'i [SessionId]) -> BoxFut<'a, GetMany>
        where
            's: 'a,
            'i: 'a,
        {
            Box::pin(self.inner.get_many(ids))
        }
        fn update<'s, 'i, 'a>(&'s self, session: &'i Session) -> BoxFut<'a, Session>
        where
            's: 'a,
            'i: 'a,
        {
            Box::pin(self.inner.update(session))
        }
        fn touch<'s, 'i, 'a>(&'s self, id: &'i SessionId) -> BoxFut<'a, Timestamp>
        where
            's: 'a,
            'i: 'a,
        {
            Box::pin(self.inner.touch(id))
        }
        fn delete<'s, 'i, 'a>(&'s self, id: &'i SessionId) -> BoxFut<'a, bool>
        where
            's: 'a,
            'i: 'a,
        {
            Box::pin(self.inner.delete(id))
        }
        fn list<'s, 'i, 'a>(&'s self, query: &'i ListQuery) -> BoxFut<'a, ListPage>
        where
            's: 'a,
            'i: 'a,
        {
            Box::pin(self.inner.list(query))
        }
        fn count<'s, 'i, 'a>(&'s self, filter: &'i SessionFilter) -> BoxFut<'a, u64>
        where
            's: 'a,
            'i: 'a,
        {
            Box::pin(self.inner.count(filter))
        }
        fn append_frames<'s, 'i, 'a>(
            &'s self,
            id: &'i SessionId,
            frames: Vec<NewFrame>,
        ) -> BoxFut<'a, Vec<u64>>
        where
            's: 'a,
            'i: 'a,
        {
            Box::pin(async move {
                let n = self.appends.fetch_add(1, Ordering::Relaxed);
                if n % 50 == 49 && frames.len() == 1 {
                    // Acknowledge with the seq the frame would have had, store nothing.
                    let s = self
                        .inner
                        .get(id)
                        .await?
                        .ok_or_else(|| shoal_core::Error::session_not_found(id))?;
                    return Ok(vec![s.last_seq + 1]);
                }
                self.inner.append_frames(id, frames).await
            })
        }
        fn frames<'s, 'i, 'q, 'a>(
            &'s self,
            id: &'i SessionId,
            query: &'q FrameQuery,
        ) -> BoxFut<'a, FramePage>
        where
            's: 'a,
            'i: 'a,
            'q: 'a,
        {
            Box::pin(self.inner.frames(id, query))
        }
        fn count_frames<'s, 'i, 'a>(&'s self, id: &'i SessionId) -> BoxFut<'a, u64>
        where
            's: 'a,
            'i: 'a,
        {
            Box::pin(self.inner.count_frames(id))
        }
        fn delete_frames<'s, 'i, 'a>(
            &'s self,
            id: &'i SessionId,
            through_seq: Option<u64>,
        ) -> BoxFut<'a, u64>
        where
            's: 'a,
            'i: 'a,
        {
            Box::pin(self.inner.delete_frames(id, through_seq))
        }
        fn add_pending<'s, 'i, 'a>(
            &'s self,
            id: &'i SessionId,
            request: PendingRequest,
        ) -> BoxFut<'a, ()>
        where
            's: 'a,
            'i: 'a,
        {
            Box::pin(self.inner.add_pending(id, request))
        }
        fn take_pending<'s, 'i, 'r, 'a>(
            &'s self,
            id: &'i SessionId,
            request_id: &'r RequestId,
        ) -> BoxFut<'a, Option<PendingRequest>>
        where
            's: 'a,
            'i: 'a,
            'r: 'a,
        {
            Box::pin(self.inner.take_pending(id, request_id))
        }
        fn list_pending<'s, 'i, 'a>(&'s self, id: &'i SessionId) -> BoxFut<'a, Vec<PendingRequest>>
        where
            's: 'a,
            'i: 'a,
        {
            Box::pin(self.inner.list_pending(id))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_fails_the_run_when_the_store_loses_acknowledged_frames() {
        let store: Arc<dyn SessionStore> = Arc::new(Lossy {
            inner: MemoryStore::new(),
            appends: AtomicU64::new(0),
        });
        let a = small(&["--verify", "--no-baseline", "--mix", "append=3,get=1"]);
        let (report, ok) = run_plain(&a, store, &no_stop()).await.unwrap();
        assert!(!ok);
        let v = report.verify.unwrap();
        assert!(v.lost > 0, "{v:?}");
        let t = report::render_table(&report, "lossy");
        assert!(t.contains("FAILED"), "{t}");
    }
}
