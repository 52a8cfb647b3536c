//! Analytics from the change feed, as charts: sessions started per minute, clients,
//! protocol versions, top tools with error rates and latency, session durations.

use maud::{Markup, html};

use super::{
    charts,
    format::{clock, count, ms},
    layout::{Nav, PageCtx, page, panel},
};
use crate::snapshot::Snapshot;

/// The live fragments.
pub fn fragments(s: &Snapshot) -> Vec<(&'static str, Markup)> {
    vec![("analytics", body(s))]
}

/// The whole page.
pub fn render(s: &Snapshot, ctx: &PageCtx) -> Markup {
    page(
        "Analytics",
        Nav::Analytics,
        Some("analytics"),
        ctx,
        panel("Analytics (from the change feed)", "analytics", body(s)),
    )
}

fn body(s: &Snapshot) -> Markup {
    let Some(a) = &s.analytics else {
        return html! { p.empty { (s.analytics_note.as_deref().unwrap_or("not read yet")) } };
    };
    let per_minute: Vec<(String, f64)> = a
        .per_minute
        .iter()
        .map(|m| (clock(m.minute.as_millis()), m.started as f64))
        .collect();
    let by_count = |m: &std::collections::BTreeMap<String, u64>| {
        let mut rows: Vec<(String, f64, String)> = m
            .iter()
            .map(|(k, v)| (k.clone(), *v as f64, count(*v)))
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        rows.truncate(12);
        rows
    };
    let tools: Vec<(String, f64, String)> = a
        .tools
        .iter()
        .map(|t| {
            let lat = t
                .latency
                .as_ref()
                .map(|l| format!(" · p50 {} p99 {}", ms(Some(l.p50_ms)), ms(Some(l.p99_ms))))
                .unwrap_or_default();
            (
                t.name.clone(),
                t.count as f64,
                format!(
                    "{} calls · {:.1}% errors{lat}",
                    count(t.count),
                    t.error_rate * 100.0
                ),
            )
        })
        .collect();
    let methods: Vec<(String, f64, String)> = a
        .methods
        .iter()
        .map(|t| {
            let lat = t
                .latency
                .as_ref()
                .map(|l| format!(" · p50 {}", ms(Some(l.p50_ms))))
                .unwrap_or_default();
            (
                t.name.clone(),
                t.count as f64,
                format!("{}{lat}", count(t.count)),
            )
        })
        .collect();
    let tool_errors: Vec<(String, f64, String)> = a
        .tools
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.error_rate * 100.0,
                format!("{:.1}%", t.error_rate * 100.0),
            )
        })
        .collect();
    html! {
        p.muted {
            (count(a.live_sessions)) " live sessions · analytics as of " (clock(a.at.as_millis())) " UTC"
            @if let Some(lag) = s.fleet.feed_lag { " · " (count(lag)) " feed entries not applied yet" }
        }
        div.grid2 {
            div { h3 { "Sessions started per minute (last hour)" } (charts::columns("chart-per-minute", &per_minute, "sessions")) }
            div { h3 { "Live sessions by client" } (charts::hbars("chart-clients", &by_count(&a.live_by_client))) }
            div { h3 { "Live sessions by protocol version" } (charts::hbars("chart-protocols", &by_count(&a.live_by_protocol))) }
            div { h3 { "Top tools (calls, errors, latency)" } (charts::hbars("chart-tools", &tools)) }
            div { h3 { "Tool error rate" } (charts::hbars("chart-tool-errors", &tool_errors)) }
            div { h3 { "Methods" } (charts::hbars("chart-methods", &methods)) }
        }
        h3 { "Session durations" }
        @match &a.durations {
            Some(d) => {
                (charts::hbars("chart-durations", &[
                    ("p50".to_owned(), d.p50_ms, ms(Some(d.p50_ms))),
                    ("p90".to_owned(), d.p90_ms, ms(Some(d.p90_ms))),
                    ("p99".to_owned(), d.p99_ms, ms(Some(d.p99_ms))),
                ]))
                p.muted { (count(d.samples)) " ended sessions" }
            }
            None => p.empty { "no session has ended yet" },
        }
    }
}
