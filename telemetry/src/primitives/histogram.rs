//! A histogram with fixed buckets.

use crate::sync::{AtomicU64, Ordering};

/// A histogram over fixed, increasing upper bounds (`le`, Prometheus semantics: a value `v`
/// falls in the first bucket whose bound is `>= v`; values above the last bound, and NaN, go to
/// `+Inf`).
///
/// `record` is two relaxed `fetch_add`s on memory the histogram owns: the bucket, found by a
/// linear scan for the first bound `>= v` (no lock, no allocation), and the sum. The
/// sum is kept as a whole number of `sum_resolution` units (1 ns for `_seconds` metrics, 1 for
/// counts and bytes), so it needs no compare-and-swap loop; negative values count as 0 in the
/// sum. The total count is the sum of the buckets, so a snapshot's count can never exceed its
/// bucket total.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    sum_units: AtomicU64,
    sum_resolution: f64,
    /// `1 / sum_resolution`: a multiply on the record path instead of a divide.
    units_per_value: f64,
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the finite buckets.
    pub bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts: one per bound, then the `+Inf` bucket.
    pub buckets: Vec<u64>,
    /// Sum of recorded values (to `sum_resolution`).
    pub sum: f64,
    /// Number of recorded values: the sum of `buckets`.
    pub count: u64,
}

impl Histogram {
    /// A histogram over `bounds` (finite, strictly increasing) whose sum is kept to
    /// `sum_resolution` (e.g. `1e-9` for seconds).
    ///
    /// # Panics
    /// If `bounds` is empty, not strictly increasing or not finite, or `sum_resolution` is not
    /// positive (catalog entries are checked by the catalog's tests: a programming error).
    pub fn new(bounds: &'static [f64], sum_resolution: f64) -> Self {
        assert!(!bounds.is_empty(), "a histogram needs at least one bucket");
        assert!(bounds.iter().all(|b| b.is_finite()), "bucket bounds must be finite");
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bucket bounds must increase");
        assert!(sum_resolution > 0.0, "sum resolution must be positive");
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_units: AtomicU64::new(0),
            sum_resolution,
            units_per_value: 1.0 / sum_resolution,
        }
    }

    /// Records one value.
    #[inline]
    pub fn record(&self, v: f64) {
        // Linear scan with early exit: the first bound >= v. Real distributions cluster in a
        // few buckets, so the exit branch predicts well; NaN matches no bound and lands in +Inf.
        let i = self.bounds.iter().position(|&b| v <= b).unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        // Round half up by adding 0.5 before the cast (`f64::round` is a libm call on baseline
        // x86-64); `as` saturates: negative and NaN become 0, huge values u64::MAX.
        self.sum_units.fetch_add((v * self.units_per_value + 0.5) as u64, Ordering::Relaxed);
    }

    /// The bucket bounds.
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// A copy of the buckets, sum and count.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let sum = self.sum_units.load(Ordering::Relaxed) as f64 * self.sum_resolution;
        HistogramSnapshot { bounds: self.bounds, count: buckets.iter().sum(), buckets, sum }
    }
}

impl HistogramSnapshot {
    /// What was recorded between `earlier` (a snapshot of the same histogram) and `self`: the
    /// window a reader steers by (a quantile over the last second, not since start). Buckets
    /// are monotonic, so the differences are never negative; a mismatched `earlier` (other
    /// bounds) yields `self` unchanged.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        if earlier.bounds != self.bounds || earlier.buckets.len() != self.buckets.len() {
            return self.clone();
        }
        let buckets: Vec<u64> =
            self.buckets.iter().zip(&earlier.buckets).map(|(now, then)| now.saturating_sub(*then)).collect();
        HistogramSnapshot {
            bounds: self.bounds,
            count: buckets.iter().sum(),
            buckets,
            sum: (self.sum - earlier.sum).max(0.0),
        }
    }

    /// Adds `other` (same bounds) into `self`: the distribution over several series, as PromQL's
    /// `sum by (le)`. Snapshots of other bounds are ignored.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if other.bounds != self.bounds || other.buckets.len() != self.buckets.len() {
            return;
        }
        self.buckets.iter_mut().zip(&other.buckets).for_each(|(a, b)| *a += b);
        self.count += other.count;
        self.sum += other.sum;
    }

    /// The `q`-quantile (0 ≤ q ≤ 1), interpolating linearly within the bucket that holds it
    /// (as PromQL's `histogram_quantile`: the first bucket's lower bound is 0, and a quantile in
    /// the `+Inf` bucket is the last finite bound). `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                if i == self.bounds.len() {
                    return self.bounds.last().copied();
                }
                let lower = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let upper = self.bounds[i];
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lower + (upper - lower) * within);
            }
            below += n;
        }
        self.bounds.last().copied()
    }
}

#[cfg(all(test, not(engram_loom)))]
mod tests {
    use super::*;

    const B: &[f64] = &[1.0, 2.0, 4.0];

    #[test]
    fn values_land_in_le_buckets() {
        let h = Histogram::new(B, 0.5);
        for v in [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 9.0, f64::NAN] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![2, 2, 2, 2]);
        assert_eq!(s.count, 8);
        assert_eq!(s.sum, 0.5 + 1.0 + 1.5 + 2.0 + 3.0 + 4.0 + 9.0);
    }

    #[test]
    fn sum_is_kept_to_its_resolution() {
        let h = Histogram::new(B, 1e-9);
        h.record(1.4e-9); // 1.4 ns → 1 ns
        h.record(1.5);
        h.record(-3.0); // counted, adds nothing to the sum
        let s = h.snapshot();
        assert!((s.sum - 1.500_000_001).abs() < 1e-12, "{}", s.sum);
        assert_eq!(s.count, 3);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let h = Histogram::new(B, 1e-9);
        assert_eq!(h.snapshot().quantile(0.5), None);
        for _ in 0..10 {
            h.record(1.5); // all in (1, 2]
        }
        let s = h.snapshot();
        assert_eq!(s.quantile(0.5), Some(1.5));
        assert_eq!(s.quantile(1.0), Some(2.0));
        h.record(100.0);
        assert_eq!(h.snapshot().quantile(1.0), Some(4.0), "+Inf bucket reports the last bound");
    }

    #[test]
    fn windows_and_merges_follow_the_buckets() {
        let h = Histogram::new(B, 1e-9);
        h.record(0.5);
        let before = h.snapshot();
        h.record(3.0);
        h.record(3.0);
        let window = h.snapshot().since(&before);
        assert_eq!((window.buckets.clone(), window.count), (vec![0, 0, 2, 0], 2));
        assert!((window.sum - 6.0).abs() < 1e-9);
        assert_eq!(window.quantile(0.5), Some(3.0));
        let mut all = before.clone();
        all.merge(&window);
        assert_eq!(all, h.snapshot());
    }

    #[test]
    fn counters_and_gauges_are_exact_under_threads() {
        let c = std::sync::Arc::new(crate::primitives::Counter::new());
        let g = std::sync::Arc::new(crate::primitives::Gauge::new());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (c, g) = (c.clone(), g.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        c.inc();
                        g.add(2.0);
                        g.sub(1.0);
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(c.get(), 40_000);
        assert_eq!(g.get(), 40_000.0);
    }
}
