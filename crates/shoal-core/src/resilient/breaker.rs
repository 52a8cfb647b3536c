//! The circuit breaker: Closed → Open → HalfOpen → Closed, with a consecutive-failure
//! threshold, a failure ratio over a sliding window of ten buckets, a cooldown, and a limit on
//! concurrent probes while half-open.
//!
//! Time is `tokio::time::Instant`, so tests drive it with paused time. Transitions happen
//! under one short `std::sync::Mutex` (never held across an `.await`); the common case — a
//! call admitted and succeeding while closed — takes no lock, only atomics. The window
//! counters are atomics too: a bucket reset racing with an increment may lose a count, which
//! a ratio heuristic tolerates.

use std::{
    fmt,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::config::BreakerConfig;

/// Where the breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go to the primary.
    Closed,
    /// Calls do not reach the primary (they go to the fallback path) until the cooldown ends.
    Open,
    /// A few probes reach the primary; enough successes close the breaker, a failure opens it.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value of the `shoal_resilient_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge_value(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a finished call tells the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The primary answered (also with `NotFound`, `Conflict`, …).
    Success,
    /// `Unavailable` or `Timeout`.
    Failure,
    /// Nothing to learn (the call was cancelled, or failed for a reason that says nothing
    /// about the primary's health).
    Neutral,
}

const BUCKETS: usize = 10;

#[derive(Debug, Default)]
struct Bucket {
    tick: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

/// The phase, when it began and how many times the breaker has opened: what changes only
/// under the breaker's lock.
#[derive(Debug)]
struct PhaseRecord {
    phase: Phase,
    since: Instant,
    opened: u64,
}

/// A transition, reported to the caller so it can log and update metrics outside the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) from: BreakerState,
    pub(crate) to: BreakerState,
}

/// The breaker. See the module docs.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    origin: Instant,
    bucket_len: Duration,
    /// True exactly while the phase is closed (written under the lock).
    closed: AtomicBool,
    /// Bumped on every transition (under the lock); a call admitted in an older epoch does
    /// not count.
    epoch: AtomicU64,
    consecutive_failures: AtomicU32,
    buckets: [Bucket; BUCKETS],
    /// The phase and its history (the lock every transition takes).
    phase_record: Mutex<PhaseRecord>,
}

/// Permission to call the primary, returned by [`Breaker::admit`]. Report the outcome with
/// [`Breaker::record`]; a ticket that is dropped unreported (a cancelled call) only frees its
/// probe slot.
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    breaker: &'a Breaker,
    epoch: u64,
    probe: bool,
    done: bool,
}

impl Ticket<'_> {
    /// Reports the outcome; returns a transition if this outcome caused one.
    pub(crate) fn finish(mut self, outcome: Outcome) -> Option<Transition> {
        self.done = true;
        self.breaker.record(self.epoch, self.probe, outcome)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .breaker
                .record(self.epoch, self.probe, Outcome::Neutral);
        }
    }
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        let now = Instant::now();
        let bucket_len = (config.window / BUCKETS as u32).max(Duration::from_millis(1));
        Breaker {
            config,
            origin: now,
            bucket_len,
            closed: AtomicBool::new(true),
            epoch: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            buckets: Default::default(),
            phase_record: Mutex::new(PhaseRecord {
                phase: Phase::Closed,
                since: now,
                opened: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PhaseRecord> {
        // Nothing panics while holding the lock; a poisoned guard carries no broken invariant.
        self.phase_record.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tick(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin);
        (elapsed.as_nanos() / self.bucket_len.as_nanos().max(1)) as u64
    }

    /// The current state (an expired open state reads as half-open).
    pub(crate) fn state(&self) -> BreakerState {
        if self.closed.load(Ordering::Acquire) {
            return BreakerState::Closed;
        }
        let g = self.lock();
        match g.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
            Phase::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            Phase::Open { .. } => BreakerState::Open,
        }
    }

    /// When the breaker entered its current state, and how many times it has opened.
    pub(crate) fn since(&self) -> (Instant, u64) {
        let g = self.lock();
        (g.since, g.opened)
    }

    /// Whether a call may go to the primary now. `Err` carries a transition (Open → HalfOpen)
    /// that happened even though the call is refused; `Ok` may carry one too.
    pub(crate) fn admit(&self) -> (Option<Ticket<'_>>, Option<Transition>) {
        let epoch = self.epoch.load(Ordering::Acquire);
        if self.closed.load(Ordering::Acquire) {
            return (
                Some(Ticket {
                    breaker: self,
                    epoch,
                    probe: false,
                    done: false,
                }),
                None,
            );
        }
        let now = Instant::now();
        let mut g = self.lock();
        let mut transition = None;
        if let Phase::Open { until } = g.phase
            && now >= until
        {
            transition = Some(self.set_phase(
                &mut g,
                Phase::HalfOpen {
                    in_flight: 0,
                    successes: 0,
                },
                now,
            ));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let ticket = match &mut g.phase {
            Phase::Closed => Some(Ticket {
                breaker: self,
                epoch,
                probe: false,
                done: false,
            }),
            Phase::Open { .. } => None,
            Phase::HalfOpen { in_flight, .. } => {
                if *in_flight < self.config.half_open_probes {
                    *in_flight += 1;
                    Some(Ticket {
                        breaker: self,
                        epoch,
                        probe: true,
                        done: false,
                    })
                } else {
                    None
                }
            }
        };
        (ticket, transition)
    }

    /// Records the outcome of a call admitted in `epoch`.
    fn record(&self, epoch: u64, probe: bool, outcome: Outcome) -> Option<Transition> {
        if !probe {
            match outcome {
                Outcome::Neutral => return None,
                Outcome::Success => {
                    // The common case, without the lock: a success while closed.
                    if self.closed.load(Ordering::Acquire)
                        && self.epoch.load(Ordering::Acquire) == epoch
                    {
                        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                            self.consecutive_failures.store(0, Ordering::Relaxed);
                        }
                        self.count(Instant::now(), false);
                    }
                    return None;
                }
                Outcome::Failure => {}
            }
        }
        let now = Instant::now();
        let mut g = self.lock();
        if self.epoch.load(Ordering::Acquire) != epoch {
            // Admitted under an earlier state: its outcome says nothing about this one.
            return None;
        }
        if probe && let Phase::HalfOpen { in_flight, .. } = &mut g.phase {
            *in_flight = in_flight.saturating_sub(1);
        }
        self.apply(&mut g, outcome, now)
    }

    /// Records a health probe's outcome. While closed, only failures count (a probe that
    /// succeeds while live calls fail must not hide the failures).
    pub(crate) fn record_probe(&self, ok: bool) -> Option<Transition> {
        let now = Instant::now();
        let mut g = self.lock();
        if let Phase::Open { until } = g.phase {
            if now < until {
                return None;
            }
            self.set_phase(
                &mut g,
                Phase::HalfOpen {
                    in_flight: 0,
                    successes: 0,
                },
                now,
            );
        }
        match (&g.phase, ok) {
            (Phase::Closed, true) => None,
            _ => self.apply(
                &mut g,
                if ok {
                    Outcome::Success
                } else {
                    Outcome::Failure
                },
                now,
            ),
        }
    }

    /// When an Open phase starting at `now` ends: after the cooldown, or a day from now when
    /// that instant is not representable (a validated cooldown is at most 10 years).
    fn reopen_at(&self, now: Instant) -> Instant {
        now.checked_add(self.config.cooldown)
            .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
            .unwrap_or(now)
    }

    /// Opens the breaker now (e.g. when a journal drain fails). No-op when already open.
    pub(crate) fn trip(&self) -> Option<Transition> {
        let now = Instant::now();
        let mut g = self.lock();
        if matches!(g.phase, Phase::Open { .. }) {
            return None;
        }
        let until = self.reopen_at(now);
        Some(self.set_phase(&mut g, Phase::Open { until }, now))
    }

    /// Closes the breaker now (after a journal file was replayed with it open, when a probe
    /// found the primary healthy). No-op when already closed.
    pub(crate) fn close(&self) -> Option<Transition> {
        let now = Instant::now();
        let mut g = self.lock();
        if matches!(g.phase, Phase::Closed) {
            return None;
        }
        Some(self.set_phase(&mut g, Phase::Closed, now))
    }

    fn apply(&self, g: &mut PhaseRecord, outcome: Outcome, now: Instant) -> Option<Transition> {
        match outcome {
            Outcome::Neutral => None,
            Outcome::Success => match &mut g.phase {
                Phase::Closed => {
                    self.consecutive_failures.store(0, Ordering::Relaxed);
                    self.count(now, false);
                    None
                }
                Phase::HalfOpen { successes, .. } => {
                    *successes += 1;
                    if *successes >= self.config.close_after {
                        Some(self.set_phase(g, Phase::Closed, now))
                    } else {
                        None
                    }
                }
                Phase::Open { .. } => None,
            },
            Outcome::Failure => match g.phase {
                Phase::Closed => {
                    let consecutive = self
                        .consecutive_failures
                        .fetch_add(1, Ordering::Relaxed)
                        .saturating_add(1);
                    self.count(now, true);
                    if consecutive >= self.config.failure_threshold || self.ratio_exceeded(now) {
                        let until = self.reopen_at(now);
                        Some(self.set_phase(g, Phase::Open { until }, now))
                    } else {
                        None
                    }
                }
                Phase::HalfOpen { .. } => {
                    let until = self.reopen_at(now);
                    Some(self.set_phase(g, Phase::Open { until }, now))
                }
                Phase::Open { .. } => None,
            },
        }
    }

    fn count(&self, now: Instant, failure: bool) {
        let tick = self.tick(now);
        let b = &self.buckets[(tick % BUCKETS as u64) as usize];
        let seen = b.tick.load(Ordering::Acquire);
        if seen != tick
            && b.tick
                .compare_exchange(seen, tick, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.calls.store(0, Ordering::Relaxed);
            b.failures.store(0, Ordering::Relaxed);
        }
        b.calls.fetch_add(1, Ordering::Relaxed);
        if failure {
            b.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn reset_counts(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        for b in &self.buckets {
            b.calls.store(0, Ordering::Relaxed);
            b.failures.store(0, Ordering::Relaxed);
        }
    }

    fn ratio_exceeded(&self, now: Instant) -> bool {
        let tick = self.tick(now);
        let (calls, failures) = self
            .buckets
            .iter()
            .filter(|b| {
                let t = b.tick.load(Ordering::Acquire);
                t + (BUCKETS as u64) > tick && t <= tick
            })
            .fold((0u64, 0u64), |(c, f), b| {
                (
                    c + u64::from(b.calls.load(Ordering::Relaxed)),
                    f + u64::from(b.failures.load(Ordering::Relaxed)),
                )
            });
        calls >= u64::from(self.config.min_calls)
            && calls > 0
            && (failures as f64) / (calls as f64) >= self.config.failure_ratio
    }

    fn set_phase(&self, g: &mut PhaseRecord, phase: Phase, now: Instant) -> Transition {
        let from = phase_state(&g.phase);
        let to = phase_state(&phase);
        if to == BreakerState::Open {
            g.opened += 1;
        }
        if to == BreakerState::Closed {
            self.reset_counts();
        }
        g.phase = phase;
        self.closed
            .store(to == BreakerState::Closed, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        g.since = now;
        Transition { from, to }
    }
}

fn phase_state(p: &Phase) -> BreakerState {
    match p {
        Phase::Closed => BreakerState::Closed,
        Phase::Open { .. } => BreakerState::Open,
        Phase::HalfOpen { .. } => BreakerState::HalfOpen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            failure_ratio: 0.5,
            min_calls: 10,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(2),
            half_open_probes: 2,
            close_after: 2,
            failure_burst: Duration::ZERO,
        }
    }

    fn call(b: &Breaker, outcome: Outcome) -> Option<Transition> {
        let (ticket, _) = b.admit();
        ticket.expect("admitted").finish(outcome)
    }

    #[tokio::test(start_paused = true)]
    async fn a_cooldown_past_the_clock_opens_without_overflowing() {
        let b = Breaker::new(BreakerConfig {
            cooldown: Duration::MAX,
            window: Duration::MAX,
            ..config()
        });
        for _ in 0..2 {
            assert_eq!(call(&b, Outcome::Failure), None);
        }
        let t = call(&b, Outcome::Failure).expect("third failure opens");
        assert_eq!(t.to, BreakerState::Open);
        assert!(b.admit().0.is_none(), "open refuses calls");
        assert!(b.trip().is_none(), "already open");
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_then_cooldown_half_opens_and_probes_close() {
        let b = Breaker::new(config());
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(call(&b, Outcome::Failure), None);
        assert_eq!(call(&b, Outcome::Failure), None);
        let t = call(&b, Outcome::Failure).expect("third failure opens");
        assert_eq!((t.from, t.to), (BreakerState::Closed, BreakerState::Open));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit().0.is_none(), "open refuses calls");

        tokio::time::advance(Duration::from_millis(1_999)).await;
        assert!(b.admit().0.is_none(), "still cooling down");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);

        // Two probes at a time; the third caller is refused.
        let (p1, t) = b.admit();
        assert_eq!(
            t.map(|t| t.to),
            Some(BreakerState::HalfOpen),
            "admit reports the transition"
        );
        let (p2, _) = b.admit();
        assert!(p1.is_some() && p2.is_some());
        assert!(b.admit().0.is_none(), "probe limit");
        assert_eq!(p1.expect("p1").finish(Outcome::Success), None);
        let t = p2.expect("p2").finish(Outcome::Success).expect("closes");
        assert_eq!(
            (t.from, t.to),
            (BreakerState::HalfOpen, BreakerState::Closed)
        );
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.since().1, 1, "opened once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_a_new_cooldown() {
        let b = Breaker::new(config());
        for _ in 0..3 {
            call(&b, Outcome::Failure);
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        let t = call(&b, Outcome::Failure).expect("reopens");
        assert_eq!((t.from, t.to), (BreakerState::HalfOpen, BreakerState::Open));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn successes_reset_the_consecutive_count() {
        let b = Breaker::new(config());
        for _ in 0..5 {
            call(&b, Outcome::Failure);
            call(&b, Outcome::Failure);
            call(&b, Outcome::Success);
            call(&b, Outcome::Success);
            call(&b, Outcome::Success);
            call(&b, Outcome::Success);
        }
        // 10 of 30 failed: below both the threshold (never 3 in a row) and the ratio (the
        // highest running ratio with at least 10 calls is 6 of 14).
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_ratio_in_the_window_opens() {
        let b = Breaker::new(config());
        let mut opened = false;
        for i in 0..20 {
            let outcome = if i % 2 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            if call(&b, outcome).is_some_and(|t| t.to == BreakerState::Open) {
                opened = true;
                // Opened once min_calls (10) were seen with a ratio of 0.5.
                assert!(i >= 9, "opened after {i} calls");
                break;
            }
        }
        assert!(opened, "alternating failures reach the 0.5 ratio");
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_leave_the_window() {
        let b = Breaker::new(config());
        // Nine calls, four failures (never three in a row), then the window slides past them.
        for i in 0..9 {
            let o = if i % 2 == 0 && i < 8 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            call(&b, o);
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        for _ in 0..10 {
            call(&b, Outcome::Success);
        }
        call(&b, Outcome::Failure);
        call(&b, Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Closed, "2 of 12 in the window");
    }

    #[tokio::test(start_paused = true)]
    async fn stale_outcomes_and_neutral_calls_do_not_count() {
        let b = Breaker::new(config());
        let (early, _) = b.admit();
        for _ in 0..3 {
            call(&b, Outcome::Failure);
        }
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(2)).await;
        // A success admitted while closed, reported while half-open, is ignored.
        assert_eq!(early.expect("early").finish(Outcome::Success), None);
        let (p, _) = b.admit();
        drop(p); // cancelled probe: frees its slot, counts nothing
        let (p1, _) = b.admit();
        let (p2, _) = b.admit();
        assert!(
            p1.is_some() && p2.is_some(),
            "the dropped probe freed its slot"
        );
        assert_eq!(p1.expect("p1").finish(Outcome::Neutral), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        drop(p2);
    }

    #[tokio::test(start_paused = true)]
    async fn health_probes_close_a_half_open_breaker_but_do_not_mask_failures() {
        let b = Breaker::new(config());
        // While closed, successful probes do not reset the consecutive count.
        call(&b, Outcome::Failure);
        call(&b, Outcome::Failure);
        assert_eq!(b.record_probe(true), None);
        let t = call(&b, Outcome::Failure).expect("opens");
        assert_eq!(t.to, BreakerState::Open);
        // During the cooldown probes change nothing.
        assert_eq!(b.record_probe(true), None);
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.record_probe(true), None);
        let t = b.record_probe(true).expect("closes");
        assert_eq!(t.to, BreakerState::Closed);
        // A failed probe while closed counts as a failure.
        b.record_probe(false);
        b.record_probe(false);
        assert_eq!(
            b.record_probe(false).map(|t| t.to),
            Some(BreakerState::Open)
        );
        assert_eq!(b.trip(), None, "already open");
        tokio::time::advance(Duration::from_secs(2)).await;
        b.record_probe(true);
        b.record_probe(true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.trip().map(|t| t.to), Some(BreakerState::Open));
    }
}
