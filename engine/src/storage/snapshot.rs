//! Snapshot files: one memory space as of a log position, in one file, to back up, restore
//! or move to another server.
//!
//! A snapshot holds what recovery needs: the space's parameters, an index checkpoint (the
//! backend's own format: usearch `save_to_buffer`, hnsw_rs its dump with the id maps) and the ids'
//! states at the checkpoint position `C`, the log records after `C` up to the snapshot's
//! position `Q`, and the content of every id at `Q`. Restoring loads the index and replays
//! the records, exactly as a start does, so the restored space is the space as of `Q`.
//!
//! ```text
//! file     := magic "ENGRAMP1" | section(header JSON) | section(index) | section(states)
//!             | items(records) | items(contents) | xxh3-64 of every byte before it (u64)
//! section  := len u64 | bytes
//! items    := (1 u8 | key u64 | len u64 | bytes)* | 0 u8     (records: key = sequence number,
//!                                                            contents: key = observation id)
//! ```
//!
//! Integers are little-endian. The file is written to `.tmp`, synced and renamed, and is
//! read only after its hash verified, with every length checked against the bytes left, so a
//! cut or altered file is an error naming what is wrong, never a panic or an allocation
//! larger than the file.

use super::checkpoint::{for_each_chunk, io};
use crate::error::EngineError;
use crate::operation::Seq;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"ENGRAMP1";

/// The snapshot format this build writes and reads (the header's `format`).
pub(crate) const SNAPSHOT_FORMAT: u32 = 1;

/// Largest header a reader accepts, bytes.
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// A snapshot's header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Header {
    /// [`SNAPSHOT_FORMAT`] when written.
    pub(crate) format: u32,
    /// The space it was taken of.
    pub(crate) space: String,
    /// The space's parameters, as the space definition stores them.
    pub(crate) params: serde_json::Value,
    /// The log position it is the space as of.
    pub(crate) position: Seq,
    /// The position its index checkpoint covers (0: no checkpoint, the records start at 1).
    pub(crate) checkpoint: Seq,
    /// Unix time it was taken, milliseconds.
    pub(crate) created_unix_ms: u64,
    /// The engine version that wrote it.
    pub(crate) engine_version: String,
}

/// Writes a snapshot file, hashing as it goes.
pub(crate) struct Writer<'a> {
    path: &'a Path,
    out: BufWriter<File>,
    hasher: xxhash_rust::xxh3::Xxh3,
    bytes: u64,
}

impl<'a> Writer<'a> {
    /// Creates `path` (truncating) and writes the magic and `header`.
    pub(crate) fn create(path: &'a Path, header: &Header) -> Result<Self, EngineError> {
        let file = File::create(path).map_err(|e| io("creating", path, e))?;
        let mut w = Self {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            bytes: 0,
        };
        w.put(MAGIC)?;
        w.section(&serde_json::to_vec(header).expect("a header serialises"))?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes).map_err(|e| io("writing", self.path, e))
    }

    /// A section of `bytes`.
    pub(crate) fn section(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.put(&(bytes.len() as u64).to_le_bytes())?;
        self.put(bytes)
    }

    /// A section holding the whole file at `from` (streamed, not read into memory).
    pub(crate) fn section_from_file(&mut self, from: &Path) -> Result<(), EngineError> {
        let mut f = File::open(from).map_err(|e| io("opening", from, e))?;
        let len = f.metadata().map_err(|e| io("reading", from, e))?.len();
        self.put(&len.to_le_bytes())?;
        let copied = for_each_chunk(&mut f, u64::MAX, |e| io("reading", from, e), |chunk| self.put(chunk))?;
        if copied != len {
            return Err(io("reading", from, std::io::Error::other("the file changed while it was copied")));
        }
        Ok(())
    }

    /// One item (of the records or contents list).
    pub(crate) fn item(&mut self, key: u64, bytes: &[u8]) -> Result<(), EngineError> {
        self.put(&[1])?;
        self.put(&key.to_le_bytes())?;
        self.section(bytes)
    }

    /// Ends an items list.
    pub(crate) fn end_items(&mut self) -> Result<(), EngineError> {
        self.put(&[0])
    }

    /// Writes the hash, flushes and syncs; returns the file's length and hash.
    pub(crate) fn finish(mut self) -> Result<(u64, u64), EngineError> {
        let hash = self.hasher.digest();
        self.out.write_all(&hash.to_le_bytes()).map_err(|e| io("writing", self.path, e))?;
        let file = self.out.into_inner().map_err(|e| io("writing", self.path, e.into_error()))?;
        file.sync_all().map_err(|e| io("syncing", self.path, e))?;
        Ok((self.bytes + 8, hash))
    }
}

/// Hash and length check of a whole snapshot file: the xxh3-64 of every byte but the last 8
/// equals those 8. Returns the hash.
///
/// # Errors
/// Why the file is not a whole snapshot (too short, another hash), or an I/O error.
pub(crate) fn verify(path: &Path) -> Result<u64, String> {
    let mut f = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let len = f.metadata().map_err(|e| format!("reading {}: {e}", path.display()))?.len();
    if len < MAGIC.len() as u64 + 8 + 8 {
        return Err(format!("is {len} bytes: too short to be a snapshot"));
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let read_error = |e| format!("reading {}: {e}", path.display());
    let hashed = for_each_chunk(&mut f, len - 8, read_error, |chunk| {
        hasher.update(chunk);
        Ok(())
    })?;
    if hashed != len - 8 {
        return Err(format!("is shorter than the {len} bytes it had a moment ago: it changed while it was read"));
    }
    let mut stored = [0u8; 8];
    f.read_exact(&mut stored).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let (got, want) = (hasher.digest(), u64::from_le_bytes(stored));
    if got != want {
        return Err(format!("its hash is {got:016x}, not the {want:016x} it records: the file is cut or altered"));
    }
    Ok(want)
}

/// Reads a snapshot file front to back. Call [`verify`] first: the reader checks every length
/// against the bytes left but not the hash.
pub(crate) struct Reader {
    input: BufReader<File>,
    /// Bytes left before the hash.
    left: u64,
}

impl Reader {
    /// Opens `path` and reads its magic and header.
    ///
    /// # Errors
    /// Why it is not a snapshot this build reads.
    pub(crate) fn open(path: &Path) -> Result<(Self, Header), String> {
        let f = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        let len = f.metadata().map_err(|e| format!("reading {}: {e}", path.display()))?.len();
        let mut r = Self { input: BufReader::with_capacity(1 << 20, f), left: len.saturating_sub(8) };
        let mut magic = [0u8; 8];
        r.exact(&mut magic)?;
        if &magic != MAGIC {
            return Err("is not an engram-stream snapshot (magic)".into());
        }
        let header = r.bytes(MAX_HEADER_BYTES)?;
        let header: Header = serde_json::from_slice(&header).map_err(|e| format!("its header does not parse: {e}"))?;
        if header.format != SNAPSHOT_FORMAT {
            return Err(format!("has snapshot format {}; this build reads format {SNAPSHOT_FORMAT}", header.format));
        }
        Ok((r, header))
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), String> {
        if (buf.len() as u64) > self.left {
            return Err("ends early: a length points past the end of the file".into());
        }
        self.input.read_exact(buf).map_err(|e| format!("reading: {e}"))?;
        self.left -= buf.len() as u64;
        Ok(())
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn len(&mut self, limit: u64) -> Result<u64, String> {
        let len = self.u64()?;
        if len > self.left || len > limit {
            return Err(format!("holds a section of {len} bytes: more than the file has left or the limit of {limit}"));
        }
        Ok(len)
    }

    /// A section read into memory (at most `limit` bytes).
    pub(crate) fn bytes(&mut self, limit: u64) -> Result<Vec<u8>, String> {
        let len = self.len(limit)?;
        let mut out = vec![0u8; len as usize];
        self.exact(&mut out)?;
        Ok(out)
    }

    /// A section copied to a new file at `to`; returns its length.
    pub(crate) fn section_to_file(&mut self, to: &Path) -> Result<u64, String> {
        let len = self.len(u64::MAX)?;
        let mut out = File::create(to).map_err(|e| format!("creating {}: {e}", to.display()))?;
        let copied = std::io::copy(&mut (&mut self.input).take(len), &mut out)
            .map_err(|e| format!("writing {}: {e}", to.display()))?;
        if copied != len {
            return Err("ends early inside the index section".into());
        }
        self.left -= len;
        out.sync_all().map_err(|e| format!("syncing {}: {e}", to.display()))?;
        Ok(len)
    }

    /// The next item of a list (at most `limit` bytes), or `None` at its end.
    pub(crate) fn item(&mut self, limit: u64) -> Result<Option<(u64, Vec<u8>)>, String> {
        let mut flag = [0u8; 1];
        self.exact(&mut flag)?;
        match flag[0] {
            0 => Ok(None),
            1 => {
                let key = self.u64()?;
                Ok(Some((key, self.bytes(limit)?)))
            }
            other => Err(format!("holds an item flag {other}, not 0 or 1")),
        }
    }

    /// True when everything before the hash was read.
    pub(crate) fn at_end(&self) -> bool {
        self.left == 0
    }
}

/// The header of the snapshot at `path` (without verifying the rest).
///
/// # Errors
/// Why it is not a snapshot this build reads.
pub(crate) fn header(path: &Path) -> Result<Header, String> {
    Reader::open(path).map(|(_, h)| h)
}

/// The hash a snapshot file records (its last 8 bytes), without reading the rest.
pub(crate) fn recorded_hash(path: &Path) -> Option<u64> {
    let mut f = File::open(path).ok()?;
    f.seek(SeekFrom::End(-8)).ok()?;
    let mut b = [0u8; 8];
    f.read_exact(&mut b).ok()?;
    Some(u64::from_le_bytes(b))
}

/// True for a name a snapshot file may have: `[A-Za-z0-9._-]`, ending in `.snapshot`, not
/// starting with a dot, at most 200 bytes (so it never leaves its directory).
pub(crate) fn valid_name(name: &str) -> bool {
    name.len() <= 200
        && name.ends_with(".snapshot")
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            format: SNAPSHOT_FORMAT,
            space: "s".into(),
            params: serde_json::json!({"dim": 4}),
            position: 9,
            checkpoint: 3,
            created_unix_ms: 1,
            engine_version: "t".into(),
        }
    }

    fn write(path: &Path) -> u64 {
        let index = path.with_extension("idx");
        std::fs::write(&index, vec![7u8; 3000]).unwrap();
        let mut w = Writer::create(path, &header()).unwrap();
        w.section_from_file(&index).unwrap();
        w.section(b"states").unwrap();
        w.item(4, b"record four").unwrap();
        w.item(5, b"").unwrap();
        w.end_items().unwrap();
        w.item(11, "contenu".as_bytes()).unwrap();
        w.end_items().unwrap();
        w.finish().unwrap().1
    }

    #[test]
    fn a_snapshot_reads_back_and_every_cut_or_flipped_byte_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.snapshot");
        let hash = write(&path);
        assert_eq!(verify(&path).unwrap(), hash);
        assert_eq!(recorded_hash(&path), Some(hash));
        let (mut r, h) = Reader::open(&path).unwrap();
        assert_eq!(h, header());
        let out = tmp.path().join("index.out");
        assert_eq!(r.section_to_file(&out).unwrap(), 3000);
        assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 3000]);
        assert_eq!(r.bytes(100).unwrap(), b"states");
        assert_eq!(r.item(100).unwrap(), Some((4, b"record four".to_vec())));
        assert_eq!(r.item(100).unwrap(), Some((5, Vec::new())));
        assert_eq!(r.item(100).unwrap(), None);
        assert!(r.item(3).unwrap_err().contains("limit"), "an item over the limit is refused");

        let bytes = std::fs::read(&path).unwrap();
        let bad = tmp.path().join("bad.snapshot");
        for cut in [0, 7, 8, 20, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&bad, &bytes[..cut]).unwrap();
            assert!(verify(&bad).is_err(), "cut at {cut}");
        }
        for at in [0, 9, 100, 2000, bytes.len() - 20, bytes.len() - 3] {
            let mut b = bytes.clone();
            b[at] ^= 0x20;
            std::fs::write(&bad, &b).unwrap();
            assert!(verify(&bad).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn lengths_past_the_end_are_errors_not_allocations() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.snapshot");
        let mut w = Writer::create(&path, &header()).unwrap();
        // A section claiming u64::MAX / 2 bytes.
        w.put(&(u64::MAX / 2).to_le_bytes()).unwrap();
        w.finish().unwrap();
        verify(&path).unwrap();
        let (mut r, _) = Reader::open(&path).unwrap();
        assert!(r.bytes(u64::MAX).unwrap_err().contains("more than the file has left"));
    }

    #[test]
    fn names_stay_in_their_directory() {
        assert!(valid_name("glove-120-1764000000000.snapshot"));
        for bad in ["../x.snapshot", "a/b.snapshot", ".snapshot", "x.bin", "a b.snapshot", ""] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
