//! Memory space events: admission outcomes, indexing, recall, backpressure, index size.

use crate::Telemetry;
use crate::catalog;
use crate::labels::{ACTIVATION_LEVELS, PRIORITIES, REJECT_REASONS};
use crate::primitives::{Counter, Gauge, Histogram};
use std::sync::Arc;
use std::time::Duration;

/// Handles of one memory space, labelled with its bounded `memory_space` value.
///
/// Every label combination is registered up front, so each series exists (at zero) from the
/// moment the space is created and alerts see a rate of 0 rather than no data.
#[derive(Debug, Clone)]
pub struct SpaceEvents {
    label: String,
    admitted: [Arc<Counter>; 3],
    duplicates: Arc<Counter>,
    rejected: [Arc<Counter>; REJECT_REASONS.len()],
    indexed: Arc<Counter>,
    activations: [Arc<Counter>; 3],
    state: Arc<Gauge>,
    observation_latency: Arc<Histogram>,
    recall_latency: Arc<Histogram>,
    vectors: Arc<Gauge>,
    memory_bytes: Arc<Gauge>,
}

impl SpaceEvents {
    /// Registers the series of the space `name` (its label is bounded by the telemetry config).
    pub fn register(t: &Telemetry, name: &str) -> Self {
        let label = t.space_label(name);
        let s = label.as_str();
        Self {
            admitted: PRIORITIES.map(|p| t.counter(&catalog::OBSERVATIONS, &[s, p])),
            duplicates: t.counter(&catalog::OBSERVATIONS_DUPLICATE, &[s]),
            rejected: REJECT_REASONS.map(|r| t.counter(&catalog::OBSERVATIONS_REJECTED, &[s, r])),
            indexed: t.counter(&catalog::OBSERVATIONS_INDEXED, &[s]),
            activations: ACTIVATION_LEVELS.map(|l| t.counter(&catalog::BACKPRESSURE_ACTIVATIONS, &[s, l])),
            state: t.gauge(&catalog::BACKPRESSURE_STATE, &[s]),
            observation_latency: t.histogram(&catalog::OBSERVATION_LATENCY, &[s]),
            recall_latency: t.histogram(&catalog::RECALL_LATENCY, &[s]),
            vectors: t.gauge(&catalog::INDEX_VECTORS, &[s]),
            memory_bytes: t.gauge(&catalog::INDEX_MEMORY_BYTES, &[s]),
            label,
        }
    }

    /// The exported `memory_space` label value.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `count` new observations of priority index `priority` were admitted to the queue.
    #[inline]
    pub fn admitted(&self, priority: usize, count: u64) {
        self.admitted[priority].add(count);
    }

    /// `count` observations were acknowledged as duplicates of already-accepted ids.
    #[inline]
    pub fn duplicates(&self, count: u64) {
        self.duplicates.add(count);
    }

    /// `count` observations were rejected for reason index `reason` (see `REJECT_REASONS`).
    #[inline]
    pub fn rejected(&self, reason: usize, count: u64) {
        self.rejected[reason].add(count);
        tracing::debug!(memory_space = %self.label, reason = REJECT_REASONS[reason], count, "observations rejected");
    }

    /// One observation became searchable `latency` after it was accepted.
    #[inline]
    pub fn indexed(&self, latency: Duration) {
        self.indexed.add(1);
        self.observation_latency.record(latency.as_secs_f64());
    }

    /// A recall query was answered in `latency`.
    #[inline]
    pub fn recalled(&self, latency: Duration) {
        self.recall_latency.record(latency.as_secs_f64());
    }

    /// The space's backpressure state changed from `from` to `to` (levels 0..=3); an entry into
    /// a worse state counts one activation of the level entered.
    pub fn backpressure_changed(&self, from: u8, to: u8) {
        self.state.set(f64::from(to));
        if to > from {
            self.activations[usize::from(to) - 1].add(1);
            tracing::warn!(memory_space = %self.label, from, to, level = ACTIVATION_LEVELS[usize::from(to) - 1], "backpressure entered a worse state");
        } else {
            tracing::info!(memory_space = %self.label, from, to, "backpressure eased");
        }
    }

    /// The space's index now holds `vectors` vectors in an estimated `bytes` bytes.
    pub fn index_size(&self, vectors: usize, bytes: usize) {
        self.vectors.set(vectors as f64);
        self.memory_bytes.set(bytes as f64);
    }

    /// The space was dropped: its gauges return to zero (counters stay monotonic).
    pub fn dropped(&self) {
        self.state.set(0.0);
        self.index_size(0, 0);
    }
}
