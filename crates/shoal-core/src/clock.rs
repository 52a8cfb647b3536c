//! Time as the stores see it: the real clock in production, a hand-driven one in tests.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use std::time::Duration;

use crate::Timestamp;

/// A source of "now" for expiry and activity stamps.
///
/// Stores take an `Arc<dyn Clock>` so tests can move time forward without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// Whether this clock claims to tell the wall-clock time (the default). A backend may
    /// correct such a clock to its server's when the two disagree (the Redis store does);
    /// a clock that says `false` — a test's [`ManualClock`] — is taken as given.
    fn is_wall_clock(&self) -> bool {
        true
    }
}

/// The system wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use shoal_core::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Timestamp(1_000));
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(clock.now(), Timestamp(2_000));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start.0)))
    }

    /// A clock stopped at the current wall-clock time (useful with backends whose server-side
    /// TTLs run on real time).
    pub fn starting_now() -> Self {
        ManualClock::new(Timestamp::now())
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }

    /// A test drives it by hand: never corrected.
    fn is_wall_clock(&self) -> bool {
        false
    }
}
