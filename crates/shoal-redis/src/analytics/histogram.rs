//! The analytics histograms: a duration in ms goes to bucket `ceil(10 · ln(1 + ms))`, about
//! 10 % wide (the same function as `analytics_apply.lua`), and percentiles are read back as
//! the upper bound of the bucket holding that rank.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The bucket of `ms` (as the apply script computes it).
pub fn bucket_of(ms: u64) -> u32 {
    ((1.0 + ms as f64).ln() * 10.0).ceil() as u32
}

/// The largest duration (ms) in bucket `b`.
pub fn upper_bound_ms(b: u32) -> f64 {
    ((f64::from(b)) / 10.0).exp() - 1.0
}

/// Percentiles of a histogram, in ms (each the upper bound of its bucket: at most ~10 % over).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many samples.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// A histogram: bucket → count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    buckets: BTreeMap<u32, u64>,
}

impl Histogram {
    /// Adds `count` samples to bucket `b`.
    pub fn add_bucket(&mut self, b: u32, count: u64) {
        *self.buckets.entry(b).or_default() += count;
    }

    /// Adds one sample of `ms`.
    pub fn record(&mut self, ms: u64) {
        self.add_bucket(bucket_of(ms), 1);
    }

    /// How many samples.
    pub fn samples(&self) -> u64 {
        self.buckets.values().sum()
    }

    /// The bucket holding the sample of rank `ceil(q · n)` (1-based), when any.
    pub fn quantile_bucket(&self, q: f64) -> Option<u32> {
        let n = self.samples();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (b, c) in &self.buckets {
            seen += c;
            if seen >= rank {
                return Some(*b);
            }
        }
        None
    }

    /// p50, p90, p99 (`None` without samples).
    pub fn percentiles(&self) -> Option<Percentiles> {
        let at = |q| self.quantile_bucket(q).map_or(0.0, upper_bound_ms);
        (self.samples() > 0).then(|| Percentiles {
            samples: self.samples(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_about_ten_percent_wide_and_percentiles_bound_the_truth() {
        assert_eq!(bucket_of(0), 0);
        for ms in [1u64, 7, 50, 999, 60_000, 3_600_000] {
            let b = bucket_of(ms);
            assert!(upper_bound_ms(b) >= ms as f64 - 1e-6, "{ms}");
            assert!(upper_bound_ms(b) <= (ms as f64 + 1.0) * 1.11, "{ms}");
        }
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(ms);
        }
        let p = h.percentiles().unwrap_or_default();
        assert_eq!(p.samples, 100);
        assert!((50.0..=56.0).contains(&p.p50_ms), "{p:?}");
        assert!((99.0..=110.0).contains(&p.p99_ms), "{p:?}");
        assert!(Histogram::default().percentiles().is_none());
    }
}
