//! Counters: kept in process (for [`CacheStats`]) and reported through the `metrics` facade.
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `shoal_cache_hits_total{op}` | counter | answered from the cache (`op` = `get`, `frames`, `count_frames`) |
//! | `shoal_cache_misses_total{op}` | counter | loaded from the backend while the cache was on |
//! | `shoal_cache_bypassed_total` | counter | reads sent straight to the backend while the cache was off |
//! | `shoal_cache_evictions_total` | counter | entries evicted by the size bound or their ttl |
//! | `shoal_cache_invalidations_received_total` | counter | session ids invalidated by other instances |
//! | `shoal_cache_invalidation_delay_seconds` | histogram | publish → receive delay of invalidations (wall clocks) |
//! | `shoal_cache_stale_hits_total` | counter | `strict`: cached entries found out of date by the version check |
//! | `shoal_cache_touches_coalesced_total` | counter | touches answered without a backend write |
//! | `shoal_cache_touch_writes_total` | counter | touches written to the backend |
//! | `shoal_cache_writes_queued_total` / `_flushed_total` / `_dropped_total` | counter | write-behind updates |
//! | `shoal_cache_enabled` | gauge | 1 while the cache serves hits, 0 while off (bus down) |
//!
//! Handles are registered when the cache is built: install the recorder first.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge, Histogram};

/// A snapshot of what a [`Cached`](super::Cached) store has done since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads loaded from the backend while the cache was on.
    pub misses: u64,
    /// Reads sent straight to the backend while the cache was off.
    pub bypassed: u64,
    /// Entries evicted by the size bound or the entry ttl.
    pub evictions: u64,
    /// Session ids invalidated by other instances.
    pub invalidations_received: u64,
    /// Largest publish → receive delay of an invalidation, in microseconds.
    pub invalidation_delay_max_us: u64,
    /// `strict` mode: hits found out of date by the version check.
    pub stale_hits: u64,
    /// Touches answered without a backend write.
    pub touches_coalesced: u64,
    /// Touches written to the backend.
    pub touch_writes: u64,
    /// Write-behind updates queued.
    pub writes_queued: u64,
    /// Write-behind updates written.
    pub writes_flushed: u64,
    /// Write-behind updates the backend refused at flush time (conflict or gone).
    pub writes_dropped: u64,
    /// Entries cached now (approximate).
    pub entries: u64,
    /// Estimated bytes cached now (approximate).
    pub weighted_bytes: u64,
    /// Whether the cache serves hits now.
    pub enabled: bool,
}

/// What one flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushReport {
    /// Deferred touches written.
    pub touches_written: u64,
    /// Queued updates written.
    pub updates_written: u64,
    /// Queued updates the backend refused (conflict, session gone, invalid): acknowledged
    /// writes that were lost.
    pub updates_dropped: u64,
    /// Writes still waiting (the backend failed transiently).
    pub pending: u64,
}

impl FlushReport {
    pub(super) fn add(&mut self, other: FlushReport) {
        self.touches_written += other.touches_written;
        self.updates_written += other.updates_written;
        self.updates_dropped += other.updates_dropped;
        self.pending = other.pending;
    }
}

/// Slots per counter, so threads counting at once do not fight over one cache line.
const SLOTS: usize = 8;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot(AtomicU64);

/// The slot of the current thread.
fn slot() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static SLOT: usize = (NEXT.fetch_add(1, Ordering::Relaxed) as usize) % SLOTS;
    }
    SLOT.with(|s| *s)
}

/// One counter, in process (per-thread slots) and in the recorder.
#[derive(Debug)]
pub(super) struct Count {
    slots: [Slot; SLOTS],
    metric: Counter,
}

impl Count {
    fn new(metric: Counter) -> Self {
        Count {
            slots: Default::default(),
            metric,
        }
    }

    pub(super) fn add(&self, n: u64) {
        self.slots[slot()].0.fetch_add(n, Ordering::Relaxed);
        self.metric.increment(n);
    }

    pub(super) fn inc(&self) {
        self.add(1);
    }

    fn get(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// Every counter of one cache.
#[derive(Debug)]
pub(super) struct Stats {
    pub(super) hits_get: Count,
    pub(super) hits_frames: Count,
    pub(super) hits_count: Count,
    pub(super) misses_get: Count,
    pub(super) misses_frames: Count,
    pub(super) misses_count: Count,
    pub(super) bypassed: Count,
    pub(super) evictions: Count,
    pub(super) invalidations: Count,
    pub(super) stale: Count,
    pub(super) coalesced: Count,
    pub(super) touch_writes: Count,
    pub(super) queued: Count,
    pub(super) flushed: Count,
    pub(super) dropped: Count,
    delay_max_us: AtomicU64,
    delay: Histogram,
    enabled: Gauge,
}

impl Stats {
    pub(super) fn new() -> Self {
        use metrics::{counter, gauge, histogram};
        Stats {
            hits_get: Count::new(counter!("shoal_cache_hits_total", "op" => "get")),
            hits_frames: Count::new(counter!("shoal_cache_hits_total", "op" => "frames")),
            hits_count: Count::new(counter!("shoal_cache_hits_total", "op" => "count_frames")),
            misses_get: Count::new(counter!("shoal_cache_misses_total", "op" => "get")),
            misses_frames: Count::new(counter!("shoal_cache_misses_total", "op" => "frames")),
            misses_count: Count::new(counter!("shoal_cache_misses_total", "op" => "count_frames")),
            bypassed: Count::new(counter!("shoal_cache_bypassed_total")),
            evictions: Count::new(counter!("shoal_cache_evictions_total")),
            invalidations: Count::new(counter!("shoal_cache_invalidations_received_total")),
            stale: Count::new(counter!("shoal_cache_stale_hits_total")),
            coalesced: Count::new(counter!("shoal_cache_touches_coalesced_total")),
            touch_writes: Count::new(counter!("shoal_cache_touch_writes_total")),
            queued: Count::new(counter!("shoal_cache_writes_queued_total")),
            flushed: Count::new(counter!("shoal_cache_writes_flushed_total")),
            dropped: Count::new(counter!("shoal_cache_writes_dropped_total")),
            delay_max_us: AtomicU64::new(0),
            delay: histogram!("shoal_cache_invalidation_delay_seconds"),
            enabled: gauge!("shoal_cache_enabled"),
        }
    }

    pub(super) fn record_delay_us(&self, us: u64) {
        self.delay_max_us.fetch_max(us, Ordering::Relaxed);
        self.delay.record(us as f64 / 1e6);
    }

    pub(super) fn set_enabled(&self, on: bool) {
        self.enabled.set(if on { 1.0 } else { 0.0 });
    }

    pub(super) fn snapshot(&self, entries: u64, weighted_bytes: u64, enabled: bool) -> CacheStats {
        CacheStats {
            hits: self.hits_get.get() + self.hits_frames.get() + self.hits_count.get(),
            misses: self.misses_get.get() + self.misses_frames.get() + self.misses_count.get(),
            bypassed: self.bypassed.get(),
            evictions: self.evictions.get(),
            invalidations_received: self.invalidations.get(),
            invalidation_delay_max_us: self.delay_max_us.load(Ordering::Relaxed),
            stale_hits: self.stale.get(),
            touches_coalesced: self.coalesced.get(),
            touch_writes: self.touch_writes.get(),
            writes_queued: self.queued.get(),
            writes_flushed: self.flushed.get(),
            writes_dropped: self.dropped.get(),
            entries,
            weighted_bytes,
            enabled,
        }
    }
}
