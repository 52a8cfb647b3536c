//! Store URLs and opening the store a command works on.
//!
//! | URL | store |
//! |---|---|
//! | `memory://` | an empty in-memory store, gone when the command ends (the default) |
//! | `file://PATH` | an in-memory store loaded from the Shoal JSON Lines export at `PATH` (a missing file is an empty store) and written back atomically after a command that changes data |
//! | `redis://`, `rediss://`, `redis+cluster://`, `redis+sentinel://` (and `rediss+cluster://`, `rediss+sentinel://`) | Redis ([`shoal_redis::RedisStore`]), configured by the `[redis]` section |
//!
//! Everything after `file://` is the path: `file:///var/lib/shoal/s.jsonl` is absolute,
//! `file://s.jsonl` is relative to the working directory. A `file://` store is meant for one
//! `shoal` at a time: two commands changing the same file concurrently lose one's changes.
//!
//! The composition around the backend (cache, resilience wrapper, bus, sweeper) is the
//! library's [`shoal_redis::Stack`]; this module adds the `file://` export file.

mod file;
mod opened;
mod url;

pub(crate) use file::AtomicFile;
pub(crate) use opened::{OpenedStore, open_store};
pub(crate) use shoal_redis::redact_url as redact;
pub(crate) use url::StoreUrl;
