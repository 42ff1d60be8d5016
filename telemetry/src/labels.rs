//! Label values: the fixed sets of the enumerated labels and the bounded `memory_space` label.
//!
//! Every label we export takes values from a bounded set. The enumerated ones are listed here
//! (the engine's enums index into these arrays); `memory_space`, which clients choose, is
//! bounded by [`BoundedLabel`]: at most `max` values hold a slot at once, every space created
//! while all slots are taken is exported as [`OVERFLOW`], and a dropped space frees its slot.

use parking_lot::Mutex;
use std::collections::HashSet;

/// `priority` label values, indexed by the engine's `Priority as usize`.
pub const PRIORITIES: [&str; 3] = ["high", "normal", "low"];

/// `level` label values of backpressure activations, indexed by `level - 1`
/// (Normal is never *entered* as a worse state).
pub const ACTIVATION_LEVELS: [&str; 3] = ["warning", "critical", "overloaded"];

/// `reason` label values of rejected observations, indexed by the engine's `RejectReason`.
pub const REJECT_REASONS: [&str; 6] = [
    "backpressure_critical",
    "backpressure_overloaded",
    "queue_full",
    "high_lane_full",
    "invalid_argument",
    "shutting_down",
];

/// `error_type` label values of batch insertion failures, indexed by the engine's failure kind.
pub const BATCH_ERROR_TYPES: [&str; 2] = ["space_dropped", "index_panic"];

/// The value exported for a bounded label once its budget of distinct values is spent.
pub const OVERFLOW: &str = "__other__";

/// A label whose live values are capped: a value that finds a free slot (fewer than `max` held)
/// is exported as itself and holds the slot until [`BoundedLabel::release`]; a value that finds
/// none is exported as [`OVERFLOW`] for its whole life (a label is chosen once, when its space
/// is created, and never changes under a live series).
///
/// Used at registration time only (space creation and drop), never on a hot path.
#[derive(Debug)]
pub struct BoundedLabel {
    max: usize,
    seen: Mutex<HashSet<String>>,
}

impl BoundedLabel {
    /// A label that keeps at most `max` distinct values.
    pub fn new(max: usize) -> Self {
        Self { max, seen: Mutex::new(HashSet::new()) }
    }

    /// The value to export for `value`: itself if it holds a slot or one is free (it then
    /// holds it), else [`OVERFLOW`].
    pub fn resolve(&self, value: &str) -> String {
        let mut seen = self.seen.lock();
        if seen.contains(value) {
            return value.to_owned();
        }
        if seen.len() < self.max {
            seen.insert(value.to_owned());
            return value.to_owned();
        }
        OVERFLOW.to_owned()
    }

    /// Frees the slot `value` holds; returns false when it held none (it was exported as
    /// [`OVERFLOW`], or was never resolved).
    pub fn release(&self, value: &str) -> bool {
        value != OVERFLOW && self.seen.lock().remove(value)
    }

    /// Values holding a slot.
    pub fn held(&self) -> usize {
        self.seen.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_label_overflows_after_budget_and_remembers_values() {
        let l = BoundedLabel::new(2);
        assert_eq!(l.resolve("a"), "a");
        assert_eq!(l.resolve("b"), "b");
        assert_eq!(l.resolve("c"), OVERFLOW);
        assert_eq!(l.resolve("a"), "a", "known values keep their series");
        assert_eq!(l.resolve("d"), OVERFLOW);
    }

    #[test]
    fn a_released_value_frees_its_slot_for_the_next_one() {
        let l = BoundedLabel::new(2);
        assert_eq!(l.resolve("a"), "a");
        assert_eq!(l.resolve("b"), "b");
        assert_eq!(l.resolve("c"), OVERFLOW);
        assert!(l.release("a"));
        assert!(!l.release("a"), "released once");
        assert!(!l.release(OVERFLOW));
        assert_eq!(l.resolve("c"), "c", "the freed slot goes to the next space created");
        assert_eq!(l.held(), 2);
    }
}
