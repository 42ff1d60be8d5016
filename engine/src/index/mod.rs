//! The index seam: a small trait every backend implements, and the metrics it searches by.
//!
//! Backends receive vectors already *prepared* by [`Metric::prepare`] (unit length for cosine),
//! hold no ids or content of their own beyond the `u64` id they return, and must be safe to
//! search while inserts run. The engine keeps the id map, dedupes ids and stores content.
//!
//! - [`hnsw`]: the `hnsw_rs` backend (Malkov & Yashunin, "Efficient and robust approximate
//!   nearest neighbor search using Hierarchical Navigable Small World graphs", TPAMI 2018).

pub mod hnsw;

use serde::{Deserialize, Serialize};

/// Similarity metric of a memory space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity: vectors are normalised to unit length on admission; score in [-1, 1].
    #[default]
    Cosine,
    /// Euclidean distance; score is the negative distance (higher is closer).
    L2,
    /// Inner product, unnormalised; score is the dot product.
    Dot,
}

impl Metric {
    /// Prepares a vector for insertion or search in place (normalises it for cosine).
    ///
    /// # Errors
    /// A reason string when the vector cannot be used with this metric (zero vector under
    /// cosine has no direction).
    pub fn prepare(self, v: &mut [f32]) -> Result<(), &'static str> {
        if self == Metric::Cosine {
            let norm = dot(v, v).sqrt();
            if !(norm > 0.0 && norm.is_finite()) {
                return Err("zero or non-finite norm: a cosine embedding needs a direction");
            }
            let inv = 1.0 / norm;
            v.iter_mut().for_each(|x| *x *= inv);
        }
        Ok(())
    }
}

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// The observation id.
    pub id: u64,
    /// Similarity, higher is better: cosine similarity, inner product, or negative L2 distance.
    pub score: f32,
}

/// An approximate nearest-neighbour index of one memory space.
///
/// Implementations are internally synchronised: `insert` and `search` take `&self` and may run
/// concurrently from every worker and query thread.
pub trait VectorIndex: Send + Sync {
    /// Inserts a prepared vector of the space's dimension under `id`. The engine guarantees each
    /// id is inserted at most once.
    fn insert(&self, id: u64, vector: &[f32]);
    /// The (approximately) `k` nearest neighbours of a prepared `query`, best first, exploring
    /// `ef` candidates (`ef >= k`; HNSW's `ef_search`).
    fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<Neighbor>;
    /// Vectors inserted.
    fn len(&self) -> usize;
    /// True when no vector was inserted.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Estimated bytes held by the index (graph and vectors).
    fn memory_bytes(&self) -> usize;
}

/// Dot product of two equal-length slices, in four independent lanes so it vectorises.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_prepare_normalises_and_refuses_zero() {
        let mut v = vec![3.0, 4.0];
        Metric::Cosine.prepare(&mut v).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!(Metric::Cosine.prepare(&mut [0.0, 0.0]).is_err());
        let mut w = vec![3.0, 4.0];
        Metric::L2.prepare(&mut w).unwrap();
        assert_eq!(w, vec![3.0, 4.0]);
    }

    #[test]
    fn dot_matches_naive_for_odd_lengths() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.1).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
