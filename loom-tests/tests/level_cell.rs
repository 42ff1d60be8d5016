//! Loom model of the backpressure level cell ([`LevelCell`]) with hysteresis.
//!
//! Mutation check (run by hand, not committed): replacing the compare-exchange in
//! `LevelCell::update` with a plain `store` of the computed level makes both models fail: loom
//! finds interleavings where a stale store overwrites the level the other thread reached
//! (final level 2 instead of 3, and 1 instead of 2) and where both threads report a transition
//! out of Normal, which would count an activation twice.
#![cfg(engram_loom)]

use engram_engine::admission::{LevelCell, Thresholds};
use loom::sync::Arc;
use loom::thread;

const T: Thresholds = Thresholds { enter: [0.5, 0.8, 0.95], hysteresis: 0.1 };

/// Invariant: concurrent updates at utilization 0.85 and 0.96 from Normal end in Overloaded
/// (0.85 holds Overloaded: it leaves only below 0.85), and the transitions reported, one per
/// successful compare-exchange, chain from 0 to the final level without repeats, so each
/// activation is counted exactly once.
#[test]
fn transitions_are_reported_once_and_chain_to_the_final_level() {
    loom::model(|| {
        let cell = Arc::new(LevelCell::default());
        let spawn = |u: f64| {
            let cell = cell.clone();
            thread::spawn(move || cell.update(&T, u))
        };
        let a = spawn(0.85);
        let b = spawn(0.96);
        let mut reported: Vec<(u8, u8)> = [a.join().unwrap(), b.join().unwrap()].into_iter().flatten().collect();
        assert_eq!(cell.get(), 3);
        reported.sort();
        let mut level = 0;
        for (from, to) in &reported {
            assert_eq!(*from, level, "transition {reported:?} does not start where the last ended");
            assert!(to > from, "both updates only climb here: {reported:?}");
            level = *to;
        }
        assert_eq!(level, 3, "{reported:?}");
    });
}

/// Invariant: with hysteresis, a rise to Critical and a concurrent fall to 0.75 (inside the
/// Critical band) never drop the level below Critical once it was reached, and a fall to 0.1
/// from wherever it is returns it to Normal.
#[test]
fn hysteresis_holds_under_concurrency() {
    loom::model(|| {
        let cell = Arc::new(LevelCell::default());
        let up = {
            let cell = cell.clone();
            thread::spawn(move || cell.update(&T, 0.82))
        };
        let hold = {
            let cell = cell.clone();
            thread::spawn(move || cell.update(&T, 0.75))
        };
        up.join().unwrap();
        hold.join().unwrap();
        // Either order ends in Critical: 0.75 first gives Warning, then 0.82 climbs to Critical;
        // 0.82 first gives Critical, then 0.75 holds it (Critical is left only below 0.7).
        assert_eq!(cell.get(), 2);
        assert_eq!(cell.update(&T, 0.1), Some((2, 0)));
    });
}
