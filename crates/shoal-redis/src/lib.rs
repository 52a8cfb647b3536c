//! # shoal-redis
//!
//! Shoal's Redis backend: [`RedisStore`], a [`SessionStore`](shoal_core::SessionStore) on
//! standalone Redis, Redis Cluster or Sentinel, with TLS and ACL users.

mod config;
mod conn;
mod errors;
mod keys;
mod meta;
mod scripts;
mod sentinel;
mod store;

pub use config::RedisConfig;
pub use store::{RedisMetrics, RedisStore, RedisSweeper};
