//! An MCP Streamable HTTP upstream, over one pooled `reqwest` client.

use std::{collections::VecDeque, time::Duration};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::{ForwardPolicy, Reply, UpstreamError};
use crate::{
    error::ConfigError,
    protocol::{self, headers as h},
    sse::{SseError, SseParser},
};

/// Response headers passed back to the client.
pub(crate) const PASS_BACK: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::WWW_AUTHENTICATE,
    header::RETRY_AFTER,
    header::ALLOW,
];

/// The HTTP upstream. `Debug` shows its URL redacted.
#[derive(Clone)]
pub(crate) struct HttpUpstream {
    client: reqwest::Client,
    url: reqwest::Url,
    max_message: usize,
    timeout: Duration,
    forward: ForwardPolicy,
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("url", &shoal_core::redact::redact_url(self.url.as_str()))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpUpstream {
    pub(crate) fn new(
        url: &str,
        timeout: Duration,
        max_message: usize,
        forward: ForwardPolicy,
    ) -> Result<Self, ConfigError> {
        let url = reqwest::Url::parse(url).map_err(|e| ConfigError::UpstreamUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        crate::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        Ok(HttpUpstream {
            client,
            url,
            max_message,
            timeout,
            forward,
        })
    }

    fn request(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        upstream_session: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut hm = self.forward.upstream_headers(client_headers);
        if let Some(sid) = upstream_session.and_then(|s| HeaderValue::from_str(s).ok()) {
            hm.insert(h::SESSION_ID, sid);
        }
        // The Host header comes from the upstream URL (reqwest sets it), so upstreams that
        // check Host against their own address accept it.
        self.client.request(method, self.url.clone()).headers(hm)
    }

    /// POST a body.
    pub(crate) async fn post(
        &self,
        client_headers: &HeaderMap,
        upstream_session: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, UpstreamError> {
        let mut req = self
            .request(Method::POST, client_headers, upstream_session)
            .body(body);
        if !client_headers.contains_key(header::CONTENT_TYPE) {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        self.send(req).await
    }

    /// Opens a GET stream, resuming after `last_event_id` (the upstream's own id) if given.
    pub(crate) async fn get(
        &self,
        client_headers: &HeaderMap,
        upstream_session: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<Reply, UpstreamError> {
        let mut req = self.request(Method::GET, client_headers, upstream_session);
        if !client_headers.contains_key(header::ACCEPT) {
            req = req.header(header::ACCEPT, "text/event-stream");
        }
        if let Some(id) = last_event_id {
            req = req.header(h::LAST_EVENT_ID, id);
        }
        self.send(req).await
    }

    /// DELETE the upstream session.
    pub(crate) async fn delete(
        &self,
        client_headers: &HeaderMap,
        upstream_session: Option<&str>,
    ) -> Result<StatusCode, UpstreamError> {
        let req = self.request(Method::DELETE, client_headers, upstream_session);
        let resp = tokio::time::timeout(self.timeout, req.send())
            .await
            .map_err(|_| UpstreamError("upstream timed out".into()))?
            .map_err(|e| client_error("upstream", Some(&self.url), e))?;
        Ok(resp.status())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Reply, UpstreamError> {
        let resp = tokio::time::timeout(self.timeout, req.send())
            .await
            .map_err(|_| UpstreamError("upstream timed out".into()))?
            .map_err(|e| client_error("upstream", Some(&self.url), e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if status.is_success() && protocol::is_event_stream(headers.get(header::CONTENT_TYPE)) {
            let parser = SseParser::new(self.max_message);
            let state = (resp.bytes_stream(), parser, VecDeque::new(), false);
            let events = futures_util::stream::unfold(
                state,
                |(mut body, mut parser, mut q, mut done)| async move {
                    loop {
                        if let Some(ev) = q.pop_front() {
                            return Some((Ok(ev), (body, parser, q, done)));
                        }
                        if done {
                            return None;
                        }
                        match body.next().await {
                            None => {
                                parser.finish();
                                return None;
                            }
                            Some(Err(e)) => {
                                done = true;
                                return Some((
                                    Err(client_error("upstream stream", None, e)),
                                    (body, parser, q, done),
                                ));
                            }
                            Some(Ok(chunk)) => match parser.push(&chunk) {
                                Ok(evs) => q.extend(evs),
                                Err(SseError::TooLarge) => {
                                    done = true;
                                    return Some((
                                        Err(UpstreamError::from("upstream event too large")),
                                        (body, parser, q, done),
                                    ));
                                }
                            },
                        }
                    }
                },
            );
            let events: super::EventStream = Box::pin(events);
            return Ok(Reply::Stream {
                status,
                headers,
                events,
            });
        }
        let body = read_limited(resp, self.max_message).await?;
        Ok(Reply::Full {
            status,
            headers,
            body,
        })
    }
}

/// An HTTP client error as an [`UpstreamError`]: `what`, the upstream's URL redacted (when
/// given), the error's own text without its URL (which would carry the upstream's query
/// tokens), and each of its causes once.
fn client_error(what: &str, url: Option<&reqwest::Url>, e: reqwest::Error) -> UpstreamError {
    let e = e.without_url();
    let mut text = match url {
        Some(url) => format!(
            "{what} {}: {e}",
            shoal_core::redact::redact_url(url.as_str())
        ),
        None => format!("{what}: {e}"),
    };
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    UpstreamError(text)
}

async fn read_limited(resp: reqwest::Response, max: usize) -> Result<Bytes, UpstreamError> {
    let mut out = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| client_error("upstream body", None, e))?;
        if out.len() + chunk.len() > max {
            return Err(UpstreamError(format!(
                "upstream body larger than {max} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn a_refused_request_names_the_upstream_without_its_credentials() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://u:PLANTEDPASS@127.0.0.1:{closed}/mcp?token=PLANTEDTOKEN");
        let upstream = HttpUpstream::new(
            &url,
            Duration::from_secs(10),
            1024,
            ForwardPolicy::new(&[], true, None),
        )
        .unwrap();
        let Err(e) = upstream.post(&HeaderMap::new(), None, Bytes::new()).await else {
            panic!("nothing listens on port {closed}");
        };
        // The stored text itself is clean, not only what Display and Debug make of it.
        let stored = &e.0;
        assert!(
            !stored.contains("PLANTED") && !format!("{upstream:?}").contains("PLANTED"),
            "{stored}"
        );
        let expected = format!("upstream http://u:***@127.0.0.1:{closed}/mcp?token=***: ");
        assert!(stored.starts_with(&expected), "{stored}");
        assert!(
            stored.to_lowercase().contains("connect"),
            "the cause is kept: {stored}"
        );
    }
}
