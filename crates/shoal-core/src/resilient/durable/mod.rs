//! The durable outage journal: every write `Resilient` acknowledges on the fallback path is
//! first appended to a local file, so an instance killed during an outage replays, when it
//! starts again, what it acknowledged.
//!
//! - `record`: what is logged — the acknowledged call itself (create, append, touch, …) and
//!   the drain's progress (a session's drain started after seq N; a session settled).
//! - `file`: the on-disk format (a magic header, then records framed by length and CRC-32)
//!   and reading it back, stopping at a torn tail.
//! - `writer`: the file's single writer thread: group commit, the fsync policy, the byte
//!   bound, truncation once the journal is drained.
//!
//! Recovery itself (replaying the records through the wrapper) is `super::recover`.

mod file;
mod record;
mod writer;

pub(crate) use record::Record;

/// The length of an empty journal file (its magic header).
pub(crate) const HEADER_BYTES: u64 = file::MAGIC.len() as u64;
pub(crate) use file::ReadBack;
pub(crate) use writer::DurableLog;
