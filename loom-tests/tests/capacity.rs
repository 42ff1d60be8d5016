//! Loom models of queue admission ([`Capacity`]): reserve, then push; roll back on failure.
//!
//! Mutation checks (run by hand, not committed): (1) replacing the bounded `fetch_update` in
//! `try_reserve` with `fetch_add` followed by a check and `fetch_sub` on overflow lets the
//! observer thread of `never_exceeds_capacity_even_for_an_instant` see `len() == 4 > 3`, and
//! loom reports the failing interleaving; (2) removing the count rollback after a failed byte
//! reservation leaves `len() == 4` at the end of `byte_failure_rolls_the_count_back`.
#![cfg(engram_loom)]

use engram_engine::admission::Capacity;
use loom::sync::Arc;
use loom::thread;

/// Invariant: two batches of 2 into room for 3: exactly one is admitted, and no observer ever
/// sees more than 3 reserved, at any interleaving.
#[test]
fn never_exceeds_capacity_even_for_an_instant() {
    loom::model(|| {
        let c = Arc::new(Capacity::new(3, 1000));
        let spawn = |c: Arc<Capacity>| thread::spawn(move || c.try_reserve(2, 2));
        let a = spawn(c.clone());
        let b = spawn(c.clone());
        let observer = {
            let c = c.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    assert!(c.len() <= 3, "observed {} reserved of 3", c.len());
                }
            })
        };
        let admitted = [a.join().unwrap(), b.join().unwrap()];
        observer.join().unwrap();
        assert_eq!(admitted.iter().filter(|x| **x).count(), 1, "{admitted:?}");
        assert_eq!((c.len(), c.bytes()), (2, 2));
    });
}

/// Invariant: a batch that fits the count cap but not the byte cap changes nothing, even while
/// another batch is admitted and released concurrently; nothing goes negative (a `usize`
/// underflow would wrap and trip the final checks).
#[test]
fn byte_failure_rolls_the_count_back() {
    loom::model(|| {
        let c = Arc::new(Capacity::new(4, 10));
        let big = {
            let c = c.clone();
            thread::spawn(move || c.try_reserve(2, 9))
        };
        let small = {
            let c = c.clone();
            thread::spawn(move || {
                let ok = c.try_reserve(2, 2);
                if ok {
                    c.release(2, 2);
                }
                ok
            })
        };
        let big_ok = big.join().unwrap();
        let small_ok = small.join().unwrap();
        assert!(big_ok || small_ok, "one of them fits on its own");
        if big_ok {
            assert_eq!((c.len(), c.bytes()), (2, 9));
        } else {
            assert_eq!((c.len(), c.bytes()), (0, 0));
        }
    });
}

/// Invariant: reserve/release pairs from two threads leave the accounting at zero: no
/// reservation is lost or counted twice.
#[test]
fn reserve_release_pairs_balance() {
    loom::model(|| {
        let c = Arc::new(Capacity::new(2, 2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let c = c.clone();
                thread::spawn(move || {
                    if c.try_reserve(1, 1) {
                        assert!((1..=2).contains(&c.len()));
                        c.release(1, 1);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(c.is_empty());
        assert_eq!(c.bytes(), 0);
    });
}
