//! Trace export events: requests sampled, spans exported, spans dropped on the way to the
//! OTLP endpoint.

use crate::Telemetry;
use crate::catalog;
use crate::primitives::Counter;
use std::sync::Arc;

/// `reason` label values of `engram_traces_sampled_total`.
pub const SAMPLE_REASONS: [&str; 2] = ["sampler", "forced"];

/// `reason` label values of `engram_trace_spans_dropped_total`.
pub const DROP_REASONS: [&str; 2] = ["queue_full", "export_failed"];

/// Why a request's spans were exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleReason {
    /// The configured sampler chose the trace.
    Sampler = 0,
    /// A rejected or failed request: always traced.
    Forced = 1,
}

/// Why spans never reached the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The export queue was full.
    QueueFull = 0,
    /// The export call failed after its retries.
    ExportFailed = 1,
}

/// Handles of the trace exporter (one per server).
#[derive(Debug, Clone)]
pub struct TraceEvents {
    sampled: [Arc<Counter>; 2],
    exported: Arc<Counter>,
    dropped: [Arc<Counter>; 2],
}

impl TraceEvents {
    /// Registers the exporter's series (at 0 before the first trace).
    pub fn register(t: &Telemetry) -> Self {
        Self {
            sampled: SAMPLE_REASONS.map(|r| t.counter(&catalog::TRACES_SAMPLED, &[r])),
            exported: t.counter(&catalog::TRACE_SPANS_EXPORTED, &[]),
            dropped: DROP_REASONS.map(|r| t.counter(&catalog::TRACE_SPANS_DROPPED, &[r])),
        }
    }

    /// A request's spans were handed to the exporter.
    pub fn sampled(&self, reason: SampleReason) {
        self.sampled[reason as usize].inc();
    }

    /// `n` spans the endpoint accepted.
    pub fn exported(&self, n: u64) {
        self.exported.add(n);
    }

    /// `n` spans lost for `reason`.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].add(n);
    }
}
