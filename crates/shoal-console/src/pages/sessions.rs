//! Session search: by id, principal or client name.

use maud::{Markup, html};
use shoal_core::Session;

use super::{
    format::utc,
    layout::{Nav, PageCtx, page},
};

/// What was searched.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Search {
    /// The text.
    pub q: String,
    /// `id`, `principal` or `client` (default: `id` when `q` looks like one, else `client`).
    pub by: Option<String>,
}

/// A session's client name (`client_info.name`).
pub fn client_name(s: &Session) -> Option<&str> {
    s.client_field("name")
}

/// The page: the form, the results, and a note (how many were scanned, errors).
pub fn render(search: &Search, results: &[Session], note: Option<&str>, ctx: &PageCtx) -> Markup {
    let by = search.by.as_deref().unwrap_or("id");
    page(
        "Sessions",
        Nav::Sessions,
        None,
        ctx,
        html! {
            section.panel {
                h2 { "Sessions" }
                form.search method="get" action="/sessions" {
                    input type="search" name="q" value=(search.q) placeholder="session id, principal or client name" autofocus;
                    select name="by" {
                        @for (v, label) in [("id", "id"), ("principal", "principal"), ("client", "client name")] {
                            option value=(v) selected[by == v] { (label) }
                        }
                    }
                    button type="submit" { "Search" }
                }
                @if let Some(n) = note { p.muted { (n) } }
                @if results.is_empty() {
                    p.empty { "no sessions found" }
                } @else {
                    table #sessions-table {
                        thead { tr { th { "id" } th { "principal" } th { "client" } th { "protocol" } th { "status" } th { "created" } th { "last activity" } th { "frames" } } }
                        tbody {
                            @for s in results {
                                tr {
                                    td { a href=(format!("/sessions/{}", s.id.as_str())) { code { (s.id.as_str()) } } }
                                    td {
                                        @if let Some(p) = &s.principal {
                                            a href=(format!("/sessions?by=principal&q={}", urlencode(p))) { (p) }
                                        } @else { "—" }
                                    }
                                    td { (client_name(s).unwrap_or("—")) }
                                    td { (s.protocol_version.as_deref().unwrap_or("—")) }
                                    td { (format!("{:?}", s.status).to_lowercase()) }
                                    td { (utc(s.created_at.as_millis())) }
                                    td { (utc(s.last_activity.as_millis())) }
                                    td { (s.frame_count) }
                                }
                            }
                        }
                    }
                }
                @if by == "principal" && !search.q.is_empty() && !results.is_empty() && !ctx.read_only {
                    p { a.danger href=(format!("/principals/delete?principal={}", urlencode(&search.q))) { "Delete every session of this principal…" } }
                }
            }
        },
    )
}

/// Percent-encodes `s` for a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_values() {
        assert_eq!(urlencode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(urlencode("user-1_x.y~"), "user-1_x.y~");
    }
}
