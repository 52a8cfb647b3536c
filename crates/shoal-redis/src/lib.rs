#![doc = include_str!("../README.md")]

mod config;
mod conn;
mod errors;
pub mod invalidation;
mod keys;
#[doc(hidden)]
pub mod layout;
mod meta;
mod scripts;
mod sentinel;
mod store;

pub use config::RedisConfig;
pub use store::{RedisMetrics, RedisStore, RedisSweeper};
