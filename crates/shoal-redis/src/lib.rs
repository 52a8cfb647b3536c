#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod analytics;
mod cache;
mod config;
mod conn;
mod errors;
mod keys;
#[doc(hidden)]
pub mod layout;
mod meta;
pub mod pubsub;
mod scripts;
mod sentinel;
#[cfg(feature = "stack")]
#[cfg_attr(docsrs, doc(cfg(feature = "stack")))]
pub mod stack;
mod store;
mod tls_probe;

pub use cache::cache_builder;
pub use config::{EvictingPolicy, RedisConfig, redact_url};
pub use pubsub::{BusConfig, BusStats, RedisPubSub};
#[cfg(feature = "stack")]
pub use stack::{Stack, StackConfig, StackError};
pub use store::{
    CLUSTER_POLL, ClusterNode, RedisFeed, RedisMetrics, RedisStore, RedisSweeper, ServerInfo,
};
