//! Redis baselines measured in the same run as the Shoal benchmark (store URLs `redis://` and
//! `rediss://`, standalone):
//!
//! 1. **Shoal vs raw redis-rs, per op.** For each concurrency level and round, `get`, `touch`,
//!    `append_frame` and `create` are measured alone, first through the store (the
//!    `SessionStore` trait, as the proxy calls it) and then as the same Redis commands sent
//!    directly through one `redis::aio::ConnectionManager` ([`raw`]); the order alternates
//!    per round so drift hits both sides alike. Plus raw `GET` of one blob the size of a
//!    session hash (what a GET-one-blob session store does per request).
//! 2. **Shoal vs the peer** (`--redis-peer`): `tower-sessions-redis-store`'s `create`,
//!    `save` and `load` ([`peer`]) beside Shoal's `create`, `touch` and `get`, as a third side
//!    of the same blocks.
//! 3. **The server's limit** (when `redis-benchmark` is on PATH and the URL is plain TCP
//!    without credentials): `HGETALL` of a copy of a pool session's hash and `EVALSHA` of
//!    Shoal's append script with the same KEYS/ARGV, at 64 clients × pipeline 16 ([`tool`]).
//!
//! Every measurement is bounded (`--redis-duration`, `--redis-ops`) and cut into blocks of
//! 200 ms: the sides take turns block by block (the order rotating), and a round's ratio is
//! the median of its per-block ratios, so load from other processes — which hits neighbouring
//! blocks alike — cancels out. With `--repeat N` the comparison runs N rounds and medians of
//! the rounds are reported. Everything written is removed afterwards: the sessions Shoal
//! created, and every key under the raw side's own prefix.

mod driver;
mod peer;
mod raw;
mod tool;

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde::Serialize;
use shoal_core::{SessionFilter, SessionId, SessionStore, Timestamp};

use self::{
    driver::{Driven, Limit, OpFn, OpFuture, drive},
    raw::{CreatePairs, RawCtx, Scripts},
    tool::{Target, ToolStats},
};
use crate::{
    report::{OpStats, fmt_rate, fmt_us, op_stats, ratio, table},
    run::Progress,
    verify::{Fingerprint, frame_content},
    workload::{Plan, bench_session},
};
use shoal_redis::redact_url as redact;

use crate::open::RedisBacking;

/// The ops compared with their raw equivalent, in report order.
const OPS: [&str; 4] = ["get", "touch", "append", "create"];

/// Goal: every Shoal op at least this fraction of its raw redis-rs baseline.
const GOAL_VS_RAW: f64 = 0.9;
/// Goal: `get` at least this fraction of raw redis-rs `HGETALL` of the same hash.
const GOAL_GET_VS_RAW: f64 = 0.95;
/// Goal: a p95 at concurrency 16 at most this multiple of the server's own floor
/// (`redis-benchmark -c 16 -P 1` of the same command or script, same run).
const GOAL_P95_VS_FLOOR: f64 = 1.1;
/// Goal: `create` and `touch` at least this fraction of the peer's `create` and `save`.
const GOAL_VS_PEER: f64 = 1.0;
/// Goal: `get` at least this fraction of raw `GET` of one blob.
const GOAL_VS_BLOB: f64 = 0.9;
/// Goal: `append` at least this fraction of `redis-benchmark` EVALSHA append.
const GOAL_VS_TOOL: f64 = 0.6;
/// The p95 goals at concurrency 16, microseconds, for an op without a measured floor.
const GOAL_P95_US: [(&str, f64); 4] = [
    ("get", 300.0),
    ("touch", 300.0),
    ("append", 500.0),
    ("create", 500.0),
];

/// Untimed warm-up before each measurement.
const WARMUP: Duration = Duration::from_millis(200);

/// Writer id of the frames the comparison appends (outside the workload's ranges).
const WRITER: u32 = 3_900_000_000;

/// Options of the Redis baselines (`shoal-bench --store redis://…`).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Redis baselines (redis:// and rediss:// stores)")]
pub(crate) struct RedisBaselineArgs {
    /// Rounds of the Redis baseline comparison; medians of the rounds are reported
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(crate) repeat: u32,

    /// Concurrency levels of the Shoal-vs-raw comparison, e.g. `16,64` [default: --concurrency]
    #[arg(long, value_delimiter = ',', value_name = "C,...")]
    pub(crate) redis_concurrency: Vec<usize>,

    /// Bound on each measurement of the comparison
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub(crate) redis_duration: Duration,

    /// Bound on the calls of each measurement of the comparison
    #[arg(long, default_value_t = 200_000)]
    pub(crate) redis_ops: u64,

    /// Requests per redis-benchmark run (0 skips redis-benchmark)
    #[arg(long, default_value_t = 200_000)]
    pub(crate) redis_benchmark_requests: u64,

    /// Skip the Redis baselines
    #[arg(long)]
    pub(crate) no_redis_baseline: bool,

    /// Also measure tower-sessions-redis-store (create, save, load) against the same server,
    /// beside Shoal's create, touch and get (plain redis:// only)
    #[arg(long)]
    pub(crate) redis_peer: bool,
}

impl RedisBaselineArgs {
    /// Rejects values that cannot make a meaningful run.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if self
            .redis_concurrency
            .iter()
            .any(|c| *c == 0 || *c > 10_000)
        {
            bail!("--redis-concurrency values must be 1 to 10000");
        }
        if self.redis_duration.is_zero() || self.redis_ops == 0 {
            bail!("--redis-duration and --redis-ops must be positive");
        }
        if self.redis_duration > crate::args::MAX_BENCH_DURATION {
            bail!("--redis-duration must be at most 30 days");
        }
        Ok(())
    }

    /// The arguments as JSON.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "repeat": self.repeat,
            "redis_concurrency": self.redis_concurrency,
            "redis_duration_s": self.redis_duration.as_secs_f64(),
            "redis_ops": self.redis_ops,
            "redis_benchmark_requests": self.redis_benchmark_requests,
            "redis_baseline": !self.no_redis_baseline,
            "redis_peer": self.redis_peer,
        })
    }
}

/// One op at one concurrency: Shoal against raw redis-rs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct OpComparison {
    /// `get`, `touch`, `append` or `create`.
    pub(crate) op: String,
    /// Shoal, medians over the rounds.
    pub(crate) shoal: OpStats,
    /// Raw redis-rs, medians over the rounds.
    pub(crate) raw: OpStats,
    /// Shoal ÷ raw ops/s: the median of the per-round ratios (each the median over that
    /// round's interleaved blocks).
    pub(crate) ratio: Option<f64>,
    /// Per round, the median block ratio.
    pub(crate) round_ratios: Vec<f64>,
    /// Shoal ÷ raw p50 (lower is better), from the medians.
    pub(crate) ratio_p50: Option<f64>,
    /// Shoal ÷ raw p95, from the medians.
    pub(crate) ratio_p95: Option<f64>,
    /// Per round: `[shoal ops/s, raw ops/s]` over all its blocks.
    pub(crate) rounds: Vec<[f64; 2]>,
    /// The peer's call measured beside this op (`--redis-peer`), e.g. `save` for `touch`.
    pub(crate) peer_call: Option<String>,
    /// The peer, medians over the rounds.
    pub(crate) peer: Option<OpStats>,
    /// Shoal ÷ peer ops/s: the median of the per-round ratios (block medians).
    pub(crate) ratio_vs_peer: Option<f64>,
}

/// Everything measured at one concurrency.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Level {
    /// Concurrent tasks.
    pub(crate) concurrency: usize,
    /// Per op.
    pub(crate) ops: Vec<OpComparison>,
    /// Raw `GET` of one blob the size of a session hash, medians.
    pub(crate) raw_get_blob: Option<OpStats>,
    /// Shoal `get` ÷ raw blob `GET` ops/s, median of the per-round ratios (block medians).
    pub(crate) get_vs_blob: Option<f64>,
}

/// `redis-benchmark` at 64 clients, pipeline 16.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct ToolReport {
    /// Clients.
    pub(crate) clients: u32,
    /// Commands pipelined per client.
    pub(crate) pipeline: u32,
    /// Requests per run.
    pub(crate) requests: u64,
    /// `HGETALL` of a copy of a pool session's meta hash, medians.
    pub(crate) hgetall: ToolStats,
    /// `EVALSHA` of Shoal's append script, same KEYS/ARGV as Shoal sends, medians.
    pub(crate) evalsha_append: ToolStats,
    /// Per round: `[hgetall rps, evalsha append rps]`.
    pub(crate) rounds: Vec<[f64; 2]>,
    /// The latency floor at concurrency 16: `redis-benchmark -c 16 -P 1` of the commands
    /// Shoal's get, touch and append send, medians. A C client on the same server; the p95
    /// goals at c16 cannot be met by anything above what this meets.
    pub(crate) floor_c16: FloorReport,
}

/// `redis-benchmark -c 16 -P 1` of `HGETALL`, `EVALSHA touch` and `EVALSHA append`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct FloorReport {
    /// Clients.
    pub(crate) clients: u32,
    /// Requests per run.
    pub(crate) requests: u64,
    /// `HGETALL` of a copy of a pool session's meta hash (get).
    pub(crate) hgetall: ToolStats,
    /// `EVALSHA` of Shoal's touch script.
    pub(crate) evalsha_touch: ToolStats,
    /// `EVALSHA` of Shoal's append script.
    pub(crate) evalsha_append: ToolStats,
}

/// One goal and whether this run met it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Goal {
    /// What is compared.
    pub(crate) name: String,
    /// The measured value (a ratio, or microseconds).
    pub(crate) value: Option<f64>,
    /// `>=` or `<=`.
    pub(crate) comparison: &'static str,
    /// The target.
    pub(crate) target: f64,
    /// `None` when not measured.
    pub(crate) met: Option<bool>,
}

impl Goal {
    fn at_least(name: String, value: Option<f64>, target: f64) -> Goal {
        Goal {
            name,
            value,
            comparison: ">=",
            target,
            met: value.map(|v| v >= target),
        }
    }

    fn at_most(name: String, value: Option<f64>, target: f64) -> Goal {
        Goal {
            name,
            value,
            comparison: "<=",
            target,
            met: value.map(|v| v <= target),
        }
    }
}

/// The `redis_baseline` part of the bench report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct RedisBaselineReport {
    /// The store URL, password redacted.
    pub(crate) store: String,
    /// Why nothing was measured (e.g. a Cluster store), else `null`.
    pub(crate) skipped: Option<String>,
    /// Rounds measured.
    pub(crate) rounds: u32,
    /// Bound on each measurement, seconds.
    pub(crate) duration_s: f64,
    /// Content bytes of each appended frame.
    pub(crate) frame_bytes: usize,
    /// Bytes of a pool session's meta hash (fields + values): the raw blob's size.
    pub(crate) session_hash_bytes: usize,
    /// Per script, whether its SHA1 (from Shoal's own files) was already loaded on the server
    /// before the comparison, i.e. Shoal runs exactly these scripts.
    pub(crate) scripts_loaded_by_shoal: BTreeMap<String, bool>,
    /// Per concurrency level.
    pub(crate) levels: Vec<Level>,
    /// `redis-benchmark`, or `null`.
    pub(crate) redis_benchmark: Option<ToolReport>,
    /// Why `redis-benchmark` did not run.
    pub(crate) redis_benchmark_skipped: Option<String>,
    /// The goals.
    pub(crate) goals: Vec<Goal>,
    /// Anything worth knowing about how the figures were made.
    pub(crate) notes: Vec<String>,
}

impl RedisBaselineReport {
    fn skipped(store: String, why: String) -> Self {
        RedisBaselineReport {
            store,
            skipped: Some(why),
            rounds: 0,
            duration_s: 0.0,
            frame_bytes: 0,
            session_hash_bytes: 0,
            scripts_loaded_by_shoal: BTreeMap::new(),
            levels: Vec::new(),
            redis_benchmark: None,
            redis_benchmark_skipped: None,
            goals: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// The median of `xs` (0 for none).
pub(crate) fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Field by field medians of several measurements of one op.
pub(crate) fn median_stats(op: &str, runs: &[OpStats]) -> OpStats {
    let m = |f: fn(&OpStats) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    OpStats {
        op: op.to_owned(),
        count: m(|s| s.count as f64).round() as u64,
        errors: runs.iter().map(|s| s.errors).sum(),
        ops_per_sec: m(|s| s.ops_per_sec),
        p50_us: m(|s| s.p50_us),
        p95_us: m(|s| s.p95_us),
        p99_us: m(|s| s.p99_us),
        max_us: m(|s| s.max_us),
    }
}

/// The per-round measurements before they are summarised.
#[derive(Default)]
struct Samples {
    /// `(level, op, side)` → one `OpStats` per round; side 0 = Shoal, 1 = raw, 2 = blob GET,
    /// 3 = the peer.
    ops: BTreeMap<(usize, &'static str, usize), Vec<OpStats>>,
    /// `(level, op, side)` → per round, the median over its blocks of Shoal ÷ that side.
    ratios: BTreeMap<(usize, &'static str, usize), Vec<f64>>,
    /// Per round, `[hgetall, evalsha append]`.
    tool: Vec<[ToolStats; 5]>,
    /// First error per measurement name.
    errors: BTreeMap<String, String>,
}

/// Cleanup state: what must be removed whatever happens.
struct Created {
    /// Per Shoal create measurement: id tag and attempts per task.
    shoal: Vec<(String, Vec<u64>)>,
}

/// Runs the Redis baselines. The pool sessions of `plan` must exist (they are the ones the
/// Shoal side reads and writes; the raw side works on copies of them).
pub(crate) async fn run(
    args: &crate::args::BenchArgs,
    store: &Arc<dyn SessionStore>,
    redis: &RedisBacking,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<RedisBaselineReport> {
    let url = redact(&redis.config.url);
    if redis.store.topology() != "standalone" {
        return Ok(RedisBaselineReport::skipped(
            url,
            format!(
                "the raw redis-rs baseline uses one standalone ConnectionManager; this store is \
                 {}",
                redis.store.topology()
            ),
        ));
    }
    let rb = &args.redis;
    let mut levels = rb.redis_concurrency.clone();
    if levels.is_empty() {
        levels.push(args.concurrency);
    }
    let mut conn = raw::connect(&redis.config).await?;
    let scripts = Scripts::new();
    let mut loaded = BTreeMap::new();
    for (name, sha) in scripts.hashes() {
        let v: Vec<bool> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(sha)
            .query_async(&mut conn)
            .await
            .context("SCRIPT EXISTS")?;
        loaded.insert(name.to_owned(), v.first().copied().unwrap_or(false));
    }
    let raw_prefix = format!("shoalbench-raw-{}", &SessionId::generate().as_str()[..8]);
    let mut created = Created { shoal: Vec::new() };
    let stop = Arc::clone(&plan.stop);
    let result = measure(
        args,
        store,
        redis,
        plan,
        progress,
        &levels,
        conn.clone(),
        scripts,
        &raw_prefix,
        &mut created,
        &stop,
    )
    .await;
    // Clean up whatever happened: the sessions Shoal created, every raw key.
    progress.say(|| "redis baseline: cleaning up".to_owned());
    let mut ids = Vec::new();
    for (tag, attempts) in &created.shoal {
        for (task, n) in attempts.iter().enumerate() {
            for k in 0..*n {
                ids.push(SessionId::new(format!("{tag}{task}-{k}"))?);
            }
        }
    }
    let cleanup_shoal = crate::workload::delete_all(store, ids, 16).await;
    let cleanup_raw = raw::delete_prefix(&mut conn, &raw_prefix).await;
    let (samples, session_hash_bytes, tool_skipped, mut notes) = result?;
    cleanup_shoal.context("deleting the sessions the Redis baseline created")?;
    cleanup_raw?;

    let rounds = rb.repeat;
    let mut out_levels = Vec::new();
    for &c in &levels {
        let mut ops = Vec::new();
        for op in OPS {
            let (Some(s), Some(r)) = (samples.ops.get(&(c, op, 0)), samples.ops.get(&(c, op, 1)))
            else {
                continue;
            };
            let shoal = median_stats(op, s);
            let raw = median_stats(op, r);
            let pairs: Vec<[f64; 2]> = s
                .iter()
                .zip(r)
                .map(|(a, b)| [a.ops_per_sec, b.ops_per_sec])
                .collect();
            let peer_stats = samples.ops.get(&(c, op, 3)).map(|p| median_stats(op, p));
            ops.push(OpComparison {
                peer_call: peer_stats
                    .as_ref()
                    .and(peer::peer_call(op))
                    .map(str::to_owned),
                peer: peer_stats,
                ratio_vs_peer: samples.ratios.get(&(c, op, 3)).map(|r| median(r)),
                op: op.to_owned(),
                ratio: samples.ratios.get(&(c, op, 1)).map(|r| median(r)),
                round_ratios: samples.ratios.get(&(c, op, 1)).cloned().unwrap_or_default(),
                ratio_p50: ratio(shoal.p50_us, raw.p50_us),
                ratio_p95: ratio(shoal.p95_us, raw.p95_us),
                shoal,
                raw,
                rounds: pairs,
            });
        }
        let blob = samples.ops.get(&(c, "get", 2));
        let get_vs_blob = samples.ratios.get(&(c, "get", 2)).map(|r| median(r));
        out_levels.push(Level {
            concurrency: c,
            ops,
            raw_get_blob: blob.map(|b| median_stats("get_blob", b)),
            get_vs_blob,
        });
    }
    let tool_report = (!samples.tool.is_empty()).then(|| {
        let med = |i: usize| {
            let runs: Vec<&ToolStats> = samples.tool.iter().map(|r| &r[i]).collect();
            let m = |f: fn(&ToolStats) -> Option<f64>| {
                let v: Vec<f64> = runs.iter().filter_map(|s| f(s)).collect();
                (!v.is_empty()).then(|| median(&v))
            };
            ToolStats {
                rps: median(&runs.iter().map(|s| s.rps).collect::<Vec<_>>()),
                p50_ms: m(|s| s.p50_ms),
                p95_ms: m(|s| s.p95_ms),
                p99_ms: m(|s| s.p99_ms),
            }
        };
        ToolReport {
            clients: tool::CLIENTS,
            pipeline: tool::PIPELINE,
            requests: rb.redis_benchmark_requests,
            hgetall: med(0),
            evalsha_append: med(1),
            rounds: samples.tool.iter().map(|r| [r[0].rps, r[1].rps]).collect(),
            floor_c16: FloorReport {
                clients: tool::FLOOR_CLIENTS,
                requests: floor_requests(rb.redis_benchmark_requests),
                hgetall: med(2),
                evalsha_touch: med(3),
                evalsha_append: med(4),
            },
        }
    });
    for (what, e) in &samples.errors {
        notes.push(format!("{what}: first error: {e}"));
    }
    if loaded.values().any(|l| !l) {
        notes.push(
            "a script was not loaded before the comparison: either the workload's mix did not \
             run that op, or Shoal's scripts differ from the files the raw side reads"
                .to_owned(),
        );
    }
    let goals = goals(&out_levels, tool_report.as_ref());
    Ok(RedisBaselineReport {
        store: url,
        skipped: None,
        rounds,
        duration_s: rb.redis_duration.as_secs_f64(),
        frame_bytes: args.frame_bytes,
        session_hash_bytes,
        scripts_loaded_by_shoal: loaded,
        levels: out_levels,
        redis_benchmark: tool_report,
        redis_benchmark_skipped: tool_skipped,
        goals,
        notes,
    })
}

/// The goals, from the summarised figures.
fn goals(levels: &[Level], tool: Option<&ToolReport>) -> Vec<Goal> {
    let mut out = Vec::new();
    for l in levels {
        for o in &l.ops {
            let want = if o.op == "get" {
                GOAL_GET_VS_RAW
            } else {
                GOAL_VS_RAW
            };
            out.push(Goal::at_least(
                format!(
                    "{} ops/s >= {want}x raw redis-rs at c{}",
                    o.op, l.concurrency
                ),
                o.ratio,
                want,
            ));
        }
        for o in l.ops.iter().filter(|o| o.op != "get") {
            if let (Some(call), Some(_)) = (&o.peer_call, &o.peer) {
                out.push(Goal::at_least(
                    format!(
                        "{} ops/s >= {GOAL_VS_PEER}x the peer's {call} at c{}",
                        o.op, l.concurrency
                    ),
                    o.ratio_vs_peer,
                    GOAL_VS_PEER,
                ));
            }
        }
        if l.raw_get_blob.is_some() {
            out.push(Goal::at_least(
                format!(
                    "get ops/s >= {GOAL_VS_BLOB}x raw GET of one blob at c{}",
                    l.concurrency
                ),
                l.get_vs_blob,
                GOAL_VS_BLOB,
            ));
        }
    }
    // add_frame against the server's own limit: Shoal at c64 if measured, else the highest.
    let top = levels
        .iter()
        .find(|l| l.concurrency == 64)
        .or_else(|| levels.iter().max_by_key(|l| l.concurrency));
    if let (Some(l), Some(t)) = (top, tool)
        && let Some(a) = l.ops.iter().find(|o| o.op == "append")
    {
        out.push(Goal::at_least(
            format!(
                "append ops/s (c{}) >= {GOAL_VS_TOOL}x redis-benchmark EVALSHA append (c{} P{})",
                l.concurrency, t.clients, t.pipeline
            ),
            ratio(a.shoal.ops_per_sec, t.evalsha_append.rps),
            GOAL_VS_TOOL,
        ));
    }
    if let Some(l) = levels.iter().find(|l| l.concurrency == 16) {
        for (op, target) in GOAL_P95_US {
            if let Some(o) = l.ops.iter().find(|o| o.op == op) {
                let floor = tool.and_then(|t| match op {
                    "get" => Some(("HGETALL", &t.floor_c16.hgetall)),
                    "touch" => Some(("EVALSHA touch", &t.floor_c16.evalsha_touch)),
                    "append" => Some(("EVALSHA append", &t.floor_c16.evalsha_append)),
                    _ => None,
                });
                match floor.and_then(|(what, s)| Some((what, s.p95_ms? * 1000.0))) {
                    Some((what, us)) => out.push(Goal::at_most(
                        format!(
                            "{op} p95 at c16 <= {GOAL_P95_VS_FLOOR}x the server's floor \
                             (redis-benchmark c16 P1 {what}: p95 {us:.0} µs)"
                        ),
                        ratio(o.shoal.p95_us, us),
                        GOAL_P95_VS_FLOOR,
                    )),
                    None => out.push(Goal::at_most(
                        format!("{op} p95 at c16 <= {target} µs (no floor measured)"),
                        Some(o.shoal.p95_us),
                        target,
                    )),
                }
            }
        }
    }
    out
}

/// Everything measured, before summarising: the samples, the session hash size, why
/// `redis-benchmark` was skipped, and notes.
type Measured = (Samples, usize, Option<String>, Vec<String>);

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &crate::args::BenchArgs,
    store: &Arc<dyn SessionStore>,
    redis: &RedisBacking,
    plan: &Plan,
    progress: &Progress,
    levels: &[usize],
    mut conn: redis::aio::ConnectionManager,
    scripts: Scripts,
    raw_prefix: &str,
    created: &mut Created,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Measured> {
    let rb = &args.redis;
    let prefix = redis.store.key_prefix().to_owned();
    let limits = store.limits().clone();
    let mut notes = Vec::new();
    progress.say(|| {
        format!(
            "redis baseline: copying {} pool sessions",
            plan.sessions.len()
        )
    });

    // The raw side's copies of the pool, and the blobs.
    let sample_meta = raw::session_keys(&prefix, plan.sessions[0].as_str())[0].clone();
    let v: redis::Value = redis::cmd("HGETALL")
        .arg(&sample_meta)
        .query_async(&mut conn)
        .await?;
    let session_hash_bytes: usize = raw::hash_pairs(v)?
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if session_hash_bytes == 0 {
        bail!("pool session {} has no meta hash", plan.sessions[0]);
    }
    let blob = vec![b'x'; session_hash_bytes];
    let mut keys = Vec::with_capacity(plan.sessions.len());
    let mut blob_keys = Vec::with_capacity(plan.sessions.len());
    let mut suffixes = Vec::with_capacity(plan.sessions.len());
    let mut shoal_frames = Vec::with_capacity(plan.sessions.len());
    let mut frame_prefix = Vec::new();
    let mut ids = Vec::with_capacity(plan.sessions.len());
    let mut append_details = Vec::with_capacity(plan.sessions.len());
    for chunk in plan.sessions.chunks(500) {
        let mut pipe = redis::pipe();
        for id in chunk {
            let from = raw::session_keys(&prefix, id.as_str());
            let to = raw::session_keys(raw_prefix, id.as_str());
            for (f, t) in from.iter().zip(&to) {
                pipe.cmd("COPY").arg(f).arg(t).ignore();
            }
            let blob_key = format!("{raw_prefix}:{{{}}}:blob", id.as_str());
            pipe.cmd("SET").arg(&blob_key).arg(&blob[..]).ignore();
            keys.push(to);
            blob_keys.push(blob_key);
            let content = frame_content(
                id,
                Fingerprint {
                    writer: WRITER,
                    n: shoal_frames.len() as u64,
                },
                args.frame_bytes,
            );
            let frame = raw::bench_frame(content);
            let (p, s) = raw::split_frame(id, frame.clone())?;
            frame_prefix = p;
            suffixes.push(s);
            ids.push(id.as_str().to_owned());
            append_details.push(shoal_redis::layout::append_detail(
                &redis.config,
                std::slice::from_ref(&frame),
            ));
            shoal_frames.push(frame);
        }
        let () = pipe
            .query_async(&mut conn)
            .await
            .context("copying the pool for the raw baseline")?;
    }

    // The meta pairs of a new session, as Shoal's create writes them.
    let template = SessionId::new(format!("{}rb-template", plan.prefix))?;
    let template_session = bench_session(template.clone());
    let create_detail = shoal_redis::layout::created_detail(&redis.config, &template_session);
    store.create(template_session).await?;
    let v: redis::Value = redis::cmd("HGETALL")
        .arg(&raw::session_keys(&prefix, template.as_str())[0])
        .query_async(&mut conn)
        .await?;
    store.delete(&template).await?;
    let create_pairs = CreatePairs::new(raw::hash_pairs(v)?)?;

    let ttl_ms = u64::try_from(limits.session_ttl.as_millis()).unwrap_or(u64::MAX);
    let grace_ms = u64::try_from(redis.config.expiry_grace.as_millis()).unwrap_or(u64::MAX);
    let ctx = Arc::new(RawCtx {
        conn: conn.clone(),
        scripts,
        prefix: raw_prefix.to_owned(),
        keys,
        blob_keys,
        suffixes,
        frame_prefix,
        create_pairs,
        ttl_ms,
        pexpire_ms: ttl_ms.saturating_add(grace_ms).max(1_000),
        max_frames: limits.max_frames_per_session as u64,
        append_middle: shoal_redis::layout::append_middle_args(&limits, &redis.config),
        max_sessions: limits.max_sessions as u64,
        config: redis.config.clone(),
        ids,
        append_details,
        create_detail,
    });
    let peer = if !rb.redis_peer {
        None
    } else if !redis.config.url.starts_with("redis://") {
        notes.push("the peer was not measured: it is compared over plain redis:// only".to_owned());
        None
    } else {
        progress.say(|| {
            format!(
                "redis baseline: writing the peer's {} records",
                plan.sessions.len()
            )
        });
        let ttl_s = i64::try_from(limits.session_ttl.as_secs()).unwrap_or(i64::MAX);
        Some(Arc::new(
            peer::PeerCtx::connect(
                &redis.config.url,
                plan.sessions.len(),
                session_hash_bytes,
                ttl_s,
            )
            .await?,
        ))
    };
    if peer.is_some() {
        notes.push(format!(
            "peer: {}; Shoal create ÷ its create, touch ÷ save, get ÷ load; one fred client \
             (one connection), records of {session_hash_bytes} data bytes",
            peer::PEER
        ));
    }
    let mut sides = Sides {
        peer: peer.clone(),
        peer_created: Vec::new(),
        store: Arc::clone(store),
        ids: Arc::new(plan.sessions.clone()),
        frames: Arc::new(shoal_frames),
        ctx: Arc::clone(&ctx),
        shoal_prefix: format!("{}rb", plan.prefix),
        created,
        raw_created: Vec::new(),
    };

    let mut samples = Samples::default();
    // Whether redis-benchmark can run against this store, decided once before the rounds.
    let tool_target: Result<Target, String> = if rb.redis_benchmark_requests == 0 {
        Err("--redis-benchmark-requests 0".to_owned())
    } else if !tool::available().await {
        Err("redis-benchmark is not on PATH".to_owned())
    } else {
        Target::of_url(&redis.config.url)
    };
    // Blocks of at most BLOCK each, alternating sides block by block.
    let blocks = (rb.redis_duration.as_nanos() / BLOCK.as_nanos()).max(1) as u64;
    let block = Limit {
        duration: rb.redis_duration / u32::try_from(blocks).unwrap_or(u32::MAX),
        ops: rb.redis_ops.div_ceil(blocks),
    };
    let warm = Limit {
        duration: WARMUP,
        ops: block.ops,
    };
    let rounds = async {
        for round in 0..rb.repeat {
            for &c in levels {
                for op in OPS {
                    if stop.load(Ordering::Relaxed) {
                        return Err(anyhow::Error::new(crate::error::Interrupted));
                    }
                    progress.say(|| format!("redis baseline: round {} c{c} {op}", round + 1));
                    let mut side_list: Vec<usize> = if op == "get" {
                        vec![0, 1, 2]
                    } else {
                        vec![0, 1]
                    };
                    if sides.peer.is_some() && peer::peer_call(op).is_some() {
                        side_list.push(3);
                    }
                    let side_list = &side_list[..];
                    let (mut block, mut warm) = (block, warm);
                    if op == "create" {
                        // Both sides' creates must fit under max_sessions.
                        let room = create_room(store, &limits).await?;
                        let per_run = room / (2 * (blocks + 1));
                        if per_run < 50 {
                            notes.push(format!(
                                "create skipped at c{c}: the store has room for {room} sessions"
                            ));
                            continue;
                        }
                        block.ops = block.ops.min(per_run);
                        warm.ops = warm.ops.min(per_run);
                    }
                    let seed = args.seed ^ (u64::from(round) << 20) ^ ((c as u64) << 8);
                    let phase = |b: &str| format!("{round}c{c}{b}-");
                    for &side in side_list {
                        sides
                            .run(side, op, c, &phase("w"), warm, seed, stop)
                            .await?;
                    }
                    let mut merged: Vec<Option<Driven>> = side_list.iter().map(|_| None).collect();
                    let mut rates: Vec<Vec<f64>> = side_list.iter().map(|_| Vec::new()).collect();
                    for b in 0..blocks {
                        // Rotate the order block by block, so drift hits every side alike.
                        let n = side_list.len();
                        for k in 0..n {
                            let i = (k + (b as usize) + round as usize) % n;
                            let d = sides
                                .run(
                                    side_list[i],
                                    op,
                                    c,
                                    &phase(&format!("b{b}")),
                                    block,
                                    seed ^ b,
                                    stop,
                                )
                                .await?;
                            let secs = d.elapsed.as_secs_f64();
                            rates[i].push(if secs > 0.0 {
                                d.hist.len() as f64 / secs
                            } else {
                                0.0
                            });
                            match &mut merged[i] {
                                Some(m) => m.absorb(d)?,
                                slot @ None => *slot = Some(d),
                            }
                        }
                    }
                    if op == "create" {
                        sides.forget(&mut conn).await?;
                    }
                    for (i, m) in merged.into_iter().enumerate() {
                        let side = side_list[i];
                        let Some(d) = m else { continue };
                        let (label, name) = match side {
                            0 => ("shoal", op),
                            1 => ("raw", op),
                            2 => ("raw", "get_blob"),
                            _ => ("peer", op),
                        };
                        let stats = finish(&mut samples, label, name, c, d)?;
                        samples.ops.entry((c, op, side)).or_default().push(stats);
                        if side > 0 {
                            let block_ratios: Vec<f64> = rates[0]
                                .iter()
                                .zip(&rates[i])
                                .filter_map(|(a, b)| ratio(*a, *b))
                                .collect();
                            if !block_ratios.is_empty() {
                                samples
                                    .ratios
                                    .entry((c, op, side))
                                    .or_default()
                                    .push(median(&block_ratios));
                            }
                        }
                    }
                }
            }
            // The server's own limit.
            if tool_target.is_ok() {
                match tool_round(&redis.config.url, rb.redis_benchmark_requests, &ctx).await {
                    Ok(Some(pair)) => samples.tool.push(pair),
                    Ok(None) => {}
                    Err(e) => {
                        samples
                            .errors
                            .entry("redis-benchmark".to_owned())
                            .or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    // The peer's records go whatever happened.
    if let Some(p) = &peer {
        let runs = std::mem::take(&mut sides.peer_created);
        p.forget(&runs, true).await?;
    }
    rounds?;
    // Rounds that ran but yielded nothing usable are said so, with the first error: the
    // report never just lacks the figures.
    let tool_skipped = match tool_target {
        Err(why) => Some(why),
        Ok(_) if samples.tool.is_empty() => Some(format!(
            "redis-benchmark gave no usable result in {} round(s): {}",
            rb.repeat,
            samples
                .errors
                .get("redis-benchmark")
                .map_or("no error reported", String::as_str)
        )),
        Ok(_) => None,
    };
    notes.push(
        "redis-benchmark's EVALSHA append runs against one session (its frames capped at \
         max_frames_per_session by the script's LTRIM); NUL bytes of the frame encoding are \
         replaced by 0x01 (same length) since a command line cannot carry them"
            .to_owned(),
    );
    Ok((samples, session_hash_bytes, tool_skipped, notes))
}

/// Length of one block: the Shoal side and the raw side(s) alternate block by block, and
/// ratios are the median of per-block ratios, so load bursts from other processes (which
/// hit neighbouring blocks alike) cancel out.
const BLOCK: Duration = Duration::from_millis(200);

impl Driven {
    /// Adds another block's measurement to this one.
    fn absorb(&mut self, other: Driven) -> anyhow::Result<()> {
        self.hist.add(&other.hist)?;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        Ok(())
    }
}

/// The sides of the comparison: side 0 is Shoal, 1 the raw redis-rs equivalent, 2 the raw
/// blob `GET` (for `get` only).
struct Sides<'a> {
    store: Arc<dyn SessionStore>,
    ids: Arc<Vec<SessionId>>,
    frames: Arc<Vec<shoal_core::NewFrame>>,
    ctx: Arc<RawCtx>,
    /// Prefix of the ids of sessions Shoal's creates make.
    shoal_prefix: String,
    /// What Shoal's creates made (cleaned up by the caller whatever happens).
    created: &'a mut Created,
    /// What the raw creates made: id tag and attempts per task.
    raw_created: Vec<(String, Vec<u64>)>,
    /// The peer (`--redis-peer`).
    peer: Option<Arc<peer::PeerCtx>>,
    /// What the peer's creates made: id tag and attempts per task.
    peer_created: Vec<(String, Vec<u64>)>,
}

impl Sides<'_> {
    /// Runs one measurement of `op` on `side`; `phase` makes created ids unique.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &mut self,
        side: usize,
        op: &str,
        c: usize,
        phase: &str,
        limit: Limit,
        seed: u64,
        stop: &Arc<AtomicBool>,
    ) -> anyhow::Result<Driven> {
        match side {
            0 => {
                let tag = format!("{}{phase}", self.shoal_prefix);
                let f = shoal_op(op, &self.store, &self.ids, &self.frames, &tag);
                let d = drive(&f, c, limit, seed, stop).await?;
                if op == "create" {
                    self.created.shoal.push((tag, d.attempts.clone()));
                }
                Ok(d)
            }
            1 => {
                let tag = format!("rc{phase}");
                let d = drive(&raw_op(op, &self.ctx, &tag), c, limit, seed, stop).await?;
                if op == "create" {
                    self.raw_created.push((tag, d.attempts.clone()));
                }
                Ok(d)
            }
            2 => drive(&raw::get_blob(&self.ctx), c, limit, seed, stop).await,
            _ => {
                let tag = format!("pc{phase}");
                let f = self
                    .peer
                    .as_ref()
                    .and_then(|p| peer::peer_op(op, p, &tag))
                    .ok_or_else(|| anyhow::anyhow!("no peer side for {op}"))?;
                let d = drive(&f, c, limit, seed, stop).await?;
                if op == "create" {
                    self.peer_created.push((tag, d.attempts.clone()));
                }
                Ok(d)
            }
        }
    }

    /// Deletes what both sides' creates made so far (untimed).
    async fn forget(&mut self, conn: &mut redis::aio::ConnectionManager) -> anyhow::Result<()> {
        forget_shoal(&self.store, self.created).await?;
        if let Some(p) = &self.peer {
            let runs = std::mem::take(&mut self.peer_created);
            p.forget(&runs, false).await?;
        }
        let runs = std::mem::take(&mut self.raw_created);
        forget_raw(conn, &self.ctx, &runs).await
    }
}

/// Requests of each latency-floor run: a quarter of the throughput runs' (at least 1,000),
/// since without pipelining the server answers several times fewer per second.
fn floor_requests(requests: u64) -> u64 {
    (requests / 4).max(1_000)
}

/// One round of `redis-benchmark`: `[HGETALL, EVALSHA append]` at c64 P16, then the latency
/// floor `[HGETALL, EVALSHA touch, EVALSHA append]` at c16 P1; `None` when it cannot run.
async fn tool_round(
    url: &str,
    requests: u64,
    ctx: &RawCtx,
) -> anyhow::Result<Option<[ToolStats; 5]>> {
    let Ok(target) = Target::of_url(url) else {
        return Ok(None);
    };
    let hgetall = tool::run(
        &target,
        requests,
        vec!["HGETALL".into(), ctx.keys[0][0].clone().into()],
    )
    .await?;
    // Load the script, then EVALSHA it with the arguments Shoal's append sends.
    let mut conn = ctx.conn.clone();
    let _: String = ctx
        .scripts
        .append
        .prepare_invoke()
        .load_async(&mut conn)
        .await?;
    let now = Timestamp::now().as_millis();
    let no_nul = |b: &[u8]| -> OsString {
        use std::os::unix::ffi::OsStringExt as _;
        OsString::from_vec(b.iter().map(|&x| if x == 0 { 1 } else { x }).collect())
    };
    // The keys and `ARGV[1]` as Shoal sends them (with the change feed's key and header
    // when the store writes the feed).
    let script = |sha: &str, head: (Vec<u8>, Option<String>)| -> Vec<OsString> {
        let (head, feed) = head;
        let mut c: Vec<OsString> = vec![
            "EVALSHA".into(),
            sha.into(),
            (3 + usize::from(feed.is_some())).to_string().into(),
        ];
        c.extend(ctx.keys[0].iter().map(|k| OsString::from(k.clone())));
        c.extend(feed.map(OsString::from));
        c.push(no_nul(&head));
        c
    };
    let mut cmd = script(
        ctx.scripts.append.get_hash(),
        ctx.head(now, &ctx.ids[0], &ctx.append_details[0]),
    );
    cmd.extend([
        OsString::from((now + ctx.ttl_ms).to_string()),
        OsString::from(ctx.pexpire_ms.to_string()),
        OsString::from(ctx.max_frames.to_string()),
        OsString::from(ctx.append_middle[0].to_string()),
        OsString::from(ctx.append_middle[1].to_string()),
        OsString::from(ctx.append_middle[2].to_string()),
        no_nul(&ctx.frame_prefix),
        no_nul(&ctx.suffixes[0]),
    ]);
    let evalsha = tool::run(&target, requests, cmd.clone()).await?;
    let _: String = ctx
        .scripts
        .touch
        .prepare_invoke()
        .load_async(&mut conn)
        .await?;
    let mut touch = script(ctx.scripts.touch.get_hash(), ctx.head(now, &ctx.ids[0], ""));
    touch.extend([
        OsString::from((now + ctx.ttl_ms).to_string()),
        OsString::from(ctx.pexpire_ms.to_string()),
    ]);
    touch.extend(
        shoal_redis::layout::touch_window_arg(&ctx.config, now)
            .map(|w| OsString::from(w.to_string())),
    );
    let floor = |command: Vec<OsString>| {
        tool::run_with(
            &target,
            tool::FLOOR_CLIENTS,
            1,
            floor_requests(requests),
            command,
        )
    };
    let floor_get = floor(vec!["HGETALL".into(), ctx.keys[0][0].clone().into()]).await?;
    let floor_touch = floor(touch).await?;
    let floor_append = floor(cmd).await?;
    Ok(Some([
        hgetall,
        evalsha,
        floor_get,
        floor_touch,
        floor_append,
    ]))
}

/// Places left under `max_sessions`.
async fn create_room(
    store: &Arc<dyn SessionStore>,
    limits: &shoal_core::Limits,
) -> anyhow::Result<u64> {
    let n = store.count(&SessionFilter::default()).await?;
    Ok((limits.max_sessions as u64).saturating_sub(n.saturating_add(16)))
}

/// Deletes the sessions Shoal's creates made so far (untimed), so the next measurement starts
/// from the same population.
async fn forget_shoal(store: &Arc<dyn SessionStore>, created: &mut Created) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    for (tag, attempts) in created.shoal.drain(..) {
        for (task, n) in attempts.iter().enumerate() {
            for k in 0..*n {
                ids.push(SessionId::new(format!("{tag}{task}-{k}"))?);
            }
        }
    }
    crate::workload::delete_all(store, ids, 16).await?;
    Ok(())
}

/// Deletes what the raw creates wrote: their meta keys and the raw index keys.
async fn forget_raw(
    conn: &mut redis::aio::ConnectionManager,
    ctx: &RawCtx,
    runs: &[(String, Vec<u64>)],
) -> anyhow::Result<()> {
    let mut keys: Vec<String> = Vec::new();
    for (tag, attempts) in runs {
        for (task, n) in attempts.iter().enumerate() {
            for k in 0..*n {
                keys.push(raw::session_keys(&ctx.prefix, &format!("{tag}{task}-{k}"))[0].clone());
            }
        }
    }
    keys.push(format!("{}:idx:{{cap}}:live", ctx.prefix));
    for b in 0..1024 {
        keys.push(format!("{}:idx:{{b{b:04}}}:all", ctx.prefix));
    }
    for chunk in keys.chunks(1000) {
        let _: u64 = redis::cmd("UNLINK").arg(chunk).query_async(conn).await?;
    }
    Ok(())
}

/// The figures of one measurement; its first error is kept.
fn finish(
    samples: &mut Samples,
    side: &str,
    op: &str,
    c: usize,
    d: Driven,
) -> anyhow::Result<OpStats> {
    if let Some(e) = d.first_error {
        samples
            .errors
            .entry(format!("{side} {op} c{c} ({} errors)", d.errors))
            .or_insert(e);
    }
    Ok(op_stats(op, &d.hist, d.errors, d.elapsed))
}

/// Shoal's op `op` through the `SessionStore` trait.
fn shoal_op(
    op: &str,
    store: &Arc<dyn SessionStore>,
    ids: &Arc<Vec<SessionId>>,
    frames: &Arc<Vec<shoal_core::NewFrame>>,
    tag: &str,
) -> OpFn {
    let store = Arc::clone(store);
    let ids = Arc::clone(ids);
    let frames = Arc::clone(frames);
    let tag: Arc<str> = Arc::from(tag);
    let pick = move |r: u64, n: usize| (r % n as u64) as usize;
    match op {
        "get" => Arc::new(move |_t, _n, r| -> OpFuture {
            let store = Arc::clone(&store);
            let ids = Arc::clone(&ids);
            Box::pin(async move {
                let id = &ids[pick(r, ids.len())];
                match store.get(id).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err(format!("pool session {id} is missing")),
                    Err(e) => Err(e.to_string()),
                }
            })
        }),
        "touch" => Arc::new(move |_t, _n, r| -> OpFuture {
            let store = Arc::clone(&store);
            let ids = Arc::clone(&ids);
            Box::pin(async move {
                let id = &ids[pick(r, ids.len())];
                store.touch(id).await.map(|_| ()).map_err(|e| e.to_string())
            })
        }),
        "append" => Arc::new(move |_t, _n, r| -> OpFuture {
            let store = Arc::clone(&store);
            let ids = Arc::clone(&ids);
            let frames = Arc::clone(&frames);
            Box::pin(async move {
                let i = pick(r, ids.len());
                let mut f = frames[i].clone();
                f.timestamp = Timestamp::now();
                store
                    .append_frame(&ids[i], f)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        }),
        _ => Arc::new(move |task, n, _r| -> OpFuture {
            let store = Arc::clone(&store);
            let tag = Arc::clone(&tag);
            Box::pin(async move {
                let id = SessionId::new(format!("{tag}{task}-{n}")).map_err(|e| e.to_string())?;
                store
                    .create(bench_session(id))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        }),
    }
}

/// The raw equivalent of `op`.
fn raw_op(op: &str, ctx: &Arc<RawCtx>, tag: &str) -> OpFn {
    match op {
        "get" => raw::get(ctx),
        "touch" => raw::touch(ctx),
        "append" => raw::append(ctx),
        _ => raw::create(ctx, tag),
    }
}

/// `1.23x`, or `-`.
fn fmt_x(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"))
}

/// The human-readable section of the bench report.
pub(crate) fn render(r: &RedisBaselineReport) -> String {
    let mut out = String::new();
    if let Some(why) = &r.skipped {
        let _ = writeln!(out, "\nredis baselines: skipped ({why})");
        return out;
    }
    let _ = writeln!(
        out,
        "\nredis baselines on {} ({} round{}, each measurement ≤ {} s; medians; ratio = Shoal ÷ raw, \
         median of per-round ratios)",
        r.store,
        r.rounds,
        if r.rounds == 1 { "" } else { "s" },
        r.duration_s
    );
    let headers = [
        "op",
        "c",
        "shoal ops/s",
        "raw ops/s",
        "ratio",
        "shoal p50",
        "p95",
        "p99",
        "raw p50",
        "p95",
        "p99",
    ];
    let mut rows = Vec::new();
    for l in &r.levels {
        for o in &l.ops {
            rows.push(vec![
                o.op.clone(),
                l.concurrency.to_string(),
                fmt_rate(o.shoal.ops_per_sec),
                fmt_rate(o.raw.ops_per_sec),
                fmt_x(o.ratio),
                fmt_us(o.shoal.p50_us),
                fmt_us(o.shoal.p95_us),
                fmt_us(o.shoal.p99_us),
                fmt_us(o.raw.p50_us),
                fmt_us(o.raw.p95_us),
                fmt_us(o.raw.p99_us),
            ]);
        }
        if let Some(b) = &l.raw_get_blob {
            rows.push(vec![
                format!("GET blob {} B", r.session_hash_bytes),
                l.concurrency.to_string(),
                "-".into(),
                fmt_rate(b.ops_per_sec),
                fmt_x(l.get_vs_blob),
                "-".into(),
                "-".into(),
                "-".into(),
                fmt_us(b.p50_us),
                fmt_us(b.p95_us),
                fmt_us(b.p99_us),
            ]);
        }
    }
    out.push_str(&table(&headers, &rows));
    out.push_str("latencies in µs; the GET blob row's ratio is Shoal get ÷ raw GET of one blob\n");
    let peer_rows: Vec<Vec<String>> = r
        .levels
        .iter()
        .flat_map(|l| {
            l.ops.iter().filter_map(move |o| {
                let (p, call) = (o.peer.as_ref()?, o.peer_call.as_deref()?);
                Some(vec![
                    o.op.clone(),
                    call.to_owned(),
                    l.concurrency.to_string(),
                    fmt_rate(o.shoal.ops_per_sec),
                    fmt_rate(p.ops_per_sec),
                    fmt_x(o.ratio_vs_peer),
                    fmt_us(o.shoal.p50_us),
                    fmt_us(o.shoal.p95_us),
                    fmt_us(p.p50_us),
                    fmt_us(p.p95_us),
                ])
            })
        })
        .collect();
    if !peer_rows.is_empty() {
        let _ = writeln!(out, "\nShoal vs {} (same server, same blocks)", peer::PEER);
        let headers = [
            "shoal op",
            "peer op",
            "c",
            "shoal ops/s",
            "peer ops/s",
            "ratio",
            "shoal p50",
            "p95",
            "peer p50",
            "p95",
        ];
        out.push_str(&table(&headers, &peer_rows));
        out.push_str("ratio = Shoal ÷ peer ops/s, median of per-block ratios; latencies in µs\n");
    }
    match (&r.redis_benchmark, &r.redis_benchmark_skipped) {
        (Some(t), _) => {
            let _ = writeln!(
                out,
                "redis-benchmark (c{} P{}, {} requests): HGETALL {} req/s, EVALSHA append {} req/s",
                t.clients,
                t.pipeline,
                t.requests,
                fmt_rate(t.hgetall.rps),
                fmt_rate(t.evalsha_append.rps)
            );
            let f = &t.floor_c16;
            let p95 = |s: &ToolStats| {
                s.p95_ms
                    .map_or_else(|| "-".into(), |ms| fmt_us(ms * 1000.0))
            };
            let _ = writeln!(
                out,
                "redis-benchmark latency floor (c{} P1, {} requests): HGETALL {} req/s p95 {} µs, \
                 EVALSHA touch {} req/s p95 {} µs, EVALSHA append {} req/s p95 {} µs",
                f.clients,
                f.requests,
                fmt_rate(f.hgetall.rps),
                p95(&f.hgetall),
                fmt_rate(f.evalsha_touch.rps),
                p95(&f.evalsha_touch),
                fmt_rate(f.evalsha_append.rps),
                p95(&f.evalsha_append)
            );
        }
        (None, Some(why)) => {
            let _ = writeln!(out, "redis-benchmark: skipped ({why})");
        }
        (None, None) => {}
    }
    let _ = writeln!(out, "goals:");
    for g in &r.goals {
        let value = g
            .value
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        let verdict = match g.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        let _ = writeln!(out, "  {:<72} {value:>9}  {verdict}", g.name);
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(op: &str, ops: f64, p95: f64) -> OpStats {
        OpStats {
            op: op.into(),
            count: 100,
            errors: 0,
            ops_per_sec: ops,
            p50_us: p95 / 2.0,
            p95_us: p95,
            p99_us: p95 * 2.0,
            max_us: p95 * 4.0,
        }
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let m = median_stats(
            "get",
            &[
                stats("get", 10.0, 1.0),
                stats("get", 30.0, 3.0),
                stats("get", 20.0, 9.0),
            ],
        );
        assert_eq!((m.ops_per_sec, m.p95_us), (20.0, 3.0));
    }

    #[test]
    fn creates_and_touches_have_goals_against_the_peer() {
        let with_peer = |op: &str, call: &str, vs_peer: f64| OpComparison {
            op: op.into(),
            shoal: stats(op, 100.0, 200.0),
            raw: stats(op, 100.0, 200.0),
            ratio: Some(1.0),
            round_ratios: vec![],
            ratio_p50: Some(1.0),
            ratio_p95: Some(1.0),
            rounds: vec![],
            peer_call: Some(call.into()),
            peer: Some(stats(op, 100.0 / vs_peer, 200.0)),
            ratio_vs_peer: Some(vs_peer),
        };
        let levels = vec![Level {
            concurrency: 64,
            ops: vec![
                with_peer("get", "load", 0.8),
                with_peer("touch", "save", 1.2),
                with_peer("create", "create", 0.45),
            ],
            raw_get_blob: None,
            get_vs_blob: None,
        }];
        let g = goals(&levels, None);
        let find = |needle: &str| g.iter().find(|g| g.name.contains(needle)).cloned();
        let touch = find("touch ops/s >= 1x the peer's save at c64").unwrap();
        assert_eq!((touch.value, touch.met), (Some(1.2), Some(true)));
        let create = find("create ops/s >= 1x the peer's create at c64").unwrap();
        assert_eq!((create.value, create.met), (Some(0.45), Some(false)));
        assert!(
            find("the peer's load").is_none(),
            "get is held to raw HGETALL"
        );
    }

    #[test]
    fn goals_cover_every_level_op_blob_tool_and_p95() {
        let cmp = |op: &str, s: f64, r: f64, p95: f64| OpComparison {
            op: op.into(),
            shoal: stats(op, s, p95),
            raw: stats(op, r, p95),
            ratio: ratio(s, r),
            round_ratios: vec![],
            ratio_p50: Some(1.0),
            ratio_p95: Some(1.0),
            rounds: vec![[s, r]],
            peer_call: None,
            peer: None,
            ratio_vs_peer: None,
        };
        let levels = vec![
            Level {
                concurrency: 16,
                ops: vec![
                    cmp("get", 95.0, 100.0, 250.0),
                    cmp("append", 50.0, 100.0, 600.0),
                ],
                raw_get_blob: Some(stats("get_blob", 200.0, 1.0)),
                get_vs_blob: Some(0.475),
            },
            Level {
                concurrency: 64,
                ops: vec![cmp("append", 70.0, 100.0, 900.0)],
                raw_get_blob: None,
                get_vs_blob: None,
            },
        ];
        let stats = |p95_ms: Option<f64>| ToolStats {
            rps: 1.0,
            p50_ms: None,
            p95_ms,
            p99_ms: None,
        };
        let tool = ToolReport {
            clients: 64,
            pipeline: 16,
            requests: 10,
            hgetall: ToolStats {
                rps: 1000.0,
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
            },
            evalsha_append: ToolStats {
                rps: 100.0,
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
            },
            rounds: vec![],
            floor_c16: FloorReport {
                clients: 16,
                requests: 10,
                hgetall: stats(Some(0.25)),
                evalsha_touch: stats(Some(0.6)),
                evalsha_append: stats(None),
            },
        };
        let g = goals(&levels, Some(&tool));
        let find = |needle: &str| g.iter().find(|g| g.name.contains(needle)).unwrap().clone();
        // The p95 goals are against the latency floor the same run measured, where it has
        // one (a multiple of it), else an absolute bound.
        let get_p95 = find("get p95 at c16");
        assert!(
            get_p95
                .name
                .ends_with("1.1x the server's floor (redis-benchmark c16 P1 HGETALL: p95 250 µs)"),
            "{g:?}"
        );
        assert_eq!((get_p95.value, get_p95.met), (Some(1.0), Some(true)));
        assert!(
            find("append p95 at c16")
                .name
                .ends_with("500 µs (no floor measured)")
        );
        // get has its own, higher bar against raw redis-rs.
        assert_eq!(
            find("get ops/s >= 0.95x raw redis-rs at c16").met,
            Some(true)
        );
        assert_eq!(
            find("append ops/s >= 0.9x raw redis-rs at c16").met,
            Some(false)
        );
        assert_eq!(find("raw GET of one blob at c16").met, Some(false));
        let t = find("redis-benchmark");
        assert!(t.name.contains("(c64)"), "{}", t.name);
        assert_eq!((t.value, t.met), (Some(0.7), Some(true)));
        assert_eq!(find("get p95 at c16").met, Some(true));
        assert_eq!(find("append p95 at c16").met, Some(false));
        assert!(
            !g.iter().any(|g| g.name.contains("touch")),
            "touch was not measured"
        );
        let report = RedisBaselineReport {
            store: "redis://h:1".into(),
            skipped: None,
            rounds: 1,
            duration_s: 1.0,
            frame_bytes: 256,
            session_hash_bytes: 300,
            scripts_loaded_by_shoal: BTreeMap::new(),
            levels,
            redis_benchmark: Some(tool),
            redis_benchmark_skipped: None,
            goals: g,
            notes: vec![],
        };
        let text = render(&report);
        assert!(text.contains("GET blob 300 B"), "{text}");
        assert!(
            text.contains("NOT met") && text.contains("EVALSHA append 100 req/s"),
            "{text}"
        );
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["levels"][0]["ops"][0]["ratio"], 0.95);
        assert_eq!(v["redis_benchmark"]["evalsha_append"]["rps"], 100.0);
        assert_eq!(
            v["redis_benchmark"]["floor_c16"]["evalsha_touch"]["p95_ms"],
            0.6
        );
        assert!(text.contains("latency floor (c16 P1"), "{text}");
    }
}
