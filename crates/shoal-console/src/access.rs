//! Who may use the console and how: the `Host` allowlist (against DNS rebinding), loopback
//! or a token, the login cookie, CSRF tokens on every action, security headers, and the
//! audit log.
//!
//! - A client on loopback needs nothing more; any other needs the token (`Authorization:
//!   Bearer <token>`, or the cookie the login form sets after it was typed once). Without a
//!   token configured the console refuses to listen anywhere but loopback.
//! - The login cookie holds a random value of this process, never the token; `HttpOnly`,
//!   `SameSite=Strict`.
//! - Every action is a POST carrying this process's CSRF token from the page's form, and is
//!   refused when `Origin` or `Sec-Fetch-Site` says it came from another site.
//! - Every action and every payload shown is logged at `info` on target `shoal::audit`.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::routes::AppState;

/// The login cookie's name.
pub const COOKIE: &str = "shoal_console";

/// The access rules of one console process.
#[derive(Clone)]
pub struct Access {
    token: Option<String>,
    allowed_hosts: Vec<String>,
    csrf: String,
    login_value: String,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allowed_hosts", &self.allowed_hosts)
            .finish_non_exhaustive()
    }
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    // Without randomness the tokens would be guessable: a zeroed buffer is refused below.
    if getrandom::fill(&mut b).is_err() {
        return String::new();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compares two strings in time that depends only on their lengths.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Access {
    /// Rules for `token` (required off loopback) and `allowed_hosts` (empty: loopback names).
    /// Errors when the system gives no randomness for the CSRF and login values.
    pub fn new(token: Option<String>, allowed_hosts: Vec<String>) -> Result<Self, &'static str> {
        let csrf = random_hex();
        let login_value = random_hex();
        if csrf.is_empty() || login_value.is_empty() {
            return Err("no randomness for the console's CSRF and login values");
        }
        Ok(Access {
            token,
            allowed_hosts,
            csrf,
            login_value,
        })
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The CSRF token forms carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `given` is the CSRF token.
    pub fn csrf_ok(&self, given: &str) -> bool {
        same(given, &self.csrf)
    }

    /// Whether `given` is the token.
    pub fn token_ok(&self, given: &str) -> bool {
        self.token.as_deref().is_some_and(|t| same(given, t))
    }

    /// The login cookie's value.
    pub fn login_value(&self) -> &str {
        &self.login_value
    }

    /// Whether `host` (the `Host` header) is allowed.
    pub fn host_ok(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return false };
        let host = host.to_ascii_lowercase();
        let name = match host.strip_prefix('[') {
            Some(v6) => v6
                .split(']')
                .next()
                .map(|h| format!("[{h}]"))
                .unwrap_or_default(),
            None => host.split(':').next().unwrap_or("").to_owned(),
        };
        if self.allowed_hosts.is_empty() {
            return ["localhost", "127.0.0.1", "[::1]"].contains(&name.as_str());
        }
        self.allowed_hosts.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            a == "*" || a == host || a == name
        })
    }

    /// Whether the request proves the token (bearer header or login cookie).
    pub fn authenticated(&self, headers: &HeaderMap) -> bool {
        if self.token.is_none() {
            return false;
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.token_ok(t.trim()));
        bearer || cookie(headers, COOKIE).is_some_and(|c| same(&c, &self.login_value))
    }
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Whether a POST comes from the console's own pages: `Origin` (when sent) is this host, and
/// `Sec-Fetch-Site` (when sent) is `same-origin` or `none`.
pub fn same_site(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_ok = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(o) => host.is_some_and(|h| {
            o.eq_ignore_ascii_case(&format!("http://{h}"))
                || o.eq_ignore_ascii_case(&format!("https://{h}"))
        }),
    };
    let fetch_ok = match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None => true,
        Some(s) => s == "same-origin" || s == "none",
    };
    origin_ok && fetch_ok
}

/// The peer's address.
pub fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The middleware: host, then who, then headers on the way out.
pub async fn guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let access = &app.access;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !access.host_ok(host.as_deref()) {
        return secured((StatusCode::FORBIDDEN, "Host not allowed\n").into_response());
    }
    let from = peer(&req);
    let local = from.is_some_and(is_loopback);
    let login = req.uri().path() == "/login";
    let assets = req.uri().path().starts_with("/assets/");
    if !local && !access.authenticated(req.headers()) && !login && !assets {
        tracing::info!(target: "shoal::audit", peer = ?from, path = %req.uri().path(), "console: unauthenticated request refused");
        let resp = if req.method() == Method::GET && access.has_token() {
            (StatusCode::UNAUTHORIZED, crate::pages::login(None)).into_response()
        } else {
            (
                StatusCode::UNAUTHORIZED,
                "a token is required from this address\n",
            )
                .into_response()
        };
        return secured(resp);
    }
    secured(next.run(req).await)
}

/// Adds the console's security headers.
fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_tokens_cookies_and_origins() {
        let a = Access::new(Some("0123456789abcdef-token".into()), vec![])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(a.host_ok(Some("127.0.0.1:7070")));
        assert!(a.host_ok(Some("[::1]:7070")));
        assert!(a.host_ok(Some("LOCALHOST")));
        assert!(!a.host_ok(Some("evil.example:7070")));
        assert!(!a.host_ok(None));
        let b =
            Access::new(None, vec!["console.example.com".into()]).unwrap_or_else(|e| panic!("{e}"));
        assert!(b.host_ok(Some("console.example.com:443")));
        assert!(!b.host_ok(Some("127.0.0.1")));

        let mut h = HeaderMap::new();
        assert!(!a.authenticated(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef-token"),
        );
        assert!(a.authenticated(&h));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef-tokeX"),
        );
        assert!(!a.authenticated(&h));
        let mut c = HeaderMap::new();
        c.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={}", a.login_value()))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert!(a.authenticated(&c));
        // The token itself is not a valid cookie.
        let mut t = HeaderMap::new();
        t.insert(
            header::COOKIE,
            HeaderValue::from_static("shoal_console=0123456789abcdef-token"),
        );
        assert!(!a.authenticated(&t));

        let mut o = HeaderMap::new();
        o.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7070"));
        assert!(same_site(&o));
        o.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7070"),
        );
        assert!(same_site(&o));
        o.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_site(&o));
        o.remove("sec-fetch-site");
        o.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_site(&o));
        assert!(a.csrf_ok(a.csrf()));
        assert!(!a.csrf_ok("nope"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
