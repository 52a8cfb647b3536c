//! # shoal-testkit
//!
//! What every Shoal backend and wrapper is tested with (not published):
//!
//! - [`conformance`]: the whole [`SessionStore`] contract as one
//!   macro, [`conformance_suite!`], that a backend's test file invokes with a factory;
//! - [`model`]: a proptest state machine that checks a store against a `BTreeMap` reference,
//!   run with [`model_test!`] or [`model::run`];
//! - [`forwarding`]: a store that forwards every call to another and runs a test's hooks
//!   around each (count, delay, refuse, hang, or apply and then lose the reply).
//!
//! A factory is an `async fn(Harness) -> Arc<dyn SessionStore>` that returns a fresh, empty
//! store using exactly the harness's limits and clock:
//!
//! ```ignore
//! async fn memory(h: shoal_testkit::Harness) -> std::sync::Arc<dyn shoal_core::SessionStore> {
//!     std::sync::Arc::new(shoal_core::MemoryStore::builder()
//!         .limits(h.limits).clock(std::sync::Arc::new(h.clock)).build())
//! }
//! shoal_testkit::conformance_suite!(memory);
//! shoal_testkit::model_test!(memory);
//! ```

use std::{future::Future, sync::Arc};

use shoal_core::{FeedConfig, Limits, ManualClock, SessionStore};

pub mod conformance;
pub mod fault;
pub mod feed_conformance;
pub mod forwarding;
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
    /// The change feed a factory that can write one should write (on by default, so the
    /// conformance suite also proves every operation with its feed entry; the
    /// [`feed_conformance`] cases set their own).
    pub feed: FeedConfig,
}

impl Harness {
    /// A harness with `limits` and a clock stopped at the current time.
    pub fn new(limits: Limits) -> Self {
        Harness {
            limits,
            clock: ManualClock::starting_now(),
            feed: FeedConfig::default(),
        }
    }
}

impl Default for Harness {
    /// Default [`Limits`] and a clock stopped at the current time.
    fn default() -> Self {
        Harness::new(Limits::default())
    }
}

/// Something that builds a fresh, empty store for a [`Harness`].
///
/// Implemented for every `Fn(Harness) -> impl Future<Output = Arc<dyn SessionStore>>`, so an
/// `async fn(Harness) -> Arc<dyn SessionStore>` (or a closure returning an `async` block) is a
/// factory. The conformance cases and the model runner take one.
pub trait StoreFactory {
    /// The future [`StoreFactory::make`] returns.
    type Fut: Future<Output = Arc<dyn SessionStore>>;

    /// Builds a fresh, empty store that enforces `harness.limits` and reads `harness.clock`.
    fn make(&self, harness: Harness) -> Self::Fut;
}

impl<F, Fut> StoreFactory for F
where
    F: Fn(Harness) -> Fut,
    Fut: Future<Output = Arc<dyn SessionStore>>,
{
    type Fut = Fut;

    fn make(&self, harness: Harness) -> Fut {
        self(harness)
    }
}
