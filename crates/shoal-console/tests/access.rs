//! Who may use the console: a client off loopback needs the token (bearer or the login
//! cookie); actions need the page's CSRF token, a same-site origin and a confirmation; a
//! read-only console refuses them. The requests carry the peer address a real connection
//! would (`ConnectInfo`): the tests' servers may listen on loopback only, so a client on
//! another address is given to the router directly.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{Request, StatusCode, header},
};
use http_body_util::BodyExt;
use shoal_console::{Console, ConsoleConfig, Sources};
use shoal_core::{MemoryStore, Session, SessionId, SessionStore, Transport};
use tower::ServiceExt;

const TOKEN: &str = "a-console-token-of-some-length";
const LOOPBACK: &str = "127.0.0.1:50000";
const REMOTE: &str = "203.0.113.7:50000";

fn console(token: Option<&str>, read_only: bool, store: Arc<dyn SessionStore>) -> Console {
    let mut config = ConsoleConfig::default();
    config.token = token.map(str::to_owned);
    config.read_only = read_only;
    Console::new(
        config,
        Sources {
            store,
            redis: None,
            bus: None,
        },
    )
    .unwrap()
}

fn req(method: &str, path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1:7070")
}

async fn send(
    c: &Console,
    from: &str,
    r: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut r = r;
    let addr: SocketAddr = from.parse().unwrap();
    r.extensions_mut().insert(ConnectInfo(addr));
    let resp = c.router().oneshot(r).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn memory() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

#[tokio::test]
async fn off_loopback_the_token_is_required() {
    let c = console(Some(TOKEN), false, memory());
    let get = || req("GET", "/").body(Body::empty()).unwrap();
    assert_eq!(send(&c, LOOPBACK, get()).await.0, StatusCode::OK);
    let (status, headers, body) = send(&c, REMOTE, get()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("token is required"), "{body}");
    assert!(headers.get(header::CONTENT_SECURITY_POLICY).is_some());
    // The snapshot, the live stream and the actions are refused the same way.
    for path in ["/api/snapshot", "/live/overview", "/sessions"] {
        let r = req("GET", path).body(Body::empty()).unwrap();
        assert_eq!(
            send(&c, REMOTE, r).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let bearer = req("GET", "/")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&c, REMOTE, bearer).await.0, StatusCode::OK);
    let wrong = req("GET", "/")
        .header(
            header::AUTHORIZATION,
            "Bearer a-console-token-of-some-lengtX",
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&c, REMOTE, wrong).await.0, StatusCode::UNAUTHORIZED);

    // The login form sets a cookie that is not the token, and that cookie is accepted.
    let bad = req("POST", "/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("token=guess"))
        .unwrap();
    assert_eq!(send(&c, REMOTE, bad).await.0, StatusCode::UNAUTHORIZED);
    let good = req("POST", "/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={TOKEN}")))
        .unwrap();
    let (status, headers, _) = send(&c, REMOTE, good).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(TOKEN),
        "the cookie must not carry the token"
    );
    let value = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = req("GET", "/")
        .header(header::COOKIE, value)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&c, REMOTE, with_cookie).await.0, StatusCode::OK);
}

#[tokio::test]
async fn without_a_token_nothing_is_served_off_loopback() {
    let c = console(None, false, memory());
    let r = req("GET", "/").body(Body::empty()).unwrap();
    assert_eq!(send(&c, REMOTE, r).await.0, StatusCode::UNAUTHORIZED);
    let login = req("POST", "/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("token="))
        .unwrap();
    assert_eq!(send(&c, REMOTE, login).await.0, StatusCode::UNAUTHORIZED);
    let foreign = Request::builder()
        .uri("/")
        .header(header::HOST, "evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&c, LOOPBACK, foreign).await.0, StatusCode::FORBIDDEN);
}

async fn stored(store: &Arc<dyn SessionStore>) -> SessionId {
    let id = SessionId::generate();
    store
        .create(Session::new(id.clone(), Transport::StreamableHttp))
        .await
        .unwrap();
    id
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

fn form(path: &str, body: String) -> Request<Body> {
    req("POST", path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "http://127.0.0.1:7070")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn a_delete_needs_the_csrf_token_the_same_site_and_a_confirmation() {
    let store = memory();
    let id = stored(&store).await;
    let c = console(None, false, store.clone());
    let path = format!("/sessions/{}/delete", id.as_str());
    let confirm = req("GET", &path).body(Body::empty()).unwrap();
    let (status, _, page) = send(&c, LOOPBACK, confirm).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&page);

    let forged = form(&path, "csrf=guess&confirm=yes".into());
    assert_eq!(send(&c, LOOPBACK, forged).await.0, StatusCode::FORBIDDEN);
    let mut cross = form(&path, format!("csrf={csrf}&confirm=yes"));
    cross
        .headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    assert_eq!(send(&c, LOOPBACK, cross).await.0, StatusCode::FORBIDDEN);
    let unconfirmed = form(&path, format!("csrf={csrf}"));
    assert_eq!(
        send(&c, LOOPBACK, unconfirmed).await.0,
        StatusCode::BAD_REQUEST
    );
    assert!(
        store.get(&id).await.unwrap().is_some(),
        "nothing deleted yet"
    );

    let (status, _, body) = send(
        &c,
        LOOPBACK,
        form(&path, format!("csrf={csrf}&confirm=yes")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("deleted"), "{body}");
    assert!(store.get(&id).await.unwrap().is_none());
    let page = req("GET", &format!("/sessions/{}", id.as_str()))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&c, LOOPBACK, page).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_principals_sessions_are_deleted_together_and_no_others() {
    let store = memory();
    let mut mine = Vec::new();
    for i in 0..5 {
        let id = SessionId::generate();
        let mut s = Session::new(id.clone(), Transport::StreamableHttp);
        s.principal = Some(if i < 3 { "alice" } else { "bob" }.into());
        store.create(s).await.unwrap();
        mine.push(id);
    }
    let c = console(None, false, store.clone());
    let (status, _, page) = send(
        &c,
        LOOPBACK,
        req("GET", "/principals/delete?principal=alice")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Delete 3 session(s)"), "{page}");
    let csrf = csrf_of(&page);
    let (status, _, body) = send(
        &c,
        LOOPBACK,
        form(
            "/principals/delete",
            format!("csrf={csrf}&confirm=yes&principal=alice"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("3 session(s)"), "{body}");
    for (i, id) in mine.iter().enumerate() {
        assert_eq!(
            store.get(id).await.unwrap().is_some(),
            i >= 3,
            "session {i}"
        );
    }
}

#[tokio::test]
async fn a_read_only_console_shows_but_never_acts() {
    let store = memory();
    let id = stored(&store).await;
    let c = console(None, true, store.clone());
    let page = req("GET", &format!("/sessions/{}", id.as_str()))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&c, LOOPBACK, page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("Delete this session"), "no action offered");
    assert!(body.contains("read-only"));
    let path = format!("/sessions/{}/delete", id.as_str());
    let confirm = req("GET", &path).body(Body::empty()).unwrap();
    assert_eq!(send(&c, LOOPBACK, confirm).await.0, StatusCode::FORBIDDEN);
    let post = form(&path, "csrf=x&confirm=yes".into());
    assert_eq!(send(&c, LOOPBACK, post).await.0, StatusCode::FORBIDDEN);
    assert!(store.get(&id).await.unwrap().is_some());
}
