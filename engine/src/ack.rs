//! Indexed acknowledgements: a batch's waiter resolves once every observation it admitted has
//! been inserted (or has failed, e.g. because its space was dropped meanwhile), and says when
//! the pool first took up the batch and when it finished (the queue-wait and index-insert
//! stages of a trace).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Outcome of an admitted batch once every observation in it left the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedOutcome {
    /// Observations inserted and searchable.
    pub indexed: usize,
    /// Observations that could not be inserted (their space was dropped, or the index failed).
    pub failed: usize,
    /// When a worker first took up one of the batch's observations: the end of its queue wait
    /// (the start of the worker batch that held it). `None` for a batch with nothing to insert.
    pub started: Option<Instant>,
    /// When the last of its observations left the pool (inserted, or failed).
    pub finished: Option<Instant>,
}

impl IndexedOutcome {
    /// The outcome of a batch with nothing to insert.
    const EMPTY: Self = Self { indexed: 0, failed: 0, started: None, finished: None };
}

/// Shared by the jobs of one batch; the last one to finish sends the outcome.
#[derive(Debug)]
pub(crate) struct BatchAck {
    remaining: AtomicUsize,
    failed: AtomicUsize,
    total: usize,
    /// When the batch was admitted: `first_start` counts nanoseconds from here.
    admitted: Instant,
    /// Nanoseconds from `admitted` to the earliest worker-batch start of any of its jobs.
    first_start: AtomicU64,
    tx: flume::Sender<IndexedOutcome>,
}

/// Resolves when the batch is fully indexed. Dropping it is fine: the pool never blocks on it.
#[derive(Debug)]
pub struct IndexedWaiter {
    rx: flume::Receiver<IndexedOutcome>,
}

impl BatchAck {
    /// An ack for `total` jobs admitted at `admitted`, with its waiter. With `total == 0` the
    /// waiter resolves at once.
    pub(crate) fn new(total: usize, admitted: Instant) -> (Option<Arc<Self>>, IndexedWaiter) {
        let (tx, rx) = flume::bounded(1);
        if total == 0 {
            let _ = tx.send(IndexedOutcome::EMPTY);
            return (None, IndexedWaiter { rx });
        }
        let ack = Arc::new(Self {
            remaining: AtomicUsize::new(total),
            failed: AtomicUsize::new(0),
            total,
            admitted,
            first_start: AtomicU64::new(u64::MAX),
            tx,
        });
        (Some(ack), IndexedWaiter { rx })
    }

    /// One job finished, inserted (`ok`) or failed, in a worker batch that started at `started`.
    pub(crate) fn complete(&self, ok: bool, started: Instant) {
        let since = started.saturating_duration_since(self.admitted).as_nanos();
        self.first_start.fetch_min(u64::try_from(since).unwrap_or(u64::MAX - 1), Ordering::AcqRel);
        if !ok {
            self.failed.fetch_add(1, Ordering::AcqRel);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let failed = self.failed.load(Ordering::Acquire);
            let first = self.first_start.load(Ordering::Acquire);
            let outcome = IndexedOutcome {
                indexed: self.total - failed,
                failed,
                started: Some(self.admitted + Duration::from_nanos(first)),
                finished: Some(Instant::now()),
            };
            // The waiter may be gone (client left): nothing to tell then.
            let _ = self.tx.try_send(outcome);
        }
    }
}

impl IndexedWaiter {
    /// Waits (async) for the batch's outcome.
    pub async fn wait(self) -> IndexedOutcome {
        // The sender is only dropped after sending, so this cannot fail while the engine lives;
        // if it ever does, report everything as failed rather than claim success.
        self.rx.recv_async().await.unwrap_or(IndexedOutcome { failed: usize::MAX, ..IndexedOutcome::EMPTY })
    }

    /// Waits (blocking) for the batch's outcome.
    pub fn wait_blocking(self) -> IndexedOutcome {
        self.rx.recv().unwrap_or(IndexedOutcome { failed: usize::MAX, ..IndexedOutcome::EMPTY })
    }
}
