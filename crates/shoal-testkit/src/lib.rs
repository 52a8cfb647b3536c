//! # shoal-testkit
//!
//! What every Shoal backend and wrapper is tested with (not published):
//!
//! - [`conformance`]: the whole [`SessionStore`](shoal_core::SessionStore) contract as one
//!   macro, [`conformance_suite!`], that a backend's test file invokes with a factory;
//! - [`model`]: a proptest state machine that checks a store against a `BTreeMap` reference.
//!
//! ```ignore
//! async fn memory(h: shoal_testkit::Harness) -> std::sync::Arc<dyn shoal_core::SessionStore> {
//!     std::sync::Arc::new(shoal_core::MemoryStore::builder()
//!         .limits(h.limits).clock(std::sync::Arc::new(h.clock)).build())
//! }
//! shoal_testkit::conformance_suite!(memory);
//! ```

use shoal_core::{Limits, ManualClock};

pub mod conformance;
pub mod model;
pub mod redis_server;

/// What a store factory gets for each test: the limits to enforce and the clock to read.
///
/// The clock starts at the current wall-clock time (so server-side TTLs, e.g. Redis
/// `PEXPIRE`, are meaningful) and only moves when a test advances it. A factory must return a
/// fresh, empty store (for shared servers: a unique key prefix) that uses exactly these.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Harness {
    /// Limits the store must enforce.
    pub limits: Limits,
    /// The clock the store must use for "now".
    pub clock: ManualClock,
}

impl Harness {
    /// A harness with `limits` and a clock stopped at the current time.
    pub fn new(limits: Limits) -> Self {
        Harness {
            limits,
            clock: ManualClock::starting_now(),
        }
    }
}
