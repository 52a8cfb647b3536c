//! [`RedisStore`]: the [`SessionStore`](shoal_core::SessionStore) on Redis.
//!
//! The handle and the state its clones share are in `handle`; the trait impl in
//! `session_store` runs each operation on that state, and the operations live by what they
//! touch: `session_ops` (a session's meta hash), `frames`, `pending`, `lease` (named leases), `quota` (admission quotas), `replication` (waiting for replicas), `secret` (shared secrets),
//! `create`, `restore`,
//! `list` (listing and counting), `server_clock` (time as the server sees it), `index` (keeping the index sets), `sweep`, `health`, `dataset` (noticing a server that lost its data), `memory_policy` (can the server evict our keys),
//! `feed_write` (the change feed's entries), `feed_outbox` (a Cluster's entries, queued and written in batches), `feed_read` (reading it: [`RedisFeed`]), `metrics`, `server_info` (`INFO` and the Cluster's nodes, for monitoring). `exec` runs the commands and reads their replies.

mod create;
mod dataset;
mod exec;
mod feed_outbox;
mod feed_read;
mod feed_write;
mod frames;
mod handle;
mod health;
mod index;
mod lease;
mod list;
mod memory_policy;
mod metrics;
mod pending;
mod quota;
mod replication;
mod restore;
mod secret;
mod server_clock;
mod server_info;
mod session_ops;
mod session_store;
mod sweep;

pub use feed_read::{CLUSTER_POLL, RedisFeed};
pub(crate) use feed_write::{feed_script_head, frames_detail, touch_window_start};
pub(crate) use frames::metadata_allowance;
pub use handle::RedisStore;
pub use metrics::RedisMetrics;
pub use server_info::{ClusterNode, ServerInfo};
pub use sweep::RedisSweeper;
