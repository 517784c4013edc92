//! TLS on the listener, with certificates made here: a TLS client is served and a plaintext
//! one refused; SIGHUP replaces the certificate while a stream opened before goes on; with
//! a client CA, only clients presenting a certificate it signed are served; and a server
//! listening in plaintext beyond loopback says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use coachfit::proto::v1 as pb;
use pb::stream_entries_response::Kind;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::common::{serve_child_with, Bearer, ChildServer};

const ADMIN_TOKEN: &str = "tls-test-admin-token-0123456789";

/// A certificate authority made for the test.
struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Authority { cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A certificate for `names`, and its key, as PEM.
    fn sign(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|name| name.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes a server certificate `authority` signed for localhost into `dir`.
fn write_server_certificate(dir: &Path, authority: &Authority) -> (PathBuf, PathBuf) {
    let (cert, key) = authority.sign(&["localhost", "127.0.0.1"]);
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert_path, key_path)
}

/// `coachfit serve` on a new SQLite file in `dir`, with `args`.
fn serve(dir: &Path, listen: &str, args: &[&str]) -> ChildServer {
    let db_url = format!("sqlite://{}", dir.join("tls.db").display());
    let args = [&["--listen", listen, "--heartbeat-secs", "1"][..], args].concat();
    serve_child_with(&db_url, &args, &[("COACHFIT_ADMIN_TOKEN", ADMIN_TOKEN)])
}

fn serve_tls(dir: &Path, authority: &Authority, args: &[&str]) -> ChildServer {
    let (cert, key) = write_server_certificate(dir, authority);
    let files = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    serve(dir, "127.0.0.1:0", &[&files[..], args].concat())
}

/// A TLS channel to `server` trusting `ca`, presenting `identity` if given.
async fn tls_channel(
    server: &ChildServer,
    ca: &str,
    identity: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(server.uri().replace("http://", "https://")).unwrap().tls_config(tls)?.connect().await
}

/// Whether a health check over a new TLS connection (trusting `ca`) is answered.
async fn served(server: &ChildServer, ca: &str, identity: Option<&(String, String)>) -> bool {
    let Ok(channel) = tls_channel(server, ca, identity).await else { return false };
    let mut health = HealthClient::new(channel);
    let check = health.check(HealthCheckRequest { service: String::new() });
    tokio::time::timeout(Duration::from_secs(10), check).await.is_ok_and(|answer| answer.is_ok())
}

#[tokio::test]
async fn a_tls_client_is_served_and_a_plaintext_client_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new("Test CA");
    let server = serve_tls(dir.path(), &authority, &[]);
    assert!(served(&server, &authority.cert_pem, None).await, "a client trusting the CA is served");
    assert!(!served(&server, &Authority::new("Other CA").cert_pem, None).await, "a client trusting another CA is not");

    let plaintext = async {
        let channel = Channel::from_shared(server.uri()).unwrap().connect().await?;
        let check = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
        check.map_err(anyhow::Error::from)?;
        anyhow::Ok(())
    };
    let refused = tokio::time::timeout(Duration::from_secs(20), plaintext).await.expect("an answer in time");
    assert!(refused.is_err(), "a plaintext client is not served");
}

#[tokio::test]
async fn a_sighup_replaces_the_certificate_while_an_open_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (Authority::new("First CA"), Authority::new("Second CA"));
    let server = serve_tls(dir.path(), &first, &[]);
    let channel = tls_channel(&server, &first.cert_pem, None).await.unwrap();
    let mut entries = pb::entry_service_client::EntryServiceClient::with_interceptor(channel, Bearer::new(ADMIN_TOKEN));
    let request = pb::StreamEntriesRequest { user_ids: vec![], after_position: None, include_clients: false };
    let mut stream = entries.stream_entries(request).await.unwrap().into_inner();
    assert!(matches!(stream.message().await.unwrap().unwrap().kind, Some(Kind::Heartbeat(_))));

    write_server_certificate(dir.path(), &second);
    let hangup = Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().unwrap();
    assert!(hangup.success());
    let mut reloaded = false;
    for _ in 0..50 {
        if served(&server, &second.cert_pem, None).await {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(reloaded, "new connections get the new certificate");
    assert!(!served(&server, &first.cert_pem, None).await, "and no longer the old one");

    // The stream opened before the reload is still served (heartbeats every second).
    for _ in 0..2 {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("a heartbeat in time");
        assert!(matches!(next.unwrap().unwrap().kind, Some(Kind::Heartbeat(_))));
    }
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_its_certificates_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (servers, clients) = (Authority::new("Server CA"), Authority::new("Client CA"));
    let client_ca = dir.path().join("clients.pem");
    std::fs::write(&client_ca, &clients.cert_pem).unwrap();
    let server = serve_tls(dir.path(), &servers, &["--tls-client-ca", client_ca.to_str().unwrap()]);

    let signed = clients.sign(&["ingest-worker"]);
    assert!(served(&server, &servers.cert_pem, Some(&signed)).await, "a client the CA signed is served");
    assert!(!served(&server, &servers.cert_pem, None).await, "a client without a certificate is not");
    let stranger = Authority::new("Stranger CA").sign(&["ingest-worker"]);
    assert!(!served(&server, &servers.cert_pem, Some(&stranger)).await, "nor one another CA signed");
}

#[test]
fn plaintext_beyond_loopback_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "0.0.0.0:0", &[]);
    let warned = (0..50).any(|_| {
        server.log.recv_timeout(Duration::from_millis(200)).is_ok_and(|line| line.contains("listening in plaintext"))
    });
    assert!(warned, "serve warns that tokens would cross the network in the clear");
}
