//! Memory space events: admission outcomes, indexing, recall, backpressure, index size.

use super::throttle::{LEVEL_LOG_INTERVAL, LogThrottle};
use crate::Telemetry;
use crate::catalog;
use crate::labels::{ACTIVATION_LEVELS, PRIORITIES, REJECT_REASONS, Rejected};
use crate::primitives::{Counter, Histogram, HistogramSnapshot};
use crate::registry::Source;
use std::sync::Arc;
use std::time::Duration;

/// Handles of one memory space, labelled with its bounded `memory_space` value.
///
/// Every label combination is registered up front, so each series exists (at zero) from the
/// moment the space is created and alerts see a rate of 0 rather than no data. The space's
/// level, vector count and memory are *sampled* from the engine at scrape time
/// ([`SpaceEvents::sample`]): the exported value is the engine's own.
#[derive(Debug, Clone)]
pub struct SpaceEvents {
    label: String,
    /// Level-change log lines of this space: one per [`LEVEL_LOG_INTERVAL`] at most.
    level_log: Arc<LogThrottle>,
    admitted: [Arc<Counter>; 3],
    duplicates: Arc<Counter>,
    replaced: Arc<Counter>,
    deleted: Arc<Counter>,
    rejected: [Arc<Counter>; REJECT_REASONS.len()],
    indexed: Arc<Counter>,
    activations: [Arc<Counter>; 3],
    observation_latency: Arc<Histogram>,
    recall_latency: Arc<Histogram>,
}

/// Where a space's sampled series read from; each returns `None` once the space is gone.
pub struct SpaceSources {
    /// Backpressure level, 0 to 3 (`engram_streaming_backpressure_state`).
    pub state: Source,
    /// Vectors in the index (`engram_index_vectors`).
    pub vectors: Source,
    /// Estimated bytes (`engram_index_memory_bytes`).
    pub memory_bytes: Source,
    /// Removed points the index still keeps (`engram_index_tombstones`).
    pub tombstones: Source,
}

impl SpaceEvents {
    /// Registers the series of the space `name` (its label is bounded by the telemetry config).
    pub fn register(t: &Telemetry, name: &str) -> Self {
        let label = t.space_label(name);
        let s = label.as_str();
        Self {
            admitted: PRIORITIES.map(|p| t.counter(&catalog::OBSERVATIONS, &[s, p])),
            duplicates: t.counter(&catalog::OBSERVATIONS_DUPLICATE, &[s]),
            replaced: t.counter(&catalog::OBSERVATIONS_REPLACED, &[s]),
            deleted: t.counter(&catalog::OBSERVATIONS_DELETED, &[s]),
            rejected: REJECT_REASONS.map(|r| t.counter(&catalog::OBSERVATIONS_REJECTED, &[s, r])),
            indexed: t.counter(&catalog::OBSERVATIONS_INDEXED, &[s]),
            activations: ACTIVATION_LEVELS.map(|l| t.counter(&catalog::BACKPRESSURE_ACTIVATIONS, &[s, l])),
            observation_latency: t.histogram(&catalog::OBSERVATION_LATENCY, &[s]),
            recall_latency: t.histogram(&catalog::RECALL_LATENCY, &[s]),
            level_log: Arc::new(LogThrottle::new(LEVEL_LOG_INTERVAL)),
            label,
        }
    }

    /// The space was dropped: its series leave `/metrics` and its label slot is freed
    /// ([`Telemetry::release_space`]). Handles still held (queued work of the dropped space)
    /// keep recording into primitives no longer exported.
    pub fn release(&self, t: &Telemetry) {
        t.release_space(&self.label);
    }

    /// Exports the space's level, vector count and memory, read from `sources` at each scrape.
    pub fn sample(&self, t: &Telemetry, sources: SpaceSources) {
        let s = self.label.as_str();
        t.sampled(&catalog::BACKPRESSURE_STATE, &[s], sources.state);
        t.sampled(&catalog::INDEX_VECTORS, &[s], sources.vectors);
        t.sampled(&catalog::INDEX_MEMORY_BYTES, &[s], sources.memory_bytes);
        t.sampled(&catalog::INDEX_TOMBSTONES, &[s], sources.tombstones);
    }

    /// Everything recorded so far of the accepted → indexed latency (seconds); take the
    /// difference of two with [`HistogramSnapshot::since`] for a window.
    pub fn observation_latency(&self) -> HistogramSnapshot {
        self.observation_latency.snapshot()
    }

    /// The exported `memory_space` label value.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `count` new observations of priority index `priority` were admitted to the queue.
    #[inline]
    pub fn admitted(&self, priority: usize, count: u64) {
        if !super::RECORDING {
            return;
        }
        self.admitted[priority].add(count);
    }

    /// `count` observations were acknowledged as duplicates of already-accepted ids.
    #[inline]
    pub fn duplicates(&self, count: u64) {
        if !super::RECORDING {
            return;
        }
        self.duplicates.add(count);
    }

    /// `count` upserted observations replaced an id the space held.
    #[inline]
    pub fn replaced(&self, count: u64) {
        if !super::RECORDING {
            return;
        }
        self.replaced.add(count);
    }

    /// `count` observations were deleted (ids the space held).
    #[inline]
    pub fn deleted(&self, count: u64) {
        if !super::RECORDING {
            return;
        }
        self.deleted.add(count);
    }

    /// `count` observations were rejected for `reason`.
    #[inline]
    pub fn rejected(&self, reason: Rejected, count: u64) {
        if super::RECORDING {
            self.rejected[reason as usize].add(count);
        }
        tracing::debug!(memory_space = %self.label, reason = reason.as_str(), count, "observations rejected");
    }

    /// One observation became searchable `latency` after it was accepted.
    #[inline]
    pub fn indexed(&self, latency: Duration) {
        if !super::RECORDING {
            return;
        }
        self.indexed.add(1);
        self.observation_latency.record(latency.as_secs_f64());
    }

    /// A recall query was answered in `latency`.
    #[inline]
    pub fn recalled(&self, latency: Duration) {
        if !super::RECORDING {
            return;
        }
        self.recall_latency.record(latency.as_secs_f64());
    }

    /// The space's backpressure state changed from `from` to `to` (levels 0..=3); an entry into
    /// a worse state counts one activation of the level entered. (The state itself is sampled
    /// from the engine, see [`SpaceEvents::sample`].) Every change is counted; at most one is
    /// logged per [`LEVEL_LOG_INTERVAL`] per space, saying how many were not
    /// (`suppressed`), so a flapping level under sustained overload does not flood the log.
    pub fn backpressure_changed(&self, from: u8, to: u8) {
        if to > from && super::RECORDING {
            self.activations[usize::from(to) - 1].add(1);
        }
        let Some(suppressed) = self.level_log.admit() else { return };
        if to > from {
            tracing::warn!(memory_space = %self.label, from, to, level = ACTIVATION_LEVELS[usize::from(to) - 1], suppressed, "backpressure entered a worse state");
        } else {
            tracing::info!(memory_space = %self.label, from, to, suppressed, "backpressure eased");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TelemetryConfig;
    use parking_lot::Mutex;
    use std::io::Write;

    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flapping_level_is_logged_once_per_interval_and_counted_every_time() {
        let t = Telemetry::new(TelemetryConfig::default());
        let events = SpaceEvents::register(&t, "flap");
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Lines(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..1000 {
                events.backpressure_changed(0, 3);
                events.backpressure_changed(3, 0);
            }
        });
        let text = String::from_utf8(out.lock().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "2,000 level changes within one interval log one line:\n{text}");
        if crate::events::RECORDING {
            let exported = t.render();
            let line =
                "engram_streaming_backpressure_activations_total{memory_space=\"flap\",level=\"overloaded\"} 1000";
            assert!(exported.contains(line), "every activation is counted:\n{exported}");
        }
    }
}
