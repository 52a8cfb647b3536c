//! What the demo prints of the store after each step: the sessions it holds and the frames of
//! the demo's session (seq, direction, stream, what the message is — never more of a payload
//! than a method name, a tool name or a progress count).

use serde_json::Value;
use shoal_core::{Direction, Frame, FrameQuery, SessionFilter, SessionId, SessionStore};

/// The frames a store read returns at once.
const PAGE: usize = 100;

/// Reads the store and remembers which frames were already shown.
#[derive(Debug, Default)]
pub(crate) struct StoreView {
    shown_through: u64,
}

/// One look at the store.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Sessions in the store.
    pub(crate) sessions: u64,
    /// Whether the demo's session exists.
    pub(crate) session_exists: bool,
    /// Its newest seq.
    pub(crate) last_seq: u64,
    /// Its pending requests.
    pub(crate) pending: usize,
    /// Frames not shown before, one line each.
    pub(crate) new_frames: Vec<String>,
}

impl StoreView {
    /// Reads the session count and the frames of `id` not shown yet.
    pub(crate) async fn look(
        &mut self,
        store: &dyn SessionStore,
        id: Option<&SessionId>,
    ) -> shoal_core::Result<Snapshot> {
        let mut snap = Snapshot {
            sessions: store.count(&SessionFilter::default()).await?,
            ..Snapshot::default()
        };
        let Some(id) = id else { return Ok(snap) };
        let Some(session) = store.get(id).await? else {
            return Ok(snap);
        };
        snap.session_exists = true;
        snap.last_seq = session.last_seq;
        snap.pending = store.list_pending(id).await?.len();
        let mut after = self.shown_through;
        loop {
            let page = store.frames(id, &FrameQuery::after(after, PAGE)).await?;
            for f in &page.frames {
                snap.new_frames.push(describe(f));
                after = f.seq;
            }
            if !page.has_more || page.frames.is_empty() {
                break;
            }
        }
        self.shown_through = after;
        Ok(snap)
    }
}

/// `#7 ← [p1f…] notifications/progress 2/6`.
pub(crate) fn describe(f: &Frame) -> String {
    let arrow = match f.direction {
        Direction::ClientToServer => "→",
        _ => "←",
    };
    let stream = f
        .stream_id
        .as_deref()
        .map(|s| format!(" [{}]", short(s)))
        .unwrap_or_default();
    format!("#{} {arrow}{stream} {}", f.seq, what(&f.content))
}

/// A stream id cut to 8 characters.
fn short(s: &str) -> String {
    if s.chars().count() > 8 {
        format!("{}…", s.chars().take(8).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// What a frame's message is, in a few words.
pub(crate) fn what(content: &[u8]) -> String {
    if content.is_empty() {
        return "(stream opened)".to_owned();
    }
    let Ok(v) = serde_json::from_slice::<Value>(content) else {
        return format!("({} bytes, not JSON)", content.len());
    };
    match v.get("method").and_then(Value::as_str) {
        Some("tools/call") => format!(
            "tools/call {}",
            v.pointer("/params/name")
                .and_then(Value::as_str)
                .unwrap_or("?")
        ),
        Some("notifications/progress") => format!(
            "notifications/progress {}/{}",
            v.pointer("/params/progress").unwrap_or(&Value::Null),
            v.pointer("/params/total").unwrap_or(&Value::Null)
        ),
        Some(m) => m.to_owned(),
        None if v.get("error").is_some() => format!("error (id {})", id_of(&v)),
        None if v.get("result").is_some() => format!("result (id {})", id_of(&v)),
        None => "(other JSON)".to_owned(),
    }
}

fn id_of(v: &Value) -> String {
    v.get("id")
        .map_or_else(|| "none".to_owned(), Value::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_messages_without_their_payload() {
        assert_eq!(
            what(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"secret"}}}"#),
            "tools/call echo"
        );
        assert_eq!(
            what(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":2,"total":6}}"#),
            "notifications/progress 2/6"
        );
        assert_eq!(
            what(br#"{"jsonrpc":"2.0","id":3,"result":{"x":"secret"}}"#),
            "result (id 3)"
        );
        assert_eq!(what(b""), "(stream opened)");
        assert_eq!(what(b"\xff"), "(1 bytes, not JSON)");
    }
}
