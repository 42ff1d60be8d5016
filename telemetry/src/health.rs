//! `engram_health_score`: one number, 0 to 100, for dashboards and the health alerts.
//!
//! In the spirit of the seed system's 40/30/15/15 weighting, the score is 100 minus four
//! penalties, each a weight times a fraction in 0 to 1:
//!
//! | weight | component | fraction |
//! |---|---|---|
//! | 40 | errors | error ratio over the last window ÷ 5 %, capped at 1 |
//! | 30 | backpressure | worst memory space's level ÷ 3 (Warning 1/3, Critical 2/3, Overloaded 1) |
//! | 15 | queue | queue utilization (0 to 1) |
//! | 15 | resources | (resource use − 0.5) ÷ 0.5, within 0 to 1; resource use is the larger of resident memory ÷ memory limit and open ÷ maximum file descriptors |
//!
//! The error ratio is the larger of two ratios over the window since the previous tick:
//! observations refused or failed ÷ observations received (rejected for any reason, plus batch
//! insertion failures, over admitted + duplicate + rejected), and server errors ÷ API calls
//! (HTTP 5xx; gRPC `INTERNAL`, `UNKNOWN`, `DATA_LOSS`). A window without traffic has ratio 0.
//!
//! So: idle and healthy = 100; one space at Warning alone = 90; Critical with a 60 %-full queue
//! and 2 % of observations rejected = 100 − 16 − 20 − 9 = 55; the alerts fire below 70 (warning)
//! and 50 (critical). Every input is read from the registry's exported series, so the score
//! agrees with what Prometheus scrapes.

use crate::Telemetry;
use crate::catalog;
use crate::events::ProcessEvents;
use crate::events::api::GRPC_CODES;
use crate::primitives::Gauge;
use std::sync::Arc;

/// The error ratio at which the error penalty is full.
pub const ERROR_RATIO_FULL: f64 = 0.05;
/// Resource use below which there is no resource penalty.
pub const RESOURCE_FREE: f64 = 0.5;

/// The inputs of one score.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HealthInputs {
    /// Errors over attempts in the window, 0 to 1.
    pub error_ratio: f64,
    /// Worst backpressure level of any memory space, 0 to 3.
    pub backpressure_level: f64,
    /// Queue utilization, 0 to 1.
    pub queue_utilization: f64,
    /// Resource use, 0 to 1 (see [`crate::events::ProcessSample::resource_use`]).
    pub resource_use: f64,
}

/// A score and its four penalties (points taken off 100).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct HealthScore {
    /// 0 to 100.
    pub score: f64,
    /// Up to 40.
    pub error_penalty: f64,
    /// Up to 30.
    pub backpressure_penalty: f64,
    /// Up to 15.
    pub queue_penalty: f64,
    /// Up to 15.
    pub resource_penalty: f64,
}

/// The score of `inputs` (see the module docs for the formula).
pub fn health_score(inputs: &HealthInputs) -> HealthScore {
    let frac = |x: f64| if x.is_finite() { x.clamp(0.0, 1.0) } else { 1.0 };
    let error_penalty = 40.0 * frac(inputs.error_ratio / ERROR_RATIO_FULL);
    let backpressure_penalty = 30.0 * frac(inputs.backpressure_level / 3.0);
    let queue_penalty = 15.0 * frac(inputs.queue_utilization);
    let resource_penalty = 15.0 * frac((inputs.resource_use - RESOURCE_FREE) / (1.0 - RESOURCE_FREE));
    let score = (100.0 - error_penalty - backpressure_penalty - queue_penalty - resource_penalty).clamp(0.0, 100.0);
    HealthScore { score, error_penalty, backpressure_penalty, queue_penalty, resource_penalty }
}

/// Cumulative counts at one tick.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    received: f64,
    refused: f64,
    calls: f64,
    server_errors: f64,
}

/// Computes the score from the registry every tick and exports it as `engram_health_score`.
#[derive(Debug)]
pub struct HealthSampler {
    telemetry: Arc<Telemetry>,
    process: Arc<ProcessEvents>,
    gauge: Arc<Gauge>,
    last: Totals,
    latest: HealthScore,
}

/// gRPC codes that count as server errors.
const GRPC_SERVER_ERRORS: [&str; 3] = ["INTERNAL", "UNKNOWN", "DATA_LOSS"];
const _: () = assert!(GRPC_CODES.len() == 17);

impl HealthSampler {
    /// A sampler over `telemetry` (registers `engram_health_score` at 100).
    pub fn new(telemetry: Arc<Telemetry>, process: Arc<ProcessEvents>) -> Self {
        let gauge = telemetry.gauge(&catalog::HEALTH_SCORE, &[]);
        gauge.set(100.0);
        let mut sampler =
            Self { telemetry, process, gauge, last: Totals::default(), latest: health_score(&HealthInputs::default()) };
        sampler.last = sampler.totals();
        sampler
    }

    fn totals(&self) -> Totals {
        let t = &self.telemetry;
        let all = |_: &[String]| true;
        let admitted = t.sum(&catalog::OBSERVATIONS, all);
        let duplicates = t.sum(&catalog::OBSERVATIONS_DUPLICATE, all);
        let rejected = t.sum(&catalog::OBSERVATIONS_REJECTED, all);
        let failed = t.sum(&catalog::BATCH_FAILURES, all);
        let http = t.sum(&catalog::HTTP_REQUESTS, all);
        let http_5xx = t.sum(&catalog::HTTP_REQUESTS, |v| v.last().is_some_and(|s| s.starts_with('5')));
        let grpc = t.sum(&catalog::GRPC_REQUESTS, all);
        let grpc_errors =
            t.sum(&catalog::GRPC_REQUESTS, |v| v.last().is_some_and(|c| GRPC_SERVER_ERRORS.contains(&c.as_str())));
        Totals {
            received: admitted + duplicates + rejected,
            refused: rejected + failed,
            calls: http + grpc,
            server_errors: http_5xx + grpc_errors,
        }
    }

    /// Reads the registry, updates the exported score and returns it with its penalties. Call
    /// periodically (the server ticks every 5 s); the error ratio covers the time since the
    /// previous call.
    pub fn tick(&mut self) -> HealthScore {
        let now = self.totals();
        let ratio = |errors: f64, attempts: f64| if attempts > 0.0 { (errors / attempts).max(0.0) } else { 0.0 };
        let error_ratio = ratio(now.refused - self.last.refused, now.received - self.last.received)
            .max(ratio(now.server_errors - self.last.server_errors, now.calls - self.last.calls));
        self.last = now;
        let inputs = HealthInputs {
            error_ratio,
            backpressure_level: self.telemetry.max(&catalog::BACKPRESSURE_STATE),
            queue_utilization: self.telemetry.max(&catalog::QUEUE_UTILIZATION),
            resource_use: self.process.sample().resource_use(),
        };
        self.latest = health_score(&inputs);
        self.gauge.set(self.latest.score);
        self.latest
    }

    /// The score of the last tick.
    pub fn latest(&self) -> HealthScore {
        self.latest
    }
}

#[cfg(all(test, not(engram_loom)))]
mod tests {
    use super::*;
    use crate::TelemetryConfig;

    #[test]
    fn the_documented_examples_hold() {
        assert_eq!(health_score(&HealthInputs::default()).score, 100.0);
        let warning = HealthInputs { backpressure_level: 1.0, ..HealthInputs::default() };
        assert!((health_score(&warning).score - 90.0).abs() < 1e-9);
        let bad =
            HealthInputs { error_ratio: 0.02, backpressure_level: 2.0, queue_utilization: 0.6, resource_use: 0.3 };
        let s = health_score(&bad);
        assert!((s.score - 55.0).abs() < 1e-9, "{s:?}");
        let worst =
            HealthInputs { error_ratio: 1.0, backpressure_level: 3.0, queue_utilization: 1.0, resource_use: 1.0 };
        assert_eq!(health_score(&worst).score, 0.0);
        let nan = HealthInputs { error_ratio: f64::NAN, ..HealthInputs::default() };
        assert_eq!(health_score(&nan).error_penalty, 40.0, "an unknown ratio counts as the worst");
    }

    #[test]
    fn the_sampler_reads_error_ratios_per_window() {
        let t = Telemetry::new(TelemetryConfig::default());
        let process = ProcessEvents::register(&t);
        let admitted = t.counter(&catalog::OBSERVATIONS, &["s", "normal"]);
        let rejected = t.counter(&catalog::OBSERVATIONS_REJECTED, &["s", "queue_full"]);
        let mut sampler = HealthSampler::new(Arc::clone(&t), process);
        admitted.add(98);
        rejected.add(2);
        let s = sampler.tick();
        assert!((s.error_penalty - 16.0).abs() < 1e-9, "2 % of 100 received: {s:?}");
        assert!(t.render().contains(&format!("engram_health_score {}", s.score)));
        admitted.add(100);
        assert_eq!(sampler.tick().error_penalty, 0.0, "the window holds only the new traffic");
    }
}
