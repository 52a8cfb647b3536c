//! Turning histograms into figures, and figures into a table or one JSON object.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{
    verify::VerifyReport,
    workload::{Scaling, paired_ratio},
};

/// Figures of one operation (or of all, for the total): the shape of each entry of the JSON
/// `results` and `baseline` arrays.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct OpStats {
    /// The op's name (`total` for all ops together).
    pub(crate) op: String,
    /// Successful calls.
    pub(crate) count: u64,
    /// Failed calls (not in `count` nor in the latencies).
    pub(crate) errors: u64,
    /// Successful calls per second of the phase's wall time.
    pub(crate) ops_per_sec: f64,
    /// Median latency, microseconds.
    pub(crate) p50_us: f64,
    /// 95th percentile latency, microseconds.
    pub(crate) p95_us: f64,
    /// 99th percentile latency, microseconds.
    pub(crate) p99_us: f64,
    /// Highest latency, microseconds.
    pub(crate) max_us: f64,
}

/// Rounds to 3 decimals (JSON stays readable; nanosecond resolution is kept).
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Microseconds of a nanosecond histogram value.
fn us(ns: u64) -> f64 {
    round3(ns as f64 / 1000.0)
}

/// The figures of `hist` (nanoseconds) over a phase of `elapsed`.
pub(crate) fn op_stats(op: &str, hist: &Histogram<u64>, errors: u64, elapsed: Duration) -> OpStats {
    let count = hist.len();
    let secs = elapsed.as_secs_f64();
    let empty = count == 0;
    let q = |quantile: f64| {
        if empty {
            0.0
        } else {
            us(hist.value_at_quantile(quantile))
        }
    };
    OpStats {
        op: op.to_owned(),
        count,
        errors,
        ops_per_sec: if secs > 0.0 {
            (count as f64 / secs * 10.0).round() / 10.0
        } else {
            0.0
        },
        p50_us: q(0.50),
        p95_us: q(0.95),
        p99_us: q(0.99),
        max_us: if empty { 0.0 } else { us(hist.max()) },
    }
}

/// Rounds to 4 significant digits (ratios span 0.0001 to 10,000).
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// `a / b`, or `None` when `b` is not positive (or either is not finite).
pub(crate) fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| round_sig(a / b))
}

/// Shoal ÷ baseline for one op. Throughput: higher is better; latency: lower is better.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Ratios {
    /// `ops_per_sec` ratio.
    pub(crate) ops_per_sec: Option<f64>,
    /// `p50_us` ratio.
    pub(crate) p50: Option<f64>,
    /// `p99_us` ratio.
    pub(crate) p99: Option<f64>,
}

/// The ratios of every op present in both lists (matched by name).
pub(crate) fn ratios(shoal: &[OpStats], baseline: &[OpStats]) -> BTreeMap<String, Ratios> {
    shoal
        .iter()
        .filter_map(|s| {
            let b = baseline.iter().find(|b| b.op == s.op)?;
            Some((
                s.op.clone(),
                Ratios {
                    ops_per_sec: ratio(s.ops_per_sec, b.ops_per_sec),
                    p50: ratio(s.p50_us, b.p50_us),
                    p99: ratio(s.p99_us, b.p99_us),
                },
            ))
        })
        .collect()
}

/// The append-scaling measurement: one task appending to a session of 10 frames and to one of
/// 10,000 (or the store's cap).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct AppendScaling {
    /// Frames in the small session (10).
    pub(crate) frames_small: usize,
    /// Frames in the large session (10,000, or the store's `max_frames_per_session`).
    pub(crate) frames_large: usize,
    /// Appends timed per case.
    pub(crate) appends: u64,
    /// Appends per second of call time to the small session.
    pub(crate) ops_per_sec_10: f64,
    /// Appends per second of call time to the large session.
    pub(crate) ops_per_sec_10000: f64,
    /// Median latency, small session, microseconds.
    pub(crate) p50_us_10: f64,
    /// Median latency, large session, microseconds.
    pub(crate) p50_us_10000: f64,
    /// 99th percentile, small session, microseconds.
    pub(crate) p99_us_10: f64,
    /// 99th percentile, large session, microseconds.
    pub(crate) p99_us_10000: f64,
    /// Small ÷ large appends per second: 1.0 means appends cost the same whatever the session
    /// holds (O(1)); 1.2 means the large session appends 1.2× slower. The median over pairs
    /// of 1,000-append blocks timed back to back, so load bursts from other processes cancel.
    pub(crate) ratio: Option<f64>,
    /// `ops_per_sec_10 / ops_per_sec_10000` over all blocks (more sensitive to noise).
    pub(crate) ratio_total: Option<f64>,
    /// Frames in the diagnostic session just below the cap (never trimmed by the store).
    pub(crate) frames_below_cap: Option<usize>,
    /// Appends per second of call time to that session.
    pub(crate) ops_per_sec_below_cap: Option<f64>,
    /// Small ÷ below-cap, paired like `ratio`: the cost of size alone, without trimming.
    pub(crate) ratio_below_cap: Option<f64>,
}

impl AppendScaling {
    /// Builds the figures from the measurement.
    pub(crate) fn new(m: &Scaling, appends: u64) -> Self {
        let small = op_stats("append", &m.small.hist, 0, m.small.busy);
        let large = op_stats("append", &m.large.hist, 0, m.large.busy);
        let below = m
            .below_cap
            .as_ref()
            .map(|b| (b, op_stats("append", &b.hist, 0, b.busy)));
        AppendScaling {
            frames_small: m.small.frames,
            frames_large: m.large.frames,
            appends,
            ops_per_sec_10: small.ops_per_sec,
            ops_per_sec_10000: large.ops_per_sec,
            p50_us_10: small.p50_us,
            p50_us_10000: large.p50_us,
            p99_us_10: small.p99_us,
            p99_us_10000: large.p99_us,
            ratio: paired_ratio(&m.small.block_rates, &m.large.block_rates).map(round_sig),
            ratio_total: ratio(small.ops_per_sec, large.ops_per_sec),
            frames_below_cap: below.as_ref().map(|(b, _)| b.frames),
            ops_per_sec_below_cap: below.as_ref().map(|(_, s)| s.ops_per_sec),
            ratio_below_cap: below
                .as_ref()
                .and_then(|(b, _)| paired_ratio(&m.small.block_rates, &b.block_rates))
                .map(round_sig),
        }
    }
}

/// Everything `shoal-bench` reports: serialised as the one JSON object of `--json`, or
/// rendered by [`render_table`].
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// The store under test (`backend_name`).
    pub(crate) store: String,
    /// The arguments, defaults filled in.
    pub(crate) config: serde_json::Value,
    /// Seconds spent creating and filling the pool, store under test.
    pub(crate) setup_s: f64,
    /// Wall time of the timed phase, store under test.
    pub(crate) elapsed_s: f64,
    /// Per op, store under test.
    pub(crate) results: Vec<OpStats>,
    /// All ops together, store under test.
    pub(crate) total: OpStats,
    /// Per op, the baseline (`null` with `--no-baseline`).
    pub(crate) baseline: Option<Vec<OpStats>>,
    /// All ops together, the baseline.
    pub(crate) baseline_total: Option<OpStats>,
    /// Wall time of the baseline's timed phase.
    pub(crate) baseline_elapsed_s: Option<f64>,
    /// Per op and `total`: store under test ÷ baseline.
    pub(crate) ratios: Option<BTreeMap<String, Ratios>>,
    /// The append-scaling measurement (`null` with `--scaling-appends 0`).
    pub(crate) append_scaling: Option<AppendScaling>,
    /// What `--verify` found (`null` without it).
    pub(crate) verify: Option<VerifyReport>,
    /// Per op, the first error of the store under test (ops without errors are absent).
    pub(crate) errors: BTreeMap<String, String>,
    /// Per op, the first error of the baseline.
    pub(crate) baseline_errors: BTreeMap<String, String>,
    /// The Redis baselines (`null` unless the store is Redis).
    pub(crate) redis_baseline: Option<crate::redis_baseline::RedisBaselineReport>,
    /// Second by second (`--timeline`, `--fallback`).
    pub(crate) timeline: Option<crate::wrappers::Timeline>,
    /// The resilience wrapper (`--fallback`).
    pub(crate) resilience: Option<crate::wrappers::ResilienceReport>,
    /// The cache (`--cache`).
    pub(crate) cache: Option<crate::wrappers::CacheReport>,
    /// `--compare-cache`.
    pub(crate) compare_cache: Option<crate::wrappers::CompareReport>,
    /// What was skipped and why.
    pub(crate) notes: Vec<String>,
}

/// `1234567.8` → `1,234,568`.
pub(crate) fn fmt_rate(x: f64) -> String {
    let n = x.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Microseconds with precision that suits the magnitude.
pub(crate) fn fmt_us(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}")
    } else if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// A ratio as `1.23x` (small ones with 2 significant digits, `0.0012x`), or `-`.
fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        None => "-".to_owned(),
        Some(r) if r >= 0.1 || r == 0.0 => format!("{r:.2}x"),
        Some(r) => {
            let decimals = (1 - r.log10().floor() as i32).max(2) as usize;
            format!("{r:.decimals$}x")
        }
    }
}

/// Lays out `rows` under `headers`: first column left-aligned, the others right-aligned,
/// two spaces apart.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == 0 {
                let _ = write!(l, "{cell:<w$}");
            } else {
                let _ = write!(l, "  {cell:>w$}");
            }
        }
        out.push_str(&l);
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// The human-readable report.
pub(crate) fn render_table(r: &Report, summary: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "shoal-bench: store {} — {summary}", r.store);
    let _ = writeln!(
        out,
        "timed phase {:.2} s (set-up {:.2} s)\n",
        r.elapsed_s, r.setup_s
    );
    let headers = [
        "op",
        "count",
        "ops/s",
        "p50 µs",
        "p95 µs",
        "p99 µs",
        "max µs",
        "baseline ops/s",
        "ratio ops/s",
        "ratio p50",
        "ratio p99",
    ];
    let base = r.baseline.as_deref().unwrap_or(&[]);
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .chain(std::iter::once(&r.total))
        .map(|s| {
            let b = if s.op == "total" {
                r.baseline_total.as_ref()
            } else {
                base.iter().find(|b| b.op == s.op)
            };
            let rt = r.ratios.as_ref().and_then(|m| m.get(&s.op));
            vec![
                s.op.clone(),
                s.count.to_string(),
                fmt_rate(s.ops_per_sec),
                fmt_us(s.p50_us),
                fmt_us(s.p95_us),
                fmt_us(s.p99_us),
                fmt_us(s.max_us),
                b.map_or_else(|| "-".to_owned(), |b| fmt_rate(b.ops_per_sec)),
                fmt_ratio(rt.and_then(|x| x.ops_per_sec)),
                fmt_ratio(rt.and_then(|x| x.p50)),
                fmt_ratio(rt.and_then(|x| x.p99)),
            ]
        })
        .collect();
    out.push_str(&table(&headers, &rows));
    if r.baseline.is_some() {
        out.push_str(
            "ratios are store ÷ baseline: for ops/s higher is better, for latency lower is better\n",
        );
    }
    if let Some(b) = &r.baseline {
        let _ = writeln!(
            out,
            "\nbaseline: the original design (tokio RwLock<HashMap> of sessions + of frame \
             Vecs), same workload, timed phase {:.2} s",
            r.baseline_elapsed_s.unwrap_or(0.0)
        );
        let rows: Vec<Vec<String>> = b
            .iter()
            .chain(r.baseline_total.as_ref())
            .map(|s| {
                vec![
                    s.op.clone(),
                    s.count.to_string(),
                    fmt_rate(s.ops_per_sec),
                    fmt_us(s.p50_us),
                    fmt_us(s.p95_us),
                    fmt_us(s.p99_us),
                    fmt_us(s.max_us),
                ]
            })
            .collect();
        out.push_str(&table(&headers[..7], &rows));
    }
    if let Some(a) = &r.append_scaling {
        let _ = writeln!(
            out,
            "\nappend scaling ({} appends each, one task): {} frames {} ops/s (p50 {} µs, p99 {} µs); \
             {} frames {} ops/s (p50 {} µs, p99 {} µs); ratio {} (median of paired blocks; 1.00 = O(1))",
            a.appends,
            a.frames_small,
            fmt_rate(a.ops_per_sec_10),
            fmt_us(a.p50_us_10),
            fmt_us(a.p99_us_10),
            a.frames_large,
            fmt_rate(a.ops_per_sec_10000),
            fmt_us(a.p50_us_10000),
            fmt_us(a.p99_us_10000),
            fmt_ratio(a.ratio),
        );
        if let (Some(f), Some(ops)) = (a.frames_below_cap, a.ops_per_sec_below_cap) {
            let _ = writeln!(
                out,
                "  diagnostic: {f} frames, below the store's cap so no trimming: {} ops/s, ratio {}",
                fmt_rate(ops),
                fmt_ratio(a.ratio_below_cap),
            );
        }
    }
    if let Some(v) = &r.verify {
        let _ = writeln!(
            out,
            "\nverify: {} frames checked in {} sessions: lost {}, duplicated {}, out_of_order {}, \
             trimmed {}, unexpected {} — {}",
            v.checked,
            v.sessions,
            v.lost,
            v.duplicated,
            v.out_of_order,
            v.trimmed,
            v.unexpected,
            if v.ok() { "OK" } else { "FAILED" }
        );
    }
    let error_lines = |label: &str, stats: &[OpStats], firsts: &BTreeMap<String, String>| {
        let mut s = String::new();
        for st in stats.iter().filter(|st| st.errors > 0) {
            let _ = writeln!(
                s,
                "{label}{}: {} errors, first: {}",
                st.op,
                st.errors,
                firsts.get(&st.op).map_or("?", String::as_str)
            );
        }
        s
    };
    if let Some(rb) = &r.redis_baseline {
        out.push_str(&crate::redis_baseline::render(rb));
    }
    out.push_str(&crate::wrappers::render(r));
    let errs = error_lines("errors: ", &r.results, &r.errors)
        + &error_lines("baseline errors: ", base, &r.baseline_errors);
    if !errs.is_empty() {
        out.push('\n');
        out.push_str(&errs);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist_of(values_ns: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = crate::workload::new_hist().unwrap();
        for v in values_ns {
            h.record(v).unwrap();
        }
        h
    }

    use crate::workload::ScalingCase;

    #[test]
    fn percentiles_and_rates_come_from_the_histogram() {
        // 1..=1000 µs, one each.
        let h = hist_of((1..=1000).map(|us| us * 1000));
        let s = op_stats("get", &h, 3, Duration::from_secs(2));
        assert_eq!(s.op, "get");
        assert_eq!(s.count, 1000);
        assert_eq!(s.errors, 3);
        assert_eq!(s.ops_per_sec, 500.0);
        // hdrhistogram with 3 significant digits: within 0.1%.
        for (got, want) in [
            (s.p50_us, 500.0),
            (s.p95_us, 950.0),
            (s.p99_us, 990.0),
            (s.max_us, 1000.0),
        ] {
            assert!(
                (got - want).abs() <= want * 0.001 + 0.001,
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn sub_microsecond_latencies_keep_their_resolution() {
        let h = hist_of([150, 150, 150, 250]);
        let s = op_stats("touch", &h, 0, Duration::from_millis(1));
        assert_eq!(s.p50_us, 0.15);
        assert_eq!(s.max_us, 0.25);
        assert_eq!(s.ops_per_sec, 4000.0);
    }

    #[test]
    fn an_empty_histogram_gives_zeros_not_nan() {
        let h = hist_of([]);
        let s = op_stats("list", &h, 0, Duration::ZERO);
        assert_eq!(
            (s.count, s.ops_per_sec, s.p99_us, s.max_us),
            (0, 0.0, 0.0, 0.0)
        );
    }

    fn stats(op: &str, ops: f64, p50: f64, p99: f64) -> OpStats {
        OpStats {
            op: op.into(),
            count: 10,
            errors: 0,
            ops_per_sec: ops,
            p50_us: p50,
            p95_us: p99,
            p99_us: p99,
            max_us: p99,
        }
    }

    #[test]
    fn ratios_match_ops_by_name_and_avoid_division_by_zero() {
        let shoal = [stats("get", 300.0, 1.0, 4.0), stats("list", 10.0, 5.0, 9.0)];
        let base = [stats("list", 0.0, 0.0, 3.0), stats("get", 100.0, 2.0, 8.0)];
        let r = ratios(&shoal, &base);
        assert_eq!(
            r["get"],
            Ratios {
                ops_per_sec: Some(3.0),
                p50: Some(0.5),
                p99: Some(0.5)
            }
        );
        assert_eq!(r["list"].ops_per_sec, None);
        assert_eq!(r["list"].p50, None);
        assert_eq!(r["list"].p99, Some(3.0));
        assert_eq!(ratio(1.0, f64::NAN), None);
    }

    #[test]
    fn rates_and_latencies_format_readably() {
        assert_eq!(fmt_rate(1_234_567.6), "1,234,568");
        assert_eq!(fmt_rate(999.0), "999");
        assert_eq!(fmt_rate(1000.0), "1,000");
        assert_eq!(fmt_rate(0.0), "0");
        assert_eq!(fmt_us(0.214), "0.21");
        assert_eq!(fmt_us(42.26), "42.3");
        assert_eq!(fmt_us(1234.4), "1234");
        assert_eq!(fmt_ratio(Some(1.5)), "1.50x");
        assert_eq!(fmt_ratio(Some(0.049)), "0.049x");
        assert_eq!(fmt_ratio(Some(0.00049)), "0.00049x");
        assert_eq!(round_sig(0.000_487_65), 0.000_487_7);
        assert_eq!(round_sig(17.6543), 17.65);
        assert_eq!(ratio(5.32, 10928.0), Some(0.000_486_8));
        assert_eq!(fmt_ratio(None), "-");
    }

    #[test]
    fn table_columns_line_up() {
        let t = table(
            &["op", "count", "ops/s"],
            &[
                vec!["get".into(), "1".into(), "1,234,567".into()],
                vec!["append".into(), "123456".into(), "5".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{t}");
        // Right-aligned numbers end where their header ends.
        assert!(lines[0].ends_with("ops/s"));
        assert!(lines[1].ends_with("1,234,567"));
        assert!(lines[2].ends_with("  5"));
        assert!(lines[2].starts_with("append  "));
        assert!(lines[1].starts_with("get     "));
    }

    fn case(frames: usize) -> ScalingCase {
        ScalingCase {
            frames,
            appends: 2,
            busy: Duration::from_micros(2),
            hist: hist_of([1000, 1000]),
            block_rates: vec![1e6],
        }
    }

    fn report(with_baseline: bool) -> Report {
        let results = vec![stats("get", 300.0, 1.0, 4.0)];
        let base = vec![stats("get", 100.0, 2.0, 8.0)];
        Report {
            store: "memory".into(),
            config: serde_json::json!({"sessions": 1}),
            setup_s: 0.1,
            elapsed_s: 1.0,
            total: stats("total", 300.0, 1.0, 4.0),
            ratios: with_baseline.then(|| ratios(&results, &base)),
            baseline: with_baseline.then(|| base.clone()),
            baseline_total: with_baseline.then(|| stats("total", 100.0, 2.0, 8.0)),
            baseline_elapsed_s: with_baseline.then_some(1.0),
            results,
            append_scaling: Some(AppendScaling::new(
                &Scaling {
                    small: case(10),
                    large: case(10_000),
                    below_cap: Some(case(9_990)),
                },
                2,
            )),
            verify: Some(VerifyReport {
                sessions: 1,
                checked: 5,
                ..VerifyReport::default()
            }),
            errors: BTreeMap::new(),
            baseline_errors: BTreeMap::new(),
            redis_baseline: None,
            timeline: None,
            resilience: None,
            cache: None,
            compare_cache: None,
            notes: Vec::new(),
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let v = serde_json::to_value(report(true)).unwrap();
        for key in [
            "store",
            "config",
            "results",
            "total",
            "baseline",
            "ratios",
            "append_scaling",
            "verify",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let r0 = &v["results"][0];
        for key in [
            "op",
            "count",
            "ops_per_sec",
            "p50_us",
            "p95_us",
            "p99_us",
            "max_us",
        ] {
            assert!(r0.get(key).is_some(), "results[0] lacks {key}");
        }
        assert_eq!(v["baseline"][0]["op"], "get");
        assert_eq!(v["ratios"]["get"]["ops_per_sec"], 3.0);
        assert_eq!(v["append_scaling"]["ratio"], 1.0);
        assert_eq!(v["append_scaling"]["ops_per_sec_10"], 1_000_000.0);
        assert_eq!(v["append_scaling"]["frames_below_cap"], 9_990);
        assert_eq!(v["append_scaling"]["ratio_below_cap"], 1.0);
        for key in ["checked", "lost", "duplicated", "out_of_order"] {
            assert_eq!(v["verify"][key], if key == "checked" { 5 } else { 0 });
        }
        let v = serde_json::to_value(report(false)).unwrap();
        assert!(v["baseline"].is_null());
        assert!(v["ratios"].is_null());
    }

    #[test]
    fn the_table_shows_every_op_the_total_and_the_ratios() {
        let t = render_table(&report(true), "test");
        assert!(t.contains("baseline ops/s"));
        let get_line = t.lines().find(|l| l.starts_with("get ")).unwrap();
        assert!(get_line.contains("3.00x"), "{get_line}");
        assert!(get_line.contains("0.50x"), "{get_line}");
        assert!(t.lines().any(|l| l.starts_with("total ")));
        assert!(t.contains("append scaling"));
        assert!(t.contains("9990 frames, below the store's cap"));
        assert!(t.contains("lost 0, duplicated 0, out_of_order 0"));
        assert!(t.contains("OK"));
        let t = render_table(&report(false), "test");
        assert!(!t.contains("baseline: the original design"));
    }
}
