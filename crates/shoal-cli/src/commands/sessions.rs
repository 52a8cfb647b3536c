//! `shoal sessions list|show|frames|delete|count`.

use std::io::Write as _;

use serde::Serialize;
use serde_json::json;
use shoal_core::{Frame, FrameQuery, ListQuery, Session, SessionId, SessionStore};

use super::{Ctx, note_ephemeral};
use crate::{
    cli::{DeleteArgs, FilterArgs, FramesArgs, ListArgs, ShowArgs},
    error::{Outcome, UsageError},
    output::{Table, fmt_time, key_values, or_dash, print_json, print_text},
};

/// Page size used by `--all`.
const ALL_PAGE: usize = 1_000;

/// A session that could not be read, for output.
#[derive(Serialize)]
struct Unreadable {
    id: String,
    error: String,
}

/// `sessions list`.
pub(crate) async fn list(ctx: &Ctx, args: &ListArgs) -> anyhow::Result<Outcome> {
    let opened = ctx.open().await?;
    let store = opened.store();
    let filter = args.filter.to_filter();
    let mut sessions: Vec<Session> = Vec::new();
    let mut unreadable = Vec::new();
    let mut cursor = args.cursor.clone();
    let next_cursor = loop {
        let limit = if args.all { ALL_PAGE } else { args.limit };
        let query = ListQuery::first(limit)
            .with_filter(filter.clone())
            .with_cursor(cursor.take());
        let page = store.list(&query).await.map_err(|e| match e {
            shoal_core::Error::InvalidInput { reason } => {
                anyhow::Error::new(UsageError(format!("--cursor: {reason}")))
            }
            other => other.into(),
        })?;
        sessions.extend(page.sessions);
        unreadable.extend(page.errors.into_iter().map(|e| Unreadable {
            id: e.id.to_string(),
            error: e.error.to_string(),
        }));
        match page.next_cursor {
            Some(c) if args.all => cursor = Some(c),
            other => break other,
        }
    };

    if ctx.json {
        print_json(&json!({
            "sessions": sessions,
            "next_cursor": next_cursor,
            "errors": unreadable,
        }))?;
    } else {
        if sessions.is_empty() {
            print_text("No sessions.\n")?;
        } else {
            let mut t = Table::new(&[
                "ID",
                "TRANSPORT",
                "STATUS",
                "STATE",
                "FRAMES",
                "PRINCIPAL",
                "LAST ACTIVITY",
                "EXPIRES",
            ]);
            for s in &sessions {
                t.row(vec![
                    s.id.to_string(),
                    s.transport.to_string(),
                    s.status.to_string(),
                    s.state.to_string(),
                    s.frame_count.to_string(),
                    or_dash(s.principal.as_deref()),
                    fmt_time(s.last_activity),
                    fmt_time(s.expires_at),
                ]);
            }
            print_text(&t.render())?;
        }
        if let Some(c) = &next_cursor {
            eprintln!("more sessions: continue with --cursor {c} (or use --all)");
        }
        for u in &unreadable {
            eprintln!("error: session {} could not be read: {}", u.id, u.error);
        }
    }
    Ok(Outcome::from_ok(unreadable.is_empty()))
}

/// `sessions show`.
pub(crate) async fn show(ctx: &Ctx, args: &ShowArgs) -> anyhow::Result<Outcome> {
    let opened = ctx.open().await?;
    let store = opened.store();
    let id = &args.id;
    let session = store
        .get(id)
        .await?
        .ok_or_else(|| shoal_core::Error::session_not_found(id))?;
    let frames = store.count_frames(id).await?;
    let pending = store.list_pending(id).await?;
    if ctx.json {
        print_json(&json!({
            "session": session,
            "frame_count": frames,
            "pending_count": pending.len(),
            "pending": pending,
        }))?;
        return Ok(Outcome::Success);
    }
    let s = &session;
    let json_or_dash = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map_or_else(|| "-".to_owned(), serde_json::Value::to_string)
    };
    let retained = if frames == 0 {
        format!("0 (last seq {})", s.last_seq)
    } else {
        format!("{frames} (seqs {}..={})", s.first_seq, s.last_seq)
    };
    let mut pairs = vec![
        ("id", s.id.to_string()),
        ("transport", s.transport.to_string()),
        ("status", s.status.to_string()),
        ("state", s.state.to_string()),
        ("principal", or_dash(s.principal.as_deref())),
        ("created", fmt_time(s.created_at)),
        ("last activity", fmt_time(s.last_activity)),
        ("expires", fmt_time(s.expires_at)),
        ("frames", retained),
        ("pending requests", pending.len().to_string()),
        ("revision", s.revision.to_string()),
        ("protocol version", or_dash(s.protocol_version.as_deref())),
        (
            "upstream session",
            or_dash(s.upstream_session_id.as_deref()),
        ),
        (
            "tags",
            if s.tags.is_empty() {
                "-".into()
            } else {
                s.tags.iter().cloned().collect::<Vec<_>>().join(", ")
            },
        ),
        ("client info", json_or_dash(&s.client_info)),
        ("server info", json_or_dash(&s.server_info)),
    ];
    for (k, v) in &s.metadata {
        pairs.push(("metadata", format!("{k}={v}")));
    }
    let mut text = key_values(&pairs);
    if !pending.is_empty() {
        let mut t = Table::new(&["REQUEST ID", "METHOD", "STARTED", "STREAM"]);
        for p in &pending {
            t.row(vec![
                p.request_id.to_string(),
                p.method.clone(),
                fmt_time(p.started_at),
                or_dash(p.stream_id.as_deref()),
            ]);
        }
        text.push('\n');
        text.push_str(&t.render());
    }
    print_text(&text)?;
    Ok(Outcome::Success)
}

/// A frame for JSON output: content as text when UTF-8, else base64.
#[derive(Serialize)]
struct FrameOut<'a> {
    seq: u64,
    stream_id: Option<&'a str>,
    direction: &'static str,
    timestamp: u64,
    content_type: Option<&'a str>,
    headers: &'a [(String, String)],
    bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_b64: Option<String>,
}

impl<'a> FrameOut<'a> {
    fn new(f: &'a Frame) -> Self {
        let text = std::str::from_utf8(&f.content).ok();
        FrameOut {
            seq: f.seq,
            stream_id: f.stream_id.as_deref(),
            direction: f.direction.as_str(),
            timestamp: f.timestamp.as_millis(),
            content_type: f.content_type.as_deref(),
            headers: &f.headers,
            bytes: f.content.len(),
            content: text,
            content_b64: text.is_none().then(|| base64(&f.content)),
        }
    }
}

/// `sessions frames`.
pub(crate) async fn frames(ctx: &Ctx, args: &FramesArgs) -> anyhow::Result<Outcome> {
    if args.raw && ctx.json {
        return Err(UsageError("--raw cannot be combined with --json".into()).into());
    }
    let opened = ctx.open().await?;
    let store = opened.store();
    let mut after = args.after;
    let mut frames = Vec::new();
    let mut trimmed = false;
    let (has_more, last_seq) = loop {
        let limit = if args.all { ALL_PAGE } else { args.limit };
        let mut query = FrameQuery::after(after, limit);
        if let Some(s) = &args.stream {
            query = query.in_stream(s.clone());
        }
        let page = store.frames(&args.id, &query).await?;
        trimmed |= page.trimmed;
        after = page.next_after(after);
        frames.extend(page.frames);
        if !(args.all && page.has_more) {
            break (page.has_more, page.last_seq);
        }
    };

    if ctx.json {
        let out: Vec<FrameOut<'_>> = frames.iter().map(FrameOut::new).collect();
        print_json(&json!({
            "session_id": args.id,
            "frames": out,
            "trimmed": trimmed,
            "has_more": has_more,
            "last_seq": last_seq,
            "next_after": after,
        }))?;
        return Ok(Outcome::Success);
    }
    if args.raw {
        let mut stdout = std::io::stdout().lock();
        for f in &frames {
            stdout.write_all(&f.content)?;
            stdout.write_all(b"\n")?;
        }
        stdout.flush()?;
    } else {
        print_text(&render_frames(&frames))?;
    }
    if trimmed {
        eprintln!(
            "note: frames after seq {} were trimmed (retention limit); the listing starts later",
            args.after
        );
    }
    if has_more {
        eprintln!("more frames: continue with --after {after} (or use --all)");
    }
    Ok(Outcome::Success)
}

fn render_frames(frames: &[Frame]) -> String {
    if frames.is_empty() {
        return "No frames.\n".into();
    }
    let mut out = String::new();
    for f in frames {
        out.push_str(&format!(
            "#{} {} {} stream={} type={} {} bytes\n",
            f.seq,
            humantime::format_rfc3339_millis(f.timestamp.to_system_time()),
            f.direction,
            or_dash(f.stream_id.as_deref()),
            or_dash(f.content_type.as_deref()),
            f.content.len(),
        ));
        match std::str::from_utf8(&f.content) {
            Ok(text) => {
                for line in text.lines() {
                    out.push_str("  ");
                    out.push_str(line);
                    out.push('\n');
                }
            }
            Err(_) => {
                out.push_str("  base64:");
                out.push_str(&base64(&f.content));
                out.push('\n');
            }
        }
    }
    out
}

/// `sessions delete`.
pub(crate) async fn delete(ctx: &Ctx, args: &DeleteArgs) -> anyhow::Result<Outcome> {
    let opened = ctx.open().await?;
    let store = opened.store();
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<&SessionId> = args.ids.iter().filter(|id| seen.insert(*id)).collect();
    let mut deleted = Vec::new();
    let mut missing = Vec::new();
    let mut failure = None;
    for id in ids {
        match store.delete(id).await {
            Ok(true) => deleted.push(id.to_string()),
            Ok(false) => missing.push(id.to_string()),
            Err(e) => {
                failure = Some(anyhow::Error::new(e).context(format!("deleting session {id}")));
                break;
            }
        }
    }
    // Keep what was deleted even if a later delete failed.
    if !deleted.is_empty() {
        let gone: Vec<SessionId> = args
            .ids
            .iter()
            .filter(|id| deleted.iter().any(|d| d == id.as_str()))
            .cloned()
            .collect();
        opened.announce(&gone).await;
        opened.save().await?;
    }
    note_ephemeral(&opened, !deleted.is_empty() && failure.is_none());
    // Deferred writes, the outage journal and announcements, before reporting.
    let closed = opened.close().await;
    if let Some(e) = failure {
        if !deleted.is_empty() {
            eprintln!("deleted before the error: {}", deleted.join(" "));
        }
        return Err(e);
    }
    closed?;
    if ctx.json {
        print_json(&json!({ "deleted": deleted, "missing": missing }))?;
    } else {
        let mut text = String::new();
        for id in &deleted {
            text.push_str(&format!("deleted {id}\n"));
        }
        print_text(&text)?;
        for id in &missing {
            eprintln!("not found: {id}");
        }
    }
    Ok(Outcome::from_ok(missing.is_empty() || args.missing_ok))
}

/// `sessions count`.
pub(crate) async fn count(ctx: &Ctx, args: &FilterArgs) -> anyhow::Result<Outcome> {
    let opened = ctx.open().await?;
    let n = opened.store().count(&args.to_filter()).await?;
    if ctx.json {
        print_json(&json!({ "count": n }))?;
    } else {
        print_text(&format!("{n}\n"))?;
    }
    Ok(Outcome::Success)
}

/// Standard base64 with padding (what the export format's `content_b64` uses).
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn frames_render_text_and_binary() {
        let id = SessionId::new("s").expect("id");
        let text = shoal_core::NewFrame::new(shoal_core::Direction::ClientToServer, "{\"a\":1}")
            .with_stream("post-1")
            .with_timestamp(shoal_core::Timestamp(0))
            .into_frame(id.clone(), 1);
        let bin =
            shoal_core::NewFrame::new(shoal_core::Direction::ServerToClient, vec![0xffu8, 0xfe])
                .with_timestamp(shoal_core::Timestamp(0))
                .into_frame(id, 2);
        let out = render_frames(&[text, bin]);
        assert!(
            out.contains("#1 1970-01-01T00:00:00.000Z client_to_server stream=post-1"),
            "{out}"
        );
        assert!(out.contains("  {\"a\":1}\n"), "{out}");
        assert!(out.contains("  base64://4=\n"), "{out}");
        assert_eq!(render_frames(&[]), "No frames.\n");
    }
}
