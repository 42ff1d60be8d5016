//! Index checkpoints: a space's index file (the backend's own format, usearch `save`) and its
//! per-id states, as of a log position every operation up to which was applied, so a start
//! loads them and replays only what the log holds after that position.
//!
//! Layout under the data directory: `checkpoints/{uid}/` holds `index-{seq}.bin`,
//! `states-{seq}.bin` and `MANIFEST` (JSON: the live checkpoints, newest first, each with the
//! xxh3 hash and length of both files; a second checkpoint at one position, written after an
//! index compaction, is `index-{seq}.{n}.bin`). A checkpoint is written to `.tmp` files, fsynced,
//! renamed, the directory fsynced, and only then named in a new `MANIFEST` (written the same
//! way), so a crash at any point leaves the previous manifest and its files whole. Two
//! checkpoints are kept: when the newest does not verify at start it is moved aside and the
//! previous one is used, and the log is compacted only through the older one's position.
//!
//! ```text
//! states := magic "ENGRAMS1" | n u64 | (id u64 | seq u64 | live u8){n}   (little-endian)
//! ```

use crate::error::{EngineError, StorageErrorKind};
use crate::operation::Seq;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const STATES_MAGIC: &[u8; 8] = b"ENGRAMS1";

/// One checkpoint as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Every operation on the space up to this log position is in the files.
    pub(crate) seq: Seq,
    /// The index file (in the space's checkpoint directory) and its xxh3-64 hash and length.
    pub(crate) index_file: String,
    pub(crate) index_hash: u64,
    pub(crate) index_len: u64,
    /// The states file, its hash and length.
    pub(crate) states_file: String,
    pub(crate) states_hash: u64,
    pub(crate) states_len: u64,
}

/// The live checkpoints of one space, newest first (at most two).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) checkpoints: Vec<Checkpoint>,
}

/// One id's state as a checkpoint keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SavedState {
    pub(crate) id: u64,
    pub(crate) seq: Seq,
    pub(crate) live: bool,
}

/// An I/O error on `path` as a storage error: disk full apart from every other failure.
pub(crate) fn io(context: &str, path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Storage { kind: StorageErrorKind::of(&e), message: format!("{context} {}: {e}", path.display()) }
}

/// The checkpoint directory of space `uid` under `root` (the data directory's `checkpoints`).
pub(crate) fn space_dir(root: &Path, uid: u64) -> PathBuf {
    root.join(uid.to_string())
}

/// Hash and length of a file's bytes.
fn hash_file(path: &Path) -> Result<(u64, u64), EngineError> {
    let mut f = File::open(path).map_err(|e| io("opening", path, e))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let len = for_each_chunk(
        &mut f,
        u64::MAX,
        |e| io("reading", path, e),
        |chunk| {
            hasher.update(chunk);
            Ok(())
        },
    )?;
    Ok((hasher.digest(), len))
}

/// Reads `f` from where it stands in chunks of 1 MiB (one buffer), to its end or `limit` bytes,
/// whichever comes first, passing each chunk to `each`; returns the bytes read. A read error
/// becomes `E` through `read_error`.
///
/// # Errors
/// The first error of a read or of `each`.
pub(crate) fn for_each_chunk<E>(
    f: &mut impl Read,
    limit: u64,
    read_error: impl Fn(std::io::Error) -> E,
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    while read < limit {
        let want = (buf.len() as u64).min(limit - read) as usize;
        let n = match f.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        each(&buf[..n])?;
        read += n as u64;
    }
    Ok(read)
}

fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("syncing", dir, e))
}

/// Writes `bytes` to `path` through a synced `.tmp` file and a rename.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| io("creating", &tmp, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming", &tmp, e))
}

/// Encodes states (see the module docs).
pub(crate) fn encode_states(states: &[SavedState]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + states.len() * 17);
    out.extend_from_slice(STATES_MAGIC);
    out.extend_from_slice(&(states.len() as u64).to_le_bytes());
    for s in states {
        out.extend_from_slice(&s.id.to_le_bytes());
        out.extend_from_slice(&s.seq.to_le_bytes());
        out.push(u8::from(s.live));
    }
    out
}

/// Decodes states.
///
/// # Errors
/// What does not parse: the magic, a count past the file's length, a trailing byte.
pub(crate) fn decode_states(bytes: &[u8]) -> Result<Vec<SavedState>, String> {
    if bytes.len() < 16 || &bytes[..8] != STATES_MAGIC {
        return Err("not a states file (magic)".into());
    }
    let n = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let body = &bytes[16..];
    if body.len() / 17 != n || !body.len().is_multiple_of(17) {
        return Err(format!("{n} states do not fill {} bytes", body.len()));
    }
    Ok(body
        .chunks_exact(17)
        .map(|c| SavedState {
            id: u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
            seq: u64::from_le_bytes(c[8..16].try_into().expect("8 bytes")),
            live: c[16] != 0,
        })
        .collect())
}

/// Reads the manifest of the space in `dir` (empty when there is none).
///
/// # Errors
/// [`EngineError::Storage`] when it exists and cannot be read or parsed.
pub(crate) fn read_manifest(dir: &Path) -> Result<Manifest, EngineError> {
    let path = dir.join("MANIFEST");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| EngineError::Storage {
            kind: StorageErrorKind::Io,
            message: format!("{} does not parse: {e}", path.display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(io("reading", &path, e)),
    }
}

/// Records a checkpoint at `seq` whose index file was written to `index_tmp` (in `dir`), with
/// `states`: both files synced and renamed, then a manifest naming it and the newest earlier
/// one (files of older ones removed). Returns the manifest now in force.
///
/// # Errors
/// [`EngineError::Storage`] on any I/O error; the previous manifest stays in force.
pub(crate) fn commit(dir: &Path, seq: Seq, index_tmp: &Path, states: &[SavedState]) -> Result<Manifest, EngineError> {
    File::open(index_tmp).and_then(|f| f.sync_all()).map_err(|e| io("syncing", index_tmp, e))?;
    let mut manifest = read_manifest(dir)?;
    // A second checkpoint at one position (after a compaction) gets names of its own: the one
    // it replaces stays whole until the manifest no longer names it.
    let taken = |name: &str| manifest.checkpoints.iter().any(|c| c.index_file == name || c.states_file == name);
    let (index_file, states_file) = (0u32..)
        .map(|n| {
            if n == 0 {
                (format!("index-{seq}.bin"), format!("states-{seq}.bin"))
            } else {
                (format!("index-{seq}.{n}.bin"), format!("states-{seq}.{n}.bin"))
            }
        })
        .find(|(index, states)| !taken(index) && !taken(states))
        .expect("an unused name");
    std::fs::rename(index_tmp, dir.join(&index_file)).map_err(|e| io("renaming", index_tmp, e))?;
    let bytes = encode_states(states);
    write_durably(&dir.join(&states_file), &bytes)?;
    let (index_hash, index_len) = hash_file(&dir.join(&index_file))?;
    let states_hash = xxhash_rust::xxh3::xxh3_64(&bytes);
    sync_dir(dir)?;
    let fresh =
        Checkpoint { seq, index_file, index_hash, index_len, states_file, states_hash, states_len: bytes.len() as u64 };
    manifest.checkpoints.retain(|c| c.seq < seq);
    manifest.checkpoints.insert(0, fresh);
    manifest.checkpoints.truncate(2);
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    write_durably(&dir.join("MANIFEST"), &json)?;
    sync_dir(dir)?;
    remove_unlisted(dir, &manifest);
    Ok(manifest)
}

/// Removes checkpoint files the manifest no longer names (best effort: a file left behind is
/// removed by the next checkpoint).
fn remove_unlisted(dir: &Path, manifest: &Manifest) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let checkpoint_file = (name.starts_with("index-") || name.starts_with("states-")) && name.ends_with(".bin");
        let listed = manifest.checkpoints.iter().any(|c| c.index_file == name || c.states_file == name);
        if checkpoint_file && !listed {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Checks both files of `c` against the manifest's hashes and lengths, and decodes the states.
///
/// # Errors
/// Why it does not verify (a missing file, another length or hash, states that do not parse).
pub(crate) fn verify(dir: &Path, c: &Checkpoint) -> Result<Vec<SavedState>, String> {
    let (index_hash, index_len) = hash_file(&dir.join(&c.index_file)).map_err(|e| e.to_string())?;
    if (index_hash, index_len) != (c.index_hash, c.index_len) {
        return Err(format!("{} has length {index_len} and hash {index_hash:x}, not as recorded", c.index_file));
    }
    let path = dir.join(&c.states_file);
    let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if bytes.len() as u64 != c.states_len || xxhash_rust::xxh3::xxh3_64(&bytes) != c.states_hash {
        return Err(format!("{} does not match its recorded length and hash", c.states_file));
    }
    decode_states(&bytes)
}

/// Moves the files of a checkpoint that does not verify aside (`*.corrupt`), never deleting
/// them; returns the paths they were moved to.
pub(crate) fn move_aside(dir: &Path, c: &Checkpoint) -> Vec<PathBuf> {
    [&c.index_file, &c.states_file]
        .into_iter()
        .filter_map(|f| {
            let from = dir.join(f);
            let to = dir.join(format!("{f}.corrupt"));
            std::fs::rename(&from, &to).ok().map(|()| to)
        })
        .collect()
}

/// Writes `manifest` in place of the current one (after a checkpoint was moved aside).
///
/// # Errors
/// [`EngineError::Storage`] on an I/O error.
pub(crate) fn rewrite_manifest(dir: &Path, manifest: &Manifest) -> Result<(), EngineError> {
    let json = serde_json::to_vec_pretty(manifest).expect("a manifest serialises");
    write_durably(&dir.join("MANIFEST"), &json)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_bad_files_are_errors() {
        let states =
            vec![SavedState { id: 1, seq: 9, live: true }, SavedState { id: u64::MAX - 1, seq: 0, live: false }];
        let bytes = encode_states(&states);
        assert_eq!(decode_states(&bytes).unwrap(), states);
        for cut in 0..bytes.len() {
            assert!(decode_states(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode_states(&long).is_err());
    }

    #[test]
    fn commit_keeps_two_and_verify_catches_a_flipped_byte() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for seq in [5u64, 9, 12] {
            let index_tmp = dir.join("index.tmp");
            std::fs::write(&index_tmp, vec![seq as u8; 1000]).unwrap();
            commit(dir, seq, &index_tmp, &[SavedState { id: seq, seq, live: true }]).unwrap();
        }
        let m = read_manifest(dir).unwrap();
        assert_eq!(m.checkpoints.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![12, 9]);
        assert!(!dir.join("index-5.bin").exists(), "the oldest checkpoint's files are removed");
        assert_eq!(verify(dir, &m.checkpoints[0]).unwrap(), vec![SavedState { id: 12, seq: 12, live: true }]);
        let path = dir.join(&m.checkpoints[0].index_file);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[500] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(verify(dir, &m.checkpoints[0]).unwrap_err().contains("hash"));
        let moved = move_aside(dir, &m.checkpoints[0]);
        assert_eq!(moved.len(), 2);
        assert!(moved.iter().all(|p| p.exists()));
        assert!(verify(dir, &m.checkpoints[1]).is_ok());
    }

    /// A second checkpoint at the position of the newest (an index compacted since) replaces
    /// it under names of its own, and the older one stays the fallback.
    #[test]
    fn a_second_checkpoint_at_one_position_replaces_the_first_under_its_own_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for (seq, byte) in [(9u64, 1u8), (12, 2), (12, 3), (12, 4)] {
            let index_tmp = dir.join("index.tmp");
            std::fs::write(&index_tmp, vec![byte; 100]).unwrap();
            commit(dir, seq, &index_tmp, &[SavedState { id: u64::from(byte), seq, live: true }]).unwrap();
        }
        let m = read_manifest(dir).unwrap();
        assert_eq!(m.checkpoints.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![12, 9]);
        assert_eq!(verify(dir, &m.checkpoints[0]).unwrap(), vec![SavedState { id: 4, seq: 12, live: true }]);
        assert_eq!(std::fs::read(dir.join(&m.checkpoints[0].index_file)).unwrap(), vec![4u8; 100]);
        assert!(verify(dir, &m.checkpoints[1]).is_ok());
        let mut files: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        files.sort();
        let listed = [
            &m.checkpoints[0].index_file,
            &m.checkpoints[0].states_file,
            &m.checkpoints[1].index_file,
            &m.checkpoints[1].states_file,
        ];
        assert_eq!(files.len(), 5, "{files:?}"); // the four listed and the MANIFEST
        assert!(listed.iter().all(|f| files.contains(f)), "{files:?}");
    }
}
