//! Group commit: one persist (fsync, or the journal buffer written to the OS) covers every
//! append made since the previous one; writers never each pay a sync.
//!
//! An append writes to fjall's journal, then takes a *ticket* (1, 2, 3, ... in write order,
//! under the state lock) and queues a waiter for it. The syncer thread sleeps until some ticket
//! is past the last synced one, reads the newest ticket written, persists, and resolves every
//! waiter up to that ticket: a ticket is taken after its write, so a sync that starts after
//! the ticket was read covers the write. The waiters are a FIFO in ticket order.

use crate::error::{EngineError, StorageErrorKind};
use engram_telemetry::events::StorageEvents;
use fjall::{Database, PersistMode};
// parking_lot, not the `sync` shim: the store is not a loom model (its waits are real I/O).
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

type Outcome = Result<(), EngineError>;

/// Resolves when a write is durable per the store's mode (or at once without a store).
#[derive(Debug)]
pub struct DurableWaiter {
    rx: Option<flume::Receiver<Outcome>>,
}

impl DurableWaiter {
    /// A waiter that is already resolved (no store: `durability = none`).
    pub(crate) fn ready() -> Self {
        Self { rx: None }
    }

    /// Waits (async) until the write is durable.
    ///
    /// # Errors
    /// [`EngineError::Storage`] when the sync that should cover it failed (the write may or may
    /// not survive a crash: it is not acknowledged), or [`EngineError::ShuttingDown`] if the
    /// store closed first.
    pub async fn wait(self) -> Outcome {
        match self.rx {
            None => Ok(()),
            Some(rx) => rx.recv_async().await.unwrap_or(Err(EngineError::ShuttingDown)),
        }
    }

    /// Waits (blocking) until the write is durable; errors as [`DurableWaiter::wait`].
    pub fn wait_blocking(self) -> Outcome {
        match self.rx {
            None => Ok(()),
            Some(rx) => rx.recv().unwrap_or(Err(EngineError::ShuttingDown)),
        }
    }
}

struct State {
    /// The newest ticket taken (0: none yet).
    written: u64,
    /// The newest ticket a sync covered.
    synced: u64,
    /// Observations written since the last sync began.
    records: u64,
    waiters: VecDeque<(u64, flume::Sender<Outcome>)>,
    stop: bool,
}

pub(crate) struct GroupCommit {
    state: Mutex<State>,
    wake: Condvar,
    syncer: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the syncer thread persisting `db` with `mode`.
    pub(crate) fn start(db: Database, mode: PersistMode, events: StorageEvents) -> std::io::Result<Arc<Self>> {
        let gc = Arc::new(Self {
            state: Mutex::new(State { written: 0, synced: 0, records: 0, waiters: VecDeque::new(), stop: false }),
            wake: Condvar::new(),
            syncer: Mutex::new(None),
        });
        let me = Arc::clone(&gc);
        let handle =
            std::thread::Builder::new().name("engram-syncer".into()).spawn(move || me.run(&db, mode, &events))?;
        *gc.syncer.lock() = Some(handle);
        Ok(gc)
    }

    /// Called under the append lock right after a write of `records` observations reached the
    /// journal: takes the next ticket and returns its waiter.
    pub(crate) fn written(&self, records: usize) -> DurableWaiter {
        let (tx, rx) = flume::bounded(1);
        let mut s = self.state.lock();
        s.written += 1;
        s.records += records as u64;
        let ticket = s.written;
        s.waiters.push_back((ticket, tx));
        drop(s);
        self.wake.notify_one();
        DurableWaiter { rx: Some(rx) }
    }

    /// A waiter for everything written so far (resolved at once if that is synced).
    pub(crate) fn barrier(&self) -> DurableWaiter {
        let mut s = self.state.lock();
        if s.written == s.synced {
            return DurableWaiter::ready();
        }
        let (tx, rx) = flume::bounded(1);
        let ticket = s.written;
        s.waiters.push_back((ticket, tx));
        DurableWaiter { rx: Some(rx) }
    }

    fn run(&self, db: &Database, mode: PersistMode, events: &StorageEvents) {
        loop {
            let (target, records) = {
                let mut s = self.state.lock();
                while s.written == s.synced && !s.stop {
                    self.wake.wait(&mut s);
                }
                if s.written == s.synced {
                    return; // stopping, and nothing is left to sync
                }
                (s.written, std::mem::take(&mut s.records))
            };
            let started = Instant::now();
            let outcome = db.persist(mode).map_err(|e| super::storage_error("syncing the log", e));
            events.synced(records, started.elapsed());
            if let Err(e) = &outcome {
                super::count_error(events, e);
                tracing::error!(error = %e, "log sync failed: the writes it covered are not acknowledged durable");
            }
            let mut s = self.state.lock();
            s.synced = target;
            while s.waiters.front().is_some_and(|(t, _)| *t <= target) {
                let (_, tx) = s.waiters.pop_front().expect("front exists");
                // The client may have gone: nothing to tell then.
                let _ = tx.try_send(outcome.clone());
            }
        }
    }

    /// Syncs what is left, resolves every waiter and joins the syncer. Idempotent.
    pub(crate) fn stop(&self) {
        self.state.lock().stop = true;
        self.wake.notify_all();
        if let Some(h) = self.syncer.lock().take() {
            let _ = h.join();
        }
        // Waiters still queued had no sync (the thread is gone): tell them so.
        let mut s = self.state.lock();
        for (_, tx) in s.waiters.drain(..) {
            let _ = tx.try_send(Err(EngineError::Storage {
                kind: StorageErrorKind::Io,
                message: "the store closed before this write was synced".into(),
            }));
        }
    }
}
