//! The overview: the fleet's figures, charts of its rates, each proxy, each store operation,
//! the latest incidents.

use maud::{Markup, html};

use super::{
    charts,
    format::{bytes, clock, count, ms, per_sec, percent},
    layout::{Nav, PageCtx, page, panel},
    timeline::incident_list,
};
use crate::snapshot::Snapshot;

/// The live fragments of the overview, by element id.
pub fn fragments(s: &Snapshot) -> Vec<(&'static str, Markup)> {
    vec![
        ("fleet", fleet(s)),
        ("charts", charts_of(s)),
        ("instances", instances(s)),
        ("ops", ops(s)),
        (
            "recent",
            incident_list(&s.incidents[..s.incidents.len().min(8)]),
        ),
    ]
}

/// The whole page.
pub fn render(s: &Snapshot, ctx: &PageCtx) -> Markup {
    let f = fragments(s);
    let get = |id: &str| {
        f.iter()
            .find(|(i, _)| *i == id)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    };
    page(
        "Overview",
        Nav::Overview,
        Some("overview"),
        ctx,
        html! {
            div id="fleet" { (get("fleet")) }
            (panel("Rates", "charts", get("charts")))
            (panel("Proxies", "instances", get("instances")))
            (panel("Store operations", "ops", get("ops")))
            (panel("Latest incidents", "recent", get("recent")))
        },
    )
}

fn tile(key: &str, label: &str, value: String, class: Option<&str>) -> Markup {
    html! {
        div.tile class=[class] data-k=(key) {
            div.v { (value) }
            div.l { (label) }
        }
    }
}

fn fleet(s: &Snapshot) -> Markup {
    let f = &s.fleet;
    let live = match f.live_sessions {
        Some(n) => count(n),
        None => "?".into(),
    };
    let up = format!("{}/{}", f.instances_up, f.instances_total);
    html! {
        div.tiles {
            (tile("live-sessions", "live sessions", live, f.store_error.as_ref().map(|_| "bad")))
            (tile("sessions-per-min", "sessions/min", format!("{:.1}", f.sessions_per_min), None))
            (tile("requests-per-sec", "requests", per_sec(f.requests_per_sec), None))
            (tile("request-p50", "request p50", ms(f.request_p50_ms), None))
            (tile("request-p99", "request p99", ms(f.request_p99_ms), None))
            (tile("error-rate", "5xx", percent(Some(f.error_rate)), (f.error_rate > 0.01).then_some("bad")))
            (tile("ops-per-sec", "store ops", per_sec(f.ops_per_sec), None))
            (tile("store-errors", "store errors", percent(Some(f.store_error_rate)), (f.store_error_rate > 0.01).then_some("bad")))
            (tile("cache-hit-rate", "cache hits", percent(f.cache_hit_rate), None))
            (tile("instances-up", "proxies up", up, (f.instances_up < f.instances_total).then_some("bad")))
            (tile("breakers-open", "breakers open", f.breakers_open.to_string(), (f.breakers_open > 0).then_some("bad")))
            (tile("journal", "journal entries", format!("{:.0}", f.journal_entries), (f.journal_entries > 0.0).then_some("warn")))
            (tile("feed-lag", "feed lag", f.feed_lag.map(count).unwrap_or_else(|| "—".into()), f.feed_lag.filter(|l| *l > 10_000).map(|_| "warn")))
        }
        @if let Some(e) = &f.store_error {
            p.warning { "store: " (e) }
        }
        p.muted { "updated " (clock(s.at_ms)) " UTC" }
    }
}

fn charts_of(s: &Snapshot) -> Markup {
    let req: Vec<f64> = s.history.iter().map(|h| h.requests_per_sec).collect();
    let ops: Vec<f64> = s.history.iter().map(|h| h.ops_per_sec).collect();
    let live: Vec<f64> = s
        .history
        .iter()
        .map(|h| h.live_sessions.unwrap_or(0) as f64)
        .collect();
    html! {
        div.sparks {
            div { h3 { "requests/s" } (charts::line("chart-requests", &req, &per_sec(s.fleet.requests_per_sec))) }
            div { h3 { "store ops/s" } (charts::line("chart-ops", &ops, &per_sec(s.fleet.ops_per_sec))) }
            div { h3 { "live sessions" } (charts::line("chart-live", &live, &s.fleet.live_sessions.map(count).unwrap_or_default())) }
        }
    }
}

fn instances(s: &Snapshot) -> Markup {
    html! {
        @if s.instances.is_empty() {
            p.empty { "no proxies configured: start the console with --proxy URL (one per proxy)" }
        } @else {
            table #instances-table {
                thead { tr { th { "proxy" } th { "instance" } th { "state" } th { "requests" } th { "p50" } th { "p99" } th { "breaker" } th { "journal" } th { "cache hits" } th { "streams" } } }
                tbody {
                    @for i in &s.instances {
                        tr data-instance=(i.instance.as_deref().unwrap_or("")) {
                            td { (i.url) }
                            td { (i.instance.as_deref().unwrap_or("—")) }
                            td class=(if i.up { "good" } else { "bad" }) {
                                @if i.up { "up" } @else { "down" @if let Some(e) = &i.error { " · " (e) } }
                            }
                            td { (per_sec(i.requests_per_sec)) }
                            td { (ms(i.p50_ms)) }
                            td { (ms(i.p99_ms)) }
                            td.breaker class=(match i.breaker.as_str() { "open" => "bad", "half-open" => "warn", _ => "" }) { (i.breaker) }
                            td { (format!("{:.0}", i.journal_entries)) }
                            td { (percent(i.cache_hit_rate)) }
                            td { (format!("{:.0}", i.open_streams)) }
                        }
                    }
                }
            }
        }
    }
}

fn ops(s: &Snapshot) -> Markup {
    html! {
        @if s.ops.is_empty() {
            p.empty { "no store operation metrics: the proxies' store has no resilience wrapper (memory store), or no proxy is reachable" }
        } @else {
            table {
                thead { tr { th { "operation" } th { "calls" } th { "errors" } th { "p50" } th { "p99" } } }
                tbody {
                    @for o in &s.ops {
                        tr {
                            td { (o.op) }
                            td { (per_sec(o.per_sec)) }
                            td class=[(o.errors_per_sec > 0.0).then_some("bad")] { (per_sec(o.errors_per_sec)) }
                            td { (ms(o.p50_ms)) }
                            td { (ms(o.p99_ms)) }
                        }
                    }
                }
            }
        }
        @if let Some(f) = &s.feed {
            p.muted {
                "change feed: " (count(f.length)) " entries held (cap " (count(f.cap)) ")"
                @if let Some(b) = f.bytes { ", " (bytes(b as f64)) }
            }
        }
    }
}
