//! An SSE event as a Shoal frame and back: the JSON-RPC message as the frame's bytes, a
//! `retry` hint as a header.

use std::time::Duration;

use rmcp::{model::ServerJsonRpcMessage, transport::common::server_side_http::ServerSseMessage};
use shoal_core::{Direction, Frame, NewFrame};

use crate::error::{Error, Result};

const RETRY_HEADER: &str = "sse-retry-ms";
const JSON: &str = "application/json";

/// The frame that stores `event` on `stream`.
pub(crate) fn to_frame(event: &ServerSseMessage, stream: &str) -> Result<NewFrame> {
    let content = match &event.message {
        Some(message) => serde_json::to_vec(message.as_ref()).map_err(|e| Error::Codec {
            what: "encoding an SSE event".into(),
            reason: e.to_string(),
        })?,
        None => Vec::new(),
    };
    let mut frame = NewFrame::new(Direction::ServerToClient, content)
        .with_stream(stream)
        .with_content_type(JSON);
    if let Some(retry) = event.retry {
        frame = frame.with_header(RETRY_HEADER, retry.as_millis().to_string());
    }
    Ok(frame)
}

/// The SSE event stored in `frame`, with `event_id`.
pub(crate) fn from_frame(frame: &Frame, event_id: String) -> Result<ServerSseMessage> {
    let message = if frame.content.is_empty() {
        None
    } else {
        let m: ServerJsonRpcMessage =
            serde_json::from_slice(&frame.content).map_err(|e| Error::Codec {
                what: format!(
                    "decoding stored event {} of {}",
                    frame.seq, frame.session_id
                ),
                reason: e.to_string(),
            })?;
        Some(m)
    };
    let retry = frame
        .headers
        .iter()
        .find(|(name, _)| name == RETRY_HEADER)
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    let mut event = match message {
        Some(m) => ServerSseMessage::from_message(m),
        None => ServerSseMessage::retry(Duration::ZERO),
    };
    event.event_id = Some(event_id);
    event.retry = retry;
    Ok(event)
}

/// Whether `event` ends a request stream: the request's response or error.
pub(crate) fn ends_request(event: &ServerSseMessage) -> bool {
    matches!(
        event.message.as_deref(),
        Some(ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_))
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shoal_core::SessionId;

    use super::*;

    fn round_trip(message: ServerJsonRpcMessage) -> ServerSseMessage {
        let event = ServerSseMessage::from_message(message);
        let frame = to_frame(&event, "r")
            .unwrap()
            .into_frame(SessionId::new("s").unwrap(), 3);
        from_frame(&frame, "id".into()).unwrap()
    }

    #[test]
    fn messages_come_back_as_the_same_json() {
        let cases = [
            (
                json!({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "done: 3 steps"}], "structuredContent": {"sum": 3}, "isError": false}}),
                true,
            ),
            (
                json!({"jsonrpc": "2.0", "id": "a", "error": {"code": -32602, "message": "bad arguments"}}),
                true,
            ),
            (
                json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 2.0, "total": 5.0, "message": "step 2"}}),
                false,
            ),
            (
                json!({"jsonrpc": "2.0", "id": 3, "method": "elicitation/create", "params": {"message": "Your name?", "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}}),
                false,
            ),
        ];
        for (given, ends) in cases {
            let message: ServerJsonRpcMessage = serde_json::from_value(given).unwrap();
            // What a client sees live: rmcp's own encoding of the message.
            let want = serde_json::to_value(&message).unwrap();
            let back = round_trip(message);
            let got = serde_json::to_value(back.message.as_deref().unwrap()).unwrap();
            assert_eq!(got, want);
            assert_eq!(ends_request(&back), ends, "{want}");
            assert_eq!(back.event_id.as_deref(), Some("id"));
        }
    }

    #[test]
    fn priming_events_keep_their_retry() {
        let event = ServerSseMessage::retry(Duration::from_millis(3000));
        let frame = to_frame(&event, "r")
            .unwrap()
            .into_frame(SessionId::new("s").unwrap(), 1);
        let back = from_frame(&frame, "x".into()).unwrap();
        assert!(back.message.is_none());
        assert_eq!(back.retry, Some(Duration::from_secs(3)));
        assert!(!ends_request(&back));
    }

    #[test]
    fn a_corrupt_frame_is_an_error_not_a_panic() {
        let frame = NewFrame::new(Direction::ServerToClient, "{not json")
            .into_frame(SessionId::new("s").unwrap(), 1);
        let e = from_frame(&frame, "x".into()).unwrap_err().to_string();
        assert!(e.contains("decoding stored event 1 of s"), "{e}");
    }
}
