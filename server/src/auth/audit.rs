//! The audit log: one JSON line for every admin action (space create and drop, snapshots, key
//! reloads) and every request refused by authentication or authorization.
//!
//! A line holds `time` (RFC 3339, UTC, milliseconds), `key` (the key's name, never the key;
//! `-` for none or an unknown one), `peer` (the client's address), `transport` (`http`,
//! `grpc`, or `server` for the server's own actions), `action`, `memory_space` (when the
//! action names one), `outcome` (`ok`, or why it was refused or failed) and `status` (the HTTP
//! status or gRPC code name).
//!
//! With `auth.audit_log` set the lines are appended to that file, each written whole by one
//! `write` (O_APPEND), so a shipper can tail it on its own and it outlives restarts; without
//! it they go to the server's log as events of target `audit`.

use parking_lot::Mutex;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

/// The `tracing` target of audit events when no audit file is configured.
pub const TARGET: &str = "audit";

/// One audit line.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    /// The key's name (`-`: no key, or one that matched none).
    pub key: &'a str,
    /// The client's address (`None` for the server's own actions).
    pub peer: Option<SocketAddr>,
    /// `http`, `grpc` or `server`.
    pub transport: &'static str,
    /// What was asked, e.g. `space.create`, `recall`, `keys.reload`.
    pub action: &'static str,
    /// The memory space the action names, if any.
    pub memory_space: Option<&'a str>,
    /// `ok`, or the reason it was refused or failed (`missing`, `invalid`, `forbidden`, ...).
    pub outcome: &'a str,
    /// The HTTP status (`403`) or gRPC code name (`PERMISSION_DENIED`) answered.
    pub status: &'a str,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    record: &'a Record<'a>,
}

/// Where audit lines go.
#[derive(Debug)]
pub struct AuditLog {
    file: Option<Mutex<File>>,
}

impl AuditLog {
    /// Appends to `path` (created if absent); `None`: the server log, target [`TARGET`].
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(Mutex::new(OpenOptions::new().create(true).append(true).open(p)?)),
            None => None,
        };
        Ok(Self { file })
    }

    /// Writes `record` as one line. A failed write is logged, never returned: the request it
    /// describes has been answered already.
    pub fn record(&self, record: &Record<'_>) {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let Some(file) = &self.file else {
            tracing::info!(
                target: TARGET,
                key = record.key,
                peer = record.peer.map(|p| p.to_string()),
                transport = record.transport,
                action = record.action,
                memory_space = record.memory_space,
                outcome = record.outcome,
                status = record.status,
                "audit"
            );
            return;
        };
        let mut line = match serde_json::to_vec(&Line { time, record }) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("audit record could not be encoded: {e}");
                return;
            }
        };
        line.push(b'\n');
        if let Err(e) = file.lock().write_all(&line) {
            tracing::error!(action = record.action, "audit log write failed: {e}");
        }
    }
}
