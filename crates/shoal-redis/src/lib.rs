#![doc = include_str!("../README.md")]

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
mod store;

pub use cache::cache_builder;
pub use config::RedisConfig;
pub use pubsub::{BusConfig, BusStats, RedisPubSub};
pub use store::{RedisMetrics, RedisStore, RedisSweeper};
