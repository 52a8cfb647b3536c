//! One session: what it is, its pending requests, and its frames as a timeline (streams as
//! lanes, requests paired with their replies, sizes and latencies). Payloads are not shown;
//! each frame links to its own payload page.

use std::collections::HashMap;

use maud::{Markup, html};
use shoal_core::{Direction, Frame, PendingRequest, Session, feed::FrameSummary};

use super::{
    format::{bytes, utc},
    layout::{Nav, PageCtx, page},
    sessions::{client_name, urlencode},
};

/// One frame as the timeline shows it.
#[derive(Clone, Debug)]
pub struct Row {
    /// Its seq.
    pub seq: u64,
    /// Its lane (stream id, or `(none)`).
    pub lane: String,
    /// ms since the first frame shown.
    pub offset_ms: u64,
    /// Its summary (method, id, tool, error, size).
    pub summary: FrameSummary,
    /// For a reply: its request's seq and the time between them.
    pub reply_to: Option<(u64, u64)>,
}

/// Builds the rows of `frames` (in seq order), pairing each reply with its request by
/// JSON-RPC id and direction.
pub fn rows(frames: &[Frame]) -> Vec<Row> {
    let start = frames.first().map(|f| f.timestamp.as_millis()).unwrap_or(0);
    let mut open: HashMap<(String, bool), (u64, u64)> = HashMap::new();
    frames
        .iter()
        .map(|f| {
            let summary = FrameSummary::of(&f.to_new_frame());
            let at = f.timestamp.as_millis();
            let from_client = matches!(summary.direction, Direction::ClientToServer);
            let mut reply_to = None;
            if let Some(id) = &summary.rpc_id {
                if summary.is_request() {
                    open.insert((id.clone(), from_client), (f.seq, at));
                } else if summary.is_response()
                    && let Some((seq, t)) = open.remove(&(id.clone(), !from_client))
                {
                    reply_to = Some((seq, at.saturating_sub(t)));
                }
            }
            Row {
                seq: f.seq,
                lane: f.stream_id.clone().unwrap_or_else(|| "(none)".into()),
                offset_ms: at.saturating_sub(start),
                summary,
                reply_to,
            }
        })
        .collect()
}

fn describe(r: &Row) -> String {
    let s = &r.summary;
    match (&s.method, &s.rpc_id) {
        (Some(m), Some(id)) => format!(
            "{m} #{id}{}",
            s.tool
                .as_ref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        ),
        (Some(m), None) => m.clone(),
        (None, Some(id)) => format!("reply #{id}"),
        (None, None) => "other".into(),
    }
}

fn lanes_svg(rows: &[Row]) -> Markup {
    let mut lanes: Vec<&str> = Vec::new();
    for r in rows {
        if !lanes.contains(&r.lane.as_str()) {
            lanes.push(&r.lane);
        }
    }
    let span = rows.iter().map(|r| r.offset_ms).max().unwrap_or(0).max(1) as f64;
    let lane_h = 28.0;
    let height = lanes.len() as f64 * lane_h + 20.0;
    let x = |ms: u64| 150.0 + 830.0 * ms as f64 / span;
    let y = |lane: &str| lanes.iter().position(|l| *l == lane).unwrap_or(0) as f64 * lane_h + 14.0;
    let by_seq: HashMap<u64, &Row> = rows.iter().map(|r| (r.seq, r)).collect();
    html! {
        svg.chart.lanes #frame-lanes viewBox=(format!("0 0 1000 {height}")) role="img" {
            @for l in &lanes {
                text x="0" y=(y(l) + 4.0) class="label" { (if l.len() > 22 { format!("{}…", &l[..l.char_indices().nth(21).map(|(i, _)| i).unwrap_or(l.len())]) } else { (*l).to_owned() }) }
                line x1="150" x2="980" y1=(y(l)) y2=(y(l)) class="lane" {}
            }
            @for r in rows {
                @if let Some((req, _)) = r.reply_to {
                    @if let Some(q) = by_seq.get(&req) {
                        line.pair x1=(format!("{:.1}", x(q.offset_ms))) y1=(y(&q.lane)) x2=(format!("{:.1}", x(r.offset_ms))) y2=(y(&r.lane)) {}
                    }
                }
            }
            @for r in rows {
                circle cx=(format!("{:.1}", x(r.offset_ms))) cy=(y(&r.lane)) r="5"
                    class=(format!("{} {}", if matches!(r.summary.direction, Direction::ClientToServer) { "c2s" } else { "s2c" }, if r.summary.error.is_some() { "err" } else { "" })) {
                    title { "#" (r.seq) " " (describe(r)) " · " (r.summary.size) " B" }
                }
            }
            text x="150" y=(height - 2.0) class="label" { "0 ms" }
            text x="980" y=(height - 2.0) class="label" text-anchor="end" { (format!("{span:.0} ms")) }
        }
    }
}

/// The page.
pub fn render(
    s: &Session,
    frames: &[Frame],
    more_frames: bool,
    pending: &[PendingRequest],
    ctx: &PageCtx,
) -> Markup {
    let rows = rows(frames);
    let id = s.id.as_str();
    page(
        id,
        Nav::Sessions,
        None,
        ctx,
        html! {
            section.panel {
                h2 { "Session " code #session-id { (id) } }
                dl.facts {
                    dt { "status" } dd { (format!("{:?}", s.status).to_lowercase()) }
                    dt { "principal" } dd {
                        @if let Some(p) = &s.principal { a href=(format!("/sessions?by=principal&q={}", urlencode(p))) { (p) } } @else { "—" }
                    }
                    dt { "client" } dd { (client_name(s).unwrap_or("—")) }
                    dt { "protocol" } dd { (s.protocol_version.as_deref().unwrap_or("—")) }
                    dt { "transport" } dd { (format!("{:?}", s.transport).to_lowercase()) }
                    dt { "created" } dd { (utc(s.created_at.as_millis())) }
                    dt { "last activity" } dd { (utc(s.last_activity.as_millis())) }
                    dt { "expires" } dd { (utc(s.expires_at.as_millis())) }
                    dt { "frames" } dd { (s.frame_count) " (seqs " (s.first_seq) "–" (s.last_seq) ")" }
                    dt { "revision" } dd { (s.revision) }
                }
                @if !ctx.read_only {
                    p { a.danger #delete-session href=(format!("/sessions/{id}/delete")) { "Delete this session…" } }
                }
            }
            section.panel {
                h2 { "Pending requests" }
                @if pending.is_empty() { p.empty { "none" } } @else {
                    table {
                        thead { tr { th { "id" } th { "method" } th { "stream" } th { "since" } } }
                        tbody { @for p in pending { tr { td { (p.request_id.to_string()) } td { (p.method) } td { (p.stream_id.as_deref().unwrap_or("—")) } td { (utc(p.started_at.as_millis())) } } } }
                    }
                }
            }
            section.panel {
                h2 { "Frames" }
                @if rows.is_empty() { p.empty { "no frames" } } @else {
                    (lanes_svg(&rows))
                    p.muted { "● client → server  ● server → client; lines join a request to its reply. Payloads are shown only on request." }
                    @if more_frames { p.warning { "only the first " (rows.len()) " frames are shown" } }
                    table #frames-table {
                        thead { tr { th { "seq" } th { "+ms" } th { "stream" } th { "dir" } th { "message" } th { "size" } th { "latency" } th {} } }
                        tbody {
                            @for r in &rows {
                                tr data-seq=(r.seq) class=[r.summary.error.map(|_| "bad")] {
                                    td { (r.seq) }
                                    td { (r.offset_ms) }
                                    td { (r.lane) }
                                    td { @if matches!(r.summary.direction, Direction::ClientToServer) { "→" } @else { "←" } }
                                    td.msg { (describe(r)) @if r.summary.error.is_some() { " · error" } }
                                    td { (bytes(r.summary.size as f64)) }
                                    td { @if let Some((req, ms)) = r.reply_to { (ms) " ms (to #" (req) ")" } }
                                    td { a href=(format!("/sessions/{id}/frames/{}", r.seq)) { "payload" } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// One frame's payload, on the operator's request.
pub fn payload(session: &str, f: &Frame, ctx: &PageCtx) -> Markup {
    let text = match serde_json::from_slice::<serde_json::Value>(&f.content) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&f.content).into_owned(),
    };
    page(
        "Frame",
        Nav::Sessions,
        None,
        ctx,
        html! {
            section.panel {
                h2 { "Frame " (f.seq) " of " a href=(format!("/sessions/{session}")) { code { (session) } } }
                p.muted { (utc(f.timestamp.as_millis())) " · " (bytes(f.content.len() as f64)) " · " (f.content_type.as_deref().unwrap_or("")) }
                pre #payload { (text) }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use shoal_core::{NewFrame, SessionId, Timestamp};

    use super::*;

    fn frame(seq: u64, at: u64, dir: Direction, body: &str) -> Frame {
        NewFrame::new(dir, Bytes::from(body.to_owned()))
            .with_timestamp(Timestamp(at))
            .with_stream("s1")
            .into_frame(SessionId::generate(), seq)
    }

    #[test]
    fn pairs_replies_with_requests_by_id_and_direction() {
        let frames = vec![
            frame(
                1,
                1000,
                Direction::ClientToServer,
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            ),
            frame(
                2,
                1004,
                Direction::ServerToClient,
                r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
            ),
            // A server request with the same id: paired with the client's reply, not the above.
            frame(
                3,
                1005,
                Direction::ServerToClient,
                r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#,
            ),
            frame(
                4,
                1009,
                Direction::ServerToClient,
                r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            ),
            frame(
                5,
                1020,
                Direction::ClientToServer,
                r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            ),
        ];
        let r = rows(&frames);
        assert_eq!(r[3].reply_to, Some((1, 9)));
        assert_eq!(r[4].reply_to, Some((3, 15)));
        assert_eq!(r[1].reply_to, None);
        assert_eq!(describe(&r[0]), "tools/call #1 (echo)");
        assert_eq!(r[4].offset_ms, 20);
    }
}
