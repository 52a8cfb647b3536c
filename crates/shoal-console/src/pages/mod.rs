//! The pages, rendered on the server with maud (every value escaped by construction). Live
//! pages are made of fragments: the first render holds them, and `/live/<page>` sends them
//! again whenever the collector publishes a snapshot.

pub mod analytics;
pub mod charts;
pub mod format;
pub mod layout;
pub mod overview;
pub mod redis;
pub mod session;
pub mod sessions;
pub mod timeline;

use maud::{DOCTYPE, Markup, html};

use crate::snapshot::Snapshot;

/// The live fragments of page `name` (`overview`, `redis`, `timeline`, `analytics`).
pub fn fragments(name: &str, s: &Snapshot) -> Option<Vec<(&'static str, Markup)>> {
    match name {
        "overview" => Some(overview::fragments(s)),
        "redis" => Some(redis::fragments(s)),
        "timeline" => Some(timeline::fragments(s)),
        "analytics" => Some(analytics::fragments(s)),
        _ => None,
    }
}

/// The login form (asked of clients off loopback).
pub fn login(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Sign in · Shoal console" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body {
                main {
                    section.panel.message {
                        h2 { "Shoal console" }
                        p { "This address is not on loopback: the console's token is required." }
                        @if let Some(e) = error { p.warning { (e) } }
                        form method="post" action="/login" {
                            input type="password" name="token" placeholder="token" autocomplete="current-password" autofocus;
                            button type="submit" { "Sign in" }
                        }
                    }
                }
            }
        }
    }
}
