//! The store's clock: this instance's clock, corrected to the Redis server's when the two
//! disagree by more than [`RedisConfig::max_clock_skew`](crate::RedisConfig::max_clock_skew).
//!
//! Every time decision of the store — the `now` the scripts compare expiries with (and so
//! delete by), the expiries it writes, the sweeper's window — reads this clock. Instances
//! whose own clocks differ therefore agree on time within the measurement error (half a
//! round trip) instead of within their skew: an instance whose clock runs an hour ahead
//! does not see, and delete, other instances' live sessions as expired.
//!
//! The offset is measured with `TIME` when the store connects and again every
//! [`RedisConfig::clock_resync`](crate::RedisConfig::clock_resync) by the sweeper task. A
//! difference within the tolerance is left uncorrected (offset 0), so a well-synchronised
//! fleet writes exactly its own clocks' times. A clock that is not a wall clock
//! ([`Clock::is_wall_clock`], a test's manual clock) is never corrected.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::Value;
use shoal_core::{Clock, Error, Result, Timestamp};

use super::{
    exec::{array, u64_of},
    handle::StoreState,
};

/// This instance's clock plus the measured offset to the server's.
#[derive(Debug)]
pub(super) struct ServerClock {
    local: Arc<dyn Clock>,
    /// Server time minus local time, in milliseconds (0 while within the tolerance).
    offset_ms: AtomicI64,
    /// When the offset was last measured.
    measured: Mutex<Option<Instant>>,
}

impl ServerClock {
    pub(super) fn new(local: Arc<dyn Clock>) -> Self {
        ServerClock {
            local,
            offset_ms: AtomicI64::new(0),
            measured: Mutex::new(None),
        }
    }

    /// The correction applied to the local clock, in milliseconds.
    pub(super) fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Whether the offset was measured less than `every` ago.
    fn fresh(&self, every: Duration) -> bool {
        let measured = self.measured.lock().map(|m| *m).unwrap_or(None);
        measured.is_some_and(|at| at.elapsed() < every)
    }

    fn record(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
        if let Ok(mut m) = self.measured.lock() {
            *m = Some(Instant::now());
        }
    }
}

/// Applies a signed millisecond offset to a timestamp, saturating at both ends.
fn shifted(t: Timestamp, offset_ms: i64) -> Timestamp {
    let ms = t.as_millis();
    Timestamp(if offset_ms >= 0 {
        ms.saturating_add(offset_ms.unsigned_abs())
    } else {
        ms.saturating_sub(offset_ms.unsigned_abs())
    })
}

impl Clock for ServerClock {
    fn now(&self) -> Timestamp {
        shifted(self.local.now(), self.offset_ms())
    }

    fn is_wall_clock(&self) -> bool {
        self.local.is_wall_clock()
    }
}

/// The offset to keep for a measured skew: none within the tolerance, else all of it.
pub(super) fn correction(skew_ms: i64, tolerance: Duration) -> i64 {
    let tolerance_ms = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX);
    if skew_ms.unsigned_abs() <= tolerance_ms.unsigned_abs() {
        0
    } else {
        skew_ms
    }
}

impl StoreState {
    /// Measures the server's clock against this instance's (`TIME`, timed by the local
    /// clock on both sides) and keeps the correction. Returns the offset in milliseconds.
    pub(super) async fn sync_clock(&self) -> Result<i64> {
        let before = self.clock.local.now().as_millis();
        let reply = self.cmd("clock", None, redis::cmd("TIME")).await?;
        let after = self.clock.local.now().as_millis();
        let server = server_millis(reply)?;
        let local = before / 2 + after / 2 + (before % 2 + after % 2) / 2;
        let skew = i64::try_from(i128::from(server) - i128::from(local)).unwrap_or(i64::MAX);
        // A clock driven by hand (a test's) is taken as given.
        let offset = if self.clock.local.is_wall_clock() {
            correction(skew, self.config.max_clock_skew)
        } else {
            0
        };
        let previous = self.clock.offset_ms();
        self.clock.record(offset);
        if offset != previous {
            if offset == 0 {
                tracing::info!(
                    skew_ms = skew,
                    "this instance's clock agrees with the redis server's again; no correction"
                );
            } else {
                tracing::warn!(
                    skew_ms = skew,
                    tolerance_ms = self.config.max_clock_skew.as_millis() as u64,
                    "this instance's clock differs from the redis server's; the store reads \
                     time as the server's (fix the clock: NTP)"
                );
            }
        }
        Ok(offset)
    }

    /// Measures the offset again if the last measurement is older than the resync interval.
    pub(super) async fn resync_clock_if_due(&self) {
        if self.clock.fresh(self.config.clock_resync) {
            return;
        }
        if let Err(e) = self.sync_clock().await {
            tracing::debug!(error = %e, "redis clock check failed; keeping the last offset");
        }
    }
}

/// `TIME`'s reply (seconds, microseconds) in milliseconds.
fn server_millis(reply: Value) -> Result<u64> {
    let parts = array(reply).unwrap_or_default();
    match (
        parts.first().and_then(u64_of),
        parts.get(1).and_then(u64_of),
    ) {
        (Some(s), Some(us)) => Ok(s.saturating_mul(1_000).saturating_add(us / 1_000)),
        _ => Err(Error::backend("redis TIME returned an unexpected reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::ManualClock;

    #[test]
    fn skew_within_the_tolerance_is_not_corrected() {
        let tolerance = Duration::from_secs(1);
        assert_eq!(correction(0, tolerance), 0);
        assert_eq!(correction(999, tolerance), 0);
        assert_eq!(correction(-1_000, tolerance), 0);
        assert_eq!(correction(1_001, tolerance), 1_001);
        assert_eq!(correction(-3_600_000, tolerance), -3_600_000);
        assert_eq!(correction(i64::MIN, tolerance), i64::MIN);
    }

    #[test]
    fn the_offset_moves_the_local_clock_both_ways_without_overflow() {
        let local = ManualClock::new(Timestamp(10_000));
        let clock = ServerClock::new(Arc::new(local.clone()));
        assert_eq!(clock.now(), Timestamp(10_000));
        clock.record(-4_000);
        assert_eq!(clock.now(), Timestamp(6_000));
        clock.record(i64::MIN);
        assert_eq!(clock.now(), Timestamp(0));
        clock.record(i64::MAX);
        local.set(Timestamp(u64::MAX - 1));
        assert_eq!(clock.now(), Timestamp(u64::MAX));
    }

    #[test]
    fn time_replies_are_read_as_milliseconds() {
        let reply = Value::Array(vec![
            Value::BulkString(b"1700000000".to_vec()),
            Value::BulkString(b"123456".to_vec()),
        ]);
        assert_eq!(server_millis(reply).ok(), Some(1_700_000_000_123));
        assert!(server_millis(Value::Nil).is_err());
        assert!(server_millis(Value::Int(3)).is_err());
    }
}
