//! Per-key rate limits (`[rate_limits]`, and per key in its entry): requests per second and
//! observations per second, each a GCRA bucket from `governor` holding `burst_seconds` of the
//! rate. While auth is off the same limits apply per client address. Over a limit a request is
//! refused with 429 / `RESOURCE_EXHAUSTED`, reason `rate_limited` and the wait until the bucket
//! admits it (`Retry-After`, `retry-after-ms`), distinct from backpressure, and counted in
//! `engram_rate_limited_total` by key name (bounded: names come from the config).

use engram_telemetry::Telemetry;
use engram_telemetry::catalog;
use engram_telemetry::primitives::Counter;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, InsufficientCapacity, NotUntil, Quota};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// `limit` label values of `engram_rate_limited_total`.
pub const LIMITS: [&str; 2] = ["requests", "observations"];

/// The key name exported for limits per client address (auth off).
pub const ANONYMOUS: &str = "-";

/// `[rate_limits]`: the default limits of every key (a key's entry may set its own). Off by
/// default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second per key (per client address while auth is off): HTTP requests, gRPC
    /// unary calls and observation-stream batches; probes are never limited. 0: no limit.
    /// Default 0.
    pub requests_per_second: u32,
    /// Observations written per second per key (per client address while auth is off). 0: no
    /// limit. Default 0.
    pub observations_per_second: u32,
    /// Seconds of each rate a client may spend at once (the bucket size), at least 1. Default 1.
    pub burst_seconds: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { requests_per_second: 0, observations_per_second: 0, burst_seconds: 1 }
    }
}

impl RateLimitConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// `rate_limits.burst_seconds` of 0.
    pub fn validate(&self) -> Result<(), String> {
        if self.burst_seconds == 0 {
            return Err("rate_limits.burst_seconds: must be at least 1".into());
        }
        Ok(())
    }
}

/// Why and for how long a request was limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// `requests` or `observations`.
    pub limit: &'static str,
    /// The limit per second.
    pub per_second: u32,
    /// How long until the bucket admits it.
    pub retry_after: Duration,
    /// The request can never pass: it holds more observations than the whole bucket.
    pub over_burst: bool,
}

/// The clock's instants (governor's default, quanta).
type At = <DefaultClock as Clock>::Instant;

/// A request bucket's answer as a [`Limited`] (counted in `limited`).
fn requests_checked(checked: Result<(), NotUntil<At>>, per_second: u32, limited: &Counter) -> Result<(), Limited> {
    checked.map_err(|not| {
        limited.inc();
        Limited {
            limit: LIMITS[0],
            per_second,
            retry_after: not.wait_time_from(DefaultClock::default().now()),
            over_burst: false,
        }
    })
}

/// An observation bucket's answer as a [`Limited`] (counted in `limited`): a wait, or a batch
/// larger than the whole bucket (`burst`).
fn observations_checked(
    checked: Result<Result<(), NotUntil<At>>, InsufficientCapacity>,
    per_second: u32,
    burst: u32,
    limited: &Counter,
) -> Result<(), Limited> {
    let (retry_after, over_burst) = match checked {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(not)) => (not.wait_time_from(DefaultClock::default().now()), false),
        Err(_) => (Duration::ZERO, burst > 0),
    };
    limited.inc();
    Err(Limited { limit: LIMITS[1], per_second, retry_after, over_burst })
}

/// `n` as the cells of one check (`None` for 0: nothing to take).
fn cells(n: usize) -> Option<NonZeroU32> {
    NonZeroU32::new(n.min(u32::MAX as usize) as u32)
}

fn bucket(per_second: u32, burst_seconds: u32) -> Option<DefaultDirectRateLimiter> {
    Some(DefaultDirectRateLimiter::direct(quota(per_second, burst_seconds)?))
}

fn quota(per_second: u32, burst_seconds: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(burst_seconds.max(1))).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// One key's buckets and counters.
#[derive(Debug)]
pub(crate) struct Limiter {
    per_second: [u32; 2],
    burst: u32,
    requests: Option<DefaultDirectRateLimiter>,
    observations: Option<DefaultDirectRateLimiter>,
    limited: [Arc<Counter>; 2],
}

impl Limiter {
    /// The buckets of key `name`: its own rates where given, else `defaults`'.
    pub(crate) fn new(
        telemetry: &Telemetry,
        name: &str,
        defaults: &RateLimitConfig,
        requests: Option<u32>,
        observations: Option<u32>,
    ) -> Self {
        let rps = requests.unwrap_or(defaults.requests_per_second);
        let ops = observations.unwrap_or(defaults.observations_per_second);
        Self {
            per_second: [rps, ops],
            burst: ops.saturating_mul(defaults.burst_seconds.max(1)),
            requests: bucket(rps, defaults.burst_seconds),
            observations: bucket(ops, defaults.burst_seconds),
            limited: LIMITS.map(|l| telemetry.counter(&catalog::RATE_LIMITED, &[name, l])),
        }
    }

    /// Takes one request from the bucket.
    pub(crate) fn request(&self) -> Result<(), Limited> {
        let Some(b) = &self.requests else { return Ok(()) };
        requests_checked(b.check(), self.per_second[0], &self.limited[0])
    }

    /// Takes `n` observations from the bucket.
    pub(crate) fn observations(&self, n: usize) -> Result<(), Limited> {
        let (Some(b), Some(n)) = (&self.observations, cells(n)) else { return Ok(()) };
        observations_checked(b.check_n(n), self.per_second[1], self.burst, &self.limited[1])
    }
}

/// The limits per client address while auth is off (entries idle for a bucket's length are
/// dropped by [`PeerLimiter::forget_idle`], so the map holds only recent clients).
#[derive(Debug)]
pub(crate) struct PeerLimiter {
    per_second: [u32; 2],
    burst: u32,
    requests: Option<DefaultKeyedRateLimiter<IpAddr>>,
    observations: Option<DefaultKeyedRateLimiter<IpAddr>>,
    limited: [Arc<Counter>; 2],
}

impl PeerLimiter {
    /// `None` when `config` sets no limit.
    pub(crate) fn new(telemetry: &Telemetry, config: &RateLimitConfig) -> Option<Self> {
        let (rps, ops) = (config.requests_per_second, config.observations_per_second);
        if rps == 0 && ops == 0 {
            return None;
        }
        let keyed = |rate| quota(rate, config.burst_seconds).map(DefaultKeyedRateLimiter::keyed);
        Some(Self {
            per_second: [rps, ops],
            burst: ops.saturating_mul(config.burst_seconds.max(1)),
            requests: keyed(rps),
            observations: keyed(ops),
            limited: LIMITS.map(|l| telemetry.counter(&catalog::RATE_LIMITED, &[ANONYMOUS, l])),
        })
    }

    pub(crate) fn request(&self, peer: IpAddr) -> Result<(), Limited> {
        let Some(b) = &self.requests else { return Ok(()) };
        requests_checked(b.check_key(&peer), self.per_second[0], &self.limited[0])
    }

    pub(crate) fn observations(&self, peer: IpAddr, n: usize) -> Result<(), Limited> {
        let (Some(b), Some(n)) = (&self.observations, cells(n)) else { return Ok(()) };
        observations_checked(b.check_key_n(&peer, n), self.per_second[1], self.burst, &self.limited[1])
    }

    /// Drops the addresses whose buckets are full again (idle clients).
    pub(crate) fn forget_idle(&self) {
        for b in [&self.requests, &self.observations].into_iter().flatten() {
            b.retain_recent();
            b.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_telemetry::TelemetryConfig;

    #[test]
    fn a_bucket_admits_its_burst_then_says_how_long_to_wait() {
        let t = Telemetry::new(TelemetryConfig::default());
        let config = RateLimitConfig { requests_per_second: 5, observations_per_second: 100, burst_seconds: 1 };
        let l = Limiter::new(&t, "k", &config, None, None);
        for _ in 0..5 {
            l.request().unwrap();
        }
        let e = l.request().unwrap_err();
        assert_eq!((e.limit, e.per_second), ("requests", 5));
        assert!(e.retry_after > Duration::ZERO && e.retry_after <= Duration::from_millis(200), "{e:?}");
        l.observations(60).unwrap();
        let e = l.observations(60).unwrap_err();
        assert!(!e.over_burst && e.retry_after > Duration::ZERO);
        let e = l.observations(101).unwrap_err();
        assert!(e.over_burst, "more than the bucket holds can never pass");
        assert_eq!(t.sum(&catalog::RATE_LIMITED, |_| true), 3.0);
    }

    #[test]
    fn no_rate_means_no_limit_and_a_key_may_set_its_own() {
        let t = Telemetry::new(TelemetryConfig::default());
        let off = Limiter::new(&t, "a", &RateLimitConfig::default(), None, None);
        for _ in 0..10_000 {
            off.request().unwrap();
        }
        off.observations(1_000_000).unwrap();
        let own = Limiter::new(&t, "b", &RateLimitConfig::default(), Some(1), None);
        own.request().unwrap();
        assert!(own.request().is_err());
        assert!(PeerLimiter::new(&t, &RateLimitConfig::default()).is_none());
    }

    #[test]
    fn addresses_have_buckets_of_their_own() {
        let t = Telemetry::new(TelemetryConfig::default());
        let config = RateLimitConfig { requests_per_second: 2, ..Default::default() };
        let p = PeerLimiter::new(&t, &config).unwrap();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        p.request(a).unwrap();
        p.request(a).unwrap();
        assert!(p.request(a).is_err());
        p.request(b).unwrap();
        p.forget_idle();
    }
}
