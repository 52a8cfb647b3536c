//! The session's standalone stream: the upstream's GET stream, read by the proxy.
//!
//! A server may send requests and notifications with no related request on its standalone
//! stream; a server drops them while no GET is open. A client opens its GET and at once
//! POSTs a tool call; through a proxy the POST can overtake the GET, and the server's request
//! is lost. So the proxy opens the standalone stream upstream itself when the client's
//! `notifications/initialized` passes, before acknowledging it, and records the stream under
//! one id ([`STANDALONE`]) on every instance: a client's GET, on any instance and at any time,
//! replays it from its start (leaving out server requests already answered) and continues
//! live. One instance holds the upstream stream (a lease); when it dies, a follower of the
//! stream or the next instance to load the session opens it again.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};

use super::{Kind, PumpSpec, STANDALONE, spawn_pump};
use crate::{
    state::{Live, ProxyState},
    upstream::{Reply, UpstreamError},
};

/// Where the session's standalone stream stands after [`ensure_standalone`].
pub(crate) enum Standalone {
    /// This instance or another one reads it upstream.
    Open,
    /// The upstream answered the GET without a stream (e.g. 405: it has none); the reply is
    /// for the client.
    Refused(Reply),
}

/// The headers of the proxy's own GET: the client's, minus what belongs to a POST body.
fn get_headers(client: &HeaderMap) -> HeaderMap {
    let mut hm = client.clone();
    hm.remove(header::CONTENT_TYPE);
    hm.remove(header::CONTENT_LENGTH);
    hm.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    hm
}

/// Makes sure some instance reads the session's standalone stream upstream: opens it here
/// unless this instance already does or another live instance holds its lease. With a stdio
/// upstream every instance reads its own server process's stream.
///
/// The work runs in its own task, so a caller that stops waiting (a client that hangs up, a
/// deadline) never leaves it half done.
pub(crate) async fn ensure_standalone(
    inner: &Arc<ProxyState>,
    live: &Arc<Live>,
    client_headers: &HeaderMap,
) -> Result<Standalone, UpstreamError> {
    let task = tokio::spawn(open(inner.clone(), live.clone(), client_headers.clone()));
    task.await
        .unwrap_or_else(|e| Err(UpstreamError(format!("standalone stream task failed: {e}"))))
}

async fn open(
    inner: Arc<ProxyState>,
    live: Arc<Live>,
    client_headers: HeaderMap,
) -> Result<Standalone, UpstreamError> {
    let (inner, live, client_headers) = (&inner, &live, &client_headers);
    let Some(wake) = inner.try_register_pump(&live.id, STANDALONE) else {
        return Ok(Standalone::Open);
    };
    let leased = inner.http.is_some();
    if leased {
        match inner.claim_lease(&live.id, STANDALONE).await {
            Ok(true) => {}
            Ok(false) => {
                inner.unregister_pump(&live.id, STANDALONE);
                return Ok(Standalone::Open);
            }
            Err(e) => {
                inner.unregister_pump(&live.id, STANDALONE);
                return Err(UpstreamError(format!(
                    "session store: cannot take the standalone stream: {e}"
                )));
            }
        }
    }
    let headers = get_headers(client_headers);
    // A session bridged to a 2026 upstream listens for the resources it subscribed to.
    let mut listen_resources = None;
    if live.modern_meta.is_some() {
        listen_resources = Some(match inner.store.get(&live.id).await {
            Ok(Some(s)) => crate::bridge::modern_upstream::subscribed(&s),
            _ => Vec::new(),
        });
    }
    let reply = match (&inner.http, &live.stdio) {
        (Some(http), _) => match &live.modern_meta {
            Some(meta) => {
                crate::bridge::modern_upstream::listen(
                    http,
                    client_headers,
                    meta,
                    live.id.as_str(),
                    listen_resources.as_deref().unwrap_or_default(),
                )
                .await
            }
            None => {
                http.get(&headers, live.upstream_session_id.as_deref(), None)
                    .await
            }
        },
        (None, Some(p)) => p.get(),
        (None, None) => Err(UpstreamError("no upstream".into())),
    };
    let release = || async {
        inner.unregister_pump(&live.id, STANDALONE);
        if leased {
            let _ = inner.release_lease(&live.id, STANDALONE).await;
        }
    };
    match reply {
        Ok(Reply::Stream { events, .. }) => {
            tracing::debug!(session = %live.id, "standalone stream open upstream");
            spawn_pump(
                inner,
                live,
                PumpSpec {
                    stream: STANDALONE.to_owned(),
                    kind: Kind::Get,
                    events,
                    client: None,
                    client_headers: headers,
                    upstream_last: None,
                    lease_held: leased,
                    wake,
                    bridged_request: None,
                    listen_resources,
                },
            );
            Ok(Standalone::Open)
        }
        Ok(full) => {
            release().await;
            Ok(Standalone::Refused(full))
        }
        Err(e) => {
            release().await;
            Err(e)
        }
    }
}
