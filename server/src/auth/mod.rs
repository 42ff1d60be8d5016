//! API keys: who may do what, on both listeners (docs/security.md).
//!
//! Each request is authenticated once: [`Auth::authenticate`] reads the key from
//! `Authorization: Bearer KEY` or `api-key: KEY` (HTTP headers, gRPC metadata), finds the
//! configured key whose SHA-256 it matches ([`keys`]), and returns the request's [`Principal`];
//! then [`Principal::require`] checks the grant the request's [`Action`] needs in its memory
//! space. Missing or unknown key: 401 / `UNAUTHENTICATED`; a known key without the grant: 403 /
//! `PERMISSION_DENIED`, the same whether the space exists or not. Each refusal is counted
//! (`engram_auth_failures_total`) and written to the audit log ([`audit`]), as is every admin
//! action.
//!
//! Auth is off when no key and no keys file is configured: every request may do everything
//! (the README's fresh-machine commands), `engram_auth_enabled` is 0, and the server warns at
//! start for each listener that is not on loopback. The keys file is re-read when it changes
//! (checked every 2 s) or on SIGHUP; a file that cannot be read or parsed leaves the keys in
//! force as they were.
//!
//! The HTTP side is `http::auth_layer`, the gRPC side `grpc::auth`.

pub mod audit;
pub mod keys;
pub mod limits;

use crate::api_error::{ApiError, code_name};
use crate::reload::{Stamp, stamp};
use audit::{AuditLog, Record};
use axum::http::HeaderMap;
use engram_telemetry::Telemetry;
use engram_telemetry::events::{AuthEvents, AuthFailure, Transport};
use keys::{Key, KeyConfig, KeySet, Role};
use limits::{Limited, Limiter, PeerLimiter, RateLimitConfig};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `[auth]`: API keys, the keys file, the audit log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// API keys (`[[auth.keys]]`: name, sha256, grants). Auth is on when this or `keys_file`
    /// is set.
    pub keys: Vec<KeyConfig>,
    /// A TOML file of more keys (`[[keys]]` entries, the same fields), re-read on change or
    /// SIGHUP without a restart. Set (even to an empty file), it turns auth on.
    pub keys_file: Option<PathBuf>,
    /// The audit log, appended as JSON lines; unset: audit lines go to the server log
    /// (target `audit`).
    pub audit_log: Option<PathBuf>,
}

/// The keys file's shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

/// What a request asks to do, and so which grant it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `/health`, `/health/live`, `/health/ready`, gRPC health: open to probes.
    Probe,
    /// `/metrics`, `/health/detailed`: the `metrics` grant.
    ReadMetrics,
    /// gRPC reflection, and any route no action names: any valid key.
    Describe,
    /// List spaces: any valid key; only the spaces it may read are listed.
    ListSpaces,
    /// Describe a space: `read`.
    GetSpace,
    /// Get one observation: `read`.
    GetObservation,
    /// Recall: `read`.
    Recall,
    /// Write observations (insert, upsert): `write`.
    WriteObservations,
    /// Delete observations: `write`.
    DeleteObservations,
    /// Create a space: `admin`.
    CreateSpace,
    /// Drop a space: `admin`.
    DropSpace,
    /// List a space's snapshots: `admin`.
    ListSnapshots,
    /// Take a snapshot: `admin`.
    CreateSnapshot,
    /// Download a snapshot: `admin`.
    DownloadSnapshot,
    /// Delete a snapshot: `admin`.
    DeleteSnapshot,
    /// Restore a space from a snapshot: `admin`.
    RestoreSnapshot,
    /// The keys file re-read (the server's own action, audited).
    ReloadKeys,
}

/// What an action needs of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Nothing,
    AnyKey,
    Metrics,
    Space(Role),
}

impl Action {
    /// The action's name in the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Probe => "health.probe",
            Action::ReadMetrics => "metrics.read",
            Action::Describe => "api.describe",
            Action::ListSpaces => "spaces.list",
            Action::GetSpace => "space.get",
            Action::GetObservation => "observations.get",
            Action::Recall => "recall",
            Action::WriteObservations => "observations.write",
            Action::DeleteObservations => "observations.delete",
            Action::CreateSpace => "space.create",
            Action::DropSpace => "space.drop",
            Action::ListSnapshots => "snapshots.list",
            Action::CreateSnapshot => "snapshot.create",
            Action::DownloadSnapshot => "snapshot.download",
            Action::DeleteSnapshot => "snapshot.delete",
            Action::RestoreSnapshot => "snapshot.restore",
            Action::ReloadKeys => "keys.reload",
        }
    }

    fn need(self) -> Need {
        match self {
            Action::Probe => Need::Nothing,
            Action::ReadMetrics => Need::Metrics,
            Action::Describe | Action::ListSpaces | Action::ReloadKeys => Need::AnyKey,
            Action::GetSpace | Action::GetObservation | Action::Recall => Need::Space(Role::Read),
            Action::WriteObservations | Action::DeleteObservations => Need::Space(Role::Write),
            Action::CreateSpace
            | Action::DropSpace
            | Action::ListSnapshots
            | Action::CreateSnapshot
            | Action::DownloadSnapshot
            | Action::DeleteSnapshot
            | Action::RestoreSnapshot => Need::Space(Role::Admin),
        }
    }

    /// Whether the action is an admin action: audited whatever its outcome.
    pub fn is_admin(self) -> bool {
        self.need() == Need::Space(Role::Admin)
    }
}

/// The server's API keys and audit log (cheap to clone: one `Arc`).
#[derive(Clone, Debug)]
pub struct Auth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    enabled: bool,
    inline: Vec<KeyConfig>,
    keys_file: Option<PathBuf>,
    keys: RwLock<Arc<KeySet>>,
    /// The keys file's stamp when last read.
    file_stamp: Mutex<Stamp>,
    events: AuthEvents,
    audit: AuditLog,
    telemetry: Arc<Telemetry>,
    rate_limits: RateLimitConfig,
    /// Limits per client address, while auth is off and `[rate_limits]` sets some.
    peers: Option<PeerLimiter>,
}

impl Auth {
    /// The keys of `config` (and its keys file) with their rate limits (`rate_limits`, or their
    /// own), the audit log opened, the auth metrics registered.
    ///
    /// # Errors
    /// A bad key entry (its field named), an unreadable or invalid keys file, or an audit log
    /// that cannot be opened.
    pub fn new(config: &AuthConfig, rate_limits: &RateLimitConfig, telemetry: &Arc<Telemetry>) -> Result<Self, String> {
        rate_limits.validate()?;
        let events = AuthEvents::register(telemetry);
        let audit = AuditLog::open(config.audit_log.as_deref())
            .map_err(|e| format!("auth.audit_log: cannot open {}: {e}", path_str(config.audit_log.as_deref())))?;
        let (file_keys, stamp) = match &config.keys_file {
            Some(path) => read_keys_file(path)?,
            None => (Vec::new(), None),
        };
        let set = compile(&config.keys, &file_keys, telemetry, rate_limits)?;
        let enabled = !config.keys.is_empty() || config.keys_file.is_some();
        let peers = if enabled { None } else { PeerLimiter::new(telemetry, rate_limits) };
        // The per-address series exist from the start, like every other series (at 0 while
        // no limit is set).
        for limit in limits::LIMITS {
            telemetry.counter(&engram_telemetry::catalog::RATE_LIMITED, &[limits::ANONYMOUS, limit]);
        }
        events.configured(enabled, set.len());
        Ok(Self {
            inner: Arc::new(Inner {
                enabled,
                inline: config.keys.clone(),
                keys_file: config.keys_file.clone(),
                keys: RwLock::new(Arc::new(set)),
                file_stamp: Mutex::new(stamp),
                events,
                audit,
                telemetry: Arc::clone(telemetry),
                rate_limits: rate_limits.clone(),
                peers,
            }),
        })
    }

    /// Whether API keys are required.
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Exports how many listeners are bound beyond loopback while auth is off.
    pub fn listeners_bound(&self, addrs: &[std::net::SocketAddr]) -> usize {
        let open = if self.inner.enabled { 0 } else { addrs.iter().filter(|a| !a.ip().is_loopback()).count() };
        self.inner.events.open_listeners(open);
        open
    }

    /// How many keys are in force.
    pub fn key_count(&self) -> usize {
        self.inner.keys.read().len()
    }

    /// The principal of a request on `transport` from `peer` asking for `action` (in `space`,
    /// for the audit line of a refusal), from its `headers`.
    ///
    /// # Errors
    /// 401 / `UNAUTHENTICATED` (reason `missing` or `invalid`) when auth is on, the action is
    /// not a probe, and no configured key matches; counted and audited.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        transport: Transport,
        peer: Option<SocketAddr>,
        action: Action,
        space: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let anonymous = Principal { key: None, auth: self.clone(), transport, peer };
        if !self.inner.enabled || action.need() == Need::Nothing {
            return Ok(anonymous);
        }
        let failure = match presented_key(headers) {
            None => AuthFailure::Missing,
            Some(k) => match self.inner.keys.read().find(k) {
                Some(key) => return Ok(Principal { key: Some(key), ..anonymous }),
                None => AuthFailure::Invalid,
            },
        };
        let e = ApiError::unauthenticated(
            failure.as_str(),
            match failure {
                AuthFailure::Missing => "no API key: send `Authorization: Bearer KEY` or `api-key: KEY`",
                _ => "the API key matches no configured key",
            },
        );
        anonymous.refused(failure, action, space, &e);
        Err(e)
    }

    /// Re-reads the keys file (a no-op without one): its keys and the config's are in force
    /// from now on. On failure the keys in force stay. Counted and audited either way.
    ///
    /// # Errors
    /// Why the file could not be read or used.
    pub fn reload(&self) -> Result<usize, String> {
        let Some(path) = &self.inner.keys_file else { return Ok(self.key_count()) };
        let result = read_keys_file(path).and_then(|(keys, stamp)| {
            let set = compile(&self.inner.inline, &keys, &self.inner.telemetry, &self.inner.rate_limits)?;
            *self.inner.file_stamp.lock() = stamp;
            Ok(set)
        });
        let ok = result.is_ok();
        self.inner.events.reloaded(ok);
        let outcome = match result {
            Ok(set) => {
                let n = set.len();
                *self.inner.keys.write() = Arc::new(set);
                self.inner.events.configured(true, n);
                tracing::info!(keys = n, file = %path.display(), "API keys reloaded");
                Ok(n)
            }
            Err(e) => {
                tracing::error!(file = %path.display(), "API keys not reloaded, the keys in force stay: {e}");
                Err(e)
            }
        };
        self.inner.audit.record(&Record {
            key: "-",
            peer: None,
            transport: "server",
            action: Action::ReloadKeys.as_str(),
            memory_space: None,
            outcome: if ok { "ok" } else { "error" },
            status: "",
        });
        outcome
    }

    /// Re-reads the keys file when its modification time or length changed since it was last
    /// read. Returns whether it reloaded.
    pub fn reload_if_changed(&self) -> bool {
        let Some(path) = &self.inner.keys_file else { return false };
        let now = stamp(path);
        if now == *self.inner.file_stamp.lock() {
            return false;
        }
        let _ = self.reload();
        // A failed read keeps the old stamp; remember this one so a broken file is reported
        // once per change, not every poll.
        *self.inner.file_stamp.lock() = now;
        true
    }

    /// Reloads the keys file on SIGHUP and whenever it changes, and forgets idle client
    /// addresses' rate buckets, until the task is aborted.
    pub async fn watch(self) {
        if self.inner.keys_file.is_none() && self.inner.peers.is_none() {
            return std::future::pending().await;
        }
        let (on_hangup, on_tick) = (self.clone(), self);
        crate::reload::on_hangup_and_every(
            move || {
                let _ = on_hangup.reload();
            },
            move || {
                if let Some(peers) = &on_tick.inner.peers {
                    peers.forget_idle();
                }
                on_tick.reload_if_changed();
            },
        )
        .await;
    }
}

/// Who is asking: a configured key, or nobody (auth off, or a probe).
#[derive(Clone, Debug)]
pub struct Principal {
    key: Option<Arc<Key>>,
    auth: Auth,
    transport: Transport,
    peer: Option<SocketAddr>,
}

impl Principal {
    /// The key's name (`-` without one).
    pub fn name(&self) -> &str {
        self.key.as_ref().map_or("-", |k| k.name.as_str())
    }

    /// Whether this principal may do `action` (in `space`, for the actions that name one).
    pub fn may(&self, action: Action, space: &str) -> bool {
        if !self.auth.inner.enabled {
            return true;
        }
        match (action.need(), &self.key) {
            (Need::Nothing, _) => true,
            (_, None) => false,
            (Need::AnyKey, Some(_)) => true,
            (Need::Metrics, Some(k)) => k.may_read_metrics(),
            (Need::Space(role), Some(k)) => k.role_in(space).is_some_and(|r| r >= role),
        }
    }

    /// Checks that this principal may do `action` in `space` (`""` for actions that name none).
    ///
    /// # Errors
    /// 403 / `PERMISSION_DENIED`, the same whether the space exists or not; counted and
    /// audited.
    pub fn require(&self, action: Action, space: &str) -> Result<(), ApiError> {
        if self.may(action, space) {
            return Ok(());
        }
        let e = match action.need() {
            Need::Metrics => ApiError::forbidden(format!("key `{}` lacks the `metrics` grant", self.name())),
            Need::Space(role) => ApiError::forbidden(format!(
                "key `{}` may not {} in memory space `{space}` (needs `{}`)",
                self.name(),
                action.as_str(),
                role.as_str()
            )),
            Need::Nothing | Need::AnyKey => {
                ApiError::forbidden(format!("key `{}` may not {}", self.name(), action.as_str()))
            }
        };
        self.refused(AuthFailure::Forbidden, action, (!space.is_empty()).then_some(space), &e);
        Err(e)
    }

    /// Takes one request from this principal's rate limit (its key's, or its address's while
    /// auth is off).
    ///
    /// # Errors
    /// 429 / `RESOURCE_EXHAUSTED`, reason `rate_limited`, with the wait; counted and audited.
    pub fn admit_request(&self, action: Action, space: &str) -> Result<(), ApiError> {
        let limited = match (&self.key, &self.auth.inner.peers, self.peer) {
            (Some(k), _, _) => k.limiter.as_ref().map_or(Ok(()), Limiter::request),
            (None, Some(p), Some(addr)) => p.request(addr.ip()),
            _ => Ok(()),
        };
        limited.map_err(|l| self.rate_limited(l, action, space))
    }

    /// Takes `n` observations from this principal's rate limit.
    ///
    /// # Errors
    /// 429 / `RESOURCE_EXHAUSTED`, reason `rate_limited`, with the wait; or, for a batch larger
    /// than the whole bucket (it could never pass), invalid argument on `observations`.
    pub fn admit_observations(&self, n: usize, space: &str) -> Result<(), ApiError> {
        let limited = match (&self.key, &self.auth.inner.peers, self.peer) {
            (Some(k), _, _) => k.limiter.as_ref().map_or(Ok(()), |l| l.observations(n)),
            (None, Some(p), Some(addr)) => p.observations(addr.ip(), n),
            _ => Ok(()),
        };
        limited.map_err(|l| self.rate_limited(l, Action::WriteObservations, space))
    }

    fn rate_limited(&self, l: Limited, action: Action, space: &str) -> ApiError {
        let who = match &self.key {
            Some(k) => format!("key `{}`", k.name),
            None => "this client address".to_owned(),
        };
        let e = if l.over_burst {
            ApiError::invalid(
                "observations",
                format!(
                    "more observations than {who} may send at once ({} per second × rate_limits.burst_seconds); send smaller batches",
                    l.per_second
                ),
            )
        } else {
            ApiError::rate_limited(&who, l.limit, l.per_second, l.retry_after)
        };
        self.write(action, (!space.is_empty()).then_some(space), "rate_limited", &self.status_of(&e));
        e
    }

    /// Writes the audit line of admin action `action` on `space`, answered with `result`.
    pub fn audit<T>(&self, action: Action, space: &str, result: &Result<T, ApiError>) {
        let (outcome, status) = match result {
            Ok(_) => ("ok", if self.transport == Transport::Http { "200" } else { "OK" }.to_owned()),
            Err(e) => (e.reason.unwrap_or(code_name(e.code)), self.status_of(e)),
        };
        self.write(action, Some(space), outcome, &status);
    }

    /// Writes the audit line of admin action `action` on `space` answered with HTTP `status`.
    pub fn audit_http(&self, action: Action, space: &str, status: axum::http::StatusCode) {
        let outcome = if status.is_success() { "ok" } else { status.canonical_reason().unwrap_or("error") };
        self.write(action, Some(space), outcome, status.as_str());
    }

    fn status_of(&self, e: &ApiError) -> String {
        match self.transport {
            Transport::Http => e.status.as_str().to_owned(),
            Transport::Grpc => code_name(e.code).to_owned(),
        }
    }

    fn refused(&self, failure: AuthFailure, action: Action, space: Option<&str>, e: &ApiError) {
        self.auth.inner.events.failed(self.transport, failure);
        self.write(action, space, failure.as_str(), &self.status_of(e));
    }

    fn write(&self, action: Action, space: Option<&str>, outcome: &str, status: &str) {
        self.auth.inner.audit.record(&Record {
            key: self.name(),
            peer: self.peer,
            transport: self.transport.as_str(),
            action: action.as_str(),
            memory_space: space,
            outcome,
            status,
        });
    }
}

/// The key a request presents: `Authorization: Bearer KEY` (scheme case-insensitive, RFC 6750
/// §2.1), else `api-key: KEY`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, key) = v.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| key.trim()).filter(|k| !k.is_empty());
    }
    headers.get("api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty())
}

/// The config's keys and the file's, compiled together (names and keys unique across both).
fn compile(
    inline: &[KeyConfig],
    file: &[KeyConfig],
    telemetry: &Telemetry,
    rate_limits: &RateLimitConfig,
) -> Result<KeySet, String> {
    KeySet::compile(
        inline
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("auth.keys[{i}]"), k))
            .chain(file.iter().enumerate().map(|(i, k)| (format!("auth.keys_file: keys[{i}]"), k))),
        // Every key gets its series (at 0 when it has no limit).
        |c| Some(Limiter::new(telemetry, &c.name, rate_limits, c.requests_per_second, c.observations_per_second)),
    )
}

/// The keys in `path` and the file's stamp.
fn read_keys_file(path: &Path) -> Result<(Vec<KeyConfig>, Stamp), String> {
    let stamp = stamp(path);
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("auth.keys_file: cannot read {}: {e}", path.display()))?;
    use figment::providers::Format;
    let file: KeysFile = figment::Figment::from(figment::providers::Toml::string(&text))
        .extract()
        .map_err(|e| format!("auth.keys_file {}: {e}", path.display()))?;
    Ok((file.keys, stamp))
}

fn path_str(p: Option<&Path>) -> String {
    p.map_or_else(String::new, |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_telemetry::TelemetryConfig;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_key_comes_from_bearer_or_api_key() {
        assert_eq!(presented_key(&headers(&[("authorization", "Bearer abc")])), Some("abc"));
        assert_eq!(presented_key(&headers(&[("authorization", "bearer  abc ")])), Some("abc"));
        assert_eq!(presented_key(&headers(&[("api-key", "xyz")])), Some("xyz"));
        assert_eq!(presented_key(&headers(&[("authorization", "Basic abc")])), None);
        assert_eq!(presented_key(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(presented_key(&headers(&[])), None);
    }

    #[test]
    fn off_without_keys_on_with_a_keys_file_even_empty() {
        let t = engram_telemetry::Telemetry::new(TelemetryConfig::default());
        let off = Auth::new(&AuthConfig::default(), &RateLimitConfig::default(), &t).unwrap();
        assert!(!off.is_enabled());
        let p = off.authenticate(&HeaderMap::new(), Transport::Http, None, Action::DropSpace, Some("x")).unwrap();
        assert!(p.may(Action::DropSpace, "x") && p.may(Action::ReadMetrics, ""));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.toml");
        std::fs::write(&file, "").unwrap();
        let on = Auth::new(
            &AuthConfig { keys_file: Some(file.clone()), ..Default::default() },
            &RateLimitConfig::default(),
            &t,
        )
        .unwrap();
        assert!(on.is_enabled());
        assert_eq!(on.key_count(), 0);
        let e = on.authenticate(&HeaderMap::new(), Transport::Grpc, None, Action::Recall, Some("x")).unwrap_err();
        assert_eq!((e.code, e.reason), (tonic::Code::Unauthenticated, Some("missing")));
        assert!(on.authenticate(&HeaderMap::new(), Transport::Http, None, Action::Probe, None).is_ok());

        // A key added to the file works once it is re-read; a broken file keeps it.
        let key = keys::new_key().unwrap();
        std::fs::write(
            &file,
            format!(
                "[[keys]]\nname = \"r\"\nsha256 = \"{}\"\ngrants = [\"docs=read\"]\n",
                hex::encode(keys::sha256(&key))
            ),
        )
        .unwrap();
        assert!(on.reload_if_changed());
        let h = headers(&[("api-key", &key)]);
        let p = on.authenticate(&h, Transport::Http, None, Action::Recall, Some("docs")).unwrap();
        assert_eq!(p.name(), "r");
        assert!(p.require(Action::Recall, "docs").is_ok());
        let e = p.require(Action::WriteObservations, "docs").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (403, tonic::Code::PermissionDenied));
        assert!(p.require(Action::Recall, "secret").is_err());
        assert!(p.require(Action::ReadMetrics, "").is_err());
        std::fs::write(&file, "[[keys]]\nname = 3\n").unwrap();
        assert!(on.reload().is_err());
        assert!(on.authenticate(&h, Transport::Http, None, Action::Recall, Some("docs")).is_ok());
    }

    /// Two threads authenticate as fast as they can while a third rewrites the keys file
    /// between two versions and reloads it (500 times, and on until each reader has seen both
    /// versions): the key in both versions is always found, under its one name; the key in one
    /// version is either found or refused as `invalid`, never anything else.
    #[test]
    fn requests_authenticate_while_the_keys_file_is_reloaded() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let t = engram_telemetry::Telemetry::new(TelemetryConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.toml");
        let (stay, come) = (keys::new_key().unwrap(), keys::new_key().unwrap());
        let entry = |name: &str, key: &str| {
            format!(
                "[[keys]]\nname = \"{name}\"\nsha256 = \"{}\"\ngrants = [\"docs=read\"]\n",
                hex::encode(keys::sha256(key))
            )
        };
        let (one, two) = (entry("stay", &stay), entry("stay", &stay) + &entry("come", &come));
        std::fs::write(&file, &one).unwrap();
        let config = AuthConfig { keys_file: Some(file.clone()), ..Default::default() };
        let auth = Auth::new(&config, &RateLimitConfig::default(), &t).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // found / refused per reader: [stay found, stay refused, come found, come refused].
        let seen: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
        let readers: Vec<_> = [stay.clone(), come.clone()]
            .into_iter()
            .enumerate()
            .map(|(r, key)| {
                let (auth, stop, seen) = (auth.clone(), Arc::clone(&stop), Arc::clone(&seen));
                std::thread::spawn(move || {
                    let h = headers(&[("api-key", &key)]);
                    while !stop.load(Ordering::Acquire) {
                        match auth.authenticate(&h, Transport::Grpc, None, Action::Recall, Some("docs")) {
                            Ok(p) => {
                                assert_eq!(p.name(), ["stay", "come"][r]);
                                assert!(p.may(Action::Recall, "docs"));
                                seen[2 * r].fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                assert_eq!(e.reason, Some("invalid"), "{e:?}");
                                seen[2 * r + 1].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        let both_seen = || {
            seen[0].load(Ordering::Relaxed) > 0
                && seen[2].load(Ordering::Relaxed) > 0
                && seen[3].load(Ordering::Relaxed) > 0
        };
        let mut reloads = 0;
        while reloads < 500 || (!both_seen() && reloads < 100_000) {
            std::fs::write(&file, if reloads % 2 == 0 { &two } else { &one }).unwrap();
            assert!(auth.reload().is_ok());
            reloads += 1;
        }
        stop.store(true, Ordering::Release);
        for r in readers {
            r.join().unwrap();
        }
        std::fs::write(&file, &one).unwrap();
        assert!(auth.reload().is_ok());
        let counts: Vec<u64> = seen.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(counts[1], 0, "the key in both versions was refused: {counts:?}");
        assert!(both_seen(), "after {reloads} reloads: {counts:?}");
        assert_eq!(auth.key_count(), 1, "the version with one key is in force");
    }
}
