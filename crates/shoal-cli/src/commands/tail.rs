//! `shoal tail`: follows the store's change feed (every instance's writes) and prints each
//! entry as it comes: a line for people, or one JSON object per line with `--json`.

use std::time::Duration;

use shoal_core::{Change, ChangeKind, FeedCursor, FeedId, Timestamp};

use super::Ctx;
use crate::{
    cli::TailArgs,
    error::{Outcome, UsageError},
    output::fmt_time,
};

/// How long one read waits for the next entry.
const WAIT: Duration = Duration::from_millis(500);

/// Where `--from` starts, for a feed with `shards` shards.
fn start(from: &str, shards: u16, now: Timestamp) -> Result<Option<FeedCursor>, UsageError> {
    match from {
        "now" => Ok(None),
        "start" => Ok(Some(FeedCursor::beginning(shards))),
        _ if from.contains('-') => from
            .parse::<FeedId>()
            .map(|id| Some(FeedCursor::after_id(shards, id)))
            .map_err(|e| UsageError(format!("--from {from:?}: {e}"))),
        _ => {
            let ago: Duration = humantime::parse_duration(from).map_err(|e| {
                UsageError(format!(
                    "--from {from:?}: expected now, start, a feed id or a duration ago ({e})"
                ))
            })?;
            let ms = now
                .as_millis()
                .saturating_sub(u64::try_from(ago.as_millis()).unwrap_or(u64::MAX));
            Ok(Some(FeedCursor::since(shards, Timestamp(ms))))
        }
    }
}

/// One entry as a line: time, id, kind, session, then what the kind says.
pub(crate) fn line(c: &Change) -> String {
    let detail = match c.kind {
        ChangeKind::Created => c
            .session
            .as_ref()
            .map(|s| {
                let client = match (&s.client_name, &s.client_version) {
                    (Some(n), Some(v)) => format!(" client={n}/{v}"),
                    (Some(n), None) => format!(" client={n}"),
                    _ => String::new(),
                };
                let proto = s
                    .protocol_version
                    .as_deref()
                    .map(|p| format!(" protocol={p}"))
                    .unwrap_or_default();
                format!("{}{proto}{client}", s.transport)
            })
            .unwrap_or_default(),
        ChangeKind::Updated => format!(
            "revision={} status={}",
            c.revision.unwrap_or(0),
            c.status.map_or("?", |s| s.as_str())
        ),
        ChangeKind::Frame => c
            .frame
            .as_ref()
            .map(|f| {
                let arrow = if f.direction == shoal_core::Direction::ServerToClient {
                    "<-"
                } else {
                    "->"
                };
                let what = match (&f.method, &f.rpc_id) {
                    (Some(m), Some(id)) => format!("{m} id={id}"),
                    (Some(m), None) => m.clone(),
                    (None, Some(id)) => format!("response id={id}"),
                    (None, None) => "(not JSON-RPC)".into(),
                };
                let tool = f
                    .tool
                    .as_deref()
                    .map(|t| format!(" tool={t}"))
                    .unwrap_or_default();
                let err = match f.error {
                    Some(shoal_core::feed::FrameError::Rpc) => " ERROR",
                    Some(shoal_core::feed::FrameError::Tool) => " TOOL-ERROR",
                    _ => "",
                };
                format!(
                    "#{} {arrow} {what}{tool}{err} {}B",
                    c.seq.unwrap_or(0),
                    f.size
                )
            })
            .unwrap_or_default(),
        ChangeKind::Other => c.raw_kind.clone().unwrap_or_default(),
        _ => c
            .created_at
            .map(|t| {
                let lived = c.at().as_millis().saturating_sub(t.as_millis());
                format!(
                    "lived {}",
                    humantime::format_duration(Duration::from_millis(lived))
                )
            })
            .unwrap_or_default(),
    };
    format!(
        "{}  {:<22} {:<8} {}  {detail}",
        fmt_time(c.at()),
        c.id.to_string(),
        c.kind.as_str(),
        c.session_id
    )
}

/// `tail`.
pub(crate) async fn run(ctx: &Ctx, args: &TailArgs) -> anyhow::Result<Outcome> {
    let opened = ctx.open().await?;
    let store = opened.store();
    let Some(feed) = store.change_feed() else {
        return Err(
            UsageError("this store writes no change feed ([feed] enabled = false)".into()).into(),
        );
    };
    let mut cursor = match start(&args.from, feed.shards(), Timestamp::now())? {
        Some(c) => c,
        None => feed.end().await?,
    };
    let until = args
        .follow_for
        .map(|d| tokio::time::Instant::now() + Duration::from(d));
    let mut printed = 0u64;
    loop {
        if until.is_some_and(|u| tokio::time::Instant::now() >= u) {
            break;
        }
        let batch = feed.read(&cursor, 500, Some(WAIT)).await?;
        cursor.advance(&batch);
        for c in &batch {
            if args.session.as_deref().is_some_and(|s| s != c.session_id) {
                continue;
            }
            if !args.kinds.is_empty() && !args.kinds.contains(&c.kind) {
                continue;
            }
            if ctx.json {
                println!("{}", serde_json::to_string(c)?);
            } else {
                println!("{}", line(c));
            }
            printed += 1;
            if args.limit.is_some_and(|l| printed >= l) {
                return Ok(Outcome::Success);
            }
        }
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_takes_now_start_ids_and_durations() {
        let now = Timestamp(10_000_000);
        assert_eq!(start("now", 1, now).ok(), Some(None));
        assert_eq!(
            start("start", 2, now).ok(),
            Some(Some(FeedCursor::beginning(2)))
        );
        let c = start("5-1", 1, now)
            .ok()
            .flatten()
            .unwrap_or_else(|| FeedCursor::beginning(1));
        assert_eq!(c.position(0), FeedId::new(0, 5, 1));
        let c = start("10s", 1, now)
            .ok()
            .flatten()
            .unwrap_or_else(|| FeedCursor::beginning(1));
        assert_eq!(c.position(0).ms, 10_000_000 - 10_000 - 1);
        for bad in ["soon", "x-1", "-5"] {
            assert!(start(bad, 1, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn lines_say_what_happened() {
        let mut c = Change::new(ChangeKind::Frame, "s1");
        c.seq = Some(3);
        c.frame = Some(shoal_core::feed::FrameSummary::of(
            &shoal_core::NewFrame::new(
                shoal_core::Direction::ClientToServer,
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#,
            ),
        ));
        let l = line(&c);
        assert!(
            l.contains("frame") && l.contains("#3 -> tools/call id=1 tool=add"),
            "{l}"
        );
    }
}
