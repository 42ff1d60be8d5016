//! Label values: the fixed sets of the enumerated labels and the bounded `memory_space` label.
//!
//! Every label we export takes values from a bounded set. The enumerated ones are listed here
//! (the engine's enums index into these arrays); `memory_space`, which clients choose, is
//! bounded by [`BoundedLabel`]: at most `max` values hold a slot at once, every space created
//! while all slots are taken is exported as [`OVERFLOW`], and a dropped space frees its slot.

use parking_lot::Mutex;
use std::collections::HashSet;

/// Defines a label as an enum: each variant is one label value, `as_str` gives it, `ALL`
/// lists the variants in discriminant order and `NAMES` their values, so a call site picks a
/// value by variant and the strings live in one place.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident, $names:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in discriminant order.
            pub const ALL: [$name; [$($value),+].len()] = [$($name::$variant),+];

            /// The exported label value.
            pub const fn as_str(self) -> &'static str {
                $names[self as usize]
            }
        }

        #[doc = concat!("The label values of [`", stringify!($name), "`], indexed by its discriminant.")]
        pub const $names: [&str; [$($value),+].len()] = [$($value),+];
    };
}

/// `priority` label values, indexed by the engine's `Priority as usize` (lane order).
pub const PRIORITIES: [&str; 3] = ["high", "normal", "low"];

/// `level` label values of backpressure activations, indexed by `level - 1`
/// (Normal is never *entered* as a worse state).
pub const ACTIVATION_LEVELS: [&str; 3] = ["warning", "critical", "overloaded"];

label_enum! {
    /// `reason` of `engram_streaming_observations_rejected_total`: why admission refused
    /// observations. The engine's `RejectReason` (the refusals a client may retry) maps onto the
    /// first four; the last two are refusals without a retry-after.
    Rejected, REJECT_REASONS {
        /// The space is in Critical: low priority is shed.
        BackpressureCritical = "backpressure_critical",
        /// The space is in Overloaded: normal and low priority are shed.
        BackpressureOverloaded = "backpressure_overloaded",
        /// The queue's hard cap (observations or bytes).
        QueueFull = "queue_full",
        /// The high-priority lane holds `engine.high_lane_max_wait_ms` of work.
        HighLaneFull = "high_lane_full",
        /// The batch failed validation.
        InvalidArgument = "invalid_argument",
        /// The engine is draining for shutdown.
        ShuttingDown = "shutting_down",
        /// The log could not be written: the filesystem is full (ENOSPC).
        StorageFull = "storage_full",
        /// The log could not be written: any other I/O error.
        StorageError = "storage_error",
    }
}

label_enum! {
    /// `error_type` of `engram_streaming_batch_failures_total`: why a worker could not insert.
    BatchError, BATCH_ERROR_TYPES {
        /// The observation's space was dropped while it was queued.
        SpaceDropped = "space_dropped",
        /// The index panicked on the insert (caught; the observation is failed).
        IndexPanic = "index_panic",
    }
}

label_enum! {
    /// `reason` of `engram_api_requests_rejected_total`: why the API refused a request.
    Refusal, REFUSAL_REASONS {
        /// The body or message could not be parsed (bad JSON syntax, bad protobuf).
        Malformed = "malformed",
        /// Parsed, but a field is invalid.
        InvalidArgument = "invalid_argument",
        /// The body is over the size limit.
        PayloadTooLarge = "payload_too_large",
        /// The memory space does not exist.
        UnknownSpace = "unknown_space",
        /// No such route.
        UnknownRoute = "unknown_route",
        /// Shed by backpressure or a full queue.
        Overloaded = "overloaded",
        /// The server is shutting down.
        ShuttingDown = "shutting_down",
        /// Creating the memory space would exceed `engine.max_spaces`.
        SpaceLimit = "space_limit",
        /// The store could not record the change (disk full or an I/O error).
        Storage = "storage",
        /// The engine is still replaying its log after a start.
        Recovering = "recovering",
        /// No API key, or one that matches no configured key (401 / `UNAUTHENTICATED`).
        Unauthenticated = "unauthenticated",
        /// A known key without the grant the request needs (403 / `PERMISSION_DENIED`).
        PermissionDenied = "permission_denied",
        /// Over the key's (or client address's) rate limit (429 / `RESOURCE_EXHAUSTED`).
        RateLimited = "rate_limited",
    }
}

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
    fn label_enums_map_each_variant_to_its_own_value() {
        assert_eq!(Rejected::ALL.len(), REJECT_REASONS.len());
        for (i, r) in Rejected::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
            assert_eq!(r.as_str(), REJECT_REASONS[i]);
        }
        assert_eq!(Rejected::HighLaneFull.as_str(), "high_lane_full");
        assert_eq!(BatchError::IndexPanic.as_str(), "index_panic");
        assert_eq!(Refusal::SpaceLimit.as_str(), "space_limit");
        assert_eq!(Refusal::ALL.len(), 13);
        assert_eq!(Rejected::StorageFull.as_str(), "storage_full");
        assert_eq!(Refusal::Recovering.as_str(), "recovering");
    }

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
