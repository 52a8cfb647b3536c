//! Redis: memory, eviction, clients, load, replication, topology, and warnings.

use maud::{Markup, html};

use super::{
    format::{bytes, count},
    layout::{Nav, PageCtx, page, panel},
};
use crate::snapshot::Snapshot;

/// The live fragments.
pub fn fragments(s: &Snapshot) -> Vec<(&'static str, Markup)> {
    vec![("redis", body(s))]
}

/// The whole page.
pub fn render(s: &Snapshot, ctx: &PageCtx) -> Markup {
    page(
        "Redis",
        Nav::Redis,
        Some("redis"),
        ctx,
        panel("Redis", "redis", body(s)),
    )
}

fn body(s: &Snapshot) -> Markup {
    let Some(r) = &s.redis else {
        return html! { p.empty { "no Redis figures: the store is not on Redis, or it has not answered yet" } };
    };
    let used = if r.maxmemory > 0.0 {
        format!(
            "{} of {} ({:.0}%)",
            bytes(r.used_memory),
            bytes(r.maxmemory),
            100.0 * r.used_memory / r.maxmemory
        )
    } else {
        format!("{} (no maxmemory)", bytes(r.used_memory))
    };
    html! {
        @for w in &r.warnings {
            p.warning data-k="redis-warning" { "⚠ " (w) }
        }
        dl.facts {
            dt { "topology" } dd data-k="redis-topology" { (r.topology) }
            dt { "version" } dd { (r.version) }
            dt { "uptime" } dd { (format!("{:.0} s", r.uptime_s)) }
            dt { "memory" } dd data-k="redis-memory" { (used) }
            dt { "eviction policy" } dd data-k="redis-policy" { (r.policy) }
            dt { "evicted keys" } dd data-k="redis-evicted" { (format!("{:.0}", r.evicted_keys)) }
            dt { "clients" } dd { (format!("{:.0} ({:.0} blocked)", r.clients, r.blocked_clients)) }
            dt { "ops/s" } dd { (format!("{:.0}", r.ops_per_sec)) }
            dt { "keys" } dd { (r.keys.map(|k| count(k as u64)).unwrap_or_else(|| "—".into())) }
            dt { "persistence" } dd { (r.persistence) }
            dt { "role" } dd data-k="redis-role" { (r.role) }
            dt { "replicas" } dd { (format!("{:.0}", r.replicas)) @if let Some(l) = r.replica_lag_s { " · lag " (format!("{l:.0} s")) } }
            @if let Some(m) = &r.master { dt { "master" } dd { (m) } }
        }
        @if !r.nodes.is_empty() {
            h3 { "Cluster nodes" }
            table {
                thead { tr { th { "node" } th { "role" } th { "slots" } th { "state" } } }
                tbody {
                    @for n in &r.nodes {
                        tr { td { (n.address) } td { (n.role) } td { (n.slots) } td class=(if n.failing { "bad" } else { "good" }) { @if n.failing { "failing" } @else { "ok" } } }
                    }
                }
            }
        }
    }
}
