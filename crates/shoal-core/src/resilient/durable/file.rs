//! The journal file's format and reading it back.
//!
//! ```text
//! "SHOALJ1\n"                          8-byte magic
//! then per record:
//!   len   u32 little-endian            payload bytes
//!   crc   u32 little-endian            CRC-32 (IEEE) of the payload
//!   payload                            the record, codec-encoded (versioned MessagePack)
//! ```
//!
//! A record is whole or it is not there: a reader stops at the first record that is short
//! or fails its checksum or does not decode — what a process killed mid-write leaves — and
//! reports the bytes it dropped.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    path::Path,
};

use super::Record;
use crate::codec;

/// The file's first bytes.
pub(crate) const MAGIC: &[u8; 8] = b"SHOALJ1\n";
/// Bytes before each payload.
pub(crate) const HEADER: usize = 8;
/// Bound on one record's payload (a larger length is corruption, not a record).
const MAX_RECORD: usize = 256 << 20;

/// Encodes `record` with its frame (length, checksum).
pub(crate) fn frame(record: &Record) -> io::Result<Vec<u8>> {
    let payload = codec::encode(record).map_err(|e| io::Error::other(e.to_string()))?;
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::other("a journal record over 4 GiB"))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// What a journal file held.
#[derive(Debug, Default)]
pub(crate) struct ReadBack {
    /// The whole records, in order.
    pub(crate) records: Vec<Record>,
    /// Bytes after the last whole record (a torn or corrupt tail), dropped.
    pub(crate) torn_bytes: u64,
}

/// Reads every whole record of the file at `path` (none if it does not exist).
pub(crate) fn read_back(path: &Path) -> io::Result<ReadBack> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ReadBack::default()),
        Err(e) => return Err(e),
    }
    if bytes.is_empty() {
        return Ok(ReadBack::default());
    }
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a Shoal journal (its first bytes are not the journal's magic)",
                path.display()
            ),
        ));
    }
    let mut out = ReadBack::default();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        match parse_one(&bytes[at..]) {
            Some((record, used)) => {
                out.records.push(record);
                at += used;
            }
            None => {
                out.torn_bytes = (bytes.len() - at) as u64;
                break;
            }
        }
    }
    Ok(out)
}

/// One record at the start of `rest` and the bytes it took, or `None` if it is not whole.
fn parse_one(rest: &[u8]) -> Option<(Record, usize)> {
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = rest.get(HEADER..HEADER + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let record = codec::decode(payload).ok()?;
    Some((record, HEADER + len))
}

/// Replaces the file at `path` with one holding `records` (written to a temporary file,
/// synced, renamed over it, the directory synced): a crash leaves the old file or the new.
/// Returns the new file's length.
pub(crate) fn rewrite(path: &Path, records: &[Record]) -> io::Result<u64> {
    let tmp = path.with_extension("rewrite");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let mut len = MAGIC.len() as u64;
    f.write_all(MAGIC)?;
    for r in records {
        let framed = frame(r)?;
        len += framed.len() as u64;
        f.write_all(&framed)?;
    }
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(path);
    Ok(len)
}

/// Syncs the directory holding `path` (so a rename or a new file survives a power loss);
/// best effort: not every platform lets a directory be opened.
pub(crate) fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionId;

    fn id(s: &str) -> SessionId {
        SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "shoal-journal-file-{}-{}",
            std::process::id(),
            SessionId::generate()
        ));
        fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_dropped_and_counted() {
        let d = dir();
        let path = d.join("journal");
        let records = vec![Record::Touch(id("a")), Record::Settled(id("b"))];
        let len = rewrite(&path, &records).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::metadata(&path).map(|m| m.len()).ok(), Some(len));
        let back = read_back(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.records, records);
        assert_eq!(back.torn_bytes, 0);

        // Half a record at the end (a write cut by a kill).
        let extra = frame(&Record::Delete(id("c"))).unwrap_or_else(|e| panic!("{e}"));
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(&extra[..extra.len() / 2])
            .unwrap_or_else(|e| panic!("{e}"));
        drop(f);
        let back = read_back(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.records, records);
        assert_eq!(back.torn_bytes, (extra.len() / 2) as u64);

        // A flipped byte inside the last record: its checksum fails.
        let mut bytes = fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
        let at = len as usize - 2;
        bytes[at] ^= 0xff;
        fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let back = read_back(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.records, records[..1].to_vec());
        assert!(back.torn_bytes > 0);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_refused_and_a_missing_one_is_empty() {
        let d = dir();
        let path = d.join("journal");
        assert!(
            read_back(&path)
                .unwrap_or_else(|e| panic!("{e}"))
                .records
                .is_empty()
        );
        fs::write(&path, b"hello world, not a journal").unwrap_or_else(|e| panic!("{e}"));
        let e = read_back(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not a Shoal journal"), "{e}");
        let _ = fs::remove_dir_all(&d);
    }
}
