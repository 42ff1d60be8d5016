//! Progress of a load: an `indicatif` bar with rate and ETA when stderr is a terminal, a plain
//! line every 2 s otherwise (CI logs, redirected output).

use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// What the progress shows: counts so far.
pub(crate) struct Counts {
    pub indexed: u64,
    pub sent: u64,
    pub rejected: u64,
    pub retried: u64,
}

/// Progress towards `total` indexed observations.
pub(crate) struct Progress {
    bar: ProgressBar,
    started: Instant,
    last_line: Instant,
    total: usize,
}

impl Progress {
    /// Starts the clock. The bar draws on stderr and is hidden when stderr is not a terminal.
    pub(crate) fn new(total: usize) -> Self {
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "load {elapsed_precise} [{bar:30}] {pos}/{len} indexed, {per_sec}, ETA {eta} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        let now = Instant::now();
        Self { bar, started: now, last_line: now, total }
    }

    /// Shows `c`: on the bar at once, as a line at most every 2 s.
    pub(crate) fn update(&mut self, c: &Counts) {
        if !self.bar.is_hidden() {
            self.bar.set_position(c.indexed);
            self.bar.set_message(format!("(sent {}, rejected {}, retried {})", c.sent, c.rejected, c.retried));
        } else if self.last_line.elapsed() >= Duration::from_secs(2) {
            self.last_line = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "load: {:>6.1}s indexed {}/{} ({:.0}/s), sent {}, rejected {}, retried {}",
                secs,
                c.indexed,
                self.total,
                c.indexed as f64 / secs.max(1e-9),
                c.sent,
                c.rejected,
                c.retried
            );
        }
    }

    /// Removes the bar (the summary line follows).
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
