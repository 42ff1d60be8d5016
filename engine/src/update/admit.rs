//! [`Admitter`]: admission of a batch into a space, all or nothing, and the backpressure
//! levels it decides by.
//!
//! [`Admitter::submit`] runs the stages in order, each refusing the whole batch:
//! shutting down → [`validate`](Admitter::validate) (errors name the field) → level
//! ([`Admitter::evaluate`]) → dedupe (ids already accepted are acknowledged, not queued) →
//! policy (the level's admitted priorities, the high-lane bound) → [`prepare`](Admitter::prepare)
//! (the [`Operation`] the log records) → reserve queue room → claim ids (plain inserts) →
//! sequence: append to the log with a store (a failed write un-claims the ids and returns the
//! room), and set each id's [`IdState`] in log order → enqueue jobs carrying the sequence
//! number. Levels are re-evaluated by the workers and the monitor as the queue drains.
//!
//! [`Admitter::delete`] runs the same sequence for a delete. Operations on one id apply in
//! sequence order: a job whose id has seen a later operation is skipped (see
//! [`crate::space::IdState`]), so a delete is never undone by an older insert still queued.

use super::job::Job;
use super::registry::Registry;
use super::scheduler::Scheduler;
use crate::ack::{BatchAck, IndexedWaiter};
use crate::admission::{LevelCell, Thresholds};
use crate::backpressure::{self, BackpressureLevel, RejectReason, Rejection};
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::observation::{Batch, Priority};
use crate::operation::{AckLevel, DeleteBatch, InsertBatch, Operation, Record, Seq};
use crate::space::{IdState, PENDING, Space};
use crate::storage::{DurableWaiter, Store};
use crate::sync::{Mutex, Ordering};
use dashmap::Entry;
use engram_telemetry::events::LogThrottle;
use engram_telemetry::events::throttle::LEVEL_LOG_INTERVAL;
use engram_telemetry::labels::Rejected;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What admission did with a batch.
#[derive(Debug)]
pub struct Admission {
    /// New observations admitted to the queue.
    pub accepted: usize,
    /// Observations whose id was already accepted: acknowledged, not inserted again (plain
    /// inserts only; an upsert replaces them).
    pub duplicates: usize,
    /// Of `accepted`, upserted observations whose id the space held: their vector and content
    /// are replaced.
    pub replaced: usize,
    /// The space's backpressure level after admission (Warning and above: slow down).
    pub level: BackpressureLevel,
    /// Resolves when the batch (and every duplicate it named) is recorded per the durability
    /// mode (with [`AckLevel::Durable`] or [`AckLevel::Indexed`]).
    pub durable: Option<DurableWaiter>,
    /// Resolves when every admitted observation is indexed (with [`AckLevel::Indexed`]).
    pub indexed: Option<IndexedWaiter>,
    /// When each stage of the admission ended (the validate, admit and log-append spans of a
    /// trace); the queue wait and the index insert are in [`IndexedOutcome`](crate::IndexedOutcome).
    pub times: AdmitTimes,
}

/// When the stages of one batch's admission ended, read from the monotonic clock
/// ([`Instant`]). A batch whose ids were all duplicates ends every stage after `validated` at
/// once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmitTimes {
    /// Every field checked (dimension, finiteness, content size, ids).
    pub validated: Instant,
    /// Duplicates set aside, the level decided and queue room reserved: admitted.
    pub admitted: Instant,
    /// Recorded in the durable log (appended, not yet synced: the sync is the
    /// [`DurableWaiter`]'s). Equal to `admitted` when nothing was appended.
    pub appended: Instant,
    /// Its jobs pushed to the queue, where the queue wait starts.
    pub queued: Instant,
}

impl AdmitTimes {
    /// Every stage after validation ending now (nothing was admitted).
    fn nothing_after(validated: Instant) -> Self {
        let now = Instant::now();
        Self { validated, admitted: now, appended: now, queued: now }
    }
}

/// What a delete did.
#[derive(Debug)]
pub struct Deletion {
    /// Ids the space held: recorded as deleted, hidden from recall and `get` from now on.
    pub deleted: usize,
    /// Ids the space did not hold (never inserted, or deleted before): nothing to do.
    pub not_found: usize,
    /// The space's backpressure level after admission.
    pub level: BackpressureLevel,
    /// Resolves when the delete is recorded per the durability mode (with
    /// [`AckLevel::Durable`] or [`AckLevel::Indexed`]).
    pub durable: Option<DurableWaiter>,
    /// Resolves when every deleted id is out of the index (with [`AckLevel::Indexed`]).
    pub indexed: Option<IndexedWaiter>,
}

/// Claims `id` for a plain insert: `Some(previous state)` when the space does not hold it
/// (the state is now [`PENDING`] and live), `None` when it does (a duplicate).
fn claim(space: &Space, id: u64) -> Option<Option<IdState>> {
    match space.ids.entry(id) {
        Entry::Vacant(v) => {
            v.insert(IdState { seq: PENDING, live: true, indexed: false });
            Some(None)
        }
        Entry::Occupied(mut o) => {
            let s = o.get_mut();
            if s.live {
                return None;
            }
            let previous = *s;
            s.seq = PENDING;
            s.live = true;
            Some(Some(previous))
        }
    }
}

/// Undoes a [`claim`] whose batch was not recorded, unless a later operation changed the id
/// meanwhile. (A delete queued before the claim found the id pending and was skipped, so a
/// restored deleted id keeps its vector in the index until the id is inserted again; recall
/// and `get` never see it, as it is not live.)
fn unclaim(space: &Space, id: u64, previous: Option<IdState>) {
    match previous {
        None => {
            space.ids.remove_if(&id, |_, s| s.seq == PENDING);
        }
        Some(old) => {
            if let Some(mut s) = space.ids.get_mut(&id)
                && s.seq == PENDING
            {
                s.seq = old.seq;
                s.live = old.live;
            }
        }
    }
}

/// The longest [`Admitter::held_durable`] waits for a concurrent claim to be appended.
const HELD_WAIT: Duration = Duration::from_secs(10);

/// The rejection label of a failed log append.
fn storage_label(e: &EngineError) -> Rejected {
    match e {
        EngineError::Storage { kind: crate::error::StorageErrorKind::Full, .. } => Rejected::StorageFull,
        _ => Rejected::StorageError,
    }
}

/// Admission policy and the global backpressure level.
pub(crate) struct Admitter {
    config: Arc<EngineConfig>,
    thresholds: Thresholds,
    global: LevelCell,
    /// Global level-change log lines: one per `LEVEL_LOG_INTERVAL` at most.
    global_level_log: LogThrottle,
    registry: Arc<Registry>,
    scheduler: Arc<Scheduler>,
    store: Option<Arc<Store>>,
    /// The order of operations without a store (with one, the log's sequence numbers).
    next_seq: Mutex<Seq>,
}

impl Admitter {
    pub(crate) fn new(
        config: Arc<EngineConfig>,
        registry: Arc<Registry>,
        scheduler: Arc<Scheduler>,
        store: Option<Arc<Store>>,
    ) -> Self {
        Self {
            thresholds: Thresholds::from(&config.backpressure),
            config,
            global: LevelCell::default(),
            global_level_log: LogThrottle::new(LEVEL_LOG_INTERVAL),
            registry,
            scheduler,
            store,
            next_seq: Mutex::new(1),
        }
    }

    /// A waiter for everything the store holds so far (duplicates name ids an earlier batch
    /// appended), or a resolved one without a store.
    fn barrier(&self) -> DurableWaiter {
        self.store.as_ref().map_or_else(DurableWaiter::ready, |s| s.barrier())
    }

    /// The global level (whole-queue utilization).
    pub(crate) fn global_level(&self) -> BackpressureLevel {
        BackpressureLevel::from_u8(self.global.get())
    }

    /// Admits `batch` into `space`, all or nothing; see the module docs for the stages.
    pub(crate) fn submit(&self, space: &Arc<Space>, batch: Batch, ack: AckLevel) -> Result<Admission, EngineError> {
        let n = batch.observations.len();
        if self.scheduler.lifecycle.is(&self.scheduler.lifecycle.closing) {
            space.events.rejected(Rejected::ShuttingDown, n as u64);
            return Err(EngineError::ShuttingDown);
        }
        if let Err(e) = space.validate_batch(&batch, &self.config) {
            space.events.rejected(Rejected::InvalidArgument, n as u64);
            return Err(e);
        }
        let validated = Instant::now();
        let priority = batch.priority;
        let upsert = batch.upsert;
        let level = self.evaluate(space);
        // An upsert takes every observation; a plain insert only ids the space does not hold.
        // Ids found held are duplicates, kept to wait for their durability.
        let mut held = Vec::new();
        let fresh: Vec<(usize, crate::observation::Observation)> = batch
            .observations
            .into_iter()
            .enumerate()
            .filter(|(_, o)| {
                let fresh = upsert || !space.is_live(o.id);
                if !fresh {
                    held.push(o.id);
                }
                fresh
            })
            .collect();
        let mut duplicates = n - fresh.len();
        if fresh.is_empty() {
            space.events.duplicates(duplicates as u64);
            let durable = (ack >= AckLevel::Durable).then(|| self.held_durable(space, &held));
            let indexed = (ack >= AckLevel::Indexed).then(|| BatchAck::new(0, validated).1);
            let times = AdmitTimes::nothing_after(validated);
            return Ok(Admission { accepted: 0, duplicates, replaced: 0, level, durable, indexed, times });
        }
        if let Some(reason) = level.refuses(priority) {
            return Err(self.reject(space, priority, n, level, reason));
        }
        if priority == Priority::High
            && level >= BackpressureLevel::Warning
            && let Some(retry_after) = self.high_lane_full(fresh.len())
        {
            return Err(self.refuse(space, n, Rejection { reason: RejectReason::HighLaneFull, retry_after, level }));
        }
        let accepted_at = Instant::now();
        let mut insert = self.prepare(space, priority, upsert, fresh, n)?;
        let dim = space.params.dim;
        let bytes: usize = insert.records.iter().map(|r| Job::record_footprint(dim, r)).sum();
        let reserved = insert.records.len();
        if !self.scheduler.queue.capacity().try_reserve(reserved, bytes) {
            return Err(self.reject(space, priority, n, level, RejectReason::QueueFull));
        }
        // A plain insert claims its ids; one that a concurrent batch claimed first becomes a
        // duplicate and its reserved room is returned. Upserts claim nothing: the latest wins.
        let mut claims = Vec::new();
        if !upsert {
            insert.records.retain(|r| match claim(space, r.id) {
                Some(previous) => {
                    claims.push((r.id, previous));
                    true
                }
                None => {
                    held.push(r.id);
                    false
                }
            });
        }
        let accepted = insert.records.len();
        let kept: usize = insert.records.iter().map(|r| Job::record_footprint(dim, r)).sum();
        if accepted < reserved {
            self.scheduler.queue.capacity().release(reserved - accepted, bytes - kept);
            duplicates += reserved - accepted;
        }
        if accepted == 0 {
            space.events.duplicates(duplicates as u64);
            let durable = (ack >= AckLevel::Durable).then(|| self.held_durable(space, &held));
            let indexed = (ack >= AckLevel::Indexed).then(|| BatchAck::new(0, validated).1);
            let times = AdmitTimes::nothing_after(validated);
            return Ok(Admission { accepted: 0, duplicates, replaced: 0, level, durable, indexed, times });
        }
        let admitted = Instant::now();
        let op = Operation::Insert(insert);
        let mut replaced = 0;
        let sequenced = self.sequence(space, &op, |seq| {
            let Operation::Insert(insert) = &op else { unreachable!("an insert") };
            space.sequenced(seq, insert.records.len());
            for r in &insert.records {
                space
                    .ids
                    .entry(r.id)
                    .and_modify(|s| {
                        replaced += usize::from(s.live && s.seq != PENDING);
                        s.seq = seq;
                        s.live = true;
                    })
                    .or_insert(IdState { seq, live: true, indexed: false });
            }
        });
        let (seq, durable) = match sequenced {
            Ok(done) => done,
            Err(e) => {
                // Nothing of the batch is kept: its claims are undone, its room returned.
                for (id, previous) in claims {
                    unclaim(space, id, previous);
                }
                self.scheduler.queue.capacity().release(accepted, kept);
                space.events.rejected(storage_label(&e), n as u64);
                return Err(e);
            }
        };
        let appended = Instant::now();
        let Operation::Insert(insert) = op else { unreachable!("an insert") };
        let durable = (ack >= AckLevel::Durable).then(|| match durable {
            // A batch with duplicates also waits for the earlier appends of those ids (after its
            // own append: waiting before it could wait on a batch that waits on this one).
            Some(w) if duplicates == 0 => w,
            Some(w) => {
                drop(w);
                self.held_durable(space, &held)
            }
            None => self.held_durable(space, &held),
        });
        let (batch_ack, waiter) = if ack >= AckLevel::Indexed {
            let (a, w) = BatchAck::new(accepted, accepted_at);
            (a, Some(w))
        } else {
            (None, None)
        };
        space.pending.fetch_add(accepted, Ordering::AcqRel);
        space.events.admitted(priority.index(), accepted as u64);
        space.events.replaced(replaced as u64);
        let jobs = insert
            .records
            .into_iter()
            .map(|r| Job::new(space, seq, r, priority, accepted_at, batch_ack.clone()))
            .collect();
        self.scheduler.queue.push(priority.index(), jobs);
        let times = AdmitTimes { validated, admitted, appended, queued: Instant::now() };
        self.scheduler.wake_workers();
        space.events.duplicates(duplicates as u64);
        let level = self.evaluate(space);
        Ok(Admission { accepted, duplicates, replaced, level, durable, indexed: waiter, times })
    }

    /// Deletes `ids` from `space`: the ids it holds are recorded (one log record), hidden from
    /// recall and `get` at once, and queued for removal from the index; ids it does not hold are
    /// counted as not found. Deletes pass every backpressure level (they shrink the index and
    /// cost little); only a queue without room refuses them.
    pub(crate) fn delete(&self, space: &Arc<Space>, ids: Vec<u64>, ack: AckLevel) -> Result<Deletion, EngineError> {
        let n = ids.len();
        if self.scheduler.lifecycle.is(&self.scheduler.lifecycle.closing) {
            return Err(EngineError::ShuttingDown);
        }
        Space::validate_delete(&ids, &self.config)?;
        let level = self.evaluate(space);
        let present: Vec<u64> = ids.into_iter().filter(|&id| space.is_live(id)).collect();
        let mut not_found = n - present.len();
        let nothing = |not_found, level| Deletion {
            deleted: 0,
            not_found,
            level,
            durable: (ack >= AckLevel::Durable).then(|| self.barrier()),
            indexed: (ack >= AckLevel::Indexed).then(|| BatchAck::new(0, Instant::now()).1),
        };
        if present.is_empty() {
            return Ok(nothing(not_found, level));
        }
        let reserved = present.len();
        let bytes = reserved * Job::REMOVE_BYTES;
        if !self.scheduler.queue.capacity().try_reserve(reserved, bytes) {
            return Err(self.reject(space, Priority::High, n, level, RejectReason::QueueFull));
        }
        let accepted_at = Instant::now();
        let op = Operation::Delete(DeleteBatch { space: space.name.clone(), seq: None, ids: present });
        let mut deleted = 0;
        let sequenced = self.sequence(space, &op, |seq| {
            let Operation::Delete(batch) = &op else { unreachable!("a delete") };
            space.sequenced(seq, batch.ids.len());
            for id in &batch.ids {
                // An id deleted (and removed) meanwhile by a concurrent delete stays absent.
                if let Some(mut s) = space.ids.get_mut(id) {
                    deleted += usize::from(s.live);
                    s.seq = seq;
                    s.live = false;
                }
            }
        });
        let (seq, durable) = match sequenced {
            Ok(done) => done,
            Err(e) => {
                self.scheduler.queue.capacity().release(reserved, bytes);
                return Err(e);
            }
        };
        not_found += reserved - deleted;
        let Operation::Delete(batch) = op else { unreachable!("a delete") };
        let durable = (ack >= AckLevel::Durable).then(|| durable.unwrap_or_else(|| self.barrier()));
        let (batch_ack, waiter) = if ack >= AckLevel::Indexed {
            let (a, w) = BatchAck::new(reserved, accepted_at);
            (a, Some(w))
        } else {
            (None, None)
        };
        space.pending.fetch_add(reserved, Ordering::AcqRel);
        space.events.deleted(deleted as u64);
        let lane = Priority::Normal;
        let jobs =
            batch.ids.into_iter().map(|id| Job::remove(space, seq, id, lane, accepted_at, batch_ack.clone())).collect();
        self.scheduler.queue.push(lane.index(), jobs);
        self.scheduler.wake_workers();
        let level = self.evaluate(space);
        Ok(Deletion { deleted, not_found, level, durable, indexed: waiter })
    }

    /// A waiter for the durability of `held`, ids a batch found already held (its duplicates):
    /// first each one still claimed by a concurrent insert that has not appended yet
    /// ([`PENDING`]: that insert appends right after claiming, so this is a matter of
    /// microseconds, or of the append lock) is waited for, then a barrier covers every append
    /// so far, theirs included. Without the wait, a barrier taken between their claim and their
    /// append would not cover it.
    ///
    /// The waiter fails at once when such a claim ended without the id being live (its append
    /// failed, or a delete came after it): the duplicate cannot be acknowledged for an id that
    /// is not stored; the client retries.
    fn held_durable(&self, space: &Space, held: &[u64]) -> DurableWaiter {
        if self.store.is_none() {
            return DurableWaiter::ready(); // DURABLE is ACCEPTED without a store
        }
        let started = Instant::now();
        for &id in held {
            let mut spins = 0u32;
            loop {
                match space.ids.get(&id).map(|s| (s.seq, s.live)) {
                    Some((PENDING, _)) if started.elapsed() < HELD_WAIT => {
                        spins += 1;
                        if spins < 64 {
                            std::thread::yield_now();
                        } else {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                    }
                    Some((seq, true)) if seq != PENDING => break,
                    _ => {
                        return DurableWaiter::failed(EngineError::Storage {
                            kind: crate::error::StorageErrorKind::Io,
                            message: format!(
                                "observation {id} was being recorded by a concurrent batch that did not complete; retry"
                            ),
                        });
                    }
                }
            }
        }
        self.barrier()
    }

    /// Gives `op` its position in the order of operations: appended to the log with a store
    /// (returning the waiter for its sync), or the next number of the engine's own counter
    /// without one. `on_seq` runs with the position under the lock that orders them, so the
    /// space's [`IdState`]s change in log order.
    fn sequence(
        &self,
        space: &Space,
        op: &Operation,
        on_seq: impl FnOnce(Seq),
    ) -> Result<(Seq, Option<DurableWaiter>), EngineError> {
        match &self.store {
            Some(store) => {
                let keep = space.params.quantization().is_reduced();
                store.append(space.uid, space.params.dim, op, keep, on_seq).map(|(seq, w)| (seq, Some(w)))
            }
            None => {
                let mut next = self.next_seq.lock();
                let seq = *next;
                *next += 1;
                on_seq(seq);
                Ok((seq, None))
            }
        }
    }

    /// The batch's new observations as the insert the update path applies: embeddings
    /// prepared for the space's metric (a failure names `observations[i].embedding`, `i` its
    /// index in the client's batch of `n`).
    fn prepare(
        &self,
        space: &Space,
        priority: Priority,
        upsert: bool,
        fresh: Vec<(usize, crate::observation::Observation)>,
        n: usize,
    ) -> Result<InsertBatch, EngineError> {
        let metric = space.params.metric;
        let mut records = Vec::with_capacity(fresh.len());
        for (i, o) in fresh {
            let mut vector = o.embedding.into_boxed_slice();
            if let Err(reason) = metric.prepare(&mut vector) {
                space.events.rejected(Rejected::InvalidArgument, n as u64);
                return Err(EngineError::invalid(format!("observations[{i}].embedding"), reason));
            }
            records.push(Record { id: o.id, vector, content: o.content.map(String::into_boxed_str) });
        }
        Ok(InsertBatch { space: space.name.clone(), seq: None, priority, upsert, records })
    }

    /// Updates the global level and `space`'s own and effective levels; returns the effective.
    pub(crate) fn evaluate(&self, space: &Space) -> BackpressureLevel {
        let cap = self.scheduler.queue.capacity();
        if let Some((from, to)) = self.global.update(&self.thresholds, cap.utilization())
            && let Some(suppressed) = self.global_level_log.admit()
        {
            tracing::info!(from, to, utilization = cap.utilization(), suppressed, "global backpressure level changed");
        }
        space.own.update(&self.thresholds, self.own_utilization(space));
        let effective = self.global.get().max(space.own.get());
        let previous = space.effective.swap(effective, Ordering::AcqRel);
        if previous != effective {
            space.events.backpressure_changed(previous, effective);
        }
        BackpressureLevel::from_u8(effective)
    }

    /// Observations one space may hold before its own level counts as full: the whole queue
    /// for a lone space, `max_space_share` of it once there are two or more.
    fn space_capacity(&self) -> usize {
        let cap = self.scheduler.queue.capacity().max_count();
        if self.registry.len() <= 1 { cap } else { ((cap as f64 * self.config.max_space_share) as usize).max(1) }
    }

    /// The space's pending observations over its share of the queue.
    fn own_utilization(&self, space: &Space) -> f64 {
        space.pending.load(Ordering::Acquire) as f64 / self.space_capacity() as f64
    }

    /// `Some(retry-after)` when `n` more high-priority observations would queue behind more
    /// than `high_lane_max_wait_ms` of work at the measured drain rate (and the lane is not
    /// empty); `None` to admit. No bound before a drain rate is measured.
    fn high_lane_full(&self, n: usize) -> Option<Duration> {
        let target = self.config.high_lane_max_wait_ms;
        let drain = self.scheduler.drain_rate();
        if target == 0 || drain <= 0.0 {
            return None;
        }
        let room = (drain * target as f64 / 1000.0) as usize;
        let depth = self.scheduler.queue.lane_lens()[Priority::High.index()];
        (depth > 0 && depth + n > room).then(|| backpressure::retry_after(depth, room, 1.0, n, drain))
    }

    /// A backpressure or full-queue refusal of `n` observations, with the time until the
    /// refusing level is left (or room is free) at the measured drain rate.
    fn reject(
        &self,
        space: &Space,
        priority: Priority,
        n: usize,
        level: BackpressureLevel,
        reason: RejectReason,
    ) -> EngineError {
        let th = &self.thresholds;
        // The utilization at which the refusing level is left.
        let exit = |level: usize| th.enter[level - 1] - th.hysteresis;
        let cap = self.scheduler.queue.capacity();
        let (depth, capacity) = if self.global.get() >= space.own.get() {
            (cap.len(), cap.max_count())
        } else {
            (space.pending.load(Ordering::Acquire), self.space_capacity())
        };
        let exit_util = match (reason, priority) {
            (RejectReason::QueueFull, _) => 1.0,
            (_, Priority::Low) => exit(2),
            _ => exit(3),
        };
        let retry_after = backpressure::retry_after(depth, capacity, exit_util, n, self.scheduler.drain_rate());
        self.refuse(space, n, Rejection { reason, retry_after, level })
    }

    /// Counts a refusal of `n` observations under its reason and returns it as the error.
    fn refuse(&self, space: &Space, n: usize, rejection: Rejection) -> EngineError {
        space.events.rejected(rejection.reason.label(), n as u64);
        EngineError::Rejected(rejection)
    }
}
