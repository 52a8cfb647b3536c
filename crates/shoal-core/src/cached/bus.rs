//! The cache's names for the pub/sub between instances, which lives in [`crate::notify`]
//! (the proxy uses it without the cache): re-exports only, so cache code and users keep
//! writing `cached::InvalidationBus`, `cached::LocalBus` and so on.

pub use crate::notify::{
    BUS_CAPACITY, BusEvent, BusHook, BusHooks, Invalidation, LocalBus,
    NotifyBus as InvalidationBus, unix_micros,
};
