//! HTTPS for clients: the certificate and key the listener serves, read at start-up and
//! again on SIGHUP.
//!
//! The rustls configuration sits behind a lock that only handshakes read: a reload swaps
//! it, so new handshakes use the new certificate while connections already open keep
//! the session they made. A file that fails to load leaves the old one in force.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::ServerCertVerified;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, ServerConfig};

use crate::tls::{CertificateCheck, Verifier, pem_problem};

/// Why a certificate or key could not be loaded: the setting at fault and the problem,
/// naming the file, never its contents.
#[derive(Debug)]
pub struct LoadError {
    pub var: &'static str,
    pub msg: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.msg)
    }
}

impl std::error::Error for LoadError {}

fn cert_err(msg: String) -> LoadError {
    LoadError {
        var: "TLS_CERT_FILE",
        msg,
    }
}

/// The listener's certificate: where it comes from and what is in force.
pub struct Https {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl fmt::Debug for Https {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Https")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl Https {
    /// Reads both files and builds the configuration; every problem they can have is
    /// found here, at start-up, in one line that names the file and never its contents.
    pub fn open(cert_file: &Path, key_file: &Path) -> Result<Https, LoadError> {
        let config = load(cert_file, key_file)?;
        Ok(Https {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: RwLock::new(config),
        })
    }

    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// The configuration new handshakes use.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the files again; on success new handshakes use them, on failure the old
    /// certificate stays in force and the reason comes back.
    pub fn reload(&self) -> Result<(), LoadError> {
        let config = load(&self.cert_file, &self.key_file)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }
}

fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, LoadError> {
    let chain = read_chain(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| LoadError {
        var: "TLS_KEY_FILE",
        msg: format!("{}: {}", key_file.display(), pem_problem(&e)),
    })?;
    // TLS 1.2 and 1.3, rustls' default suites: all AEAD with forward secrecy.
    let mut config = ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| cert_err(format!("TLS set-up: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| LoadError {
            var: "TLS_KEY_FILE",
            msg: match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "{} is not the key of the certificate in {}",
                    key_file.display(),
                    cert_file.display()
                ),
                e => format!(
                    "{} does not go with {}: {e}",
                    key_file.display(),
                    cert_file.display()
                ),
            },
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificates of a PEM file, leaf first.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| cert_err(format!("{}: {}", path.display(), pem_problem(&e))))?;
    if certs.is_empty() {
        return Err(cert_err(format!(
            "{}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// A client configuration that trusts exactly the end-entity certificate in
/// `cert_file`, whatever name or issuer it has: what `user-api healthcheck` uses to check
/// the server it runs beside without a CA bundle (a `FROM scratch` image has none).
/// The handshake's signatures are still verified, so the server must hold that
/// certificate's key.
pub fn pinned_client(cert_file: &Path) -> Result<Arc<ClientConfig>, LoadError> {
    let leaf = read_chain(cert_file)?.swap_remove(0);
    let provider = crate::tls::provider();
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_err(format!("TLS set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier::new(Pinned { leaf }, provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts exactly one end-entity certificate.
#[derive(Debug)]
struct Pinned {
    leaf: CertificateDer<'static>,
}

impl CertificateCheck for Pinned {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}
