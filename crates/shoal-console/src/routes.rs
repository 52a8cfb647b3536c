//! The router: pages, the live stream, the snapshot as JSON, actions, login, assets.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Form, Json, Router,
    extract::{Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use futures_util::StreamExt;
use maud::Markup;
use serde::Deserialize;
use shoal_core::{FrameQuery, ListQuery, Session, SessionFilter, SessionId};
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;

use crate::{
    access::{self, Access},
    collector::Collector,
    pages::{self, layout::PageCtx, sessions::Search},
    timeline::IncidentKind,
};

/// Most frames a session page shows.
const FRAMES_SHOWN: usize = 1000;
/// Most sessions one search scans (client-name searches read the listing).
const SEARCH_SCAN: usize = 5000;
/// Most sessions one principal delete removes (repeat for more).
const PRINCIPAL_DELETE_MAX: usize = 10_000;

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    /// The collector (snapshots, sources).
    pub collector: Arc<Collector>,
    /// The access rules.
    pub access: Access,
    /// No actions.
    pub read_only: bool,
    /// Ends live streams at shutdown.
    pub stop: CancellationToken,
}

/// The handlers' state.
pub type AppState = Arc<App>;

/// The console's router.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/redis", get(redis_page))
        .route("/timeline", get(timeline_page))
        .route("/analytics", get(analytics_page))
        .route("/sessions", get(sessions_page))
        .route("/sessions/{id}", get(session_page))
        .route("/sessions/{id}/frames/{seq}", get(frame_payload))
        .route(
            "/sessions/{id}/delete",
            get(confirm_delete).post(delete_session),
        )
        .route(
            "/principals/delete",
            get(confirm_principal).post(delete_principal),
        )
        .route("/live/{page}", get(live))
        .route("/api/snapshot", get(snapshot_json))
        .route("/login", get(login_form).post(login))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(middleware::from_fn_with_state(app.clone(), access::guard))
        .with_state(app)
}

fn ctx(app: &App) -> PageCtx {
    PageCtx {
        read_only: app.read_only,
        csrf: app.access.csrf().to_owned(),
    }
}

async fn overview(State(app): State<AppState>) -> Markup {
    pages::overview::render(&app.collector.latest(), &ctx(&app))
}

async fn redis_page(State(app): State<AppState>) -> Markup {
    pages::redis::render(&app.collector.latest(), &ctx(&app))
}

async fn timeline_page(State(app): State<AppState>) -> Markup {
    pages::timeline::render(&app.collector.latest(), &ctx(&app))
}

async fn analytics_page(State(app): State<AppState>) -> Markup {
    pages::analytics::render(&app.collector.latest(), &ctx(&app))
}

async fn snapshot_json(State(app): State<AppState>) -> Response {
    Json(app.collector.latest().as_ref().clone()).into_response()
}

/// `event: fragments`, data `{"<element id>": "<html>", …}`, at every snapshot.
async fn live(State(app): State<AppState>, Path(page): Path<String>) -> Response {
    if pages::fragments(&page, &app.collector.latest()).is_none() {
        return (StatusCode::NOT_FOUND, "no such live page\n").into_response();
    }
    let stream = WatchStream::new(app.collector.subscribe())
        .map(move |s| {
            let parts = pages::fragments(&page, &s).unwrap_or_default();
            let map: serde_json::Map<String, serde_json::Value> = parts
                .into_iter()
                .map(|(id, m)| (id.to_owned(), serde_json::Value::String(m.into_string())))
                .collect();
            let data = serde_json::Value::Object(map).to_string();
            Ok::<_, Infallible>(Event::default().event("fragments").data(data))
        })
        .take_until(app.stop.clone().cancelled_owned());
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn unavailable(app: &App, what: &str, e: &shoal_core::Error) -> Response {
    let text = format!(
        "{what}: {}",
        shoal_core::redact::redact_text(&e.to_string())
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        pages::layout::message("Store error", &ctx(app), &text, "/sessions"),
    )
        .into_response()
}

fn not_found(app: &App, text: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        pages::layout::message("Not found", &ctx(app), text, "/sessions"),
    )
        .into_response()
}

async fn sessions_page(State(app): State<AppState>, Query(search): Query<Search>) -> Response {
    let store = &app.collector.sources().store;
    let q = search.q.trim().to_owned();
    let by = search.by.clone().unwrap_or_else(|| "id".into());
    let mut note = None;
    let results: Vec<Session> = if q.is_empty() {
        match store.list(&ListQuery::first(50)).await {
            Ok(p) => {
                note = Some("the first 50 sessions of the listing".to_owned());
                p.sessions
            }
            Err(e) => return unavailable(&app, "listing", &e),
        }
    } else if by == "id" {
        match SessionId::new(&q) {
            Err(_) => Vec::new(),
            Ok(id) => match store.get(&id).await {
                Ok(s) => s.into_iter().collect(),
                Err(e) => return unavailable(&app, "get", &e),
            },
        }
    } else {
        let filter = if by == "principal" {
            SessionFilter::default().with_principal(q.clone())
        } else {
            SessionFilter::default()
        };
        let needle = q.to_lowercase();
        let mut out = Vec::new();
        let mut cursor = None;
        let mut scanned = 0;
        loop {
            let page = match store
                .list(
                    &ListQuery::first(200)
                        .with_filter(filter.clone())
                        .with_cursor(cursor),
                )
                .await
            {
                Ok(p) => p,
                Err(e) => return unavailable(&app, "listing", &e),
            };
            scanned += page.sessions.len();
            out.extend(page.sessions.into_iter().filter(|s| {
                by == "principal"
                    || pages::sessions::client_name(s)
                        .is_some_and(|n| n.to_lowercase().contains(&needle))
            }));
            cursor = page.next_cursor;
            if cursor.is_none() || scanned >= SEARCH_SCAN || out.len() >= 500 {
                break;
            }
        }
        if cursor.is_some() {
            note = Some(format!(
                "stopped after {scanned} sessions; refine the search"
            ));
        }
        out
    };
    pages::sessions::render(&search, &results, note.as_deref(), &ctx(&app)).into_response()
}

async fn load(app: &App, id: &str) -> Result<Session, Response> {
    let Ok(sid) = SessionId::new(id) else {
        return Err(not_found(app, "not a session id"));
    };
    match app.collector.sources().store.get(&sid).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(not_found(
            app,
            "no such session (ended, expired or never created)",
        )),
        Err(e) => Err(unavailable(app, "get", &e)),
    }
}

async fn session_page(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let s = match load(&app, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let store = &app.collector.sources().store;
    let mut frames = Vec::new();
    let mut after = 0;
    let mut more = false;
    loop {
        match store.frames(&s.id, &FrameQuery::after(after, 500)).await {
            Ok(p) => {
                after = p.frames.last().map(|f| f.seq).unwrap_or(after);
                frames.extend(p.frames);
                if !p.has_more {
                    break;
                }
                if frames.len() >= FRAMES_SHOWN {
                    more = true;
                    break;
                }
            }
            Err(e) => return unavailable(&app, "frames", &e),
        }
    }
    frames.truncate(FRAMES_SHOWN);
    let pending = match store.list_pending(&s.id).await {
        Ok(p) => p,
        Err(e) => return unavailable(&app, "pending requests", &e),
    };
    pages::session::render(&s, &frames, more, &pending, &ctx(&app)).into_response()
}

async fn frame_payload(
    State(app): State<AppState>,
    Path((id, seq)): Path<(String, u64)>,
    req: Request,
) -> Response {
    let s = match load(&app, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let page = match app
        .collector
        .sources()
        .store
        .frames(&s.id, &FrameQuery::after(seq.saturating_sub(1), 1))
        .await
    {
        Ok(p) => p,
        Err(e) => return unavailable(&app, "frames", &e),
    };
    match page.frames.into_iter().find(|f| f.seq == seq) {
        Some(f) => {
            tracing::info!(target: "shoal::audit", peer = ?access::peer(&req), session = %s.id.as_str(), seq, "console: frame payload shown");
            pages::session::payload(s.id.as_str(), &f, &ctx(&app)).into_response()
        }
        None => not_found(&app, "no such frame (trimmed or never written)"),
    }
}

/// An action's form.
#[derive(Debug, Deserialize)]
struct ActionForm {
    csrf: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    principal: String,
}

/// Refuses an action unless it is allowed, same-site and carries the CSRF token.
fn action_refused(app: &App, headers: &HeaderMap, form: &ActionForm) -> Option<Response> {
    if app.read_only {
        return Some((StatusCode::FORBIDDEN, "the console is read-only\n").into_response());
    }
    if !access::same_site(headers) || !app.access.csrf_ok(&form.csrf) {
        return Some((StatusCode::FORBIDDEN, "cross-site or stale form refused\n").into_response());
    }
    if form.confirm != "yes" {
        return Some((StatusCode::BAD_REQUEST, "not confirmed\n").into_response());
    }
    None
}

async fn confirm_delete(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    if app.read_only {
        return (StatusCode::FORBIDDEN, "the console is read-only\n").into_response();
    }
    let s = match load(&app, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    pages::layout::confirm(
        "Delete session",
        &ctx(&app),
        &format!(
            "Delete session {} ({} frames)? Its client gets 404 on every proxy and must start a new session.",
            s.id.as_str(),
            s.frame_count
        ),
        &format!("/sessions/{}/delete", s.id.as_str()),
        None,
    )
    .into_response()
}

async fn delete_session(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    req_peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(r) = action_refused(&app, &headers, &form) {
        return r;
    }
    let Ok(sid) = SessionId::new(&id) else {
        return not_found(&app, "not a session id");
    };
    let sources = app.collector.sources();
    let outcome = sources.store.delete(&sid).await;
    tracing::info!(target: "shoal::audit", peer = %req_peer.0.ip(), session = %sid.as_str(), outcome = ?outcome.as_ref().map_err(|e| e.to_string()), "console: delete session");
    match outcome {
        Ok(deleted) => {
            if let Some(bus) = &sources.bus {
                bus.publish(std::slice::from_ref(&sid));
            }
            if deleted {
                app.collector.note(
                    IncidentKind::SessionsDeleted,
                    "console",
                    format!("session {} deleted by an operator", sid.as_str()),
                );
            }
            let text = if deleted {
                format!("Session {} deleted.", sid.as_str())
            } else {
                format!("Session {} was already gone.", sid.as_str())
            };
            pages::layout::message("Deleted", &ctx(&app), &text, "/sessions").into_response()
        }
        Err(e) => unavailable(&app, "delete", &e),
    }
}

/// `?principal=`.
#[derive(Debug, Deserialize)]
struct PrincipalQuery {
    principal: String,
}

async fn principal_ids(
    app: &App,
    principal: &str,
) -> Result<(Vec<SessionId>, bool), shoal_core::Error> {
    let store = &app.collector.sources().store;
    let filter = SessionFilter::default().with_principal(principal.to_owned());
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let p = store
            .list(
                &ListQuery::first(500)
                    .with_filter(filter.clone())
                    .with_cursor(cursor),
            )
            .await?;
        ids.extend(p.sessions.into_iter().map(|s| s.id));
        cursor = p.next_cursor;
        if cursor.is_none() {
            return Ok((ids, false));
        }
        if ids.len() >= PRINCIPAL_DELETE_MAX {
            ids.truncate(PRINCIPAL_DELETE_MAX);
            return Ok((ids, true));
        }
    }
}

async fn confirm_principal(
    State(app): State<AppState>,
    Query(q): Query<PrincipalQuery>,
) -> Response {
    if app.read_only {
        return (StatusCode::FORBIDDEN, "the console is read-only\n").into_response();
    }
    let (ids, capped) = match principal_ids(&app, &q.principal).await {
        Ok(v) => v,
        Err(e) => return unavailable(&app, "listing", &e),
    };
    pages::layout::confirm(
        "Delete a principal's sessions",
        &ctx(&app),
        &format!(
            "Delete {}{} session(s) of principal {:?}? Their clients get 404 on every proxy.",
            ids.len(),
            if capped { " (the first)" } else { "" },
            q.principal
        ),
        "/principals/delete",
        Some(&q.principal),
    )
    .into_response()
}

async fn delete_principal(
    State(app): State<AppState>,
    headers: HeaderMap,
    req_peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Some(r) = action_refused(&app, &headers, &form) {
        return r;
    }
    let (ids, capped) = match principal_ids(&app, &form.principal).await {
        Ok(v) => v,
        Err(e) => return unavailable(&app, "listing", &e),
    };
    let sources = app.collector.sources();
    let mut deleted = 0usize;
    let mut failed = 0usize;
    for chunk in ids.chunks(100) {
        let results =
            futures_util::future::join_all(chunk.iter().map(|id| sources.store.delete(id))).await;
        for r in &results {
            match r {
                Ok(true) => deleted += 1,
                Ok(false) => {}
                Err(_) => failed += 1,
            }
        }
        if let Some(bus) = &sources.bus {
            bus.publish(chunk);
        }
    }
    tracing::info!(target: "shoal::audit", peer = %req_peer.0.ip(), principal = %form.principal, deleted, failed, capped, "console: delete a principal's sessions");
    app.collector.note(
        IncidentKind::SessionsDeleted,
        "console",
        format!(
            "{deleted} session(s) of principal {:?} deleted by an operator",
            form.principal
        ),
    );
    let mut text = format!("{deleted} session(s) of {:?} deleted.", form.principal);
    if failed > 0 {
        text.push_str(&format!(
            " {failed} could not be deleted (store errors): try again."
        ));
    }
    if capped {
        text.push_str(" More remain: repeat.");
    }
    pages::layout::message("Deleted", &ctx(&app), &text, "/sessions").into_response()
}

async fn login_form() -> Markup {
    pages::login(None)
}

/// The login form's body.
#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(app): State<AppState>,
    req_peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    if !app.access.token_ok(form.token.trim()) {
        tracing::info!(target: "shoal::audit", peer = %req_peer.0.ip(), "console: login refused");
        // A fixed delay makes guessing slow.
        tokio::time::sleep(Duration::from_millis(500)).await;
        return (StatusCode::UNAUTHORIZED, pages::login(Some("wrong token"))).into_response();
    }
    tracing::info!(target: "shoal::audit", peer = %req_peer.0.ip(), "console: login");
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/",
        access::COOKIE,
        app.access.login_value()
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../assets/console.css"),
    )
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../assets/console.js"),
    )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
