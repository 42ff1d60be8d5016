//! Group commit: one persist (fsync, or the journal buffer written to the OS) covers every
//! append made since the previous one; writers never each pay a sync.
//!
//! An append writes to fjall's journal, then takes a *ticket* (1, 2, 3, ... in write order,
//! under the state lock) and queues a waiter for it. The syncer thread sleeps until some ticket
//! is past the last synced one, reads the newest ticket written, persists, and resolves every
//! waiter up to that ticket: a ticket is taken after its write, so a sync that starts after
//! the ticket was read covers the write. The waiters are a FIFO in ticket order.
//!
//! A failed sync (or write) breaks the store: every waiter is told, and the syncer heals it
//! (`heal`), writing again the appends no sync covered, which each ticket's [`Write`] keeps.
use super::heal::{Core, Write, refusal};
use crate::error::{EngineError, StorageErrorKind};
use engram_telemetry::events::StorageEvents;
use fjall::PersistMode;
// parking_lot, not the `sync` shim: the store is not a loom model (its waits are real I/O).
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

    /// A waiter that has already failed with `e`.
    pub(crate) fn failed(e: EngineError) -> Self {
        let (tx, rx) = flume::bounded(1);
        let _ = tx.try_send(Err(e));
        Self { rx: Some(rx) }
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

/// The kind of a storage error (any other error counts as an I/O error).
fn kind_of(e: &EngineError) -> StorageErrorKind {
    match e {
        EngineError::Storage { kind, .. } => *kind,
        _ => StorageErrorKind::Io,
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
    /// Every append no successful sync has covered yet, by ticket.
    pending: VecDeque<(u64, Write)>,
    stop: bool,
}

pub(crate) struct GroupCommit {
    core: Arc<Core>,
    state: Mutex<State>,
    wake: Condvar,
    syncer: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the syncer thread persisting `core`'s database with `mode`.
    pub(crate) fn start(core: Arc<Core>, mode: PersistMode, events: StorageEvents) -> std::io::Result<Arc<Self>> {
        let gc = Arc::new(Self {
            core,
            state: Mutex::new(State {
                written: 0,
                synced: 0,
                records: 0,
                waiters: VecDeque::new(),
                pending: VecDeque::new(),
                stop: false,
            }),
            wake: Condvar::new(),
            syncer: Mutex::new(None),
        });
        let me = Arc::clone(&gc);
        let handle = std::thread::Builder::new().name("engram-syncer".into()).spawn(move || me.run(mode, &events))?;
        *gc.syncer.lock() = Some(handle);
        Ok(gc)
    }

    /// Called under the append lock right after `write` (of `records` observations) reached the
    /// journal: takes the next ticket and returns its waiter (failed at once if the store broke
    /// meanwhile; the write is kept for the heal all the same).
    pub(crate) fn written(&self, records: usize, write: Write) -> DurableWaiter {
        let (tx, rx) = flume::bounded(1);
        let mut s = self.state.lock();
        s.written += 1;
        s.records += records as u64;
        let ticket = s.written;
        s.pending.push_back((ticket, write));
        match self.core.broken() {
            Some(kind) => {
                let _ = tx.try_send(Err(refusal(kind)));
            }
            None => s.waiters.push_back((ticket, tx)),
        }
        drop(s);
        self.wake.notify_one();
        DurableWaiter { rx: Some(rx) }
    }

    /// A waiter for everything written so far (resolved at once if that is synced).
    pub(crate) fn barrier(&self) -> DurableWaiter {
        let mut s = self.state.lock();
        if let Some(kind) = self.core.broken() {
            return DurableWaiter::failed(refusal(kind));
        }
        if s.written == s.synced {
            return DurableWaiter::ready();
        }
        let (tx, rx) = flume::bounded(1);
        let ticket = s.written;
        s.waiters.push_back((ticket, tx));
        DurableWaiter { rx: Some(rx) }
    }

    fn run(&self, mode: PersistMode, events: &StorageEvents) {
        loop {
            let (target, records) = {
                let mut s = self.state.lock();
                while s.written == s.synced && !s.stop && self.core.broken().is_none() {
                    self.wake.wait(&mut s);
                }
                if self.core.broken().is_some() {
                    if s.stop {
                        return; // nothing can be synced: `stop` fails what waits
                    }
                    drop(s);
                    self.heal(events);
                    continue;
                }
                if s.written == s.synced {
                    return; // stopping, and nothing is left to sync
                }
                (s.written, std::mem::take(&mut s.records))
            };
            let started = Instant::now();
            let outcome = self.core.persist(mode);
            events.synced(records, started.elapsed());
            match outcome {
                Ok(()) => {
                    let mut s = self.state.lock();
                    s.synced = target;
                    while s.waiters.front().is_some_and(|(t, _)| *t <= target) {
                        let (_, tx) = s.waiters.pop_front().expect("front exists");
                        // The client may have gone: nothing to tell then.
                        let _ = tx.try_send(Ok(()));
                    }
                    while s.pending.front().is_some_and(|(t, _)| *t <= target) {
                        s.pending.pop_front();
                    }
                }
                Err(e) => {
                    super::count_error(events, &e);
                    tracing::error!(error = %e, "log sync failed: the writes it covered are not acknowledged durable");
                    self.break_with(&e);
                }
            }
        }
    }

    /// Marks the store broken by `e`: every waiter gets `e` (nothing they wait for is
    /// acknowledged), later writes are refused, and the syncer starts healing.
    pub(crate) fn break_with(&self, e: &EngineError) {
        let mut s = self.state.lock();
        self.core.set_broken(kind_of(e));
        for (_, tx) in s.waiters.drain(..) {
            let _ = tx.try_send(Err(e.clone()));
        }
        drop(s);
        self.wake.notify_all();
    }

    /// Tries to heal the broken store until it has (or the store stops), backing off from
    /// 100 ms to 5 s between attempts.
    fn heal(&self, events: &StorageEvents) {
        let mut delay = Duration::from_millis(100);
        loop {
            {
                let mut s = self.state.lock();
                if !s.stop {
                    self.wake.wait_for(&mut s, delay);
                }
                if s.stop {
                    return;
                }
            }
            let appends = self.core.append.lock();
            let writes: Vec<Write> = self.state.lock().pending.iter().map(|(_, w)| w.clone()).collect();
            match self.core.reopen(&appends, &writes) {
                Ok(()) => {
                    let mut s = self.state.lock();
                    s.pending.clear();
                    s.synced = s.written;
                    for (_, tx) in s.waiters.drain(..) {
                        let _ = tx.try_send(Ok(()));
                    }
                    drop(s);
                    drop(appends);
                    events.healed();
                    tracing::warn!(
                        rewritten = writes.len(),
                        "the store healed: reopened, the unsynced writes written again, writes accepted again"
                    );
                    return;
                }
                Err(e) => {
                    drop(appends);
                    self.core.set_broken(kind_of(&e));
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "the store has not healed yet");
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
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
