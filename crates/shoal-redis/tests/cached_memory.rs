//! The conformance suite and the reference model against `Cached<MemoryStore>` in every
//! mode. (They live here because shoal-core has no dev-dependency on the test kit.)
//!
//! - write-through, read-through and strict run the whole suite and the model;
//! - write-through with touch coalescing on runs the whole suite;
//! - write-behind runs the whole suite (not the model: see below).

use std::{sync::Arc, time::Duration};

use shoal_core::{
    MemoryStore, SessionStore,
    cached::{CacheConfig, Cached, Consistency, WriteMode},
};
use shoal_testkit::Harness;

fn memory(h: &Harness) -> MemoryStore {
    MemoryStore::builder()
        .limits(h.limits.clone())
        .clock(Arc::new(h.clock.clone()))
        .build()
}

fn cached(h: Harness, config: CacheConfig) -> Arc<dyn SessionStore> {
    Arc::new(
        Cached::builder(memory(&h))
            .config(config)
            .clock(Arc::new(h.clock))
            .build()
            .unwrap_or_else(|e| panic!("build: {e}")),
    )
}

/// Write-through, every touch written.
async fn write_through(h: Harness) -> Arc<dyn SessionStore> {
    cached(h, CacheConfig::local().with_touch_interval(Duration::ZERO))
}

/// Write-through with touch coalescing (1 s, the default).
async fn coalescing(h: Harness) -> Arc<dyn SessionStore> {
    cached(h, CacheConfig::local())
}

/// Read-through: writes drop entries instead of updating them.
async fn read_through(h: Harness) -> Arc<dyn SessionStore> {
    cached(
        h,
        CacheConfig::local()
            .with_write_mode(WriteMode::ReadThrough)
            .with_touch_interval(Duration::ZERO),
    )
}

/// Strict: every hit checked against the store (a full read: the memory store has no
/// cheaper version check).
async fn strict(h: Harness) -> Arc<dyn SessionStore> {
    cached(
        h,
        CacheConfig::default()
            .with_consistency(Consistency::Strict)
            .with_touch_interval(Duration::ZERO),
    )
}

/// Write-behind: updates queued, flushed every 20 ms.
async fn write_behind(h: Harness) -> Arc<dyn SessionStore> {
    cached(
        h,
        CacheConfig::local()
            .with_write_mode(WriteMode::WriteBehind)
            .with_flush_interval(Duration::from_millis(20))
            .with_touch_interval(Duration::ZERO),
    )
}

shoal_testkit::conformance_suite!(write_through_conformance, write_through);
shoal_testkit::conformance_suite!(coalescing_conformance, coalescing);
shoal_testkit::conformance_suite!(read_through_conformance, read_through);
shoal_testkit::conformance_suite!(strict_conformance, strict);
shoal_testkit::model_test!(write_through_model, write_through);
shoal_testkit::model_test!(read_through_model, read_through);
shoal_testkit::model_test!(strict_model, strict);

// Write-behind passes every case: a session's queued updates are written before any other
// backend call on it, and all of them before list/count/get_many/sweep, so nothing in the
// suite can observe the delay. The reference model is not run for write-behind or touch
// coalescing: both write activity later than they acknowledge it, so when the model moves
// the clock between an acknowledged write and its flush, the store's `last_activity` is the
// flush time, not the acknowledged one (by design; see the crate docs).
shoal_testkit::conformance_suite!(write_behind_conformance, write_behind);
