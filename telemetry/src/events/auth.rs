//! Authentication and authorization events: refused requests by reason and transport, whether
//! auth is on, how many API keys are configured, key reloads.

use crate::Telemetry;
use crate::catalog;
use crate::primitives::{Counter, Gauge};
use std::sync::Arc;

/// `transport` label values of `engram_auth_failures_total`.
pub const TRANSPORTS: [&str; 2] = ["http", "grpc"];

/// `reason` label values of `engram_auth_failures_total`.
pub const FAILURE_REASONS: [&str; 3] = ["missing", "invalid", "forbidden"];

/// `outcome` label values of `engram_auth_key_reloads_total`.
pub const RELOAD_OUTCOMES: [&str; 2] = ["ok", "error"];

/// The listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The HTTP listener (REST, health, `/metrics`).
    Http = 0,
    /// The gRPC listener.
    Grpc = 1,
}

impl Transport {
    /// The label value (`http`, `grpc`).
    pub fn as_str(self) -> &'static str {
        TRANSPORTS[self as usize]
    }
}

/// Why a request was refused by authentication or authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No API key was sent (401 / `UNAUTHENTICATED`).
    Missing = 0,
    /// The key sent matches no configured key (401 / `UNAUTHENTICATED`).
    Invalid = 1,
    /// A known key without the grant the request needs (403 / `PERMISSION_DENIED`).
    Forbidden = 2,
}

impl AuthFailure {
    /// The label value (`missing`, `invalid`, `forbidden`).
    pub fn as_str(self) -> &'static str {
        FAILURE_REASONS[self as usize]
    }
}

/// Handles of the server's authentication (one per server).
#[derive(Debug, Clone)]
pub struct AuthEvents {
    failures: [[Arc<Counter>; 3]; 2],
    enabled: Arc<Gauge>,
    keys: Arc<Gauge>,
    open_listeners: Arc<Gauge>,
    reloads: [Arc<Counter>; 2],
}

impl AuthEvents {
    /// Registers the series (every failure series at 0 from the start).
    pub fn register(t: &Telemetry) -> Self {
        Self {
            failures: TRANSPORTS.map(|tr| FAILURE_REASONS.map(|r| t.counter(&catalog::AUTH_FAILURES, &[tr, r]))),
            enabled: t.gauge(&catalog::AUTH_ENABLED, &[]),
            keys: t.gauge(&catalog::AUTH_KEYS, &[]),
            open_listeners: t.gauge(&catalog::AUTH_OPEN_LISTENERS, &[]),
            reloads: RELOAD_OUTCOMES.map(|o| t.counter(&catalog::AUTH_KEY_RELOADS, &[o])),
        }
    }

    /// A request refused on `transport` for `reason`.
    pub fn failed(&self, transport: Transport, reason: AuthFailure) {
        self.failures[transport as usize][reason as usize].inc();
    }

    /// The key set now in force: whether auth is on, and how many keys it holds.
    pub fn configured(&self, enabled: bool, keys: usize) {
        self.enabled.set(if enabled { 1.0 } else { 0.0 });
        self.keys.set(keys as f64);
    }

    /// `n` listeners are bound beyond loopback while auth is off.
    pub fn open_listeners(&self, n: usize) {
        self.open_listeners.set(n as f64);
    }

    /// The keys file was re-read (`ok`) or could not be (`error`: the keys in force stay).
    pub fn reloaded(&self, ok: bool) {
        self.reloads[usize::from(!ok)].inc();
    }
}
