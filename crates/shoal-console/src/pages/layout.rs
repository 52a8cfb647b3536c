//! The page shell: head, navigation, the live-update hook, and the parts every page shares.

use maud::{DOCTYPE, Markup, html};

/// The navigation's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    /// `/`.
    Overview,
    /// `/redis`.
    Redis,
    /// `/timeline`.
    Timeline,
    /// `/analytics`.
    Analytics,
    /// `/sessions`.
    Sessions,
}

const NAV: [(Nav, &str, &str); 5] = [
    (Nav::Overview, "/", "Overview"),
    (Nav::Redis, "/redis", "Redis"),
    (Nav::Timeline, "/timeline", "Timeline"),
    (Nav::Analytics, "/analytics", "Analytics"),
    (Nav::Sessions, "/sessions", "Sessions"),
];

/// What every page needs from the request.
#[derive(Clone, Debug)]
pub struct PageCtx {
    /// No actions.
    pub read_only: bool,
    /// The token forms carry (CSRF).
    pub csrf: String,
}

/// A whole page. `live` names the fragment set `/live/<name>` keeps up to date.
pub fn page(title: &str, active: Nav, live: Option<&str>, ctx: &PageCtx, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · Shoal console" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body data-live=[live] {
                header {
                    a.brand href="/" { "Shoal" span { "console" } }
                    nav {
                        @for (nav, href, label) in NAV {
                            a href=(href) class=[(nav == active).then_some("active")] { (label) }
                        }
                    }
                    span #conn.conn title="live updates" { "connecting" }
                    @if ctx.read_only { span.badge { "read-only" } }
                }
                main { (body) }
            }
        }
    }
}

/// A titled box around a fragment the live stream replaces (`id`).
pub fn panel(title: &str, id: &str, inner: Markup) -> Markup {
    html! {
        section.panel {
            h2 { (title) }
            div id=(id) { (inner) }
        }
    }
}

/// A message page (errors, confirmations done).
pub fn message(title: &str, ctx: &PageCtx, text: &str, back: &str) -> Markup {
    page(
        title,
        Nav::Sessions,
        None,
        ctx,
        html! {
            section.panel.message {
                h2 { (title) }
                p { (text) }
                p { a href=(back) { "Back" } }
            }
        },
    )
}

/// A confirmation page: the form POSTs to `action` with the CSRF token and `confirm=yes`
/// (and `principal`, when given).
pub fn confirm(
    title: &str,
    ctx: &PageCtx,
    text: &str,
    action: &str,
    principal: Option<&str>,
) -> Markup {
    page(
        title,
        Nav::Sessions,
        None,
        ctx,
        html! {
            section.panel.message {
                h2 { (title) }
                p { (text) }
                form #confirm method="post" action=(action) {
                    input type="hidden" name="csrf" value=(ctx.csrf);
                    input type="hidden" name="confirm" value="yes";
                    @if let Some(p) = principal { input type="hidden" name="principal" value=(p); }
                    button.danger type="submit" { "Delete" }
                    " "
                    a href="/sessions" { "Cancel" }
                }
            }
        },
    )
}
