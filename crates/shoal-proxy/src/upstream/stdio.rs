//! A stdio MCP server: one child process per session (and instance), newline-delimited JSON.
//!
//! Messages the server writes are routed to the client: a response to the POST stream that
//! carries its request; anything else (notifications, server requests) to the session's GET
//! stream when one is open, else to the newest open POST stream, else dropped.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{Arc, Mutex},
};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use bytes::Bytes;
use serde_json::Value;
use shoal_core::RequestId;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    process::{Child, ChildStdin, Command},
    sync::mpsc,
};

use super::{EventStream, Reply, UpstreamError};
use crate::{
    config::UpstreamConfig,
    protocol::{MessageKind, classify},
    sse::SseEvent,
};

type Tx = mpsc::Sender<Result<SseEvent, UpstreamError>>;

#[derive(Default)]
struct Routes {
    by_id: HashMap<RequestId, u64>,
    senders: HashMap<u64, (Tx, usize)>,
    get_route: Option<u64>,
    post_routes: Vec<u64>,
    next: u64,
    exited: bool,
}

impl Routes {
    fn add(&mut self, tx: Tx, ids: &[RequestId], get: bool) -> u64 {
        self.next += 1;
        let r = self.next;
        for id in ids {
            self.by_id.insert(id.clone(), r);
        }
        self.senders.insert(r, (tx, ids.len()));
        if get {
            self.get_route = Some(r);
        } else {
            self.post_routes.push(r);
        }
        r
    }

    fn remove(&mut self, r: u64) {
        self.senders.remove(&r);
        self.post_routes.retain(|x| *x != r);
        if self.get_route == Some(r) {
            self.get_route = None;
        }
    }
}

/// One running stdio server.
pub(crate) struct StdioProc {
    stdin: tokio::sync::Mutex<ChildStdin>,
    routes: Arc<Mutex<Routes>>,
    child: Mutex<Option<Child>>,
}

impl std::fmt::Debug for StdioProc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StdioProc")
    }
}

impl StdioProc {
    /// Starts the server.
    pub(crate) fn spawn(
        cfg: &UpstreamConfig,
        cwd: Option<&std::path::Path>,
    ) -> Result<Arc<Self>, UpstreamError> {
        let UpstreamConfig::Stdio { command, args, env } = cfg else {
            return Err(UpstreamError("not a stdio upstream".into()));
        };
        let mut cmd = Command::new(command);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| UpstreamError(format!("starting {command}: {e}")))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| UpstreamError("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| UpstreamError("no stdout".into()))?;
        let routes = Arc::new(Mutex::new(Routes::default()));
        let r2 = routes.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim().is_empty() {
                    continue;
                }
                route_line(&r2, line).await;
            }
            let senders: Vec<Tx> = {
                let Ok(mut r) = r2.lock() else { return };
                r.exited = true;
                r.by_id.clear();
                r.post_routes.clear();
                r.get_route = None;
                r.senders.drain().map(|(_, (tx, _))| tx).collect()
            };
            for tx in senders {
                let _ = tx.send(Err("stdio server exited".into())).await;
            }
        });
        Ok(Arc::new(StdioProc {
            stdin: tokio::sync::Mutex::new(stdin),
            routes,
            child: Mutex::new(Some(child)),
        }))
    }

    async fn write(&self, messages: &[Value]) -> Result<(), UpstreamError> {
        let mut buf = Vec::new();
        for m in messages {
            serde_json::to_writer(&mut buf, m).map_err(|e| UpstreamError(e.to_string()))?;
            buf.push(b'\n');
        }
        let mut stdin = self.stdin.lock().await;
        stdin
            .write_all(&buf)
            .await
            .map_err(|e| UpstreamError(format!("stdio server stdin: {e}")))?;
        stdin
            .flush()
            .await
            .map_err(|e| UpstreamError(format!("stdio server stdin: {e}")))
    }

    /// Sends messages; when they include requests, the reply is a stream that carries their
    /// responses (and whatever else the server says meanwhile), else an empty 202.
    pub(crate) async fn post(&self, messages: &[Value]) -> Result<Reply, UpstreamError> {
        let ids: Vec<RequestId> = messages
            .iter()
            .filter_map(|m| match classify(m) {
                MessageKind::Request { id, .. } => Some(id),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            self.write(messages).await?;
            return Ok(Reply::Full {
                status: StatusCode::ACCEPTED,
                headers: HeaderMap::new(),
                body: Bytes::new(),
            });
        }
        let (tx, rx) = mpsc::channel(64);
        let route = {
            let mut r = self
                .routes
                .lock()
                .map_err(|_| UpstreamError("poisoned".into()))?;
            if r.exited {
                return Err(UpstreamError("stdio server exited".into()));
            }
            r.add(tx, &ids, false)
        };
        if let Err(e) = self.write(messages).await {
            if let Ok(mut r) = self.routes.lock() {
                r.remove(route);
            }
            return Err(e);
        }
        Ok(stream_reply(rx))
    }

    /// Opens the session's GET stream (replacing an older one).
    pub(crate) fn get(&self) -> Result<Reply, UpstreamError> {
        let (tx, rx) = mpsc::channel(64);
        let mut r = self
            .routes
            .lock()
            .map_err(|_| UpstreamError("poisoned".into()))?;
        if r.exited {
            return Err(UpstreamError("stdio server exited".into()));
        }
        if let Some(old) = r.get_route {
            r.remove(old);
        }
        r.add(tx, &[], true);
        Ok(stream_reply(rx))
    }

    /// Stops the server.
    pub(crate) fn kill(&self) {
        if let Ok(mut c) = self.child.lock()
            && let Some(mut child) = c.take()
        {
            let _ = child.start_kill();
        }
    }
}

impl Drop for StdioProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn stream_reply(rx: mpsc::Receiver<Result<SseEvent, UpstreamError>>) -> Reply {
    let events: EventStream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    Reply::Stream {
        status: StatusCode::OK,
        headers,
        events,
    }
}

async fn route_line(routes: &Mutex<Routes>, line: String) {
    let Ok(v) = serde_json::from_str::<Value>(&line) else {
        tracing::debug!("stdio server wrote a line that is not JSON; dropped");
        return;
    };
    let target: Option<(Tx, bool)> = {
        let Ok(mut r) = routes.lock() else { return };
        match classify(&v) {
            MessageKind::Response { id: Some(id) } => match r.by_id.remove(&id) {
                Some(route) => {
                    let last = match r.senders.get_mut(&route) {
                        Some((_, left)) => {
                            *left = left.saturating_sub(1);
                            *left == 0
                        }
                        None => false,
                    };
                    let tx = r.senders.get(&route).map(|(tx, _)| tx.clone());
                    if last {
                        r.remove(route);
                    }
                    tx.map(|tx| (tx, last))
                }
                None => None,
            },
            _ => {
                let route = r.get_route.or_else(|| r.post_routes.last().copied());
                route
                    .and_then(|route| r.senders.get(&route))
                    .map(|(tx, _)| (tx.clone(), false))
            }
        }
    };
    match target {
        Some((tx, _)) => {
            let ev = SseEvent {
                data: line,
                ..SseEvent::default()
            };
            let _ = tx.send(Ok(ev)).await;
        }
        None => tracing::debug!("stdio server message with no open stream; dropped"),
    }
}
