//! The load's send loop, written once for both protocols: pacing, backoff, retries and the
//! tally. A [`Transport`] sends a batch and reports what became of it.

use super::pacer::Pacer;
use super::{Wait, priority_of};
use crate::progress::{Counts, Progress};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

/// What the server said about a batch in flight.
pub(super) enum Event {
    /// Admitted: `accepted` new observations, `duplicates` already present.
    Accepted { batch: usize, accepted: u64, duplicates: u64 },
    /// Recorded in the server's durable log.
    Durable { batch: usize },
    /// Searchable: `indexed` observations inserted.
    Indexed { batch: usize, indexed: u64 },
    /// Refused for `reason`; send it again after `retry_after`.
    Rejected { batch: usize, reason: String, retry_after: Duration },
}

/// One protocol's side of the load. An invalid batch, a failed insert or a broken connection
/// is an error, which ends the run.
pub(super) trait Transport {
    /// Sends batch `batch` (base rows `rows`) at priority `priority` (0 high, 1 normal, 2 low).
    /// What becomes of it comes from [`Transport::next_event`]: an `Accepted` and a `Durable`
    /// (both optional) and then an `Indexed`, or a `Rejected`.
    async fn send(&mut self, batch: usize, rows: Range<usize>, priority: usize) -> anyhow::Result<()>;

    /// The next event of a batch in flight. Cancel-safe: the loop polls it in a `select!`
    /// beside the pacer.
    async fn next_event(&mut self) -> anyhow::Result<Event>;

    /// Vectors the server reports in the space.
    async fn space_vectors(&mut self) -> anyhow::Result<u64>;

    /// The ids of the `k` nearest neighbours of `embedding` (`ef_search`: the space's when
    /// `None`), nearest first.
    async fn recall(&mut self, embedding: &[f32], k: usize, ef_search: Option<usize>) -> anyhow::Result<Vec<u64>>;
}

/// Counts of one run.
#[derive(Default)]
pub(super) struct Tally {
    pub sent: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: BTreeMap<String, u64>,
    pub retried: u64,
    pub indexed: u64,
    /// Observations confirmed at the plan's wait level.
    pub confirmed: u64,
    pub ack_latency: Vec<f64>,
    pub index_latency: Vec<f64>,
    pub accepted_to_indexed: Vec<f64>,
    pub durable_latency: Vec<f64>,
    pub accepted_to_durable: Vec<f64>,
    /// When `confirmed` first reached half the run's observations, and when it last grew.
    half_confirmed_at: Option<Instant>,
    last_confirmed_at: Option<Instant>,
}

impl Tally {
    /// Counts `n` more observations confirmed at the wait level out of `total`.
    fn add_confirmed(&mut self, n: u64, total: usize) {
        self.confirmed += n;
        let now = Instant::now();
        self.last_confirmed_at = Some(now);
        if self.half_confirmed_at.is_none() && self.confirmed >= (total / 2) as u64 {
            self.half_confirmed_at = Some(now);
        }
    }

    /// Observations per second over the second half of the run (from half confirmed to the
    /// last confirmation): the rate at the larger index, which a growing index sets.
    pub(super) fn second_half_rate(&self, total: usize) -> f64 {
        match (self.half_confirmed_at, self.last_confirmed_at) {
            (Some(half), Some(last)) if last > half => {
                (self.confirmed as f64 - (total / 2) as f64) / last.duration_since(half).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    fn counts(&self) -> Counts {
        Counts {
            indexed: self.confirmed,
            sent: self.sent,
            rejected: self.rejected.values().sum(),
            retried: self.retried,
        }
    }
}

/// How the loop sends.
pub(super) struct Plan<'a> {
    /// Base rows of each batch, in order.
    pub batches: &'a [Range<usize>],
    /// Weights of high:normal:low priority.
    pub mix: [u32; 3],
    /// Observations per second (None: as fast as admitted).
    pub rate: Option<f64>,
    /// Batches in flight at most.
    pub concurrency: usize,
    /// The acknowledgement that completes a batch.
    pub wait: Wait,
}

/// A batch sent and not yet confirmed.
struct InFlight {
    sent_at: Instant,
    accepted_at: Option<Instant>,
    /// Observations its ACCEPTED ack counted (new and duplicate).
    acked: u64,
}

/// Sends every batch of `plan` through `transport` until each is confirmed at the plan's wait
/// level: a refused batch goes back to the front of the line and the pacer holds every send
/// for the retry-after. Returns the tally and the time from the first send to the last
/// confirmation.
pub(super) async fn drive<T: Transport>(transport: &mut T, plan: &Plan<'_>) -> anyhow::Result<(Tally, Duration)> {
    let total: usize = plan.batches.iter().map(ExactSizeIterator::len).sum();
    let mut ready: VecDeque<usize> = (0..plan.batches.len()).collect();
    let mut in_flight: HashMap<usize, InFlight> = HashMap::new();
    let mut done = 0usize;
    let mut t = Tally::default();
    let mut progress = Progress::new(total);
    let mut pacer = Pacer::new(plan.rate);
    let started = Instant::now();
    while done < plan.batches.len() {
        while in_flight.len() < plan.concurrency
            && pacer.ready()
            && let Some(b) = ready.pop_front()
        {
            let rows = plan.batches[b].clone();
            pacer.sent(rows.len());
            t.sent += rows.len() as u64;
            in_flight.insert(b, InFlight { sent_at: Instant::now(), accepted_at: None, acked: 0 });
            transport.send(b, rows, priority_of(b, plan.mix)).await?;
        }
        tokio::select! {
            event = transport.next_event(), if !in_flight.is_empty() => {
                match event? {
                    Event::Accepted { batch, accepted, duplicates } => {
                        let Some(f) = in_flight.get_mut(&batch) else { anyhow::bail!("ack for batch {batch}, not in flight") };
                        pacer.accepted();
                        t.accepted += accepted + duplicates;
                        t.duplicates += duplicates;
                        t.ack_latency.push(f.sent_at.elapsed().as_secs_f64());
                        f.accepted_at = Some(Instant::now());
                        f.acked = accepted + duplicates;
                        if plan.wait == Wait::Accepted {
                            t.add_confirmed(f.acked, total);
                            in_flight.remove(&batch);
                            done += 1;
                        }
                    }
                    Event::Durable { batch } => {
                        let Some(f) = in_flight.get(&batch) else { anyhow::bail!("durable ack for batch {batch}, not in flight") };
                        t.durable_latency.push(f.sent_at.elapsed().as_secs_f64());
                        if let Some(at) = f.accepted_at {
                            t.accepted_to_durable.push(at.elapsed().as_secs_f64());
                        }
                        if plan.wait == Wait::Durable {
                            t.add_confirmed(f.acked, total);
                            in_flight.remove(&batch);
                            done += 1;
                        }
                    }
                    Event::Indexed { batch, indexed } => {
                        let Some(f) = in_flight.remove(&batch) else { anyhow::bail!("indexed ack for batch {batch}, not in flight") };
                        t.indexed += indexed;
                        t.add_confirmed(indexed, total);
                        t.index_latency.push(f.sent_at.elapsed().as_secs_f64());
                        if let Some(at) = f.accepted_at {
                            t.accepted_to_indexed.push(at.elapsed().as_secs_f64());
                        }
                        done += 1;
                    }
                    Event::Rejected { batch, reason, retry_after } => {
                        if in_flight.remove(&batch).is_none() {
                            anyhow::bail!("rejection of batch {batch}, not in flight");
                        }
                        *t.rejected.entry(reason).or_default() += plan.batches[batch].len() as u64;
                        t.retried += 1;
                        pacer.back_off(retry_after);
                        // Back in line at once; the pacer holds every send until the pause ends.
                        ready.push_front(batch);
                    }
                }
                progress.update(&t.counts());
            }
            () = pacer.until_ready(), if pacer.holding() && in_flight.len() < plan.concurrency && !ready.is_empty() => {}
        }
    }
    progress.finish();
    Ok((t, started.elapsed()))
}
