//! TLS on both listeners: rustls (with ring as its crypto provider) through `tokio-rustls`,
//! the certificate reloaded from its files without a restart, optional client certificates
//! (mTLS) (docs/security.md).
//!
//! `[tls] cert_file` and `key_file` (PEM) turn TLS on for the HTTP and the gRPC listener
//! together; `client_ca_file` makes both require a client certificate signed by one of its CAs.
//! Handshakes run in each connection's own task (HTTP) or concurrently off the accept stream
//! (gRPC), never in the accept loop, each bounded by `handshake_timeout_secs`: a client that
//! opens a connection and sends nothing holds one connection slot, not the listener.
//!
//! The served certificate is looked up per handshake ([`rustls::server::ResolvesServerCert`]),
//! so a renewal (new files, detected by modification time and size every 2 s, or on SIGHUP)
//! applies to the next handshake; files that cannot be read, parsed or do not match keep the
//! certificate in force and are counted (`engram_tls_certificate_reloads_total{outcome="error"}`).
//! ALPN offers `h2` and `http/1.1` on the HTTP listener and `h2` on the gRPC one.
//!
//! tonic's own TLS (`ServerTlsConfig`) takes a fixed identity, so the gRPC listener uses the
//! same acceptor as HTTP and hands tonic the decrypted streams (`serve_with_incoming`); tonic's
//! rustls feature (`tls-ring`) is what the `load` client and the tests use.

use crate::listen::IdleIo;
use crate::reload::{Stamp, stamp};
use engram_telemetry::Telemetry;
use engram_telemetry::events::tls::{HandshakeFailure, TlsEvents};
use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// `[tls]`: the certificate both listeners serve, and optional client-certificate checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server's certificate chain, leaf first. Set with `key_file`, both
    /// listeners serve TLS only.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM file of CA certificates: set, every client must present a certificate signed by one
    /// of them (mTLS). Read at start.
    pub client_ca_file: Option<PathBuf>,
    /// Seconds a client has to finish the TLS handshake before its connection is closed.
    pub handshake_timeout_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self { cert_file: None, key_file: None, client_ca_file: None, handshake_timeout_secs: 10 }
    }
}

impl TlsConfig {
    /// Checks that the keys come together.
    ///
    /// # Errors
    /// The key that is missing or wrong, and why.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return Err("tls.key_file: must be set with tls.cert_file".into()),
            (None, Some(_)) => return Err("tls.cert_file: must be set with tls.key_file".into()),
            _ => {}
        }
        if self.client_ca_file.is_some() && self.cert_file.is_none() {
            return Err("tls.client_ca_file: needs tls.cert_file and tls.key_file (mTLS is part of TLS)".into());
        }
        if self.handshake_timeout_secs == 0 {
            return Err("tls.handshake_timeout_secs: must be at least 1".into());
        }
        Ok(())
    }
}

/// The certificate handed to each handshake; replaced whole on reload.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read()))
    }
}

/// TLS for both listeners (cheap to clone; one per server).
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    resolver: Arc<Resolver>,
    /// Indexed by listener (`listen::HTTP`, `listen::GRPC`): they differ in ALPN only.
    acceptors: [TlsAcceptor; 2],
    handshake_timeout: Duration,
    stamps: Mutex<(Stamp, Stamp)>,
    events: TlsEvents,
}

impl Tls {
    /// TLS from `config`, or `None` when it is off. Registers the TLS series either way (the
    /// enabled and expiry gauges read 0 while off).
    ///
    /// # Errors
    /// A file that cannot be read or parsed, a key that does not match the certificate, or a
    /// client CA file without a usable certificate, named by its config key.
    pub fn new(config: &TlsConfig, telemetry: &Telemetry) -> Result<Option<Self>, String> {
        let events = TlsEvents::register(telemetry);
        let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
            return Ok(None);
        };
        config.validate()?;
        // ring, not rustls' default aws-lc-rs: the clients here (tonic's `tls-ring`, reqwest)
        // use it, and aws-lc-rs is a second, long C build. rustls 0.23.48 deprecates ring's
        // provider because it has no post-quantum key exchange (X25519MLKEM768); said in
        // docs/security.md.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamps = (stamp(cert_file), stamp(key_file));
        let (certified, not_after) = load(cert_file, key_file, &provider)?;
        warn_if_expired(cert_file, not_after);
        events.certificate(not_after);
        let resolver = Arc::new(Resolver { current: RwLock::new(certified) });
        let verifier = match &config.client_ca_file {
            None => None,
            Some(ca) => Some(client_verifier(ca, &provider)?),
        };
        let acceptor = |alpn: &[&[u8]]| -> Result<TlsAcceptor, String> {
            let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("tls: {e}"))?;
            let builder = match &verifier {
                Some(v) => builder.with_client_cert_verifier(Arc::clone(v)),
                None => builder.with_no_client_auth(),
            };
            let mut server = builder.with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
            server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsAcceptor::from(Arc::new(server)))
        };
        let acceptors = [acceptor(&[b"h2", b"http/1.1"])?, acceptor(&[b"h2"])?];
        Ok(Some(Self {
            inner: Arc::new(Inner {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                provider,
                resolver,
                acceptors,
                handshake_timeout: Duration::from_secs(config.handshake_timeout_secs),
                stamps: Mutex::new(stamps),
                events,
            }),
        }))
    }

    /// Runs the TLS handshake on an accepted connection of listener `protocol`
    /// (`listen::HTTP` or `listen::GRPC`), within `handshake_timeout_secs`. A failed handshake
    /// is counted by reason and logged at debug level; the connection is dropped (closed).
    pub async fn accept(&self, io: IdleIo<TcpStream>, protocol: usize) -> Option<TlsStream<IdleIo<TcpStream>>> {
        let peer = io.peer_addr();
        let handshake = self.inner.acceptors[protocol].accept(io);
        let reason = match tokio::time::timeout(self.inner.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(e)) => {
                let reason = classify(&e);
                tracing::debug!(?peer, protocol, reason = reason.as_str(), "TLS handshake failed: {e}");
                reason
            }
            Err(_) => {
                tracing::debug!(?peer, protocol, "TLS handshake timed out");
                HandshakeFailure::Timeout
            }
        };
        self.inner.events.handshake_failed(protocol, reason);
        None
    }

    /// Re-reads the certificate and key files; on success the next handshakes get the new
    /// certificate, on failure the one in force stays (logged and counted).
    ///
    /// # Errors
    /// Why the files could not be used, naming the config key.
    pub fn reload(&self) -> Result<(), String> {
        let inner = &self.inner;
        match load(&inner.cert_file, &inner.key_file, &inner.provider) {
            Ok((certified, not_after)) => {
                *inner.resolver.current.write() = certified;
                inner.events.certificate(not_after);
                inner.events.reloaded(true);
                warn_if_expired(&inner.cert_file, not_after);
                tracing::info!(cert_file = %inner.cert_file.display(), not_after, "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                inner.events.reloaded(false);
                tracing::error!("TLS certificate not reloaded, the one in force stays: {e}");
                Err(e)
            }
        }
    }

    /// Re-reads the files when either's modification time or length changed since the last
    /// look. Returns whether it tried.
    pub fn reload_if_changed(&self) -> bool {
        let now = (stamp(&self.inner.cert_file), stamp(&self.inner.key_file));
        if now == *self.inner.stamps.lock() {
            return false;
        }
        // Remembered whatever the outcome: a broken file is reported once per change.
        *self.inner.stamps.lock() = now;
        let _ = self.reload();
        true
    }

    /// Reloads the certificate on SIGHUP and whenever its files change, until aborted.
    pub async fn watch(self) {
        let (on_hangup, on_tick) = (self.clone(), self);
        crate::reload::on_hangup_and_every(
            move || {
                let _ = on_hangup.reload();
            },
            move || {
                on_tick.reload_if_changed();
            },
        )
        .await;
    }
}

/// Reads a certificate chain and its key, checks they belong together, and returns them with
/// the leaf's notAfter (Unix seconds).
fn load(cert_file: &Path, key_file: &Path, provider: &CryptoProvider) -> Result<(Arc<CertifiedKey>, i64), String> {
    let cert_err = |e: &dyn std::fmt::Display| format!("tls.cert_file: {}: {e}", cert_file.display());
    let key_err = |e: &dyn std::fmt::Display| format!("tls.key_file: {}: {e}", key_file.display());
    let chain = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| cert_err(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(&e))?;
    let Some(leaf) = chain.first() else {
        return Err(cert_err(&"no PEM CERTIFICATE block in the file"));
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| cert_err(&format_args!("the first certificate does not parse: {e}")))?
        .1
        .validity()
        .not_after
        .timestamp();
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| key_err(&e))?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| key_err(&e))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(key_err(&format_args!("does not belong to the certificate in tls.cert_file: {e}"))),
    }
    Ok((Arc::new(certified), not_after))
}

/// The verifier of client certificates signed by a CA in `ca_file`.
fn client_verifier(
    ca_file: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let err = |e: &dyn std::fmt::Display| format!("tls.client_ca_file: {}: {e}", ca_file.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| err(&e))? {
        roots.add(cert.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
    }
    if roots.is_empty() {
        return Err(err(&"no PEM CERTIFICATE block in the file"));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider)).build().map_err(|e| err(&e))
}

fn warn_if_expired(cert_file: &Path, not_after: i64) {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if not_after <= now {
        tracing::warn!(cert_file = %cert_file.display(), not_after, "the TLS certificate has expired: clients will refuse it");
    }
}

/// Why a handshake failed, from the error `tokio-rustls` returns (rustls errors come wrapped
/// in `InvalidData`).
fn classify(e: &io::Error) -> HandshakeFailure {
    use rustls::AlertDescription as A;
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => {
            HandshakeFailure::Certificate
        }
        Some(rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired,
        )) => HandshakeFailure::Certificate,
        Some(_) => HandshakeFailure::Protocol,
        None if e.kind() == io::ErrorKind::InvalidData => HandshakeFailure::Protocol,
        None => HandshakeFailure::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_come_together() {
        let mut c = TlsConfig { cert_file: Some("c.pem".into()), ..TlsConfig::default() };
        assert_eq!(c.validate().unwrap_err(), "tls.key_file: must be set with tls.cert_file");
        c = TlsConfig { key_file: Some("k.pem".into()), ..TlsConfig::default() };
        assert_eq!(c.validate().unwrap_err(), "tls.cert_file: must be set with tls.key_file");
        c = TlsConfig { client_ca_file: Some("ca.pem".into()), ..TlsConfig::default() };
        assert!(c.validate().unwrap_err().starts_with("tls.client_ca_file:"));
        assert!(TlsConfig::default().validate().is_ok());
    }

    #[test]
    fn errors_are_classified_by_what_failed() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        assert_eq!(classify(&wrap(rustls::Error::NoCertificatesPresented)), HandshakeFailure::Certificate);
        assert_eq!(
            classify(&wrap(rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA))),
            HandshakeFailure::Certificate
        );
        assert_eq!(
            classify(&wrap(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType))),
            HandshakeFailure::Protocol
        );
        assert_eq!(classify(&io::Error::from(io::ErrorKind::UnexpectedEof)), HandshakeFailure::Closed);
    }

    /// A self-signed certificate for `host` and its key, as PEM.
    fn self_signed(host: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn handshakes_read_the_certificate_while_reloads_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let pairs = [self_signed("a.example"), self_signed("b.example")];
        std::fs::write(&cert, &pairs[0].0).unwrap();
        std::fs::write(&key, &pairs[0].1).unwrap();
        let config = TlsConfig { cert_file: Some(cert.clone()), key_file: Some(key.clone()), ..TlsConfig::default() };
        let telemetry = Telemetry::new(engram_telemetry::TelemetryConfig { max_space_labels: 10 });
        let tls = Tls::new(&config, &telemetry).unwrap().unwrap();
        let ders: Vec<Vec<u8>> = pairs
            .iter()
            .map(|(c, _)| CertificateDer::from_pem_slice(c.as_bytes()).unwrap().as_ref().to_vec())
            .collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // What a handshake does: take the certificate in force (ResolvesServerCert::resolve).
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut reads = 0u64;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            let current = Arc::clone(&tls.inner.resolver.current.read());
                            let leaf = current.cert[0].as_ref();
                            assert!(ders.iter().any(|d| d == leaf), "a certificate that was never configured");
                            assert!(current.keys_match().is_ok(), "a key from another reload");
                            reads += 1;
                        }
                        reads
                    })
                })
                .collect();
            for round in 0..300 {
                let (c, k) = &pairs[(round + 1) % 2];
                std::fs::write(&cert, c).unwrap();
                std::fs::write(&key, k).unwrap();
                tls.reload().unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for r in readers {
                assert!(r.join().unwrap() > 300, "the readers ran alongside the reloads");
            }
        });
    }
}
