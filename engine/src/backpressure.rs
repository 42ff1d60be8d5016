//! Backpressure policy: levels, which priorities each level admits, and retry-after.
//!
//! The level of a memory space is the worse of the global level (whole-queue utilization) and
//! the space's own level (its pending observations against its share of the queue: all of it
//! for a lone space, `max_space_share` of it once two or more exist). A hot space therefore
//! reaches Critical on its own share first and is shed before it can push every other space
//! into Overloaded. Each level moves with hysteresis (`admission::Thresholds`). The levels are
//! decided, per space, by the update path's admission stage (`update::admit`).
//!
//! | level | admits |
//! |---|---|
//! | Normal | all |
//! | Warning | all, and tells clients to slow down |
//! | Critical | high and normal; low is rejected |
//! | Overloaded | high only, until the queue's hard cap |

use crate::observation::Priority;
use engram_telemetry::labels::Rejected;
use serde::Serialize;
use std::time::Duration;

/// Backpressure level, exported as `engram_streaming_backpressure_state` (0 to 3).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BackpressureLevel {
    /// Below the warning threshold.
    #[default]
    Normal = 0,
    /// Admits all; clients should slow down.
    Warning = 1,
    /// Sheds low priority.
    Critical = 2,
    /// Sheds normal and low priority.
    Overloaded = 3,
}

impl BackpressureLevel {
    /// The level for a raw value (values above 3 saturate to Overloaded).
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Normal,
            1 => Self::Warning,
            2 => Self::Critical,
            _ => Self::Overloaded,
        }
    }

    /// Upper-case name, as in API responses (`NORMAL` ... `OVERLOADED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
            Self::Overloaded => "OVERLOADED",
        }
    }

    /// Why this level refuses `priority`, or `None` when it admits it.
    pub fn refuses(self, priority: Priority) -> Option<RejectReason> {
        match (self, priority) {
            (Self::Overloaded, Priority::Normal | Priority::Low) => Some(RejectReason::BackpressureOverloaded),
            (Self::Critical, Priority::Low) => Some(RejectReason::BackpressureCritical),
            _ => None,
        }
    }
}

/// Why a batch was refused admission (a refusal the client may retry after its retry-after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The space is in Critical: low priority is shed.
    BackpressureCritical,
    /// The space is in Overloaded: normal and low priority are shed.
    BackpressureOverloaded,
    /// Admitting the batch would exceed the queue's hard cap (observations or bytes).
    QueueFull,
    /// Under pressure (Warning or worse), the high-priority lane already holds what the
    /// workers drain in `engine.high_lane_max_wait_ms`: admitting more would make admitted
    /// high-priority observations wait longer than that to be indexed.
    HighLaneFull,
}

impl RejectReason {
    /// The reason's `reason` label, the one place a reason maps to it.
    pub fn label(self) -> Rejected {
        match self {
            Self::BackpressureCritical => Rejected::BackpressureCritical,
            Self::BackpressureOverloaded => Rejected::BackpressureOverloaded,
            Self::QueueFull => Rejected::QueueFull,
            Self::HighLaneFull => Rejected::HighLaneFull,
        }
    }

    /// The reason as exported in metrics and API responses.
    pub fn as_str(self) -> &'static str {
        self.label().as_str()
    }
}

/// A refused batch: nothing in it was accepted; retry the whole batch after `retry_after`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Why it was refused.
    pub reason: RejectReason,
    /// When to retry, estimated from the measured queue drain rate.
    pub retry_after: Duration,
    /// The space's backpressure level at the time.
    pub level: BackpressureLevel,
}

/// Retry-after told to clients refused because the engine is shutting down (another instance,
/// or this one restarted, may take the batch by then).
pub const SHUTDOWN_RETRY_AFTER: Duration = Duration::from_secs(1);

impl BackpressureLevel {
    /// The retry-after pushed with a level change to stream clients: 1 s at Overloaded (normal
    /// and low priority are refused there), none below.
    pub fn retry_hint(self) -> Option<Duration> {
        (self >= Self::Overloaded).then_some(Duration::from_secs(1))
    }
}

/// Shortest and longest retry-after we hand out.
pub(crate) const MIN_RETRY: Duration = Duration::from_millis(100);
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(60);

/// Time until a refused batch of `batch` observations would be admitted, from the measured
/// drain rate (observations per second).
///
/// For a backpressure refusal, the time to drain from `depth` down to the utilization at which
/// the refusing level is left (`exit_util × capacity`); for a full queue, the time to free room
/// for the batch. With no measured drain (idle or stalled workers) the answer is one second, so
/// clients probe rather than wait blindly. Clamped to 100 ms ..= 60 s.
pub(crate) fn retry_after(depth: usize, capacity: usize, exit_util: f64, batch: usize, drain_per_s: f64) -> Duration {
    let target = (exit_util.max(0.0) * capacity as f64).floor();
    let excess = (depth as f64 - target).max(0.0) + batch as f64;
    let secs = if drain_per_s > 1e-9 { excess / drain_per_s } else { 1.0 };
    Duration::from_secs_f64(secs).clamp(MIN_RETRY, MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_table() {
        use BackpressureLevel::*;
        for p in Priority::ALL {
            assert_eq!(Normal.refuses(p), None);
            assert_eq!(Warning.refuses(p), None);
        }
        assert_eq!(Critical.refuses(Priority::High), None);
        assert_eq!(Critical.refuses(Priority::Normal), None);
        assert_eq!(Critical.refuses(Priority::Low), Some(RejectReason::BackpressureCritical));
        assert_eq!(Overloaded.refuses(Priority::High), None);
        assert_eq!(Overloaded.refuses(Priority::Normal), Some(RejectReason::BackpressureOverloaded));
        assert_eq!(Overloaded.refuses(Priority::Low), Some(RejectReason::BackpressureOverloaded));
    }

    #[test]
    fn retry_after_follows_drain_rate() {
        // 900 queued of 1000, leave Critical at 0.7 → 200 to drain + 10 for the batch at 100/s.
        let d = retry_after(900, 1000, 0.7, 10, 100.0);
        assert!((d.as_secs_f64() - 2.1).abs() < 1e-9, "{d:?}");
        assert_eq!(retry_after(900, 1000, 0.7, 10, 0.0), Duration::from_secs(1));
        assert_eq!(retry_after(900, 1000, 0.7, 10, 1e9), MIN_RETRY);
        assert_eq!(retry_after(1_000_000, 1000, 0.0, 0, 1.0), MAX_RETRY);
    }
}
