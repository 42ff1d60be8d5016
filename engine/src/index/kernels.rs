//! `f32` distance kernels the usearch backend installs for `quantization = none`.
//!
//! USearch 2.26 measures `f32` vectors with NumKong 7.8, whose AVX2 kernel (`nk_dot_f32_haswell`,
//! `numkong/dot/haswell.h`) widens every product to `f64` and accumulates four lanes in one
//! dependency chain: a 50-dimensional inner product is 12 serial `f64` FMAs. That kernel took
//! 51 % of a raw 2-thread GloVe-50 insert (perf, `index_raw glove-50-angular-100k usearch 2`).
//! hnswlib accumulates in `f32`, 8 lanes wide in independent registers; these kernels do the
//! same (four 8-lane `f32` accumulators with FMA where the CPU has AVX2 and FMA, a portable loop
//! the compiler vectorises elsewhere). `f32` accumulation of `dim` products has a relative error
//! of order `dim × 2⁻²⁴` (about 2·10⁻⁵ at 384 dimensions), far below the gaps between HNSW
//! candidates, and exact rescoring never uses these kernels. The measured effect is in
//! docs/benchmarks.md ("f32 distance kernel").
//!
//! The reduced kinds (`f16`, `bf16`, `i8`) keep NumKong's kernels.

/// A distance between two vectors of equal length: `1 - a·b` ([`Kind::InnerProduct`], USearch's
/// `IP` on prepared vectors) or `Σ (aᵢ - bᵢ)²` ([`Kind::L2sq`]).
pub(crate) type Kernel = fn(&[f32], &[f32]) -> f32;

/// Which distance a [`kernel`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `1 - a·b` (USearch's `IP`).
    InnerProduct,
    /// Squared Euclidean distance (USearch's `L2sq`).
    L2sq,
}

/// The fastest kernel for `kind` this CPU runs (checked once per call, at index creation).
pub(crate) fn kernel(kind: Kind) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return match kind {
                Kind::InnerProduct => |a, b| 1.0 - unsafe { x86::dot_avx2(a, b) },
                Kind::L2sq => |a, b| unsafe { x86::l2sq_avx2(a, b) },
            };
        }
    }
    match kind {
        Kind::InnerProduct => |a, b| 1.0 - dot_portable(a, b),
        Kind::L2sq => l2sq_portable,
    }
}

/// Lanes of the portable kernels' accumulator (the compiler maps it onto SIMD registers).
const LANES: usize = 16;

/// `Σ term(aᵢ, bᵢ)` over the shorter length, `f32` accumulation in [`LANES`] independent lanes.
#[inline]
fn fold_portable(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (ac, bc) = (a[..n].chunks_exact(LANES), b[..n].chunks_exact(LANES));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(&x, &y)| term(x, y)).sum();
    let mut acc = [0.0f32; LANES];
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            acc[l] += term(x[l], y[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `a·b` over the shorter length.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    fold_portable(a, b, |x, y| x * y)
}

/// `Σ (aᵢ - bᵢ)²` over the shorter length.
fn l2sq_portable(a: &[f32], b: &[f32]) -> f32 {
    fold_portable(a, b, |x, y| (x - y) * (x - y))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Sum of the 8 lanes of `v`.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
    }

    /// Folds `a` and `b` over the shorter length: `step(acc, a8, b8)` into four 8-lane `f32`
    /// accumulators 32 values at a time, then into the first 8 at a time; the lanes are summed
    /// and the last `n mod 8` values added with `term`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn fold(
        a: &[f32],
        b: &[f32],
        step: impl Fn(__m256, __m256, __m256) -> __m256,
        term: impl Fn(f32, f32) -> f32,
    ) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        // SAFETY (every load): `i + 8 <= n`, and both slices hold at least `n` values.
        let load = |p: *const f32, i: usize| unsafe { _mm256_loadu_ps(p.add(i)) };
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = step(*acc, load(pa, i + 8 * j), load(pb, i + 8 * j));
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = step(acc[0], load(pa, i), load(pb, i));
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        hsum(sum) + a[i..n].iter().zip(&b[i..n]).map(|(&x, &y)| term(x, y)).sum::<f32>()
    }

    /// `a·b` over the shorter length ([`fold`] with FMA).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |acc, x, y| _mm256_fmadd_ps(x, y, acc), |x, y| x * y)
    }

    /// `Σ (aᵢ - bᵢ)²` over the shorter length ([`fold`] with FMA of the difference).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
        fold(
            a,
            b,
            |acc, x, y| {
                let d = _mm256_sub_ps(x, y);
                _mm256_fmadd_ps(d, d, acc)
            },
            |x, y| (x - y) * (x - y),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values in `f64`.
    fn exact(kind: Kind, a: &[f32], b: &[f32]) -> f64 {
        let it = a.iter().zip(b).map(|(&x, &y)| (x as f64, y as f64));
        match kind {
            Kind::InnerProduct => 1.0 - it.map(|(x, y)| x * y).sum::<f64>(),
            Kind::L2sq => it.map(|(x, y)| (x - y) * (x - y)).sum(),
        }
    }

    /// Deterministic values in [-1, 1) (a 64-bit LCG; no test depends on a random seed).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn every_kernel_matches_f64_at_every_length_up_to_130() {
        let mut kernels: Vec<(Kind, Kernel, &str)> = vec![
            (Kind::InnerProduct, |a, b| 1.0 - dot_portable(a, b), "portable"),
            (Kind::L2sq, l2sq_portable, "portable"),
            (Kind::InnerProduct, kernel(Kind::InnerProduct), "selected"),
            (Kind::L2sq, kernel(Kind::L2sq), "selected"),
        ];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            kernels.push((Kind::InnerProduct, |a, b| 1.0 - unsafe { x86::dot_avx2(a, b) }, "avx2"));
            kernels.push((Kind::L2sq, |a, b| unsafe { x86::l2sq_avx2(a, b) }, "avx2"));
        }
        for n in 0..=130 {
            let (a, b) = (values(n, n as u64), values(n, 1000 + n as u64));
            for &(kind, f, name) in &kernels {
                let (got, want) = (f(&a, &b) as f64, exact(kind, &a, &b));
                // f32 accumulation of n products of magnitude <= 1 (4 for L2sq terms).
                let bound = 1e-5 * (n as f64 + 1.0) * 4.0;
                assert!((got - want).abs() <= bound, "{name} {kind:?} at n={n}: {got} against {want}");
            }
        }
    }

    #[test]
    fn a_vector_is_at_distance_zero_from_itself() {
        let v = values(384, 7);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let unit: Vec<f32> = v.iter().map(|x| x / norm).collect();
        assert!(kernel(Kind::InnerProduct)(&unit, &unit).abs() < 1e-5);
        assert_eq!(kernel(Kind::L2sq)(&v, &v), 0.0);
    }
}
