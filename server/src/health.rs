//! Health assessment shared by `/health*` and the gRPC health service.
//!
//! | status | when |
//! |---|---|
//! | `HEALTHY` | all workers running, backpressure Normal |
//! | `DEGRADED` | backpressure Warning |
//! | `UNHEALTHY` | backpressure Critical, or some worker threads stopped |
//! | `CRITICAL` | backpressure Overloaded, no worker running, or shutting down |

use engram_engine::{BackpressureLevel, EngineStatus, SpaceInfo};
use engram_telemetry::health::HealthScore;
use serde::Serialize;

/// Overall health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    /// Everything nominal.
    Healthy,
    /// Serving, but clients should slow down.
    Degraded,
    /// Shedding low-priority load or missing workers.
    Unhealthy,
    /// Shedding all but high priority, not inserting, or shutting down.
    Critical,
}

/// Status and the reasons for it (empty when healthy).
pub fn assess(s: &EngineStatus) -> (HealthStatus, Vec<String>) {
    let mut reasons = Vec::new();
    let mut status = HealthStatus::Healthy;
    let mut raise = |to: HealthStatus, why: String, reasons: &mut Vec<String>| {
        status = status.max(to);
        reasons.push(why);
    };
    if s.closing {
        raise(HealthStatus::Critical, "shutting down: admission stopped, draining the queue".into(), &mut reasons);
    }
    if s.workers_alive == 0 {
        raise(HealthStatus::Critical, "no worker thread is running".into(), &mut reasons);
    } else if s.workers_alive < s.workers {
        raise(
            HealthStatus::Unhealthy,
            format!("{} of {} worker threads running", s.workers_alive, s.workers),
            &mut reasons,
        );
    }
    let util = format!("queue utilization {:.2}", s.queue_utilization);
    match s.level {
        BackpressureLevel::Normal => {}
        BackpressureLevel::Warning => {
            raise(HealthStatus::Degraded, format!("backpressure WARNING ({util})"), &mut reasons)
        }
        BackpressureLevel::Critical => raise(
            HealthStatus::Unhealthy,
            format!("backpressure CRITICAL: low priority rejected ({util})"),
            &mut reasons,
        ),
        BackpressureLevel::Overloaded => raise(
            HealthStatus::Critical,
            format!("backpressure OVERLOADED: only high priority admitted ({util})"),
            &mut reasons,
        ),
    }
    (status, reasons)
}

/// The `/health/detailed` document.
#[derive(Debug, Serialize)]
pub struct DetailedHealth {
    /// Overall status.
    pub status: HealthStatus,
    /// Why, when not healthy.
    pub reasons: Vec<String>,
    /// Build version.
    pub version: &'static str,
    /// Seconds since the server started.
    pub uptime_seconds: f64,
    /// `engram_health_score` as of its last computation (every 5 s) with its four penalties.
    pub health_score: HealthScore,
    /// Queue and pool state.
    pub engine: EngineStatus,
    /// Every memory space.
    pub spaces: Vec<SpaceInfo>,
}
