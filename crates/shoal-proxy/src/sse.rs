//! Server-Sent Events: an incremental parser for upstream streams and the encoder for ours.

use bytes::{Buf as _, Bytes, BytesMut};

/// One SSE event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id` field, if any.
    pub id: Option<String>,
    /// The `event` field, if any.
    pub event: Option<String>,
    /// The `data` lines joined with `\n` (empty for e.g. a priming event).
    pub data: String,
    /// The `retry` field in ms, if any.
    pub retry: Option<u64>,
}

/// Why parsing stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseError {
    /// One event grew beyond the limit.
    TooLarge,
}

/// An incremental SSE parser (the WHATWG algorithm: `\n`, `\r\n` or `\r` line ends, comments,
/// one optional space after the colon, events dispatched at a blank line).
#[derive(Debug)]
pub struct SseParser {
    buf: BytesMut,
    cur: SseEvent,
    has_data: bool,
    pending: usize,
    max_event: usize,
}

impl SseParser {
    /// A parser that refuses events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        SseParser {
            buf: BytesMut::new(),
            cur: SseEvent::default(),
            has_data: false,
            pending: 0,
            max_event,
        }
    }

    /// Feeds bytes and returns the events they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') {
            let ends_with_cr = self.buf[pos] == b'\r';
            if ends_with_cr && pos + 1 == self.buf.len() {
                // A lone `\r` at the end: wait to see whether `\n` follows.
                break;
            }
            let line = self.buf.split_to(pos);
            let skip = if ends_with_cr && self.buf.get(1) == Some(&b'\n') {
                2
            } else {
                1
            };
            self.buf.advance(skip);
            if let Some(ev) = self.line(&line)? {
                out.push(ev);
            }
        }
        if self.pending + self.buf.len() > self.max_event {
            return Err(SseError::TooLarge);
        }
        Ok(out)
    }

    /// Signals the end of the input: an unterminated event is dropped (as the spec says).
    pub fn finish(&mut self) {
        self.buf.clear();
        self.cur = SseEvent::default();
        self.has_data = false;
        self.pending = 0;
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            let dispatch = self.has_data || self.cur.id.is_some() || self.cur.retry.is_some();
            let ev = std::mem::take(&mut self.cur);
            self.has_data = false;
            self.pending = 0;
            return Ok(dispatch.then_some(ev));
        }
        self.pending += line.len() + 1;
        if self.pending > self.max_event {
            return Err(SseError::TooLarge);
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.cur.data.push('\n');
                }
                self.cur.data.push_str(&value);
                self.has_data = true;
            }
            b"id" if !value.contains('\0') => self.cur.id = Some(value.into_owned()),
            b"event" => self.cur.event = Some(value.into_owned()),
            b"retry" => {
                if let Ok(ms) = value.parse() {
                    self.cur.retry = Some(ms);
                }
            }
            _ => {}
        }
        Ok(None)
    }
}

/// Encodes one event: `id`, `event` and `retry` when given, then the data split into
/// `data:` lines, then the blank line.
pub fn encode(id: Option<&str>, event: Option<&str>, retry: Option<u64>, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 64);
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    if let Some(ev) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(ev.as_bytes());
        out.push(b'\n');
    }
    if let Some(ms) = retry {
        out.extend_from_slice(format!("retry: {ms}\n").as_bytes());
    }
    // Split on \r\n, \n or \r so the client rebuilds the same text (with \n line ends).
    let mut start = 0;
    let mut i = 0;
    let mut any = false;
    while i < data.len() {
        let b = data[i];
        if b == b'\n' || b == b'\r' {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&data[start..i]);
            out.push(b'\n');
            any = true;
            if b == b'\r' && data.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    if start < data.len() || !any {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&data[start..]);
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new(1 << 20);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.push(c).unwrap());
        }
        out
    }

    #[test]
    fn parses_events_across_chunks_and_line_ends() {
        let evs = parse_all(&[
            b"id: 1\ndata: {\"a\"",
            b":1}\n\n: comment\r\nid:2\r",
            b"\ndata: x\rdata: y\r\n\r\n",
            b"retry: 500\nid: 3\ndata\n\n",
        ]);
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].id.as_deref(), Some("1"));
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[1].id.as_deref(), Some("2"));
        assert_eq!(evs[1].data, "x\ny");
        assert_eq!(evs[2].retry, Some(500));
        assert_eq!(evs[2].data, "");
    }

    #[test]
    fn priming_event_without_data_is_dispatched() {
        let evs = parse_all(&[b"id: abc\ndata: \n\n"]);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data, "");
        let none = parse_all(&[b"event: x\n\n"]);
        assert!(none.is_empty());
    }

    #[test]
    fn refuses_oversized_events() {
        let mut p = SseParser::new(10);
        assert_eq!(p.push(b"data: 0123456789\n"), Err(SseError::TooLarge));
        let mut p = SseParser::new(10);
        assert_eq!(p.push(b"data: 0123456789"), Err(SseError::TooLarge));
    }

    #[test]
    fn encode_then_parse_round_trips() {
        for data in [&b"{}"[..], b"a\nb", b"a\r\nb\rc", b"", b"end\n"] {
            let wire = encode(Some("s.1.x"), None, Some(100), data);
            let evs = parse_all(&[&wire]);
            assert_eq!(evs.len(), 1, "{data:?}");
            let expect = String::from_utf8_lossy(data)
                .replace("\r\n", "\n")
                .replace('\r', "\n");
            let expect = if data == b"end\n" {
                "end".to_string()
            } else {
                expect
            };
            assert_eq!(evs[0].data, expect);
            assert_eq!(evs[0].id.as_deref(), Some("s.1.x"));
            assert_eq!(evs[0].retry, Some(100));
        }
    }
}
