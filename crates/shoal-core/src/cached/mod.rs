//! [`Cached<S>`]: a hot-session cache in front of any
//! [`SessionStore`](crate::SessionStore), itself a `SessionStore`, that stays correct when
//! several instances share the backend.
//!
//! # What is cached
//! - **Sessions**, in a [`moka`] cache (TinyLFU admission, LRU eviction), bounded by entries and
//!   by estimated bytes, with a per-entry time to live on the store's clock. Concurrent misses
//!   of one id make one backend read (single flight).
//! - **A frame tail** per session (the newest `tail_frames` frames, optional): replay pages
//!   inside the tail are answered from memory.
//! - **Activity**: with touch coalescing a session's `last_activity` is written at most once per
//!   `touch_interval`; the touches in between are answered from the cache.
//!
//! `get`, `count_frames`, tail `frames` pages and coalesced `touch`es are served from memory.
//! Everything else goes to the backend; listings (`list`, `count`) are never cached.
//!
//! # Staying correct across instances
//! A cached entry is dropped when
//! - the session's own `expires_at` passes (on the store's clock), or the entry is older than
//!   `ttl`: both end with a fresh read, never with a wrong "gone";
//! - this instance writes it (write-through updates it instead, where it can compute the result);
//! - another instance announces a write on the [`NotifyBus`](crate::notify::NotifyBus) (`consistency = invalidate`);
//!   while the bus is down the cache is empty and serves nothing, and when it is back it is
//!   emptied once more before it serves again;
//! - or, with `consistency = strict`, a cheap version check ([`Revalidate`]) before every hit
//!   finds it out of date.
//!
//! Loads and writes that race with an invalidation never leave a stale entry behind: every
//! change raises the session's fence (right after a local write, or the moment an announcement
//! arrives), a hit is only served from an entry made after the fence, and a load re-checks the
//! fence after inserting (see `fence.rs`). Writes through this wrapper publish the ids they changed (create,
//! update, delete, append, delete_frames, restore, and write-behind flushes); touches do not
//! (another instance's cached `last_activity` may lag by up to `ttl`; its expiry checks always
//! end at the backend).
//!
//! # Write modes ([`WriteMode`])
//! | mode | acknowledged when | durability |
//! |---|---|---|
//! | `write_through` | the backend has the write | as the backend |
//! | `read_through` | the backend has the write | as the backend (writes drop the entry) |
//! | `write_behind` | `update`s: once applied to the cache and queued | an acknowledged update is lost if the process dies before the flush (≤ `flush_interval`), or refused at flush if another instance changed the session meanwhile; [`Cached::shutdown`] writes everything |
//!
//! Touch coalescing (every mode, `touch_interval > 0`): an acknowledged touch reaches the
//! backend within `touch_interval` (a crash loses at most that much activity); a touch is
//! written at once when the backend's expiry is closer than `touch_margin`.
mod builder;
mod cache_core;
mod config;
mod deferred;
mod entry;
mod fence;
mod flush;
mod listen;
mod load;
mod shard;
mod stats;
mod touch;
mod trait_impl;
mod validate;
mod wrapper;
mod write_behind;
mod write_through;

pub use builder::CachedBuilder;
pub use config::{CacheConfig, Consistency, WriteMode};
pub use stats::{CacheStats, FlushReport};
pub use validate::{Revalidate, SessionStamp};
pub use wrapper::Cached;
