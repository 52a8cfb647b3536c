//! The demo's scripted MCP client: just enough of the Streamable HTTP client side (revision
//! 2025-11-25) to show a session moving between proxy instances — POST with JSON or SSE
//! answers, `Mcp-Session-Id`, resuming a cut SSE stream with `Last-Event-ID`, DELETE.

use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::upstream::PROTOCOL_VERSION;

/// The longest any one demo request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// One server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// Its `id:` (the proxy's event id), if any.
    pub(crate) id: Option<String>,
    /// Its `data:` lines joined by newlines (empty for a priming event).
    pub(crate) data: String,
}

impl SseEvent {
    /// The JSON-RPC message it carries, if any.
    pub(crate) fn message(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// Splits an SSE byte stream into events (`\n`, `\r\n` or `\r` line ends).
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buf: String,
    current: SseEvent,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.push_str(&String::from_utf8_lossy(bytes));
        let mut out = Vec::new();
        while let Some(end) = self.buf.find(['\n', '\r']) {
            let line: String = self.buf[..end].to_owned();
            let mut skip = end + 1;
            if self.buf[end..].starts_with("\r\n") {
                skip += 1;
            }
            self.buf.drain(..skip);
            if line.is_empty() {
                // A block with neither an id nor data (a comment, a lone `retry:`) is no event.
                let event = std::mem::take(&mut self.current);
                if event.id.is_some() || !event.data.is_empty() {
                    out.push(event);
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.current.id = Some(value.to_owned()),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
        out
    }
}

/// An open SSE response being read.
pub(crate) struct SseStream {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
}

impl SseStream {
    /// The next event, `None` when the stream ended.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            let chunk = tokio::time::timeout(REQUEST_TIMEOUT, self.body.next())
                .await
                .context("no event within 20 s")?;
            match chunk {
                Some(bytes) => self.ready.extend(self.parser.feed(&bytes?)),
                None => return Ok(None),
            }
        }
    }
}

/// What a POST got back.
pub(crate) enum PostReply {
    /// A JSON body.
    Json(Value),
    /// An SSE stream.
    Stream(SseStream),
    /// 202 Accepted, no body.
    Accepted,
}

/// The demo client: one MCP session, spoken to whichever proxy instance each call names.
#[derive(Debug)]
pub(crate) struct DemoClient {
    http: reqwest::Client,
    session: Option<String>,
}

impl DemoClient {
    /// A client without a session yet.
    pub(crate) fn new() -> anyhow::Result<DemoClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the demo's HTTP client")?;
        Ok(DemoClient {
            http,
            session: None,
        })
    }

    /// The session id the proxy minted, once initialized.
    pub(crate) fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, url)
            .header("accept", "application/json, text/event-stream");
        if let Some(s) = &self.session {
            r = r
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", PROTOCOL_VERSION);
        }
        r
    }

    /// Sends `initialize` to `url` and keeps the session id the proxy answers with.
    pub(crate) async fn initialize(&mut self, url: &str) -> anyhow::Result<Value> {
        let body = json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "shoal-demo-client", "version": env!("CARGO_PKG_VERSION")},
            },
        });
        let resp = self
            .request(reqwest::Method::POST, url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("initialize on {url}"))?;
        let sid = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let reply = read_reply(resp).await?;
        let Some(sid) = sid else {
            bail!("the proxy answered initialize without an Mcp-Session-Id");
        };
        self.session = Some(sid);
        match reply {
            PostReply::Json(v) => Ok(v),
            PostReply::Stream(mut s) => first_response(&mut s).await,
            PostReply::Accepted => bail!("initialize was answered without a body"),
        }
    }

    /// POSTs one JSON-RPC message.
    pub(crate) async fn post(&self, url: &str, message: &Value) -> anyhow::Result<PostReply> {
        let resp = self
            .request(reqwest::Method::POST, url)
            .header("content-type", "application/json")
            .body(message.to_string())
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        read_reply(resp).await
    }

    /// Resumes a stream with `GET` and `Last-Event-ID`.
    pub(crate) async fn resume(&self, url: &str, last_event_id: &str) -> anyhow::Result<SseStream> {
        let resp = self
            .request(reqwest::Method::GET, url)
            .header("last-event-id", last_event_id)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        match read_reply(resp).await? {
            PostReply::Stream(s) => Ok(s),
            _ => bail!("the resume on {url} was not answered with an SSE stream"),
        }
    }

    /// Deletes the session; returns the HTTP status.
    pub(crate) async fn delete(&self, url: &str) -> anyhow::Result<u16> {
        let resp = self
            .request(reqwest::Method::DELETE, url)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("DELETE {url}"))?;
        Ok(resp.status().as_u16())
    }

    /// POSTs `message` and returns only the HTTP status (for requests expected to fail).
    pub(crate) async fn post_status(&self, url: &str, message: &Value) -> anyhow::Result<u16> {
        let resp = self
            .request(reqwest::Method::POST, url)
            .header("content-type", "application/json")
            .body(message.to_string())
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        Ok(resp.status().as_u16())
    }
}

/// The first JSON-RPC response (a message with an `id` and no `method`) on `stream`.
pub(crate) async fn first_response(stream: &mut SseStream) -> anyhow::Result<Value> {
    while let Some(e) = stream.next().await? {
        if let Some(m) = e.message()
            && m.get("id").is_some()
            && m.get("method").is_none()
        {
            return Ok(m);
        }
    }
    bail!("the stream ended without a response")
}

async fn read_reply(resp: reqwest::Response) -> anyhow::Result<PostReply> {
    let status = resp.status();
    if status == reqwest::StatusCode::ACCEPTED {
        return Ok(PostReply::Accepted);
    }
    let is_sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        );
    }
    if is_sse {
        return Ok(PostReply::Stream(SseStream {
            body: resp.bytes_stream().boxed(),
            parser: SseParser::default(),
            ready: Default::default(),
        }));
    }
    let body = tokio::time::timeout(REQUEST_TIMEOUT, resp.bytes())
        .await
        .context("no body within 20 s")?
        .context("reading a reply")?;
    let v = serde_json::from_slice(&body).context("a reply that is not JSON")?;
    Ok(PostReply::Json(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_across_chunks_and_line_ends() {
        let mut p = SseParser::default();
        assert!(p.feed(b"id: a.1\r\ndata: {\"x\"").is_empty());
        let got = p.feed(b":1}\r\n\r\nid: a.2\ndata:\n\n: comment\n\nretry: 5\n\n");
        assert_eq!(
            got,
            vec![
                SseEvent {
                    id: Some("a.1".into()),
                    data: "{\"x\":1}".into()
                },
                SseEvent {
                    id: Some("a.2".into()),
                    data: String::new()
                },
            ]
        );
        assert_eq!(got[0].message(), Some(json!({"x": 1})));
    }
}
