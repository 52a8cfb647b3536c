//! `shoal analytics`: the session analytics the fleet keeps from the change feed (Redis).

use std::time::Duration;

use shoal_redis::analytics::{AnalyticsReport, CallStats, read_report};

use super::Ctx;
use crate::{
    cli::AnalyticsArgs,
    error::{Outcome, UsageError},
    output::{Table, fmt_time, print_json, print_text},
};

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1} ms")
    } else if v < 10_000.0 {
        format!("{v:.0} ms")
    } else {
        humantime::format_duration(Duration::from_millis(v as u64)).to_string()
    }
}

fn calls(title: &str, rows: &[CallStats]) -> String {
    if rows.is_empty() {
        return format!("{title}: none yet\n");
    }
    let mut t = Table::new(&[
        "name",
        "count",
        "errors",
        "error rate",
        "answered",
        "p50",
        "p90",
        "p99",
    ]);
    for c in rows {
        let (n, p50, p90, p99) =
            c.latency
                .as_ref()
                .map_or(("0".into(), "-".into(), "-".into(), "-".into()), |l| {
                    (
                        l.samples.to_string(),
                        ms(l.p50_ms),
                        ms(l.p90_ms),
                        ms(l.p99_ms),
                    )
                });
        t.row(vec![
            c.name.clone(),
            c.count.to_string(),
            c.errors.to_string(),
            format!("{:.1}%", c.error_rate * 100.0),
            n,
            p50,
            p90,
            p99,
        ]);
    }
    format!("{title}:\n{}", t.render())
}

fn counts(title: &str, m: &std::collections::BTreeMap<String, u64>) -> String {
    let mut rows: Vec<_> = m.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let shown: Vec<String> = rows.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(
        "{title}: {}\n",
        if shown.is_empty() {
            "-".into()
        } else {
            shown.join(", ")
        }
    )
}

/// One bar per minute with sessions, scaled to the busiest.
fn minutes(r: &AnalyticsReport) -> String {
    let most = r
        .per_minute
        .iter()
        .map(|m| m.started.max(m.ended))
        .max()
        .unwrap_or(0)
        .max(1);
    let mut out = String::from("sessions per minute (started + / ended -):\n");
    if r.per_minute.is_empty() {
        out.push_str("  none in the window\n");
    }
    for m in &r.per_minute {
        let bar = |n: u64, c: char| c.to_string().repeat(((n * 40).div_ceil(most)) as usize);
        out.push_str(&format!(
            "  {}  {:>5} {:<40}  {:>5} {}\n",
            fmt_time(m.minute),
            m.started,
            bar(m.started, '+'),
            m.ended,
            bar(m.ended, '-')
        ));
    }
    out
}

fn render(r: &AnalyticsReport) -> String {
    let t = |k: &str| r.totals.get(k).copied().unwrap_or(0);
    let lag = r.feed.groups.iter().find(|g| g.name == "analytics").map_or(
        "no analytics consumer has run yet".to_string(),
        |g| {
            format!(
                "{} entries behind, {} pending",
                g.lag.map_or("?".into(), |l| l.to_string()),
                g.pending
            )
        },
    );
    let mut out = format!(
        "sessions: {} created, {} ended ({} deleted, {} expired, {} evicted), {} live\n\
         frames: {} ({} bytes)\nfeed: {} entries held, {lag}\n",
        t("created"),
        t("ended"),
        t("deleted"),
        t("expired"),
        t("evicted"),
        r.live_sessions,
        t("frames"),
        t("bytes"),
        r.feed.length,
    );
    out.push_str(&counts("live by client", &r.live_by_client));
    out.push_str(&counts("live by protocol", &r.live_by_protocol));
    out.push_str(&counts("live by transport", &r.live_by_transport));
    out.push_str(&match &r.durations {
        Some(d) => format!(
            "session length: {} ended, p50 {}, p90 {}, p99 {}\n",
            d.samples,
            ms(d.p50_ms),
            ms(d.p90_ms),
            ms(d.p99_ms)
        ),
        None => "session length: no session ended yet\n".into(),
    });
    out.push_str(&minutes(r));
    out.push_str(&calls("methods", &r.methods));
    out.push_str(&calls("tools", &r.tools));
    out
}

/// `analytics`.
pub(crate) async fn run(ctx: &Ctx, args: &AnalyticsArgs) -> anyhow::Result<Outcome> {
    let opened = ctx.open().await?;
    let Some(redis) = opened.redis() else {
        return Err(UsageError(
            "analytics are kept in Redis: use a redis://… store (the memory store has a \
             change feed, but no analytics)"
                .into(),
        )
        .into());
    };
    if redis.store.feed().is_none() {
        return Err(
            UsageError("this store writes no change feed ([feed] enabled = false)".into()).into(),
        );
    }
    let report = read_report(&redis.store, args.since.into(), usize::from(args.top)).await?;
    if ctx.json {
        print_json(&report)?;
    } else {
        print_text(&render(&report))?;
    }
    Ok(Outcome::Success)
}
