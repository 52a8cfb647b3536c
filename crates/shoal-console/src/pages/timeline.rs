//! The incident timeline.

use maud::{Markup, html};

use super::{
    format::utc,
    layout::{Nav, PageCtx, page, panel},
};
use crate::{snapshot::Snapshot, timeline::Incident};

/// Incidents as a list, newest first.
pub fn incident_list(incidents: &[Incident]) -> Markup {
    html! {
        @if incidents.is_empty() {
            p.empty { "no incidents since the console started" }
        } @else {
            ol.timeline {
                @for i in incidents {
                    li class=(i.kind.severity()) data-kind=(serde_json::to_value(i.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) {
                        time { (utc(i.at_ms)) }
                        strong { (i.kind.label()) }
                        span.source { (i.source) }
                        @if !i.detail.is_empty() { span.detail { (i.detail) } }
                    }
                }
            }
        }
    }
}

/// The live fragments.
pub fn fragments(s: &Snapshot) -> Vec<(&'static str, Markup)> {
    vec![("incidents", incident_list(&s.incidents))]
}

/// The whole page.
pub fn render(s: &Snapshot, ctx: &PageCtx) -> Markup {
    page(
        "Timeline",
        Nav::Timeline,
        Some("timeline"),
        ctx,
        panel(
            "Incidents (noticed by this console: breakers, proxies, replays, evictions, failovers, restarts)",
            "incidents",
            incident_list(&s.incidents),
        ),
    )
}
