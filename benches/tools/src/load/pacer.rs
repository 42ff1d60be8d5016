//! Pacing and backoff of the load's sends ([`Pacer`]).

use std::time::Duration;

/// Backoff jitter: a pause is the retry-after times a factor drawn from [1, 1 + JITTER).
const JITTER: f64 = 0.25;
/// Refusals in a row (no acceptance between) after which the pause is doubled: the server's
/// retry-after was too short for this client's traffic.
const REFUSALS_BEFORE_GROWTH: u32 = 4;

/// Paces sends to `rate` observations per second, and holds every send back while the server
/// asked the client to back off.
///
/// Backoff is global: a REJECTED batch's retry-after pauses *all* sends of this client (new
/// batches and retries), not just the refused batch, since the server is telling the client
/// its queue is full, not that one batch was bad. The pause is the retry-after stretched by a
/// random factor in [1, 1.25) (jitter, so clients that were refused together do not return
/// together), doubled once [`REFUSALS_BEFORE_GROWTH`] refusals came in a row without an
/// acceptance (the server's estimate was too short for this client), and back to 1× at the
/// next acceptance. A steeper growth (doubling per refusal, up to 8×) overshot: four clients
/// left one worker idle and took 150 s for what they sent in 51 s storming. Without this, a client with 16 batches in flight refilled
/// each refused slot at once: 323 sends per accepted observation against a refusing server
/// (docs/benchmarks.md).
pub(super) struct Pacer {
    rate: Option<f64>,
    next: tokio::time::Instant,
    /// No send before this instant (the server's retry-after, with jitter and growth).
    paused_until: tokio::time::Instant,
    /// Rejections since the last acceptance.
    strikes: u32,
    jitter: Jitter,
}

/// The send loops never sleep in the pacer: they send while [`Pacer::ready`], and otherwise
/// wait for acks, retries *or* [`Pacer::until_ready`] in one `select!`, so acks are read (and
/// timed) while the pacer holds the next batch back.
impl Pacer {
    pub(super) fn new(rate: Option<f64>) -> Self {
        let now = tokio::time::Instant::now();
        Self { rate, next: now, paused_until: now, strikes: 0, jitter: Jitter::seeded() }
    }

    /// The earliest instant the next batch may be sent.
    fn next_send(&self) -> tokio::time::Instant {
        if self.rate.is_some() { self.next.max(self.paused_until) } else { self.paused_until }
    }

    /// True when the next batch may be sent now.
    pub(super) fn ready(&self) -> bool {
        tokio::time::Instant::now() >= self.next_send()
    }

    /// The server refused a batch and asked to wait `retry_after`: pause every send.
    pub(super) fn back_off(&mut self, retry_after: Duration) {
        let growth = if self.strikes >= REFUSALS_BEFORE_GROWTH { 2.0 } else { 1.0 };
        self.strikes = self.strikes.saturating_add(1);
        let wait = retry_after.mul_f64(growth * (1.0 + JITTER * self.jitter.next_unit()));
        self.paused_until = self.paused_until.max(tokio::time::Instant::now() + wait);
    }

    /// The server accepted a batch: rejections no longer compound.
    pub(super) fn accepted(&mut self) {
        self.strikes = 0;
    }

    /// True when a rate is set and the next batch has to wait for it.
    pub(super) fn holding(&self) -> bool {
        !self.ready()
    }

    /// Records a batch of `n` observations sent now.
    pub(super) fn sent(&mut self, n: usize) {
        if let Some(rate) = self.rate {
            self.next = self.next.max(tokio::time::Instant::now()) + Duration::from_secs_f64(n as f64 / rate);
        }
    }

    /// Resolves when the next batch may be sent.
    pub(super) async fn until_ready(&self) {
        tokio::time::sleep_until(self.next_send()).await;
    }
}

/// Uniform values in [0, 1) for backoff jitter (xorshift64*, seeded from the clock and the
/// process id: decorrelated across clients, no cryptographic use).
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        Self((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_refusal_pauses_every_send_for_the_retry_after_with_jitter() {
        let mut pacer = Pacer::new(None);
        assert!(pacer.ready(), "an unpaced client sends at once");
        pacer.back_off(Duration::from_millis(400));
        // Every send waits, not just the refused batch's.
        assert!(pacer.holding());
        tokio::time::advance(Duration::from_millis(399)).await;
        assert!(pacer.holding(), "no send before the retry-after");
        tokio::time::advance(Duration::from_millis(101)).await;
        assert!(pacer.ready(), "jitter stretches the pause by less than a quarter");
        // Refusals in a row double the pause once the server's estimate keeps falling short.
        for _ in 0..REFUSALS_BEFORE_GROWTH {
            pacer.back_off(Duration::from_millis(100));
        }
        tokio::time::advance(Duration::from_millis(125)).await;
        pacer.back_off(Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(199)).await;
        assert!(pacer.holding(), "the fifth refusal in a row waits twice the retry-after");
        pacer.accepted();
        tokio::time::advance(Duration::from_millis(51)).await;
        pacer.back_off(Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(125)).await;
        assert!(pacer.ready(), "an acceptance resets the growth");
    }
}
