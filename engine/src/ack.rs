//! Indexed acknowledgements: a batch's waiter resolves once every observation it admitted has
//! been inserted (or has failed, e.g. because its space was dropped meanwhile).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Outcome of an admitted batch once every observation in it left the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedOutcome {
    /// Observations inserted and searchable.
    pub indexed: usize,
    /// Observations that could not be inserted (their space was dropped, or the index failed).
    pub failed: usize,
}

/// Shared by the jobs of one batch; the last one to finish sends the outcome.
#[derive(Debug)]
pub(crate) struct BatchAck {
    remaining: AtomicUsize,
    failed: AtomicUsize,
    total: usize,
    tx: flume::Sender<IndexedOutcome>,
}

/// Resolves when the batch is fully indexed. Dropping it is fine: the pool never blocks on it.
#[derive(Debug)]
pub struct IndexedWaiter {
    rx: flume::Receiver<IndexedOutcome>,
}

impl BatchAck {
    /// An ack for `total` jobs, with its waiter. With `total == 0` the waiter resolves at once.
    pub(crate) fn new(total: usize) -> (Option<Arc<Self>>, IndexedWaiter) {
        let (tx, rx) = flume::bounded(1);
        if total == 0 {
            let _ = tx.send(IndexedOutcome { indexed: 0, failed: 0 });
            return (None, IndexedWaiter { rx });
        }
        let ack = Arc::new(Self { remaining: AtomicUsize::new(total), failed: AtomicUsize::new(0), total, tx });
        (Some(ack), IndexedWaiter { rx })
    }

    /// One job finished, inserted (`ok`) or failed.
    pub(crate) fn complete(&self, ok: bool) {
        if !ok {
            self.failed.fetch_add(1, Ordering::AcqRel);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let failed = self.failed.load(Ordering::Acquire);
            // The waiter may be gone (client left): nothing to tell then.
            let _ = self.tx.try_send(IndexedOutcome { indexed: self.total - failed, failed });
        }
    }
}

impl IndexedWaiter {
    /// Waits (async) for the batch's outcome.
    pub async fn wait(self) -> IndexedOutcome {
        // The sender is only dropped after sending, so this cannot fail while the engine lives;
        // if it ever does, report everything as failed rather than claim success.
        self.rx.recv_async().await.unwrap_or(IndexedOutcome { indexed: 0, failed: usize::MAX })
    }

    /// Waits (blocking) for the batch's outcome.
    pub fn wait_blocking(self) -> IndexedOutcome {
        self.rx.recv().unwrap_or(IndexedOutcome { indexed: 0, failed: usize::MAX })
    }
}
