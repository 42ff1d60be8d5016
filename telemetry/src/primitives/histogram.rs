//! A histogram with fixed buckets.

use crate::sync::{AtomicF64, AtomicU64, Ordering};

/// A histogram over fixed, increasing upper bounds (`le`, Prometheus semantics: a value `v`
/// falls in the first bucket whose bound is `>= v`; values above the last bound go to `+Inf`).
///
/// `record` finds the bucket by binary search over the bounds (no lock, no allocation) and
/// makes three atomic updates: the bucket's count, the sum, then (with release ordering) the
/// total count. [`Histogram::snapshot`] reads the total count first (acquire) and the buckets
/// after, so a snapshot's count never exceeds its bucket total, however it interleaves with
/// records (loom model `histogram_snapshot_is_consistent`).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    sum: AtomicF64,
    count: AtomicU64,
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the finite buckets.
    pub bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts: one per bound, then the `+Inf` bucket.
    pub buckets: Vec<u64>,
    /// Sum of recorded values.
    pub sum: f64,
    /// Number of recorded values (at most the sum of `buckets`).
    pub count: u64,
}

impl Histogram {
    /// A histogram over `bounds`, which must be finite and strictly increasing.
    ///
    /// # Panics
    /// If `bounds` is empty, not strictly increasing, or not finite (catalog entries are
    /// checked by the catalog's tests, so this is a programming error).
    pub fn new(bounds: &'static [f64]) -> Self {
        assert!(!bounds.is_empty(), "a histogram needs at least one bucket");
        assert!(bounds.iter().all(|b| b.is_finite()), "bucket bounds must be finite");
        assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bucket bounds must increase");
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicF64::new(0.0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one value. NaN is recorded in the `+Inf` bucket and not added to the sum.
    #[inline]
    pub fn record(&self, v: f64) {
        let i = self.bounds.partition_point(|&b| b < v);
        let i = if v.is_nan() { self.bounds.len() } else { i };
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        if !v.is_nan() {
            self.sum.fetch_add(v, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Release);
    }

    /// The bucket bounds.
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// A consistent copy: `count <= buckets.iter().sum()`.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let count = self.count.load(Ordering::Acquire);
        let buckets = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        HistogramSnapshot { bounds: self.bounds, buckets, sum: self.sum.load(Ordering::Relaxed), count }
    }
}

impl HistogramSnapshot {
    /// The `q`-quantile (0 ≤ q ≤ 1), interpolating linearly within the bucket that holds it
    /// (as PromQL's `histogram_quantile`: the first bucket's lower bound is 0, and a quantile in
    /// the `+Inf` bucket is the last finite bound). `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
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
        let h = Histogram::new(B);
        for v in [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 9.0, f64::NAN] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![2, 2, 2, 2]);
        assert_eq!(s.count, 8);
        assert_eq!(s.sum, 0.5 + 1.0 + 1.5 + 2.0 + 3.0 + 4.0 + 9.0);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let h = Histogram::new(B);
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
