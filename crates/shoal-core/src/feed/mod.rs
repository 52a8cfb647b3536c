//! The change feed: every session lifecycle change and every appended frame, as small
//! versioned entries ([`Change`]) a reader follows from a position or as a consumer group
//! ([`ChangeFeed`]), without scanning sessions.
//!
//! - [`change`]: an entry, its id, and the wire format every backend stores;
//! - [`summary`]: what an entry says about a session or a frame (never the payload);
//! - [`reader`]: the [`ChangeFeed`] trait, cursors, group starts, stats;
//! - [`memory_feed`]: the in-process feed the memory store writes;
//! - [`config`]: its settings, [`FeedConfig`].
//!
//! A store exposes its feed through
//! [`SessionStore::change_feed`](crate::SessionStore::change_feed); wrappers forward their
//! inner store's.
//!
//! # Guarantees
//!
//! - **Memory**: an entry is written under the session's lock with the change it reports, so
//!   every change has exactly one entry and a session's entries are in the order of its
//!   changes. One shard.
//! - **Redis, single server (standalone, Sentinel)**: the entry is written by the same Lua
//!   script as the change (one atomic step): a change without its entry, or an entry without
//!   its change, cannot be observed. One shard; entries in the order the server ran the
//!   scripts (so a session's entries are in its change order).
//! - **Redis Cluster**: a session's keys and a shared stream cannot be in one slot, so the
//!   entry follows the change: queued in completion order and written in batches by one task
//!   per instance, into the shard chosen by the session id (`cluster_shards` streams). A
//!   session's entries are in one shard, in the order its writes completed on that instance;
//!   entries still queued when a process dies are lost (at most once).
//! - Consumer groups deliver each entry to one member; entries stay pending until
//!   acknowledged, and [`ChangeFeed::claim_stale`] hands a dead member's to another
//!   (at-least-once). The feed is capped (`cap` entries per shard): a reader slower than the
//!   cap loses the oldest entries.
//! - Sessions removed by Redis's own key TTL (after the grace, when no sweeper ran) have no
//!   `expired` entry.

pub mod change;
pub mod config;
pub mod memory_feed;
pub mod reader;
pub mod summary;

pub use change::{Change, ChangeKind, FEED_FORMAT_VERSION, FeedId};
pub use config::FeedConfig;
pub use memory_feed::MemoryFeed;
pub use reader::{ChangeFeed, FeedCursor, FeedStats, GroupStart, GroupStats};
pub use summary::{FrameError, FrameSummary, SessionSummary};
