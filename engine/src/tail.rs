//! [`Tail`]: observations acknowledged but not yet in their space's index, searched exactly
//! until they are: what a start replayed from the log, and inserts that arrived while a
//! checkpoint copied the index (`Space::defer_put`).
//!
//! A start loads each space's checkpoint and reads the log after it. Inserting what it read
//! into the graph runs at the index's insert rate (seconds for a few thousand vectors on
//! hnsw_rs), but reading it takes milliseconds. So the engine becomes ready once the log is
//! read: every replayed insert or upsert is put here as well as queued for the workers, and
//! recall scans this set exactly (a flat scan, as Qdrant searches its unindexed appendable
//! segments and Milvus its growing segments) and merges it with the graph's answer. A worker
//! that applies the replayed job takes the entry out ([`Tail::applied`]), after the vector is in
//! the index. Live inserts enter it only for the length of a checkpoint's copy; otherwise it is
//! empty and recall pays one atomic load for it.
//!
//! An entry is *current* while its position is the latest operation admitted on its id (the
//! space's id map decides: a later upsert or delete supersedes it). Recall returns only current
//! entries, and leaves out the graph's hit for an id whose current vector is here (after a
//! replayed upsert the graph still holds the old vector).
//!
//! Memory: each entry holds its vector (`dim × 4` bytes) while the queued job holds another
//! copy, so a catch-up holds the replayed vectors twice; what is replayed is bounded by the
//! checkpoint triggers (`storage.checkpoint_after_operations`).

use crate::index::{Metric, Neighbor};
use crate::operation::Seq;
use crate::sync::{AtomicUsize, Ordering};
use dashmap::DashMap;

/// A vector acknowledged and not yet in the index.
struct Entry {
    seq: Seq,
    /// Prepared for the space's metric (normalised for cosine), as the index holds it.
    vector: Box<[f32]>,
}

/// Observations acknowledged and not yet indexed, by id (see the module docs).
#[derive(Default)]
pub(crate) struct Tail {
    entries: DashMap<u64, Entry>,
    /// Entries held: incremented before an insert and decremented after a removal, so a
    /// reader that sees 0 skips a tail that is empty.
    len: AtomicUsize,
}

impl Tail {
    /// True when no observation waits here for the index.
    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Operation `seq` puts `vector` (prepared) at `id`, replacing an older entry.
    pub(crate) fn put(&self, id: u64, seq: Seq, vector: Box<[f32]>) {
        self.len.fetch_add(1, Ordering::AcqRel);
        if self.entries.insert(id, Entry { seq, vector }).is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// A replayed delete of `id`: its entry (if any) is gone.
    pub(crate) fn remove(&self, id: u64) {
        if self.entries.remove(&id).is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The job of operation `seq` on `id` is done (its vector is in the index, or a later
    /// operation superseded it): the entry of that operation leaves the tail.
    pub(crate) fn applied(&self, id: u64, seq: Seq) {
        if self.is_empty() {
            return;
        }
        if self.entries.remove_if(&id, |_, e| e.seq == seq).is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The position of `id`'s entry, if it has one.
    pub(crate) fn seq_of(&self, id: u64) -> Option<Seq> {
        if self.is_empty() {
            return None;
        }
        self.entries.get(&id).map(|e| e.seq)
    }

    /// The `k` entries most similar to `query` (prepared, the entries' dimension) under
    /// `metric`, best first, scored as the index scores them (cosine and dot: the inner
    /// product; L2: the negative distance), among those `current(id, seq)` accepts. Exact: a
    /// scan of every entry, `O(len × dim)`.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        metric: Metric,
        current: impl Fn(u64, Seq) -> bool,
    ) -> Vec<Neighbor> {
        let mut best: Vec<Neighbor> = Vec::with_capacity(k.min(self.len()) + 1);
        if k == 0 {
            return best;
        }
        for e in self.entries.iter() {
            let score = metric.score(query, &e.vector);
            if best.len() >= k && best[k - 1].score >= score {
                continue;
            }
            // Only a candidate for the top k pays the id map lookup.
            if !current(*e.key(), e.seq) {
                continue;
            }
            let at = best.partition_point(|n| n.score >= score);
            best.insert(at, Neighbor { id: *e.key(), score });
            best.truncate(k);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::testing::lcg;
    use std::sync::Arc;

    #[test]
    fn search_is_exact_skips_entries_not_current_and_applied_entries_leave() {
        let tail = Tail::default();
        let mut next = lcg(3);
        let vectors: Vec<Vec<f32>> = (0..300)
            .map(|_| {
                let mut v: Vec<f32> = (0..8).map(|_| next()).collect();
                Metric::Cosine.prepare(&mut v).unwrap();
                v
            })
            .collect();
        for (i, v) in vectors.iter().enumerate() {
            tail.put(i as u64, 10 + i as u64, v.clone().into_boxed_slice());
        }
        // Ids 0..300 at seq 10 + id; the odd ids are superseded.
        let current = |id: u64, seq: Seq| id.is_multiple_of(2) && seq == 10 + id;
        for q in vectors.iter().take(50) {
            let got = tail.search(q, 5, Metric::Cosine, current);
            let mut want: Vec<(u64, f32)> = (0..300u64)
                .filter(|id| id % 2 == 0)
                .map(|id| (id, Metric::Cosine.score(q, &vectors[id as usize])))
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1));
            let got: Vec<u64> = got.iter().map(|n| n.id).collect();
            let want: Vec<u64> = want.iter().take(5).map(|w| w.0).collect();
            assert_eq!(got, want);
        }
        assert_eq!(tail.len(), 300);
        tail.applied(4, 99); // not its position: stays
        assert_eq!(tail.seq_of(4), Some(14));
        tail.applied(4, 14);
        tail.remove(6);
        assert_eq!((tail.seq_of(4), tail.seq_of(6), tail.len()), (None, None, 298));
        assert!(tail.search(&vectors[4], 1, Metric::Cosine, current).iter().all(|n| n.id != 4));
    }

    /// Searches while two threads apply every entry away and a third puts new ones: the count
    /// never goes below what is held, every hit is a held entry, and the tail ends empty.
    #[test]
    fn searches_beside_applies_and_puts_see_only_held_entries_and_the_count_stays_exact() {
        const N: u64 = 20_000;
        let tail = Arc::new(Tail::default());
        let vector = |id: u64| vec![1.0, (id % 97) as f32 / 97.0].into_boxed_slice();
        for id in 0..N {
            tail.put(id, id, vector(id));
        }
        let appliers: Vec<_> = (0..2u64)
            .map(|t| {
                let tail = Arc::clone(&tail);
                std::thread::spawn(move || {
                    for id in (t..N).step_by(2) {
                        tail.applied(id, id);
                    }
                })
            })
            .collect();
        let putter = {
            let tail = Arc::clone(&tail);
            std::thread::spawn(move || {
                for id in N..N + 2_000 {
                    tail.put(id, id, vector(id));
                    tail.applied(id, id);
                }
            })
        };
        let mut searches = 0;
        while appliers.iter().any(|h| !h.is_finished()) || searches < 100 {
            for hit in tail.search(&[1.0, 0.5], 10, Metric::Dot, |_, _| true) {
                assert!(hit.id < N + 2_000, "{hit:?}");
            }
            searches += 1;
        }
        for h in appliers {
            h.join().unwrap();
        }
        putter.join().unwrap();
        assert_eq!(tail.len(), 0);
        assert!(tail.is_empty() && tail.search(&[1.0, 0.5], 10, Metric::Dot, |_, _| true).is_empty());
    }
}
