//! Engine configuration: queue capacity, worker pool, batching, backpressure and input limits.
//!
//! Every field has a documented default; the server reads this as the `[engine]` table of its
//! TOML config, with `ENGRAM_ENGINE__<FIELD>` environment overrides.

use crate::admission::Thresholds;
use crate::error::EngineError;
use serde::{Deserialize, Serialize};

/// Engine settings. `Default` gives the documented defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Worker threads inserting into the indexes; 0 means one per available core. Default 0.
    pub workers: usize,
    /// Queue capacity in observations (the hard cap across all lanes). Default 100,000.
    pub queue_capacity: usize,
    /// Queue capacity in bytes (embeddings, content and bookkeeping). Default 1 GiB.
    pub queue_capacity_bytes: usize,
    /// Guaranteed minimum share of lane refills for the normal and low lanes when they are
    /// backlogged, so strict priority never starves them. Default normal 0.10, low 0.05.
    pub lane_min_share: LaneShares,
    /// Smallest batch a worker takes. Default 1.
    pub min_batch: usize,
    /// Largest batch a worker takes. Default 256.
    pub max_batch: usize,
    /// Batch latency target in milliseconds: batches shrink so that one batch's insertion time
    /// stays under it. Default 10 ms.
    pub batch_latency_target_ms: u64,
    /// Under pressure (a space at Warning or worse), the most work the high-priority lane may
    /// hold, as milliseconds of the measured drain rate: a high-priority batch that would queue
    /// behind more is refused (`high_lane_full`, with a retry-after) instead of admitted to
    /// wait, so what is admitted at high priority is indexed within about this much more than
    /// unloaded. A batch is always admitted into an empty lane, and there is no bound until the
    /// monitor has measured a drain rate (its first 200 ms tick). 0 turns the bound off.
    /// Default 25 ms.
    pub high_lane_max_wait_ms: u64,
    /// Backpressure thresholds (queue utilization, 0 to 1).
    pub backpressure: BackpressureConfig,
    /// With two or more memory spaces, the fraction of the queue one space may fill before its
    /// own backpressure level reaches the thresholds above (a space alone gets the whole
    /// queue). Keeps one hot space from pushing every other space into Overloaded. Default 0.5.
    pub max_space_share: f64,
    /// Largest `content` per observation, in bytes of UTF-8. Default 64 KiB.
    pub max_content_bytes: usize,
    /// Most observations in one batch. Default 10,000.
    pub max_batch_observations: usize,
    /// Largest embedding dimension a space may declare. Default 4,096.
    pub max_dim: usize,
    /// Most memory spaces that may exist at once; creating one more is refused
    /// ([`crate::EngineError::SpaceLimit`], counted as `space_limit`). Default 10,000.
    pub max_spaces: usize,
    /// Largest `max_elements` a space may declare. Default 100,000,000.
    pub max_space_elements: usize,
    /// Memory the indexes may plan for, in bytes: a space whose `max_elements` vectors would
    /// need more (estimated per backend, see `index::bytes_per_vector`) is refused on field
    /// `max_elements`. 0 means half of the machine's physical memory (`MemTotal` of
    /// `/proc/meminfo`; 8 GiB where it cannot be read). Default 0.
    pub memory_budget_bytes: u64,
}

/// Minimum lane shares (fractions of refills) of the lower lanes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LaneShares {
    /// Share of refills reserved for the normal lane while it has work. Default 0.10.
    pub normal: f64,
    /// Share of refills reserved for the low lane while it has work. Default 0.05.
    pub low: f64,
}

/// Utilization thresholds at which each backpressure level is entered; a level is left when
/// utilization falls `hysteresis` below its entry threshold.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BackpressureConfig {
    /// Enter Warning at this utilization. Default 0.5.
    pub warning: f64,
    /// Enter Critical at this utilization. Default 0.8.
    pub critical: f64,
    /// Enter Overloaded at this utilization. Default 0.95.
    pub overloaded: f64,
    /// Leave a level this far below its entry threshold. Default 0.1.
    pub hysteresis: f64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            queue_capacity: 100_000,
            queue_capacity_bytes: 1 << 30,
            lane_min_share: LaneShares::default(),
            min_batch: 1,
            max_batch: 256,
            batch_latency_target_ms: 10,
            high_lane_max_wait_ms: 25,
            backpressure: BackpressureConfig::default(),
            max_space_share: 0.5,
            max_content_bytes: 64 * 1024,
            max_batch_observations: 10_000,
            max_dim: 4096,
            max_spaces: 10_000,
            max_space_elements: 100_000_000,
            memory_budget_bytes: 0,
        }
    }
}

impl Default for LaneShares {
    fn default() -> Self {
        Self { normal: 0.10, low: 0.05 }
    }
}

impl Default for BackpressureConfig {
    fn default() -> Self {
        Self { warning: 0.5, critical: 0.8, overloaded: 0.95, hysteresis: 0.1 }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> EngineError {
    EngineError::InvalidArgument { field: field.to_owned(), reason: reason.into() }
}

impl EngineConfig {
    /// The number of worker threads this config starts (resolving 0 to the available cores).
    pub fn resolved_workers(&self) -> usize {
        if self.workers > 0 { self.workers } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
    }

    /// The memory budget in bytes (resolving 0 to half of physical memory).
    pub fn resolved_memory_budget(&self) -> u64 {
        if self.memory_budget_bytes > 0 {
            return self.memory_budget_bytes;
        }
        physical_memory_bytes().map_or(8 << 30, |m| m / 2)
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`EngineError::InvalidArgument`] naming the first bad field (e.g. `engine.max_batch`).
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.queue_capacity == 0 {
            return Err(invalid("engine.queue_capacity", "must be at least 1"));
        }
        if self.queue_capacity_bytes < 1024 {
            return Err(invalid("engine.queue_capacity_bytes", "must be at least 1024"));
        }
        if self.min_batch == 0 || self.max_batch < self.min_batch {
            return Err(invalid("engine.max_batch", "need 1 <= min_batch <= max_batch"));
        }
        if self.max_batch_observations == 0 {
            return Err(invalid("engine.max_batch_observations", "must be at least 1"));
        }
        if self.max_dim == 0 {
            return Err(invalid("engine.max_dim", "must be at least 1"));
        }
        if self.max_spaces == 0 {
            return Err(invalid("engine.max_spaces", "must be at least 1"));
        }
        if self.max_space_elements == 0 {
            return Err(invalid("engine.max_space_elements", "must be at least 1"));
        }
        let s = self.lane_min_share;
        if !(0.0..=0.5).contains(&s.normal) || !(0.0..=0.5).contains(&s.low) {
            return Err(invalid("engine.lane_min_share", "each share must be within 0 to 0.5"));
        }
        if !(self.max_space_share > 0.0 && self.max_space_share <= 1.0) {
            return Err(invalid("engine.max_space_share", "must be within 0 (exclusive) and 1"));
        }
        let b = self.backpressure;
        let ordered = 0.0 < b.warning && b.warning < b.critical && b.critical < b.overloaded && b.overloaded <= 1.0;
        if !ordered {
            return Err(invalid("engine.backpressure", "need 0 < warning < critical < overloaded <= 1"));
        }
        if !(0.0..b.warning).contains(&b.hysteresis) {
            return Err(invalid("engine.backpressure.hysteresis", "must be within 0 and the warning threshold"));
        }
        Ok(())
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
fn physical_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl From<&BackpressureConfig> for Thresholds {
    fn from(c: &BackpressureConfig) -> Self {
        Thresholds { enter: [c.warning, c.critical, c.overloaded], hysteresis: c.hysteresis }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = EngineConfig::default();
        c.validate().unwrap();
        assert_eq!((c.backpressure.warning, c.backpressure.critical, c.backpressure.overloaded), (0.5, 0.8, 0.95));
        assert_eq!(c.max_content_bytes, 65536);
    }

    #[test]
    fn bad_thresholds_name_the_field() {
        let mut c = EngineConfig::default();
        c.backpressure.critical = 0.4;
        assert!(c.validate().unwrap_err().to_string().starts_with("engine.backpressure:"));
    }
}
