//! Redis pub/sub between instances for every topology: [`RedisPubSub`], a
//! [`NotifyBus`](shoal_core::NotifyBus) carrying cache invalidations and proxy stream
//! wake-ups over standalone Redis, `rediss://` (TLS), ACL users, Sentinel and Cluster.
//!
//! # Channels
//! - `<key_prefix>:invalidate`: sessions changed. Each message is ASCII, space-separated:
//!   `1 <origin> <sent_at_us> <sid> <sid> …` (at most `max_ids_per_message` ids), or
//!   `1 <origin> <sent_at_us> *` for "everything".
//! - `<key_prefix>:wake:{w0}` … `<key_prefix>:wake:{w15}`: new events on a stream. A wake-up
//!   goes to the channel a hash of its session id picks; every instance subscribes to all
//!   sixteen. The hash tags spread the channels over the slots, so on a Cluster wake-up
//!   traffic is shared by the shards and no client needs to know the topology. A message is
//!   `1 <origin> <sid> <stream>`.
//!
//! `origin` is a random id per bus, so an instance ignores its own messages; `sent_at_us`
//! (the sender's wall clock, µs since the epoch) lets receivers measure delivery delay.
//!
//! # Connections
//! - **Subscriber**: standalone and Sentinel (the current master, asked of the Sentinels on
//!   every reconnection) use classic `SUBSCRIBE` on a dedicated connection; a Cluster uses
//!   sharded pub/sub (`SSUBSCRIBE`, Redis ≥ 7) over a RESP3 cluster connection, each channel
//!   on the master that owns its slot. A `PING` every `ping_interval` (on a Cluster: to every
//!   master) proves it alive. When it fails or goes silent the bus reports
//!   [`BusEvent::Down`](shoal_core::notify::BusEvent::Down) *before* reconnecting (caches
//!   empty themselves and stay off), then reconnects with backoff and reports
//!   [`BusEvent::Up`](shoal_core::notify::BusEvent::Up) once every channel is subscribed
//!   again (caches empty themselves once more and turn on). Wake-ups sent while the bus is
//!   down are lost; followers fall back to polling the store.
//! - **Publisher**: its own multiplexed connection (the same kind the store uses).
//!   Publishing never blocks: ids and wake-ups go to a de-duplicated outbox that one task
//!   drains, one pipeline of `PUBLISH` (Cluster: `SPUBLISH`, routed to the channel's shard)
//!   per channel. A failed send keeps everything and is retried; meanwhile other instances
//!   rely on their entry ttl and their poll.
//!
//! # ACL
//! On top of the store's permissions the bus needs `+subscribe +publish +ping` (Cluster:
//! `+ssubscribe +spublish +ping`, and `+cluster|slots` as the store does) and the channels
//! `&<key_prefix>:invalidate &<key_prefix>:wake:*`; `strict` caches also `+hmget`.

mod bus;
mod channels;
mod config;
mod message;
mod outbox;
mod publisher;
mod subscriber;

pub use bus::{BusStats, RedisPubSub};
pub use config::BusConfig;
