//! The monitor thread: steers from the engine's own state, which `/metrics` samples. Every
//! 200 ms the drain rate (the queue's count of items taken, smoothed into the estimate
//! retry-after reads) and every space's backpressure level; every second each worker's
//! utilization (its busy time over the window), the per-observation insertion time batch sizing
//! uses (busy time over observations), and the windowed p99 queue wait and observation latency
//! that `status` reports (deltas of the exported histograms: reported, not steered by).

use super::admit::Admitter;
use super::registry::Registry;
use super::scheduler::Scheduler;
use engram_telemetry::primitives::HistogramSnapshot;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Monitor sampling period.
const MONITOR_TICK: Duration = Duration::from_millis(200);

pub(crate) struct Monitor {
    scheduler: Arc<Scheduler>,
    admitter: Arc<Admitter>,
    registry: Arc<Registry>,
}
/// What the monitor remembers between windows.
struct Window {
    started: Instant,
    /// (busy seconds, observations) per worker at the window's start.
    totals: Vec<(f64, f64)>,
    queue_wait: HistogramSnapshot,
    /// Observation latency per exported `memory_space` label (folded spaces share one).
    latency: HashMap<String, HistogramSnapshot>,
}

impl Monitor {
    pub(crate) fn new(scheduler: Arc<Scheduler>, admitter: Arc<Admitter>, registry: Arc<Registry>) -> Self {
        Self { scheduler, admitter, registry }
    }

    pub(crate) fn run(self) {
        let shared = &self.scheduler;
        let life = &shared.lifecycle;
        let mut window = self.window(Instant::now());
        let mut last_taken = shared.queue.taken_total();
        let mut last_tick = Instant::now();
        let mut ticks = 0u32;
        while !life.is(&life.monitor_stop) {
            shared.monitor_sleep(MONITOR_TICK);
            let now = Instant::now();
            let dt = now.duration_since(last_tick).as_secs_f64().max(1e-6);
            last_tick = now;
            let taken = shared.queue.taken_total();
            shared.observe_drain((taken - last_taken) as f64 / dt);
            last_taken = taken;
            for space in self.registry.snapshot() {
                self.admitter.evaluate(&space);
            }
            ticks += 1;
            if ticks.is_multiple_of(5) {
                window = self.close_window(window, now);
            }
        }
    }

    fn window(&self, started: Instant) -> Window {
        let shared = &self.scheduler;
        let mut latency = HashMap::new();
        for space in self.registry.snapshot() {
            let label = space.events.label();
            if !latency.contains_key(label) {
                latency.insert(label.to_owned(), space.events.observation_latency());
            }
        }
        Window {
            started,
            totals: shared.worker_stats.iter().map(|w| w.totals()).collect(),
            queue_wait: shared.queue.events().wait_time(),
            latency,
        }
    }

    /// Publishes the window's utilization, insertion time and p99s; opens the next window.
    fn close_window(&self, old: Window, now: Instant) -> Window {
        let shared = &self.scheduler;
        let next = self.window(now);
        let secs = now.duration_since(old.started).as_secs_f64().max(1e-6);
        let (mut busy, mut observations) = (0.0, 0.0);
        for (i, (then, now)) in old.totals.iter().zip(&next.totals).enumerate() {
            let worker_busy = (now.0 - then.0).max(0.0);
            shared.worker_stats[i].set_utilization((worker_busy / secs).clamp(0.0, 1.0));
            busy += worker_busy;
            observations += (now.1 - then.1).max(0.0);
        }
        shared.observe_insert_time(busy, observations);
        let wait_p99 = next.queue_wait.since(&old.queue_wait).quantile(0.99);
        let mut latency: Option<HistogramSnapshot> = None;
        for (label, now) in &next.latency {
            let window = old.latency.get(label).map_or_else(|| now.clone(), |then| now.since(then));
            match &mut latency {
                Some(all) => all.merge(&window),
                None => latency = Some(window),
            }
        }
        *shared.latency_window.lock() = (wait_p99, latency.and_then(|l| l.quantile(0.99)));
        next
    }
}
