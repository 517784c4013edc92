//! TLS on the listener: rustls through tokio-rustls (what tonic's own TLS uses), terminated
//! in the accept loop rather than by tonic, because tonic's TLS settings are fixed for the
//! server's life and a certificate must be replaceable without dropping open streams. A
//! reload swaps the certificate for the handshakes after it; connections made before keep
//! theirs.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Where the server's certificate, key and (optionally) the CA for client certificates are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, a client must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

/// The listener's TLS: an acceptor whose certificate `reload` replaces.
pub struct Tls {
    acceptor: TlsAcceptor,
    certificate: Arc<Reloadable>,
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish_non_exhaustive()
    }
}

/// The certificate handshakes are answered with.
#[derive(Debug)]
struct Reloadable(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
    }
}

impl Tls {
    /// Reads the files; fails with what is wrong with them.
    pub fn load(files: TlsFiles) -> anyhow::Result<Tls> {
        // ring explicitly: the process default depends on which of rustls's providers the
        // dependency tree happens to enable.
        let provider = Arc::new(ring::default_provider());
        let certificate = Arc::new(Reloadable(RwLock::new(certified_key(&files, &provider)?)));
        let versions = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let builder = match &files.client_ca {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider.clone())
                    .build()
                    .context("the client CA")?;
                versions.with_client_cert_verifier(verifier)
            }
            None => versions.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(certificate.clone());
        // gRPC needs HTTP/2; a browser's gRPC-Web calls and the dashboard may use HTTP/1.1.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), certificate, files, provider })
    }

    /// Reads the certificate and key again; the next handshakes use them. On an error the
    /// certificate in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = certified_key(&self.files, &self.provider)?;
        *self.certificate.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = key;
        Ok(())
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> anyhow::Result<Arc<CertifiedKey>> {
    let shown = files.cert.display();
    let chain = certificates(&files.cert).with_context(|| format!("reading the certificate chain {shown}"))?;
    if chain.is_empty() {
        bail!("{shown} holds no PEM certificate");
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    let key = provider.key_provider.load_private_key(key).context("the private key")?;
    let certified = CertifiedKey::new(chain, key);
    certified.keys_match().with_context(|| format!("{} is not the key of {shown}", files.key.display()))?;
    Ok(Arc::new(certified))
}

/// Every PEM certificate in `path`.
fn certificates(
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, tokio_rustls::rustls::pki_types::pem::Error> {
    CertificateDer::pem_file_iter(path)?.collect()
}

fn roots(ca: &std::path::Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = certificates(ca).with_context(|| format!("reading the client CA {}", ca.display()))?;
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        bail!("{} holds no usable CA certificate", ca.display());
    }
    Ok(roots)
}
