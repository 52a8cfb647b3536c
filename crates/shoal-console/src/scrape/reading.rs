//! One scrape of one proxy, and the arithmetic over two of them: counter rates and
//! histogram quantiles over the window between.

use std::time::Instant;

use super::parse::Sample;

/// One scrape's samples and when it was taken.
#[derive(Clone, Debug)]
pub struct Reading {
    /// When the scrape finished.
    pub at: Instant,
    /// Its samples.
    pub samples: Vec<Sample>,
}

impl Reading {
    /// The sum of every sample named `name` whose labels pass `filter`.
    pub fn sum(&self, name: &str, filter: impl Fn(&Sample) -> bool) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && filter(s))
            .fold(0.0, |sum, s| sum + s.value)
    }

    /// The first value of `name` whose labels pass `filter`.
    pub fn first(&self, name: &str, filter: impl Fn(&Sample) -> bool) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && filter(s))
            .map(|s| s.value)
    }

    /// The values of label `label` seen on `name`, each once, in order of appearance.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in self.samples.iter().filter(|s| s.name == name) {
            if let Some(v) = s.label(label)
                && !out.iter().any(|o| o == v)
            {
                out.push(v.to_owned());
            }
        }
        out
    }

    /// Cumulative bucket counts of histogram `name` (`<name>_bucket`) summed over the series
    /// whose labels pass `filter`, by upper bound, ascending (`+Inf` last).
    pub fn buckets(&self, name: &str, filter: impl Fn(&Sample) -> bool) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut out: Vec<(f64, f64)> = Vec::new();
        for s in self
            .samples
            .iter()
            .filter(|s| s.name == bucket && filter(s))
        {
            let Some(le) = s.label("le").and_then(parse_le) else {
                continue;
            };
            match out.iter_mut().find(|(b, _)| *b == le) {
                Some((_, n)) => *n += s.value,
                None => out.push((le, s.value)),
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

fn parse_le(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        v => v.parse().ok(),
    }
}

/// Per second, how much a counter grew from `then` to `now` (a counter that went down —
/// the proxy restarted — counts from zero).
pub fn rate(now: f64, then: f64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    let grew = if now >= then { now - then } else { now };
    grew / seconds
}

/// The per-bucket growth between two cumulative bucket lists (same bounds; a bound missing
/// in `then` counts from zero).
pub fn bucket_growth(now: &[(f64, f64)], then: &[(f64, f64)]) -> Vec<(f64, f64)> {
    now.iter()
        .map(|(le, n)| {
            let before = then
                .iter()
                .find(|(b, _)| b == le)
                .map(|(_, v)| *v)
                .unwrap_or(0.0);
            (*le, if *n >= before { n - before } else { *n })
        })
        .collect()
}

/// Adds `more` into `into`, bound by bound.
pub fn merge_buckets(into: &mut Vec<(f64, f64)>, more: &[(f64, f64)]) {
    for (le, n) in more {
        match into.iter_mut().find(|(b, _)| b == le) {
            Some((_, v)) => *v += n,
            None => into.push((*le, *n)),
        }
    }
    into.sort_by(|a, b| a.0.total_cmp(&b.0));
}

/// The `q` quantile (0..1) of cumulative buckets, interpolated linearly inside the bucket it
/// falls in (as Prometheus's `histogram_quantile`); `None` without samples. A quantile in the
/// `+Inf` bucket is the largest finite bound.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last().map(|(_, n)| *n)?;
    if total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for (le, n) in buckets {
        if *n >= rank {
            if le.is_infinite() {
                return Some(lower_bound);
            }
            let width = n - lower_count;
            if width <= 0.0 {
                return Some(*le);
            }
            return Some(lower_bound + (le - lower_bound) * (rank - lower_count) / width);
        }
        lower_bound = *le;
        lower_count = *n;
    }
    Some(lower_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 10 samples ≤ 1 ms, 10 more ≤ 2 ms.
        let b = vec![(0.001, 10.0), (0.002, 20.0), (f64::INFINITY, 20.0)];
        let p50 = quantile(&b, 0.5).unwrap_or(f64::NAN);
        assert!((p50 - 0.001).abs() < 1e-12, "{p50}");
        let p75 = quantile(&b, 0.75).unwrap_or(f64::NAN);
        assert!((p75 - 0.0015).abs() < 1e-12, "{p75}");
        assert_eq!(quantile(&[(0.001, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        assert_eq!(
            quantile(&[(0.001, 0.0), (f64::INFINITY, 4.0)], 0.5),
            Some(0.001)
        );
    }

    #[test]
    fn rates_and_growth_survive_a_restarted_proxy() {
        assert_eq!(rate(30.0, 10.0, 2.0), 10.0);
        assert_eq!(rate(4.0, 10.0, 2.0), 2.0);
        let g = bucket_growth(&[(1.0, 5.0), (f64::INFINITY, 9.0)], &[(1.0, 2.0)]);
        assert_eq!(g, vec![(1.0, 3.0), (f64::INFINITY, 9.0)]);
        let mut m = vec![(1.0, 1.0)];
        merge_buckets(&mut m, &[(1.0, 2.0), (0.5, 1.0)]);
        assert_eq!(m, vec![(0.5, 1.0), (1.0, 3.0)]);
    }
}
