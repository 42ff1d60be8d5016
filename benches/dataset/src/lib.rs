//! TEXMEX benchmark files (`.fvecs`, `.ivecs`; <http://corpus-texmex.irisa.fr/>): per row a
//! little-endian `i32` dimension followed by that many little-endian `f32` (fvecs) or `i32`
//! (ivecs) values. Used by the load generator (`engram-tools`), the tests and the benchmarks on
//! `../shared/data/*` (`base.fvecs`, `query.fvecs`, `groundtruth.ivecs`, optional `base.txt`),
//! and recall@k against exact neighbours.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A dense row-major matrix read from a TEXMEX file: `rows × dim` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors<T> {
    /// Values per row.
    pub dim: usize,
    /// `rows × dim` values, row after row.
    pub data: Vec<T>,
}

impl<T> Vectors<T> {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i` (`dim` values).
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// A malformed or unreadable TEXMEX file.
#[derive(Debug)]
pub struct DatasetError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for DatasetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for DatasetError {}

fn read_rows<T>(path: &Path, decode: fn([u8; 4]) -> T) -> Result<Vectors<T>, DatasetError> {
    let bytes =
        std::fs::read(path).map_err(|e: io::Error| DatasetError { path: path.to_owned(), reason: e.to_string() })?;
    parse_rows(&bytes, decode).map_err(|reason| DatasetError { path: path.to_owned(), reason })
}

/// Decodes TEXMEX rows (`dim: i32 LE`, then `dim` 4-byte values, repeated) from `bytes`.
fn parse_rows<T>(bytes: &[u8], decode: fn([u8; 4]) -> T) -> Result<Vectors<T>, String> {
    if bytes.len() < 4 {
        return Err("shorter than one row header".into());
    }
    let dim = i32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    if dim <= 0 {
        return Err(format!("row 0 declares dimension {dim}"));
    }
    let dim = dim as usize;
    let row_bytes = 4 + 4 * dim;
    if !bytes.len().is_multiple_of(row_bytes) {
        return Err(format!("size {} is not a multiple of the row size {row_bytes} (dim {dim})", bytes.len()));
    }
    let mut data = Vec::with_capacity(bytes.len() / row_bytes * dim);
    for (r, row) in bytes.chunks_exact(row_bytes).enumerate() {
        let d = i32::from_le_bytes(row[..4].try_into().expect("4 bytes"));
        if d as usize != dim {
            return Err(format!("row {r} declares dimension {d}, expected {dim}"));
        }
        data.extend(row[4..].chunks_exact(4).map(|c| decode(c.try_into().expect("4 bytes"))));
    }
    Ok(Vectors { dim, data })
}

/// Decodes the bytes of a `.fvecs` file (what [`read_fvecs`] reads), e.g. for the fuzz target.
///
/// # Errors
/// A size or row dimension that does not fit the format, as text.
pub fn parse_fvecs(bytes: &[u8]) -> Result<Vectors<f32>, String> {
    parse_rows(bytes, f32::from_le_bytes)
}

/// Decodes the bytes of an `.ivecs` file.
///
/// # Errors
/// As [`parse_fvecs`].
pub fn parse_ivecs(bytes: &[u8]) -> Result<Vectors<i32>, String> {
    parse_rows(bytes, i32::from_le_bytes)
}

/// Reads a `.fvecs` file.
///
/// # Errors
/// I/O errors, or a size or row dimension that does not fit the format.
pub fn read_fvecs(path: &Path) -> Result<Vectors<f32>, DatasetError> {
    read_rows(path, f32::from_le_bytes)
}

/// Reads an `.ivecs` file (e.g. ground truth: row numbers of the exact nearest neighbours).
///
/// # Errors
/// As [`read_fvecs`].
pub fn read_ivecs(path: &Path) -> Result<Vectors<i32>, DatasetError> {
    read_rows(path, i32::from_le_bytes)
}

/// Reads a text file with one entry per line (e.g. `base.txt`, the content of each vector).
///
/// # Errors
/// I/O errors and invalid UTF-8.
pub fn read_lines(path: &Path) -> Result<Vec<String>, DatasetError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| DatasetError { path: path.to_owned(), reason: e.to_string() })?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// Directory of a shared benchmark data set: `$ENGRAM_DATA_DIR/<name>` when that variable is
/// set, else `../shared/data/<name>` beside the repository (as CI lays it out; found from this
/// crate's directory, `benches/dataset/`).
///
/// # Errors
/// When the directory does not exist.
pub fn shared_data_dir(name: &str) -> Result<PathBuf, DatasetError> {
    let root = std::env::var_os("ENGRAM_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let dir = root.join(name);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(DatasetError {
            path: dir,
            reason: "benchmark data not found: put ../shared beside the repository or set ENGRAM_DATA_DIR".into(),
        })
    }
}

/// Exact top-`k` row numbers of `query` among the first `n` rows of `base`, by inner product,
/// best first (`k` is clamped to `n`). The shared data sets hold unit vectors, so this is the
/// exact cosine top-k; the ids are `i32` like the rows of `groundtruth.ivecs`, so
/// [`recall_at_k`] takes either. Brute force: `n × dim` multiply-adds per query.
///
/// # Panics
/// If `n > base.len()` or `query.len() != base.dim` (callers pass a data set's own rows).
pub fn exact_top_k(base: &Vectors<f32>, n: usize, query: &[f32], k: usize) -> Vec<i32> {
    assert!(
        n <= base.len() && query.len() == base.dim,
        "exact_top_k: {n} rows of dim {} asked of {} rows of dim {}",
        query.len(),
        base.len(),
        base.dim
    );
    let k = k.min(n);
    if k == 0 {
        return Vec::new();
    }
    let mut scored: Vec<(f32, i32)> =
        (0..n).map(|i| (base.row(i).iter().zip(query).map(|(a, b)| a * b).sum::<f32>(), i as i32)).collect();
    scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    scored.truncate(k);
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// recall@k of one query: |returned top-k ∩ truth top-k| / k.
pub fn recall_at_k(returned: &[u64], truth: &[i32], k: usize) -> f64 {
    let truth: std::collections::HashSet<u64> = truth.iter().take(k).map(|&t| t as u64).collect();
    returned.iter().take(k).filter(|id| truth.contains(id)).count() as f64 / k as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_truncated_files() {
        let dir = std::env::temp_dir().join(format!("engram-dataset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.fvecs");
        let mut bytes = Vec::new();
        for row in [[1.0f32, 2.0], [3.0, 4.0]] {
            bytes.extend(2i32.to_le_bytes());
            row.iter().for_each(|v| bytes.extend(v.to_le_bytes()));
        }
        std::fs::write(&p, &bytes).unwrap();
        let v = read_fvecs(&p).unwrap();
        assert_eq!((v.dim, v.len(), v.row(1)), (2, 2, &[3.0, 4.0][..]));
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read_fvecs(&p).unwrap_err().reason.contains("not a multiple"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exact_top_k_ranks_by_inner_product_within_the_first_n_rows() {
        let base = Vectors { dim: 2, data: vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8, -1.0, 0.0, 0.8, 0.6] };
        assert_eq!(exact_top_k(&base, 5, &[1.0, 0.0], 3), vec![0, 4, 2]);
        // Row 4 is outside the first 4; k is clamped to n.
        assert_eq!(exact_top_k(&base, 4, &[1.0, 0.0], 10), vec![0, 2, 1, 3]);
        assert!(exact_top_k(&base, 0, &[1.0, 0.0], 10).is_empty());
    }

    #[test]
    fn recall_counts_overlap_of_top_k() {
        assert_eq!(recall_at_k(&[1, 2, 3, 9], &[3, 2, 1, 4], 4), 0.75);
    }

    #[test]
    fn reads_the_shared_minilm_set() {
        let dir = shared_data_dir("minilm-384-stdlib").unwrap();
        let base = read_fvecs(&dir.join("base.fvecs")).unwrap();
        assert_eq!((base.dim, base.len()), (384, 17027));
        let gt = read_ivecs(&dir.join("groundtruth.ivecs")).unwrap();
        assert_eq!((gt.dim, gt.len()), (100, 500));
        assert_eq!(read_lines(&dir.join("base.txt")).unwrap().len(), 17027);
    }
}
