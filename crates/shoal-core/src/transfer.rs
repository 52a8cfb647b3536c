//! Export and import of whole stores as versioned JSON Lines.
//!
//! # Format (`shoal-sessions`, version 1)
//! ```text
//! {"format":"shoal-sessions","version":1}
//! {"frames":[{"seq":1,…,"content":"{\"jsonrpc\":…}"}],"pending":[…],"session":{"id":"…",…}}
//! …one line per session…
//! ```
//! - The first line names the format and its version; a reader refuses anything else.
//! - Each further line is one session with its retained frames and pending requests. `session`
//!   comes last in the line so an exporter can stream the frames page by page (constant memory)
//!   and still write the session's `first_seq`/`frame_count` exactly as exported.
//! - Frame content is kept byte for byte: as a JSON string under `content` when it is UTF-8
//!   (MCP messages are), otherwise base64 under `content_b64`.
//! - Output is deterministic (maps are sorted), so export → import → export gives the same bytes.

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::{
    Direction, Error, Frame, FrameQuery, ListQuery, PendingRequest, Result, Session, SessionRecord,
    SessionStore, Timestamp,
};

/// The `format` value of the header line.
pub const FORMAT_NAME: &str = "shoal-sessions";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The longest line [`import`] accepts by default (64 MiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

const PAGE: usize = 1_000;
const FLUSH_AT: usize = 256 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrameLine {
    seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream_id: Option<String>,
    direction: Direction,
    timestamp: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_b64: Option<String>,
}

impl FrameLine {
    fn from_frame(f: &Frame) -> Self {
        let (content, content_b64) = match std::str::from_utf8(&f.content) {
            Ok(s) => (Some(s.to_owned()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&f.content)),
            ),
        };
        FrameLine {
            seq: f.seq,
            stream_id: f.stream_id.clone(),
            direction: f.direction,
            timestamp: f.timestamp,
            content_type: f.content_type.clone(),
            headers: f.headers.clone(),
            content,
            content_b64,
        }
    }

    fn into_frame(self, session: &Session) -> Result<Frame> {
        let content = match (self.content, self.content_b64) {
            (Some(s), None) => Bytes::from(s),
            (None, Some(b)) => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .map_err(|e| {
                        Error::invalid(format!("frame {}: bad content_b64: {e}", self.seq))
                    })?,
            ),
            _ => {
                return Err(Error::invalid(format!(
                    "frame {}: exactly one of content and content_b64 is required",
                    self.seq
                )));
            }
        };
        Ok(Frame {
            session_id: session.id.clone(),
            seq: self.seq,
            stream_id: self.stream_id,
            direction: self.direction,
            timestamp: self.timestamp,
            content_type: self.content_type,
            headers: self.headers,
            content,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionLine {
    frames: Vec<FrameLine>,
    pending: Vec<PendingRequest>,
    session: Session,
}

/// What an export wrote.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ExportReport {
    /// Sessions written.
    pub sessions: u64,
    /// Frames written.
    pub frames: u64,
    /// Sessions that could not be read (corrupt) or changed so much during the export that
    /// their frames were no longer contiguous; they were not written.
    pub skipped: Vec<(String, Error)>,
}

/// Writes every session of `store` to `out` as JSON Lines. Memory use does not grow with the
/// number of sessions or frames: sessions are listed and frames read page by page.
///
/// `progress` is called after each session with the running report.
pub async fn export<S, W>(
    store: &S,
    out: &mut W,
    mut progress: impl FnMut(&ExportReport) + Send,
) -> Result<ExportReport>
where
    S: SessionStore + ?Sized,
    W: AsyncWrite + Unpin + Send,
{
    let mut report = ExportReport::default();
    let mut buf = Vec::with_capacity(FLUSH_AT * 2);
    serde_json::to_writer(
        &mut buf,
        &Header {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
        },
    )
    .map_err(Error::backend)?;
    buf.push(b'\n');

    let mut cursor = None;
    loop {
        let page = store
            .list(&ListQuery::first(PAGE).with_cursor(cursor.take()))
            .await?;
        for e in page.errors {
            report.skipped.push((e.id.to_string(), e.error));
        }
        for session in page.sessions {
            if buf.len() >= FLUSH_AT {
                out.write_all(&buf).await.map_err(Error::backend)?;
                buf.clear();
            }
            let mark = buf.len();
            match write_session(store, session, &mut buf, out).await {
                Ok(frames) => {
                    report.sessions += 1;
                    report.frames += frames;
                }
                Err((
                    id,
                    e @ (Error::NotFound { .. }
                    | Error::Corrupt { .. }
                    | Error::InvalidInput { .. }),
                )) => {
                    // Deleted, unreadable, or changed under us: leave it out, say so.
                    buf.truncate(mark.min(buf.len()));
                    report.skipped.push((id, e));
                    continue;
                }
                Err((_, e)) => return Err(e),
            }
            progress(&report);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out.write_all(&buf).await.map_err(Error::backend)?;
    out.flush().await.map_err(Error::backend)?;
    Ok(report)
}

/// Writes one session line into `buf` (flushing whole earlier lines to `out` as it grows).
/// Returns the number of frames written, or the session id with the error.
async fn write_session<S, W>(
    store: &S,
    mut session: Session,
    buf: &mut Vec<u8>,
    out: &mut W,
) -> std::result::Result<u64, (String, Error)>
where
    S: SessionStore + ?Sized,
    W: AsyncWrite + Unpin + Send,
{
    let id = session.id.clone();
    let fail = |e: Error| (id.to_string(), e);
    // This line stays in `buf` until it is whole, so a failure can be undone by the caller,
    // unless it grows past FLUSH_AT: then it is streamed out, and a failure after that point
    // is reported as a `Backend` error that ends the whole export.
    let start = buf.len();
    buf.extend_from_slice(b"{\"frames\":[");
    let mut after = 0;
    let mut written = 0u64;
    let mut first_seq = None;
    let mut streamed = false;
    'pages: loop {
        let page = store
            .frames(&id, &FrameQuery::after(after, PAGE))
            .await
            .map_err(fail)?;
        if page.trimmed && first_seq.is_some() {
            let e = Error::invalid(format!(
                "session {id}: frames were trimmed during the export; export it again"
            ));
            return Err(if streamed {
                (id.to_string(), Error::backend(e))
            } else {
                fail(e)
            });
        }
        for f in &page.frames {
            if f.seq > session.last_seq {
                break 'pages;
            }
            if written > 0 {
                buf.push(b',');
            }
            first_seq.get_or_insert(f.seq);
            serde_json::to_writer(&mut *buf, &FrameLine::from_frame(f))
                .map_err(|e| fail(Error::backend(e)))?;
            written += 1;
        }
        after = page.next_after(after);
        if !page.has_more {
            break;
        }
        if buf.len() - start >= FLUSH_AT {
            out.write_all(buf)
                .await
                .map_err(|e| fail(Error::backend(e)))?;
            buf.clear();
            streamed = true;
        }
    }
    session.first_seq = first_seq.unwrap_or(session.last_seq + 1);
    session.frame_count = written;
    let pending = store.list_pending(&id).await.map_err(fail)?;
    buf.extend_from_slice(b"],\"pending\":");
    serde_json::to_writer(&mut *buf, &pending).map_err(|e| fail(Error::backend(e)))?;
    buf.extend_from_slice(b",\"session\":");
    serde_json::to_writer(&mut *buf, &session).map_err(|e| fail(Error::backend(e)))?;
    buf.extend_from_slice(b"}\n");
    Ok(written)
}

/// What [`import`] does with a session whose id already exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnExisting {
    /// Report the line as failed (default).
    #[default]
    Fail,
    /// Leave the stored session alone and count the line as skipped.
    Skip,
    /// Delete the stored session, then import the line's.
    Replace,
}

/// How [`import`] behaves.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ImportOptions {
    /// What to do with ids that already exist.
    pub on_existing: OnExisting,
    /// Check every line but write nothing.
    pub dry_run: bool,
    /// Go on after a bad line (reporting it) instead of stopping there.
    pub keep_going: bool,
    /// Longest line accepted.
    pub max_line_bytes: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            on_existing: OnExisting::Fail,
            dry_run: false,
            keep_going: false,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// A line [`import`] could not take.
#[derive(Debug)]
#[non_exhaustive]
pub struct LineError {
    /// 1-based line number.
    pub line: u64,
    /// Why.
    pub error: Error,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.error)
    }
}

/// What an import did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ImportReport {
    /// Sessions written (or that would be, in a dry run).
    pub imported: u64,
    /// Frames in those sessions.
    pub frames: u64,
    /// Sessions left alone because they existed ([`OnExisting::Skip`]).
    pub skipped: u64,
    /// Lines that were refused. Each session is all-or-nothing: a refused line wrote nothing.
    pub failed: Vec<LineError>,
}

/// Reads a JSON Lines export from `input` into `store`. Each session is checked whole
/// ([`SessionRecord::validate`]) and written atomically ([`SessionStore::restore`]), so a bad
/// line never leaves half a session behind. Stops at the first bad line unless
/// [`ImportOptions::keep_going`]; the report names every bad line by number.
///
/// Errors (rather than a report) only for a missing or foreign header, or an I/O failure.
pub async fn import<S, R>(
    store: &S,
    input: &mut R,
    options: &ImportOptions,
    mut progress: impl FnMut(&ImportReport) + Send,
) -> Result<ImportReport>
where
    S: SessionStore + ?Sized,
    R: AsyncBufRead + Unpin + Send,
{
    let mut report = ImportReport::default();
    let mut line = Vec::new();
    let mut n = 0u64;

    n += 1;
    if !read_line(input, &mut line, options.max_line_bytes, n).await? {
        return Err(Error::invalid(
            "line 1: empty input, expected a shoal-sessions header",
        ));
    }
    let header: Header = serde_json::from_slice(trim_eol(&line))
        .map_err(|e| Error::invalid(format!("line 1: not a shoal-sessions header: {e}")))?;
    if header.format != FORMAT_NAME {
        return Err(Error::invalid(format!(
            "line 1: format {:?} is not {FORMAT_NAME:?}",
            header.format
        )));
    }
    if header.version != FORMAT_VERSION {
        return Err(Error::invalid(format!(
            "line 1: format version {} is not supported (this build reads {FORMAT_VERSION})",
            header.version
        )));
    }

    loop {
        n += 1;
        let got = match read_line(input, &mut line, options.max_line_bytes, n).await {
            Ok(got) => got,
            Err(e @ Error::InvalidInput { .. }) => {
                report.failed.push(LineError { line: n, error: e });
                if options.keep_going {
                    continue;
                }
                break;
            }
            Err(e) => return Err(e),
        };
        if !got {
            break;
        }
        let text = trim_eol(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match import_line(store, text, options).await {
            Ok(Imported::Written(frames)) => {
                report.imported += 1;
                report.frames += frames;
            }
            Ok(Imported::Skipped) => report.skipped += 1,
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                report.failed.push(LineError { line: n, error });
                if !options.keep_going {
                    break;
                }
            }
        }
        progress(&report);
    }
    Ok(report)
}

enum Imported {
    Written(u64),
    Skipped,
}

async fn import_line<S>(store: &S, text: &[u8], options: &ImportOptions) -> Result<Imported>
where
    S: SessionStore + ?Sized,
{
    let parsed: SessionLine = serde_json::from_slice(text)
        .map_err(|e| Error::invalid(format!("not a session line: {e}")))?;
    let frames = parsed
        .frames
        .into_iter()
        .map(|f| f.into_frame(&parsed.session))
        .collect::<Result<Vec<_>>>()?;
    let record = SessionRecord::new(parsed.session, frames, parsed.pending);
    record.validate(store.limits())?;
    let n = record.frames.len() as u64;
    if options.dry_run {
        return Ok(Imported::Written(n));
    }
    let id = record.session.id.clone();
    match store.restore(record.clone()).await {
        Ok(()) => Ok(Imported::Written(n)),
        Err(Error::AlreadyExists { .. }) if options.on_existing == OnExisting::Skip => {
            Ok(Imported::Skipped)
        }
        Err(Error::AlreadyExists { .. }) if options.on_existing == OnExisting::Replace => {
            store.delete(&id).await?;
            store.restore(record).await?;
            Ok(Imported::Written(n))
        }
        Err(e) => Err(e),
    }
}

/// Reads one line into `buf` (cleared first). `Ok(false)` at end of input. A line longer than
/// `max` is consumed and reported as `InvalidInput`.
async fn read_line<R: AsyncBufRead + Unpin>(
    input: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
    line_no: u64,
) -> Result<bool> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = input.fill_buf().await.map_err(Error::backend)?;
        if available.is_empty() {
            if too_long {
                return Err(Error::invalid(format!(
                    "line {line_no}: longer than {max} bytes"
                )));
            }
            return Ok(!buf.is_empty());
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let used = chunk.len();
        if !too_long {
            if buf.len() + used > max.saturating_add(2) {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        input.consume(used);
        if done {
            if too_long {
                return Err(Error::invalid(format!(
                    "line {line_no}: longer than {max} bytes"
                )));
            }
            return Ok(true);
        }
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
