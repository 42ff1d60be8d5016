//! TLS on both listeners, against certificates made at run time (rcgen): curl, reqwest and a
//! tonic client that trust the CA get through, curl without it does not; plaintext to a TLS
//! port fails cleanly (the server keeps serving and counts it); an expired or wrong-host
//! certificate is refused by clients; a renewed certificate is served without a restart (and a
//! broken one is not); with a client CA (mTLS) a client without a certificate is refused.

mod common;

use common::{Running, config, sample};
use engram_server::proto::{self, engram_client::EngramClient};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `hosts` signed by `ca`, valid until January 1st of `until`; returns the
/// certificate and key as PEM.
fn leaf(ca: &Ca, hosts: &[&str], until: i32, purpose: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut p = CertificateParams::new(hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, hosts.first().copied().unwrap_or("client"));
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(until, 1, 1);
    p.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Unix seconds of January 1st of `year` (what `leaf` puts in notAfter).
fn jan1(year: i32) -> f64 {
    date_time_ymd(year, 1, 1).unix_timestamp() as f64
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A server on loopback serving `cert` (PEM pair) on both listeners, optionally requiring
/// client certificates signed by `client_ca`.
async fn start(files: &Files, cert: &(String, String), client_ca: Option<&str>) -> Running {
    let mut c = config(1);
    c.tls.cert_file = Some(files.write("server.crt", &cert.0));
    c.tls.key_file = Some(files.write("server.key", &cert.1));
    c.tls.client_ca_file = client_ca.map(|pem| files.write("clients-ca.crt", pem));
    Running::start(c).await
}

/// curl's exit code for `url` (0: a 2xx answer; 60: the server's certificate was refused) and
/// what it printed (`-w`).
async fn curl_out(url: String, args: Vec<String>) -> (i32, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sS", "-f", "-o", "/dev/null", "--max-time", "10"])
            .args(&args)
            .arg(&url)
            .output()
            .expect("curl is installed (.ci/run installs it)");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await
    .unwrap()
}

async fn curl(url: String, args: Vec<String>) -> i32 {
    curl_out(url, args).await.0
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

async fn grpc_tls(addr: std::net::SocketAddr, ca_pem: &str, domain: &str) -> anyhow::Result<Vec<String>> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name(domain);
    let channel = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let spaces = EngramClient::new(channel).list_spaces(proto::ListSpacesRequest {}).await?.into_inner();
    Ok(spaces.spaces.into_iter().map(|s| s.memory_space).collect())
}

/// `series` from the server's `/metrics` (over TLS, trusting `ca_pem`) once it reaches `at_least`,
/// or its last value after 5 s.
async fn metric_reaching(s: &Running, ca_pem: &str, series: &str, at_least: f64) -> f64 {
    metric_reaching_with(&https_client(ca_pem), s, series, at_least).await
}

/// [`metric_reaching`] with `client`.
async fn metric_reaching_with(client: &reqwest::Client, s: &Running, series: &str, at_least: f64) -> f64 {
    let mut last = 0.0;
    for _ in 0..100 {
        let text = client.get(format!("https://{}/metrics", s.http)).send().await.unwrap().text().await.unwrap();
        last = sample(&text, series).unwrap_or_else(|| panic!("{series} missing"));
        if last >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_serve_tls_to_clients_that_trust_the_ca() {
    let files = Files::new();
    let ca = ca("engram test CA");
    let ca_pem = ca.pem();
    let ca_file = files.write("ca.crt", &ca_pem);
    let server =
        start(&files, &leaf(&ca, &["localhost", "127.0.0.1"], 2090, ExtendedKeyUsagePurpose::ServerAuth), None).await;
    let ready = format!("https://{}/health/ready", server.http);

    // curl: with the CA it gets through, without it refuses the certificate (exit 60).
    assert_eq!(curl(ready.clone(), vec!["--cacert".into(), ca_file.display().to_string()]).await, 0);
    assert_eq!(curl(ready.clone(), vec![]).await, 60);
    // HTTP/2 through ALPN (curl offers h2 and http/1.1), HTTP/1.1 from reqwest (rustls).
    let ca_arg = ca_file.display().to_string();
    let h2 =
        curl_out(ready.clone(), vec!["--cacert".into(), ca_arg.clone(), "-w".into(), "%{http_version}".into()]).await;
    assert_eq!(h2, (0, "2".to_owned()));
    let client = https_client(&ca_pem);
    let r = client.get(&ready).send().await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let r = client
        .put(format!("https://{}/v1/spaces/tls", server.http))
        .json(&serde_json::json!({"dim": 3}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    // tonic with the CA, by host name.
    assert_eq!(grpc_tls(server.grpc, &ca_pem, "localhost").await.unwrap(), vec!["tls".to_owned()]);

    // Plaintext to either TLS port fails for the client, and the server counts it and serves on.
    assert!(reqwest::get(format!("http://{}/health/ready", server.http)).await.is_err());
    let plain = async {
        let mut c = EngramClient::connect(format!("http://{}", server.grpc)).await?;
        c.list_spaces(proto::ListSpacesRequest {}).await?;
        anyhow::Ok(())
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), plain).await.expect("plaintext gRPC fails, not hangs").is_err()
    );
    for listener in ["http", "grpc"] {
        let series = format!("engram_tls_handshake_failures_total{{protocol=\"{listener}\",reason=\"protocol\"}}");
        assert!(metric_reaching(&server, &ca_pem, &series, 1.0).await >= 1.0, "{series}");
    }
    assert_eq!(metric_reaching(&server, &ca_pem, "engram_tls_enabled", 1.0).await, 1.0);
    assert_eq!(
        metric_reaching(&server, &ca_pem, "engram_tls_certificate_expiry_timestamp_seconds", 0.0).await,
        jan1(2090)
    );
    assert_eq!(curl(ready, vec!["--cacert".into(), ca_file.display().to_string()]).await, 0);
    assert_eq!(grpc_tls(server.grpc, &ca_pem, "localhost").await.unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_wrong_host_certificates_are_refused() {
    let ca = ca("engram test CA");
    let ca_pem = ca.pem();
    for (what, cert) in [
        ("expired", leaf(&ca, &["localhost", "127.0.0.1"], 2021, ExtendedKeyUsagePurpose::ServerAuth)),
        ("wrong host", leaf(&ca, &["wrong.example"], 2090, ExtendedKeyUsagePurpose::ServerAuth)),
    ] {
        let files = Files::new();
        let ca_file = files.write("ca.crt", &ca_pem);
        let server = start(&files, &cert, None).await;
        let ready = format!("https://{}/health/ready", server.http);
        assert_eq!(
            curl(ready.clone(), vec!["--cacert".into(), ca_file.display().to_string()]).await,
            60,
            "curl, {what}"
        );
        assert!(https_client(&ca_pem).get(&ready).send().await.is_err(), "reqwest, {what}");
        assert!(grpc_tls(server.grpc, &ca_pem, "localhost").await.is_err(), "tonic, {what}");
        // The clients' certificate alerts, counted on both listeners (read without TLS
        // verification: the certificate is the one being refused).
        let insecure = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        for listener in ["http", "grpc"] {
            let series =
                format!("engram_tls_handshake_failures_total{{protocol=\"{listener}\",reason=\"certificate\"}}");
            let n = metric_reaching_with(&insecure, &server, &series, 1.0).await;
            assert!(n >= 1.0, "{what}: {series} = {n}");
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let files = Files::new();
    let (old_ca, new_ca) = (ca("old CA"), ca("new CA"));
    let server =
        start(&files, &leaf(&old_ca, &["localhost", "127.0.0.1"], 2090, ExtendedKeyUsagePurpose::ServerAuth), None)
            .await;
    assert!(grpc_tls(server.grpc, &old_ca.pem(), "localhost").await.is_ok());

    // A broken renewal (a key that is not the certificate's) is refused; the old one stays.
    let renewed = leaf(&new_ca, &["localhost", "127.0.0.1"], 2091, ExtendedKeyUsagePurpose::ServerAuth);
    let stray_key = leaf(&new_ca, &["localhost"], 2091, ExtendedKeyUsagePurpose::ServerAuth).1;
    files.write("server.key", &stray_key);
    files.write("server.crt", &renewed.0);
    let errors = r#"engram_tls_certificate_reloads_total{outcome="error"}"#;
    assert!(metric_reaching(&server, &old_ca.pem(), errors, 1.0).await >= 1.0);
    assert!(grpc_tls(server.grpc, &old_ca.pem(), "localhost").await.is_ok());

    // The matching key: the next handshakes get the new certificate, on both listeners.
    files.write("server.key", &renewed.1);
    let ok = r#"engram_tls_certificate_reloads_total{outcome="ok"}"#;
    let mut served = false;
    for _ in 0..100 {
        if grpc_tls(server.grpc, &new_ca.pem(), "localhost").await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the renewed certificate was not served within 10 s");
    assert!(https_client(&new_ca.pem()).get(format!("https://{}/health/ready", server.http)).send().await.is_ok());
    assert!(https_client(&old_ca.pem()).get(format!("https://{}/health/ready", server.http)).send().await.is_err());
    assert_eq!(metric_reaching(&server, &new_ca.pem(), ok, 1.0).await, 1.0);
    assert_eq!(
        metric_reaching(&server, &new_ca.pem(), "engram_tls_certificate_expiry_timestamp_seconds", 0.0).await,
        jan1(2091)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_with_a_signed_certificate_get_through() {
    let files = Files::new();
    let (server_ca, client_ca, other_ca) = (ca("server CA"), ca("client CA"), ca("other CA"));
    let server_pem = server_ca.pem();
    let server = start(
        &files,
        &leaf(&server_ca, &["localhost", "127.0.0.1"], 2090, ExtendedKeyUsagePurpose::ServerAuth),
        Some(&client_ca.pem()),
    )
    .await;
    let ready = format!("https://{}/health/ready", server.http);
    let with_identity = |ca: &Ca| {
        let (cert, key) = leaf(ca, &["client-1"], 2090, ExtendedKeyUsagePurpose::ClientAuth);
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(server_pem.as_bytes()).unwrap())
            .identity(reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).unwrap())
            .build()
            .unwrap()
    };
    let trusted = with_identity(&client_ca);
    assert!(trusted.get(&ready).send().await.unwrap().status().is_success());
    assert!(https_client(&server_pem).get(&ready).send().await.is_err(), "no client certificate");
    assert!(with_identity(&other_ca).get(&ready).send().await.is_err(), "a certificate of another CA");
    // The client can see the refusal before the server has counted it: poll.
    let series = r#"engram_tls_handshake_failures_total{protocol="http",reason="certificate"}"#;
    let refused = metric_reaching_with(&trusted, &server, series, 2.0).await;
    assert!(refused >= 2.0, "{refused}");
    server.stop().await;
}

/// A TLS config whose files are missing or do not belong together stops the server at start,
/// naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_stop_the_server_at_start_naming_the_key() {
    let files = Files::new();
    let ca = ca("CA");
    let a = leaf(&ca, &["localhost"], 2090, ExtendedKeyUsagePurpose::ServerAuth);
    let b = leaf(&ca, &["localhost"], 2090, ExtendedKeyUsagePurpose::ServerAuth);
    let cases: [(&str, PathBuf, PathBuf); 3] = [
        ("tls.cert_file", files.path("missing.crt"), files.write("a.key", &a.1)),
        ("tls.key_file", files.write("a.crt", &a.0), files.write("b.key", &b.1)),
        ("tls.cert_file", files.write("garbage.crt", "not a certificate"), files.path("a.key")),
    ];
    for (key, cert, private) in cases {
        let mut c = config(1);
        c.http_addr = "127.0.0.1:0".parse().unwrap();
        c.grpc_addr = "127.0.0.1:0".parse().unwrap();
        c.tls.cert_file = Some(cert);
        c.tls.key_file = Some(private);
        let e = match engram_server::Server::bind(c).await {
            Ok(_) => panic!("bound with {key} wrong"),
            Err(e) => format!("{e:#}"),
        };
        assert!(e.contains(key), "{e}");
    }
}

/// Connections that never start their handshake do not hold up anyone else's, and are closed
/// after `handshake_timeout_secs` (counted as `timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_neither_block_handshakes_nor_stay_open() {
    let files = Files::new();
    let ca = ca("engram test CA");
    let ca_pem = ca.pem();
    let pair = leaf(&ca, &["localhost", "127.0.0.1"], 2090, ExtendedKeyUsagePurpose::ServerAuth);
    let mut c = config(1);
    c.tls.cert_file = Some(files.write("server.crt", &pair.0));
    c.tls.key_file = Some(files.write("server.key", &pair.1));
    c.tls.handshake_timeout_secs = 1;
    let server = Running::start(c).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(tokio::net::TcpStream::connect(server.grpc).await.unwrap());
        silent.push(tokio::net::TcpStream::connect(server.http).await.unwrap());
    }
    // Well inside the handshake timeout, others are served on both listeners.
    let t0 = std::time::Instant::now();
    assert_eq!(grpc_tls(server.grpc, &ca_pem, "localhost").await.unwrap().len(), 0);
    assert!(
        https_client(&ca_pem)
            .get(format!("https://{}/health/ready", server.http))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert!(t0.elapsed() < Duration::from_millis(900), "served after {:?}", t0.elapsed());
    // Then the silent ones are closed by the server: each read ends (EOF or reset).
    for mut s in silent {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed by the server");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    for listener in ["http", "grpc"] {
        let series = format!("engram_tls_handshake_failures_total{{protocol=\"{listener}\",reason=\"timeout\"}}");
        assert_eq!(metric_reaching(&server, &ca_pem, &series, 20.0).await, 20.0, "{series}");
    }
    server.stop().await;
}
