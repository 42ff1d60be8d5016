//! The log's record encoding: one [`Operation`] per log value, little-endian, no padding.
//!
//! ```text
//! insert  := tag=1 u8 | priority u8 | dim u32 | n u32 | record{n}
//! upsert  := tag=3 u8 | priority u8 | dim u32 | n u32 | record{n}
//! record  := id u64 | content_len_plus_one u32 (0: no content) | content bytes | vector f32{dim}
//! delete  := tag=2 u8 | n u32 | id u64{n}
//! ```
//!
//! Tags 2 and 3 were added after format version 1 shipped with inserts only; a version-1 log
//! holds tag 1 records and reads unchanged.
//!
//! The store writes log records without content (it keeps content in its `content` keyspace,
//! read by recall); the format carries it so a record can stand alone.
//!
//! In a space whose index holds reduced vectors (`quantization` other than `none`), the
//! `content` keyspace keeps each live id's full vector with its content, so recall can rescore
//! (written in the same journal write as the log record, removed by a delete, copied by
//! snapshots like content):
//!
//! ```text
//! kept    := has_content u8 (0 or 1) | vector f32{dim} | content bytes (to the value's end)
//! ```
//!
//! The store (fjall) checksums its journal and its tables, so a record needs no CRC of its own;
//! [`decode`] still checks every length against the value's size, so a value that does not
//! parse is an error naming the offset, never a panic or an allocation sized by the value.

use crate::observation::Priority;
use crate::operation::{DeleteBatch, InsertBatch, Operation, Record};

const TAG_INSERT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_UPSERT: u8 = 3;

/// Encodes `op` into `out` (see [`encode_insert`] for `dim` and `with_content`).
pub(crate) fn encode(op: &Operation, dim: usize, with_content: bool, out: &mut Vec<u8>) {
    match op {
        Operation::Insert(batch) => encode_insert(batch, dim, with_content, out),
        Operation::Delete(batch) => {
            out.reserve(5 + 8 * batch.ids.len());
            out.push(TAG_DELETE);
            out.extend_from_slice(&(batch.ids.len() as u32).to_le_bytes());
            for id in &batch.ids {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
    }
}

/// Bytes [`encode_insert`] writes for `batch` in a space of dimension `dim`.
pub(crate) fn encoded_len(batch: &InsertBatch, dim: usize, with_content: bool) -> usize {
    let content = |r: &Record| if with_content { r.content.as_ref().map_or(0, |c| c.len()) } else { 0 };
    10 + batch.records.iter().map(|r| 12 + content(r) + dim * 4).sum::<usize>()
}

/// Encodes `batch` (records of `dim` values each) into `out`; without `with_content` every
/// record is written as having none (the store keeps content in a keyspace of its own).
pub(crate) fn encode_insert(batch: &InsertBatch, dim: usize, with_content: bool, out: &mut Vec<u8>) {
    out.reserve(encoded_len(batch, dim, with_content));
    out.push(if batch.upsert { TAG_UPSERT } else { TAG_INSERT });
    out.push(batch.priority.index() as u8);
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    out.extend_from_slice(&(batch.records.len() as u32).to_le_bytes());
    for r in &batch.records {
        out.extend_from_slice(&r.id.to_le_bytes());
        match r.content.as_ref().filter(|_| with_content) {
            Some(c) => {
                out.extend_from_slice(&(c.len() as u32 + 1).to_le_bytes());
                out.extend_from_slice(c.as_bytes());
            }
            None => out.extend_from_slice(&0u32.to_le_bytes()),
        }
        for x in r.vector.iter() {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// The `content` value of an id in a space with reduced vectors (see the module docs).
pub(crate) fn encode_kept(vector: &[f32], content: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + vector.len() * 4 + content.map_or(0, str::len));
    out.push(u8::from(content.is_some()));
    for x in vector {
        out.extend_from_slice(&x.to_le_bytes());
    }
    if let Some(c) = content {
        out.extend_from_slice(c.as_bytes());
    }
    out
}

/// Decodes a value written by [`encode_kept`] for a space of dimension `dim`: the vector into
/// `vector` (cleared first), and the content.
///
/// # Errors
/// What does not parse: a value shorter than the vector, an unknown flag, content that is not
/// UTF-8.
pub(crate) fn decode_kept<'a>(dim: usize, value: &'a [u8], vector: &mut Vec<f32>) -> Result<Option<&'a str>, String> {
    let mut r = Reader { buf: value, at: 0 };
    let has_content = r.u8()?;
    let bytes = r.take(dim * 4)?;
    vector.clear();
    vector.extend(bytes.as_chunks::<4>().0.iter().map(|b| f32::from_le_bytes(*b)));
    content_after(has_content, &value[r.at..])
}

/// The content of a value written by [`encode_kept`] for a space of dimension `dim`, without
/// decoding the vector (for a read that wants the content only).
///
/// # Errors
/// As [`decode_kept`]'s.
pub(crate) fn kept_content(dim: usize, value: &[u8]) -> Result<Option<&str>, String> {
    let mut r = Reader { buf: value, at: 0 };
    let has_content = r.u8()?;
    r.take(dim * 4)?;
    content_after(has_content, &value[r.at..])
}

fn content_after(has_content: u8, rest: &[u8]) -> Result<Option<&str>, String> {
    match has_content {
        0 if rest.is_empty() => Ok(None),
        0 => Err(format!("{} bytes after a vector without content", rest.len())),
        1 => std::str::from_utf8(rest).map(Some).map_err(|e| format!("content is not UTF-8: {e}")),
        f => Err(format!("unknown content flag {f} at offset 0")),
    }
}

/// A reader over a value that refuses to read past its end.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(format!("record cut short: {n} bytes wanted at offset {} of {}", self.at, self.buf.len()));
        };
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

/// Decodes one log value of a space named `space` whose dimension is `dim`.
///
/// # Errors
/// A description of what does not parse (unknown tag, a dimension other than `dim`, a length
/// past the value's end, content that is not UTF-8), with the byte offset.
pub(crate) fn decode(space: &str, dim: usize, value: &[u8]) -> Result<Operation, String> {
    let mut r = Reader { buf: value, at: 0 };
    let tag = r.u8()?;
    match tag {
        TAG_INSERT | TAG_UPSERT => decode_insert(space, dim, tag == TAG_UPSERT, r).map(Operation::Insert),
        TAG_DELETE => {
            let n = r.u32()? as usize;
            if n > value.len() / 8 {
                return Err(format!("{n} ids cannot fit in {} bytes", value.len()));
            }
            let ids = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
            if r.at != value.len() {
                return Err(format!("{} bytes after the last id", value.len() - r.at));
            }
            Ok(Operation::Delete(DeleteBatch { space: space.to_owned(), seq: None, ids }))
        }
        tag => Err(format!("unknown record tag {tag}")),
    }
}

/// The rest of an insert or upsert value after its tag.
fn decode_insert(space: &str, dim: usize, upsert: bool, mut r: Reader<'_>) -> Result<InsertBatch, String> {
    let value = r.buf;
    let priority = match r.u8()? {
        0 => Priority::High,
        1 => Priority::Normal,
        2 => Priority::Low,
        p => return Err(format!("unknown priority {p}")),
    };
    let d = r.u32()? as usize;
    if d != dim {
        return Err(format!("record of dimension {d} in a space of dimension {dim}"));
    }
    let n = r.u32()? as usize;
    // Each record takes at least 12 bytes: a count past what the value holds is corrupt, and
    // must not size the allocation.
    if n > value.len() / 12 {
        return Err(format!("{n} records cannot fit in {} bytes", value.len()));
    }
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.u64()?;
        let content = match r.u32()? {
            0 => None,
            len => {
                let at = r.at;
                let bytes = r.take(len as usize - 1)?;
                let s = std::str::from_utf8(bytes).map_err(|e| format!("content at offset {at} is not UTF-8: {e}"))?;
                Some(Box::from(s))
            }
        };
        let raw = r.take(dim * 4)?;
        let vector: Box<[f32]> =
            raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
        records.push(Record { id, vector, content });
    }
    if r.at != value.len() {
        return Err(format!("{} bytes after the last record", value.len() - r.at));
    }
    Ok(InsertBatch { space: space.to_owned(), seq: None, priority, upsert, records })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> InsertBatch {
        InsertBatch {
            space: "s".into(),
            seq: None,
            priority: Priority::Low,
            upsert: false,
            records: vec![
                Record { id: 7, vector: vec![1.0, -0.5, 0.25].into(), content: Some("héllo".into()) },
                Record { id: u64::MAX - 1, vector: vec![0.0, 2.0, f32::MIN_POSITIVE].into(), content: None },
                Record { id: 9, vector: vec![3.0, 0.0, 1.0].into(), content: Some("".into()) },
            ],
        }
    }

    #[test]
    fn an_insert_round_trips_and_its_length_is_exact() {
        let mut b = batch();
        let mut out = Vec::new();
        encode_insert(&b, 3, true, &mut out);
        assert_eq!(out.len(), encoded_len(&b, 3, true));
        assert_eq!(decode("s", 3, &out).unwrap(), Operation::Insert(b.clone()));
        let mut bare = Vec::new();
        encode_insert(&b, 3, false, &mut bare);
        assert_eq!(bare.len(), encoded_len(&b, 3, false));
        b.records.iter_mut().for_each(|r| r.content = None);
        assert_eq!(decode("s", 3, &bare).unwrap(), Operation::Insert(b.clone()));
        b.upsert = true;
        let mut up = Vec::new();
        encode(&Operation::Insert(b.clone()), 3, false, &mut up);
        assert_eq!(up[0], TAG_UPSERT);
        assert_eq!(decode("s", 3, &up).unwrap(), Operation::Insert(b));
    }

    #[test]
    fn a_delete_round_trips_and_every_truncation_is_an_error() {
        let op = Operation::Delete(DeleteBatch { space: "s".into(), seq: None, ids: vec![0, 7, u64::MAX - 1] });
        let mut out = Vec::new();
        encode(&op, 3, false, &mut out);
        assert_eq!(out.len(), 5 + 3 * 8);
        assert_eq!(decode("s", 3, &out).unwrap(), op);
        for cut in 0..out.len() {
            assert!(decode("s", 3, &out[..cut]).is_err(), "cut at {cut} parsed");
        }
        let mut huge = out.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode("s", 3, &huge).unwrap_err().contains("cannot fit"));
        out.push(1);
        assert!(decode("s", 3, &out).unwrap_err().contains("after the last id"));
    }

    #[test]
    fn every_truncation_and_a_wrong_dimension_are_errors_not_panics() {
        let mut out = Vec::new();
        encode_insert(&batch(), 3, true, &mut out);
        for cut in 0..out.len() {
            assert!(decode("s", 3, &out[..cut]).is_err(), "cut at {cut} parsed");
        }
        assert!(decode("s", 4, &out).unwrap_err().contains("dimension 3"));
        let mut long = out.clone();
        long.push(0);
        assert!(decode("s", 3, &long).unwrap_err().contains("after the last record"));
        // A record count far past the value's size is refused before allocating.
        let mut huge = out.clone();
        huge[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode("s", 3, &huge).unwrap_err().contains("cannot fit"));
        let mut tag = out;
        tag[0] = 9;
        assert!(decode("s", 3, &tag).unwrap_err().contains("tag 9"));
    }

    /// A kept value decodes to its vector and content, the content alone reads the same without
    /// the vector, and a cut or mislabelled value is refused, not misread.
    #[test]
    fn kept_values_round_trip_and_refuse_what_does_not_parse() {
        let v = [0.25f32, -1.0, 3.5];
        let mut out = Vec::new();
        for content in [None, Some(""), Some("text ünïcode")] {
            let value = encode_kept(&v, content);
            assert_eq!(decode_kept(3, &value, &mut out).unwrap(), content);
            assert_eq!(out, v);
            assert_eq!(kept_content(3, &value).unwrap(), content);
        }
        let value = encode_kept(&v, Some("abc"));
        assert!(kept_content(4, &value[..13]).unwrap_err().contains("cut short"));
        assert!(kept_content(3, &value[..5]).unwrap_err().contains("cut short"));
        let mut flagged = value.clone();
        flagged[0] = 7;
        assert!(kept_content(3, &flagged).unwrap_err().contains("unknown content flag 7"));
        let mut no_flag = value.clone();
        no_flag[0] = 0;
        assert!(kept_content(3, &no_flag).unwrap_err().contains("3 bytes after a vector without content"));
    }
}
