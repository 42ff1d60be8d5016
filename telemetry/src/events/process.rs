//! Process metrics: the Prometheus client-library standard set (CPU seconds, resident and
//! virtual memory, open and maximum file descriptors, threads, start time), collected by
//! metrics-process (`metrics_process::collector::collect`, which reads `/proc/self` on Linux),
//! plus the memory limit the health score and the memory alert compare against.
//!
//! Values are sampled when `/metrics` is rendered; one `/proc` read serves every series of a
//! render (a collection younger than [`MAX_AGE`] is reused).

use crate::Telemetry;
use crate::catalog::{self, MetricDef};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one collection is reused across the series of a render.
pub const MAX_AGE: Duration = Duration::from_millis(250);

/// A snapshot of the process, every field `None` where the platform does not report it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessSample {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident memory, bytes.
    pub resident_bytes: Option<f64>,
    /// Virtual memory, bytes.
    pub virtual_bytes: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<f64>,
    /// Soft limit of open file descriptors (0: unlimited).
    pub max_fds: Option<f64>,
    /// OS threads.
    pub threads: Option<f64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// Memory the process may use (cgroup v2 `memory.max`, else physical memory), bytes.
    pub memory_limit_bytes: Option<f64>,
}

impl ProcessSample {
    /// The larger of resident memory over the memory limit and open over maximum file
    /// descriptors: how close the process is to a resource it cannot exceed (0 to 1; 0 when
    /// neither is known).
    pub fn resource_use(&self) -> f64 {
        let ratio = |used: Option<f64>, limit: Option<f64>| match (used, limit) {
            (Some(u), Some(l)) if l > 0.0 => (u / l).clamp(0.0, 1.0),
            _ => 0.0,
        };
        ratio(self.resident_bytes, self.memory_limit_bytes).max(ratio(self.open_fds, self.max_fds))
    }
}

/// Reads one field of a sample.
type Field = fn(&ProcessSample) -> Option<f64>;

/// Collects [`ProcessSample`]s, caching one for [`MAX_AGE`], and exports them.
#[derive(Debug)]
pub struct ProcessEvents {
    last: Mutex<Option<(Instant, ProcessSample)>>,
    memory_limit: Option<f64>,
}

impl ProcessEvents {
    /// Registers the process series in `t`; they read from the returned collector at scrape.
    pub fn register(t: &Telemetry) -> Arc<Self> {
        let events = Arc::new(Self { last: Mutex::new(None), memory_limit: memory_limit_bytes() });
        let series: [(&MetricDef, Field); 8] = [
            (&catalog::PROCESS_CPU, |s| s.cpu_seconds),
            (&catalog::PROCESS_RSS, |s| s.resident_bytes),
            (&catalog::PROCESS_VIRTUAL, |s| s.virtual_bytes),
            (&catalog::PROCESS_OPEN_FDS, |s| s.open_fds),
            (&catalog::PROCESS_MAX_FDS, |s| s.max_fds),
            (&catalog::PROCESS_THREADS, |s| s.threads),
            (&catalog::PROCESS_START, |s| s.start_time_seconds),
            (&catalog::MEMORY_LIMIT, |s| s.memory_limit_bytes),
        ];
        for (def, field) in series {
            let weak = Arc::downgrade(&events);
            // A field the platform does not report exports 0 rather than vanishing.
            t.sampled(def, &[], Box::new(move || weak.upgrade().map(|e| field(&e.sample()).unwrap_or(0.0))));
        }
        events
    }

    /// The current process sample (a cached one if younger than [`MAX_AGE`]).
    pub fn sample(&self) -> ProcessSample {
        let mut last = self.last.lock();
        if let Some((at, sample)) = *last
            && at.elapsed() < MAX_AGE
        {
            return sample;
        }
        let m = metrics_process::collector::collect();
        let sample = ProcessSample {
            cpu_seconds: m.cpu_seconds_total,
            resident_bytes: m.resident_memory_bytes.map(|v| v as f64),
            virtual_bytes: m.virtual_memory_bytes.map(|v| v as f64),
            open_fds: m.open_fds.map(|v| v as f64),
            max_fds: m.max_fds.map(|v| v as f64),
            threads: m.threads.map(|v| v as f64),
            start_time_seconds: m.start_time_seconds.map(|v| v as f64),
            memory_limit_bytes: self.memory_limit,
        };
        *last = Some((Instant::now(), sample));
        sample
    }
}

/// The cgroup v2 memory limit (`/sys/fs/cgroup/memory.max`, "max" meaning none), else the
/// physical memory (`MemTotal` of `/proc/meminfo`, through procfs).
#[cfg(target_os = "linux")]
fn memory_limit_bytes() -> Option<f64> {
    use procfs::Current;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<f64>().ok());
    cgroup.or_else(|| procfs::Meminfo::current().ok().map(|m| m.mem_total as f64))
}

#[cfg(not(target_os = "linux"))]
fn memory_limit_bytes() -> Option<f64> {
    None
}

#[cfg(all(test, not(engram_loom)))]
mod tests {
    use super::*;
    use crate::TelemetryConfig;

    #[test]
    fn process_metrics_are_exported_from_proc() {
        let t = Telemetry::new(TelemetryConfig::default());
        let events = ProcessEvents::register(&t);
        let s = events.sample();
        if cfg!(target_os = "linux") {
            assert!(s.resident_bytes.unwrap() > 1e6, "{s:?}");
            assert!(s.threads.unwrap() >= 1.0 && s.open_fds.unwrap() >= 3.0, "{s:?}");
            assert!(s.memory_limit_bytes.unwrap() > s.resident_bytes.unwrap(), "{s:?}");
            assert!((0.0..1.0).contains(&s.resource_use()));
        }
        let text = t.render();
        for name in
            ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_threads"]
        {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
        }
    }

    #[test]
    fn resource_use_is_the_tighter_limit() {
        let s = ProcessSample {
            resident_bytes: Some(50.0),
            memory_limit_bytes: Some(100.0),
            open_fds: Some(90.0),
            max_fds: Some(100.0),
            ..ProcessSample::default()
        };
        assert_eq!(s.resource_use(), 0.9);
        assert_eq!(ProcessSample::default().resource_use(), 0.0);
    }
}
