//! Re-reading configuration files without a restart (the keys file, the TLS certificate): on
//! SIGHUP, and when a poll sees a file's modification time or size change.

use std::path::Path;
use std::time::{Duration, SystemTime};

/// How often a watched file's modification time and size are checked for a change (the keys
/// file and the TLS certificate alike).
pub const POLL: Duration = Duration::from_secs(2);

/// What "the file changed" is measured by: its modification time and length (`None`: it could
/// not be read).
pub type Stamp = Option<(SystemTime, u64)>;

/// The file's [`Stamp`] now.
pub fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Runs `on_hangup` on each SIGHUP and `on_tick` every [`POLL`], each on the blocking pool and
/// one at a time, until the task is aborted. Without SIGHUP (not Unix, or the handler cannot be
/// installed) only the ticks run.
pub async fn on_hangup_and_every(
    on_hangup: impl Fn() + Clone + Send + 'static,
    on_tick: impl Fn() + Clone + Send + 'static,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut every = tokio::time::interval(POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let run = tokio::select! {
            () = hangup => tokio::task::spawn_blocking(on_hangup.clone()),
            _ = every.tick() => tokio::task::spawn_blocking(on_tick.clone()),
        };
        let _ = run.await;
    }
}
