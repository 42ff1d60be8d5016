//! TLS events: handshakes that failed by listener and reason, certificate reloads and the
//! certificate's expiry time.

use crate::Telemetry;
use crate::catalog;
use crate::primitives::{Counter, Gauge};
use std::sync::Arc;

/// `protocol` label values of `engram_tls_handshake_failures_total` (the listeners).
pub const PROTOCOLS: [&str; 2] = ["http", "grpc"];

/// `reason` label values of `engram_tls_handshake_failures_total`.
pub const HANDSHAKE_FAILURE_REASONS: [&str; 4] = ["certificate", "protocol", "timeout", "closed"];

/// `outcome` label values of `engram_tls_certificate_reloads_total`.
pub const RELOAD_OUTCOMES: [&str; 2] = ["ok", "error"];

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// A certificate was refused: the client's (mTLS: missing, expired, or not signed by the
    /// client CA), or ours (the client sent a certificate alert: unknown CA, wrong host,
    /// expired).
    Certificate = 0,
    /// Not TLS, or TLS the server does not speak (plaintext to a TLS port, no common version,
    /// cipher suite or ALPN protocol).
    Protocol = 1,
    /// The client did not finish the handshake within `tls.handshake_timeout_secs`.
    Timeout = 2,
    /// The connection was closed or reset during the handshake.
    Closed = 3,
}

impl HandshakeFailure {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        HANDSHAKE_FAILURE_REASONS[self as usize]
    }
}

/// Handles of the server's TLS (one per server).
#[derive(Debug, Clone)]
pub struct TlsEvents {
    failures: [[Arc<Counter>; 4]; 2],
    enabled: Arc<Gauge>,
    expiry: Arc<Gauge>,
    reloads: [Arc<Counter>; 2],
}

impl TlsEvents {
    /// Registers the series (every failure series at 0 from the start; expiry 0 while TLS is
    /// off).
    pub fn register(t: &Telemetry) -> Self {
        Self {
            failures: PROTOCOLS
                .map(|p| HANDSHAKE_FAILURE_REASONS.map(|r| t.counter(&catalog::TLS_HANDSHAKE_FAILURES, &[p, r]))),
            enabled: t.gauge(&catalog::TLS_ENABLED, &[]),
            expiry: t.gauge(&catalog::TLS_CERTIFICATE_EXPIRY, &[]),
            reloads: RELOAD_OUTCOMES.map(|o| t.counter(&catalog::TLS_CERTIFICATE_RELOADS, &[o])),
        }
    }

    /// A handshake on listener `protocol` (0 `http`, 1 `grpc`, as the connection metrics)
    /// failed for `reason`.
    pub fn handshake_failed(&self, protocol: usize, reason: HandshakeFailure) {
        self.failures[protocol][reason as usize].inc();
    }

    /// TLS is on with a certificate valid until `not_after` (Unix seconds).
    pub fn certificate(&self, not_after: i64) {
        self.enabled.set(1.0);
        self.expiry.set(not_after as f64);
    }

    /// The certificate files were re-read (`ok`: the new certificate is served) or could not
    /// be (`error`: the one in force stays).
    pub fn reloaded(&self, ok: bool) {
        self.reloads[usize::from(!ok)].inc();
    }
}
