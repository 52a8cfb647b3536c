//! Which of a client's request headers reach an HTTP upstream: an allowlist of what MCP
//! needs, plus what the operator lists. Everything else stays at the proxy — cookies, proxy
//! credentials, a client-sent copy of the principal header, tracing baggage, and every header
//! the client names in `Connection` (RFC 9110 §7.6.1).

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::protocol::headers as h;

/// Request headers forwarded to an HTTP upstream by default: the MCP transport's own
/// (`Accept`, `Content-Type`, `MCP-Protocol-Version`, the 2026-07-28 mirrored `Mcp-Method` and
/// `Mcp-Name`), `User-Agent`, and W3C trace context (`traceparent`, `tracestate`).
/// `Authorization` is forwarded too unless
/// [`ProxyConfig::forward_authorization`](crate::ProxyConfig::forward_authorization) is off.
/// The proxy sets `Mcp-Session-Id`, `Last-Event-ID` and `Host` itself. Every
/// `Mcp-Param-<Name>` header (2026-07-28 tool arguments mirrored in headers) is forwarded
/// too.
pub const FORWARDED_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    h::PROTOCOL_VERSION,
    h::MCP_METHOD,
    h::MCP_NAME,
    "user-agent",
    "traceparent",
    "tracestate",
];

/// The name prefix of the 2026-07-28 headers that mirror tool arguments.
const MCP_PARAM_PREFIX: &str = "mcp-param-";

/// Headers that can never be listed in `forward_headers`: hop-by-hop ones and the ones the
/// proxy owns.
const NEVER: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "accept-encoding",
    h::SESSION_ID,
    h::LAST_EVENT_ID,
];

/// Checks a `forward_headers` entry: a valid header name, not hop-by-hop or owned by the
/// proxy, not the principal header.
pub(crate) fn check_forwardable(name: &str, principal_header: Option<&str>) -> Result<(), String> {
    let parsed =
        HeaderName::try_from(name).map_err(|_| format!("{name:?} is not a header name"))?;
    if NEVER.contains(&parsed.as_str()) {
        return Err(format!(
            "{name:?} is hop-by-hop or set by the proxy and cannot be forwarded"
        ));
    }
    if principal_header.is_some_and(|p| p.eq_ignore_ascii_case(name)) {
        return Err(format!(
            "{name:?} is the principal header; the proxy forwards the verified principal itself"
        ));
    }
    Ok(())
}

/// The forwarding rules of one proxy.
#[derive(Clone, Debug)]
pub(crate) struct ForwardPolicy {
    allowed: Vec<HeaderName>,
    /// The trusted principal header, forwarded with the value the proxy verified.
    principal: Option<HeaderName>,
}

impl ForwardPolicy {
    /// The defaults, `Authorization` if `authorization`, and `extra` (already checked).
    pub(crate) fn new(extra: &[String], authorization: bool, principal: Option<&str>) -> Self {
        let mut allowed: Vec<HeaderName> = FORWARDED_HEADERS
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect();
        if authorization {
            allowed.push(header::AUTHORIZATION);
        }
        allowed.extend(
            extra
                .iter()
                .filter_map(|n| HeaderName::try_from(n.as_str()).ok()),
        );
        let principal = principal.and_then(|p| HeaderName::try_from(p).ok());
        allowed.retain(|n| Some(n) != principal.as_ref());
        ForwardPolicy { allowed, principal }
    }

    /// The headers to send upstream for a request with `client` headers. The trusted principal
    /// header, when one is configured, is set by the authenticating layer in front of the
    /// proxy: it is sent on as that layer set it (trimmed); without one configured, no client
    /// copy of any principal header is forwarded (it is not on the allowlist).
    pub(crate) fn upstream_headers(&self, client: &HeaderMap) -> HeaderMap {
        let named_in_connection: Vec<String> = client
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        let mut out = HeaderMap::with_capacity(self.allowed.len() + 2);
        for name in &self.allowed {
            if named_in_connection.iter().any(|t| t == name.as_str()) {
                continue;
            }
            for v in client.get_all(name) {
                out.append(name.clone(), v.clone());
            }
        }
        // 2026-07-28 tool arguments mirrored in headers (`Mcp-Param-<Name>`): part of the
        // protocol, validated by the upstream against the body.
        for (name, v) in client {
            if name.as_str().starts_with(MCP_PARAM_PREFIX)
                && !named_in_connection.iter().any(|t| t == name.as_str())
            {
                out.append(name.clone(), v.clone());
            }
        }
        if let Some(name) = &self.principal
            && let Some(value) = client
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .and_then(|v| HeaderValue::from_str(v).ok())
        {
            out.insert(name.clone(), value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_allowed_headers_pass_and_connection_named_ones_never() {
        let p = ForwardPolicy::new(&["x-request-id".into()], true, None);
        let out = p.upstream_headers(&client(&[
            ("accept", "application/json, text/event-stream"),
            ("authorization", "Bearer t"),
            ("cookie", "sid=1"),
            ("x-authenticated-user", "mallory"),
            ("x-request-id", "r1"),
            ("connection", "close, X-Request-Id"),
            ("proxy-authorization", "Basic x"),
            ("mcp-session-id", "client-chosen"),
            ("mcp-param-region", "us-west1"),
        ]));
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            vec!["accept", "authorization", "mcp-param-region"],
            "{out:?}"
        );
        let out = p.upstream_headers(&client(&[
            ("mcp-param-region", "us-west1"),
            ("connection", "mcp-param-region"),
        ]));
        assert!(
            out.is_empty(),
            "a header named in Connection passed: {out:?}"
        );
    }

    #[test]
    fn the_principal_header_carries_the_verified_value_only() {
        let p = ForwardPolicy::new(&[], false, Some("x-authenticated-user"));
        let out = p.upstream_headers(&client(&[
            ("x-authenticated-user", "alice"),
            ("authorization", "Bearer t"),
        ]));
        assert_eq!(
            out.get("x-authenticated-user"),
            Some(&HeaderValue::from_static("alice"))
        );
        assert!(out.get("authorization").is_none(), "switched off");
        let unset = ForwardPolicy::new(&[], true, None);
        let out = unset.upstream_headers(&client(&[("x-authenticated-user", "mallory")]));
        assert!(out.get("x-authenticated-user").is_none());
    }

    #[test]
    fn forward_headers_entries_are_checked() {
        assert!(check_forwardable("x-request-id", None).is_ok());
        for bad in ["host", "Connection", "mcp-session-id", "bad header", ""] {
            assert!(check_forwardable(bad, None).is_err(), "{bad}");
        }
        assert!(check_forwardable("X-User", Some("x-user")).is_err());
    }
}
