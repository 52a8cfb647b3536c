//! Who may open a session: the client's address (the TCP peer, or a trusted load balancer's
//! header) and principal, and the session quotas they are held to
//! ([`QuotaConfig`](crate::QuotaConfig)), counted in the store so every instance enforces the
//! same numbers. An admission is taken before any upstream work and given back when the
//! session is deleted, or when it could not be created.

use std::{
    net::{IpAddr, Ipv6Addr},
    time::Duration,
};

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use shoal_core::{
    QuotaBound, QuotaReply, QuotaRequest, QuotaRule, SessionId, quota::MAX_QUOTA_TIME,
};

use crate::{handlers::refuse, state::ProxyState};

/// The session metadata key that lists the subjects a session was admitted under (one per
/// line), so any instance can give the admission back on DELETE.
pub(crate) const ADMITTED_KEY: &str = "shoal.admitted";

/// The client's address as the proxy sees it, put on each request by the endpoint's
/// middleware.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientAddr(pub(crate) Option<IpAddr>);

impl ClientAddr {
    /// The address from `header` (its last valid address: the one the trusted balancer
    /// added) when configured and present, else the TCP peer's.
    pub(crate) fn of(headers: &HeaderMap, header: Option<&str>, peer: Option<IpAddr>) -> Self {
        let forwarded = header.and_then(|name| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(parse_ip)
                .next_back()
        });
        ClientAddr(forwarded.or(peer))
    }
}

/// An address as a balancer writes it: `192.0.2.1`, `2001:db8::1`, `[2001:db8::1]:443`,
/// `192.0.2.1:443`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    s.rsplit_once(':')?.0.parse().ok()
}

/// The quota subject of an address: IPv4 as is, IPv6 by its /64 (one subscriber's block).
pub(crate) fn address_subject(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("addr:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("addr:{v4}"),
            None => {
                let s = v6.segments();
                let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("addr:{net}/64")
            }
        },
    }
}

/// The quota subject of a principal: `principal:<p>`, or a SHA-256 fingerprint of it when it
/// is too long for a subject or holds control characters (a trusted header's value may be
/// anything).
pub(crate) fn principal_subject(p: &str) -> String {
    let subject = format!("principal:{p}");
    if subject.len() <= shoal_core::quota::MAX_QUOTA_SUBJECT
        && !subject.chars().any(char::is_control)
    {
        return subject;
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(p.as_bytes());
    format!("principal-sha256:{}", crate::state::hex(&digest))
}

/// Takes an admission for session `id` under the client's address and principal. `Err` is
/// the response to send: 429 with `Retry-After` (nothing admitted), or 503 when the store
/// cannot count. `Ok` lists the subjects admitted under.
pub(crate) async fn admit(
    inner: &ProxyState,
    id: &SessionId,
    addr: ClientAddr,
    principal: Option<&str>,
) -> Result<Vec<String>, Response> {
    let q = &inner.cfg.quota;
    let live_ttl = inner
        .store
        .limits()
        .session_ttl
        .clamp(Duration::from_millis(1), MAX_QUOTA_TIME);
    let mut wanted = Vec::with_capacity(2);
    if let Some(ip) = addr.0
        && (q.sessions_per_address > 0 || q.sessions_per_address_per_minute > 0)
    {
        wanted.push((
            address_subject(ip),
            q.sessions_per_address,
            q.sessions_per_address_per_minute,
        ));
    }
    if let Some(p) = principal
        && (q.sessions_per_principal > 0 || q.sessions_per_principal_per_minute > 0)
    {
        wanted.push((
            principal_subject(p),
            q.sessions_per_principal,
            q.sessions_per_principal_per_minute,
        ));
    }
    let mut admitted: Vec<String> = Vec::with_capacity(wanted.len());
    for (subject, max_live, per_minute) in wanted {
        let rule = QuotaRule {
            max_live,
            live_ttl,
            max_per_window: per_minute,
            window: Duration::from_secs(60),
        };
        let request = QuotaRequest::Admit {
            subject: &subject,
            member: id.as_str(),
            rule,
        };
        let refusal = match inner.store.quota(request).await {
            Ok(QuotaReply::Refused { bound, retry_after }) => {
                inner.metrics.quota_refusals.inc();
                let kind = subject.split(':').next().unwrap_or("client");
                tracing::info!(
                    bound = bound.as_str(),
                    kind,
                    "initialize refused by a session quota"
                );
                too_many(kind, bound, retry_after)
            }
            Ok(_) => {
                admitted.push(subject);
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "session quota could not be checked");
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    -32603,
                    "Service Unavailable: session store failed",
                )
            }
        };
        give_back(inner, id, &admitted, true).await;
        return Err(refusal);
    }
    Ok(admitted)
}

/// Gives an admission back: `cancel` when the session was never created (it then does not
/// count in the per-minute window either), else it ended (it still counts in its window).
/// Failures are logged: an admission not given back ages out with the session TTL.
pub(crate) async fn give_back(
    inner: &ProxyState,
    id: &SessionId,
    subjects: &[String],
    cancel: bool,
) {
    for subject in subjects {
        let request = if cancel {
            QuotaRequest::Cancel {
                subject,
                member: id.as_str(),
            }
        } else {
            QuotaRequest::Release {
                subject,
                member: id.as_str(),
            }
        };
        if let Err(e) = inner.store.quota(request).await {
            tracing::debug!(session = %id, error = %e, "session quota admission not given back; it ages out");
        }
    }
}

/// 429 with `Retry-After` (whole seconds, rounded up) and a JSON-RPC error.
fn too_many(kind: &str, bound: QuotaBound, retry_after: Duration) -> Response {
    let what = match bound {
        QuotaBound::Live => "too many open sessions",
        QuotaBound::Window => "too many new sessions per minute",
    };
    let kind = if kind == "principal" {
        "principal"
    } else {
        "client address"
    };
    let mut r = refuse(
        StatusCode::TOO_MANY_REQUESTS,
        -32000,
        &format!("Too Many Requests: {what} for this {kind}"),
    );
    let secs = retry_after.as_millis().div_ceil(1000).max(1);
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_from_the_trusted_header_or_the_peer() {
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.2"),
        );
        let peer = Some(IpAddr::from([127, 0, 0, 1]));
        let a = ClientAddr::of(&h, Some("x-forwarded-for"), peer);
        assert_eq!(a.0, Some(IpAddr::from([198, 51, 100, 2])), "the last hop");
        let a = ClientAddr::of(&h, None, peer);
        assert_eq!(a.0, peer, "not configured: the peer");
        let mut bad = HeaderMap::new();
        bad.append("x-forwarded-for", HeaderValue::from_static("nonsense"));
        assert_eq!(ClientAddr::of(&bad, Some("x-forwarded-for"), peer).0, peer);
        for (s, ip) in [
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("192.0.2.1:8080", "192.0.2.1"),
            (" 2001:db8::2 ", "2001:db8::2"),
        ] {
            assert_eq!(parse_ip(s), ip.parse().ok(), "{s}");
        }
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(address_subject(a), address_subject(b));
        assert_eq!(address_subject(a), "addr:2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_subject(mapped), "addr:192.0.2.7");
    }

    #[test]
    fn any_principal_makes_a_valid_subject() {
        assert_eq!(principal_subject("alice"), "principal:alice");
        for p in ["x".repeat(10_000), "a\u{7}b".to_owned()] {
            let s = principal_subject(&p);
            let r = QuotaRequest::Release {
                subject: &s,
                member: "m",
            };
            assert!(r.validate().is_ok(), "{s}");
        }
    }

    #[test]
    fn refusals_say_when_to_come_back() {
        let r = too_many("addr", QuotaBound::Window, Duration::from_millis(1500));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("2"))
        );
    }
}
