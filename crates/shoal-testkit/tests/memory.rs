//! The conformance suite and the reference model, run against [`MemoryStore`].

use std::sync::Arc;

use shoal_core::{MemoryStore, SessionStore};
use shoal_testkit::Harness;

/// A fresh memory store with the harness's limits and clock.
async fn memory(h: Harness) -> Arc<dyn SessionStore> {
    Arc::new(
        MemoryStore::builder()
            .limits(h.limits)
            .clock(Arc::new(h.clock))
            .feed(h.feed)
            .build(),
    )
}

shoal_testkit::conformance_suite!(memory);
shoal_testkit::model_test!(memory);
shoal_testkit::feed_suite!(memory);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_frame_pages_stay_within_their_byte_bound() {
    shoal_testkit::conformance::big_frame_pages_stay_within_their_byte_bound(memory).await;
}
