//! `f32` distance kernels the usearch backend installs for `quantization = none`.
//!
//! USearch 2.26 measures `f32` vectors with NumKong 7.8, whose AVX2 kernel (`nk_dot_f32_haswell`,
//! `numkong/dot/haswell.h`) widens every product to `f64` and accumulates four lanes in one
//! dependency chain: a 50-dimensional inner product is 12 serial `f64` FMAs. That kernel took
//! 58 % of a raw 2-thread GloVe-50 insert (perf, `index_raw glove-50-angular-100k usearch 2`).
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
pub(crate) enum Kind {
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

/// `a·b` over the shorter length, `f32` accumulation in [`LANES`] independent lanes.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ (aᵢ - bᵢ)²` over the shorter length, like [`dot_portable`].
fn l2sq_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
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

    /// `a·b` over the shorter length: four 8-lane `f32` FMA accumulators, then 8 at a time,
    /// then the last `n mod 8` products one by one.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (every load): `i + 8 <= n`, and both slices hold at least `n` values.
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let at = i + 8 * j;
                *acc = unsafe { _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(at)), _mm256_loadu_ps(pb.add(at)), *acc) };
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = unsafe { _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]) };
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut total = hsum(sum);
        for k in i..n {
            total += a[k] * b[k];
        }
        total
    }

    /// `Σ (aᵢ - bᵢ)²` over the shorter length, like [`dot_avx2`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (every load): `i + 8 <= n`, and both slices hold at least `n` values.
        while i + 32 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let at = i + 8 * j;
                let d = unsafe { _mm256_sub_ps(_mm256_loadu_ps(pa.add(at)), _mm256_loadu_ps(pb.add(at))) };
                *acc = _mm256_fmadd_ps(d, d, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            let d = unsafe { _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
            acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut total = hsum(sum);
        for k in i..n {
            let d = a[k] - b[k];
            total += d * d;
        }
        total
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
