//! # shoal-redis
//!
//! Shoal's Redis backend. (Being written.)
