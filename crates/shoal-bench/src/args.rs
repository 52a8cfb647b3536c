//! The command line: where the store is and how it is wrapped ([`Cli`]), and what the workload
//! is ([`BenchArgs`]).

use std::{path::PathBuf, time::Duration};

use anyhow::bail;
use clap::{Parser, builder::TypedValueParser as _};
use shoal_core::{
    cached::{Consistency, WriteMode},
    resilient::FallbackMode,
    store::MAX_PAGE_LIMIT,
};

use serde_json::json;

use crate::{
    redis_baseline,
    run::{DEFAULT_DURATION, DEFAULT_OPS},
    workload::{Bound, Mix},
};

const AFTER_HELP: &str = "\
Store URLs: memory:// (default), redis://, rediss://, redis+cluster://, redis+sentinel://.
Store settings come from the [limits] [memory] [redis] [resilience] [cache] [feed] sections of a shoal
config file (--config) and SHOAL_<SECTION>__<KEY> variables, as for `shoal`; flags win.

Exit codes: 0 success, 1 error or --verify found lost/duplicated/out-of-order frames,
2 usage error (bad flag, URL or setting), 130 interrupted.";

/// The slowest `--rate` (one operation per 100 s): slower schedules are not a benchmark.
const MIN_RATE: f64 = 0.01;
/// The fastest `--rate`: far above what any store here serves.
const MAX_RATE: f64 = 10_000_000.0;

/// The longest `--duration`, `--warmup` or `--redis-duration`: a benchmark of a month is
/// already more than any comparison needs, and far longer ones overflow the deadline arithmetic.
pub(crate) const MAX_BENCH_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// `shoal-bench`: a bounded, mixed workload against a Shoal store, beside the original design
/// and raw baselines measured in the same run.
#[derive(Parser, Debug)]
#[command(name = "shoal-bench", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// Store URL [default: memory://]
    #[arg(long, env = "SHOAL_STORE", value_name = "URL")]
    pub(crate) store: Option<String>,

    /// A shoal TOML config file: its store sections and `store` are read
    #[arg(long, env = "SHOAL_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Print one JSON document on stdout instead of text
    #[arg(long)]
    pub(crate) json: bool,

    /// More logs on stderr (-v debug, -vv trace)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Wrap a Redis store in the circuit breaker with this fallback: none, memory, read-only
    #[arg(long, value_name = "MODE", value_parser = choice::<FallbackMode>(&["none", "memory", "read-only"]))]
    pub(crate) fallback: Option<FallbackMode>,

    /// Put the hot-session cache in front of the store
    #[arg(long)]
    pub(crate) cache: bool,

    /// Cache consistency across instances: local, invalidate, strict (implies --cache)
    #[arg(long, value_name = "MODE", value_parser = choice::<Consistency>(&["local", "invalidate", "strict"]))]
    pub(crate) cache_consistency: Option<Consistency>,

    /// Cache write mode: write_through, write_behind, read_through (implies --cache)
    #[arg(long, value_name = "MODE", value_parser = choice::<WriteMode>(&["write_through", "write_behind", "read_through"]))]
    pub(crate) cache_write_mode: Option<WriteMode>,

    /// The workload.
    #[command(flatten)]
    pub(crate) bench: BenchArgs,
}

/// A clap value parser accepting `names` (listed in `--help` and in errors), parsed into `T`.
fn choice<T>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    clap::builder::PossibleValuesParser::new(names).try_map(|s| s.parse::<T>())
}

/// What the benchmark runs: the workload's size, mix, bounds and extra measurements.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct BenchArgs {
    /// Sessions created before timing; get, touch, append and frames act on them.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) sessions: usize,

    /// Frames appended to each session before timing.
    #[arg(long, default_value_t = 100)]
    pub(crate) frames: usize,

    /// Bytes of content per frame.
    #[arg(long, default_value_t = 256)]
    pub(crate) frame_bytes: usize,

    /// Concurrent tasks issuing operations.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,

    /// Stop the timed phase after this long (e.g. `10s`). Without --duration and --ops:
    /// 5s or 1,000,000 ops, whichever comes first.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) duration: Option<Duration>,

    /// Stop the timed phase after this many operations (over all tasks).
    #[arg(long)]
    pub(crate) ops: Option<u64>,

    /// Untimed warm-up before the timed phase (e.g. `1s`; `0s` for none).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub(crate) warmup: Duration,

    /// Seed of the operation sequence (the same for the store and the baseline).
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,

    /// Operation weights, `op=weight,...` with ops get, touch, append, frames, list, create
    /// (unnamed ops get 0). The default models a proxy: get and touch per message, append per
    /// frame, an occasional replay page, new sessions now and then, a rare admin listing.
    #[arg(long, default_value_t = Mix::default())]
    pub(crate) mix: Mix,

    /// Page size of the `frames` and `list` operations.
    #[arg(long, default_value_t = 100)]
    pub(crate) page: usize,

    /// Appends timed per case of the append-scaling measurement (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) scaling_appends: u64,

    /// Skip the baseline (the original `RwLock<HashMap>` design, measured in the same run).
    #[arg(long)]
    pub(crate) no_baseline: bool,

    /// After the run, read every frame back and report lost, duplicated and out-of-order
    /// frames (exit status 1 if any).
    #[arg(long)]
    pub(crate) verify: bool,

    /// Keep the sessions the bench created (ids start with `bench-<random>-`).
    #[arg(long)]
    pub(crate) keep: bool,

    /// Cap the offered load at this many operations per second (over all tasks; each task
    /// keeps its share on a fixed schedule). Without it tasks go as fast as the store answers,
    /// so a store that fails fast (an open breaker) sees many more calls.
    #[arg(long, value_name = "OPS_PER_SEC")]
    pub(crate) rate: Option<f64>,

    /// Print the timed phase second by second: ok/s, errors/s, p99, breaker state, journal
    /// size, and every breaker transition (on by itself with --fallback)
    #[arg(long)]
    pub(crate) timeline: bool,

    /// With --cache: after the run, N rounds of the timed workload against the store without
    /// the cache and then with it (each as long as --duration/--ops); reports per-round and
    /// median get ops/s of both sides, their ratio, and on Redis the server's commands per
    /// touch
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) compare_cache: usize,

    /// The Redis baselines.
    #[command(flatten)]
    pub(crate) redis: redis_baseline::RedisBaselineArgs,
}

impl BenchArgs {
    /// The timed phase's bound: what was asked for, or the defaults when nothing was.
    pub(crate) fn bound(&self) -> Bound {
        if self.duration.is_none() && self.ops.is_none() {
            Bound {
                duration: Some(DEFAULT_DURATION),
                ops: Some(DEFAULT_OPS),
            }
        } else {
            Bound {
                duration: self.duration,
                ops: self.ops,
            }
        }
    }

    /// Rejects arguments that cannot make a meaningful run.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if self.concurrency > 100_000 {
            bail!("--concurrency {} is above 100000", self.concurrency);
        }
        if self.sessions == 0 {
            bail!("--sessions must be at least 1 (get, touch, append and frames act on them)");
        }
        if u32::try_from(self.sessions).is_err() {
            bail!("--sessions {} is too large", self.sessions);
        }
        if self.page == 0 || self.page > MAX_PAGE_LIMIT {
            bail!("--page {} is out of range 1..={MAX_PAGE_LIMIT}", self.page);
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            bail!("--duration must be positive");
        }
        for (flag, d) in [
            ("--duration", self.duration),
            ("--warmup", Some(self.warmup)),
        ] {
            if d.is_some_and(|d| d > MAX_BENCH_DURATION) {
                bail!("{flag} must be at most 30 days");
            }
        }
        if self.ops == Some(0) {
            bail!("--ops must be positive");
        }
        if self
            .rate
            .is_some_and(|r| !(r.is_finite() && (MIN_RATE..=MAX_RATE).contains(&r)))
        {
            bail!("--rate must be between {MIN_RATE} and {MAX_RATE} operations per second");
        }
        if self.compare_cache > 100 {
            bail!("--compare-cache {} is above 100 rounds", self.compare_cache);
        }
        self.redis.validate()
    }

    /// The arguments (defaults filled in) as JSON.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let bound = self.bound();
        json!({
            "sessions": self.sessions,
            "frames": self.frames,
            "frame_bytes": self.frame_bytes,
            "concurrency": self.concurrency,
            "duration_s": bound.duration.map(|d| d.as_secs_f64()),
            "ops": bound.ops,
            "warmup_s": self.warmup.as_secs_f64(),
            "seed": self.seed,
            "mix": self.mix.to_json(),
            "page": self.page,
            "scaling_appends": self.scaling_appends,
            "baseline": !self.no_baseline,
            "verify": self.verify,
            "keep": self.keep,
            "rate": self.rate,
            "timeline": self.timeline,
            "compare_cache": self.compare_cache,
            "redis": self.redis.to_json(),
        })
    }

    /// One line describing the workload.
    pub(crate) fn summary(&self) -> String {
        let bound = self.bound();
        let mut b = Vec::new();
        if let Some(d) = bound.duration {
            b.push(humantime::format_duration(d).to_string());
        }
        if let Some(o) = bound.ops {
            b.push(format!("{o} ops"));
        }
        let rate = self
            .rate
            .map_or_else(String::new, |r| format!(", rate {r} ops/s"));
        format!(
            "{} sessions × {} frames of {} B, concurrency {}{rate}, bound {}, mix {}, page {}, seed {}",
            self.sessions,
            self.frames,
            self.frame_bytes,
            self.concurrency,
            b.join(" or "),
            self.mix,
            self.page,
            self.seed
        )
    }
}
