//! TLS to PostgreSQL with libpq's `sslmode` meanings, built on rustls.
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require`, never checks a
//! certificate and reads no files. libpq, which every provider's documentation assumes,
//! also has `verify-ca` and `verify-full` and reads `sslrootcert`, `sslcert` and
//! `sslkey`. So the settings are parsed here (see [`TlsSettings`]), every file is read
//! once at start-up, where a bad one can still stop the service with a clear line, and
//! the result is one connector that every pooled connection uses.
//!
//! rustls with the `ring` backend is the smallest TLS stack that builds into a static
//! musl binary without a C toolchain for the target's OpenSSL (see docs/tls.md for the
//! measured sizes).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{CertificateCheck, Verifier, pem_problem};

/// libpq's `sslmode`, less `allow` (plain text first, TLS only if refused: nothing a
/// deployment should want, and tokio-postgres cannot try in that order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// TLS when the server offers it, plain text otherwise; the certificate is not
    /// checked. libpq's default, and ours.
    Prefer,
    /// TLS or no connection; the certificate is not checked (libpq: unless a root
    /// certificate is given, when `require` behaves as `verify-ca`).
    Require,
    /// TLS, and the server's certificate must chain to the root certificate.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host we connected to.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling.
    pub fn parse(s: &str) -> Result<SslMode, String> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => Err("\"allow\" is not supported (use prefer or stronger)".into()),
            other => Err(format!(
                "{other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            )),
        }
    }

    /// What tokio-postgres is told: whether TLS is tried, and whether it is required.
    pub fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            SslMode::Disable => Driver::Disable,
            SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// The TLS settings of one database endpoint, as libpq names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `sslrootcert`: PEM file of the certificate authorities to trust.
    pub root_cert: Option<PathBuf>,
    /// `sslcert`: PEM file of the client certificate (chain), for `cert` authentication.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: PEM file of the client certificate's private key.
    pub client_key: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> TlsSettings {
        TlsSettings {
            mode: SslMode::Prefer,
            root_cert: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// Which check the server's certificate gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Encryption only: any certificate whose signature over the handshake is valid.
    None,
    /// The chain must lead to a trusted root; the name is not compared.
    Chain,
    /// The chain, and the certificate must name the host.
    ChainAndName,
}

/// The connector every connection to one endpoint uses, built once from its settings.
#[derive(Clone)]
pub struct Connector {
    mode: SslMode,
    tls: MakeRustlsConnect,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("mode", &self.mode)
            .finish()
    }
}

impl Connector {
    /// Reads the certificate and key files and builds the TLS configuration. Every
    /// problem a file can have is found here, at start-up, not on the first connection.
    pub fn new(settings: &TlsSettings) -> Result<Connector, String> {
        let provider = crate::tls::provider();
        let check = match (settings.mode, &settings.root_cert) {
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(format!(
                    "sslmode={} needs a root certificate (sslrootcert) to verify against",
                    settings.mode
                ));
            }
            (SslMode::VerifyFull, Some(_)) => Check::ChainAndName,
            // libpq: a root certificate turns `require` into `verify-ca`.
            (SslMode::VerifyCa | SslMode::Require, Some(_)) => Check::Chain,
            (SslMode::Disable | SslMode::Prefer | SslMode::Require, _) => Check::None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (&settings.root_cert, check) {
            (Some(path), Check::Chain | Check::ChainAndName) => {
                let roots = read_roots(path)?;
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                Arc::new(Verifier::new(
                    ServerCheck {
                        check,
                        webpki: Some(webpki),
                    },
                    provider.clone(),
                ))
            }
            _ => Arc::new(Verifier::new(
                ServerCheck {
                    check: Check::None,
                    webpki: None,
                },
                provider.clone(),
            )),
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&settings.client_cert, &settings.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "sslcert")?;
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("sslkey {}: {}", key.display(), pem_problem(&e)))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| match e {
                        rustls::Error::InconsistentKeys(_) => format!(
                            "sslkey {} is not the key of sslcert {}",
                            key.display(),
                            cert.display()
                        ),
                        e => format!("sslcert/sslkey: {e}"),
                    })?
            }
            (Some(_), None) => return Err("sslcert is set but sslkey is not".into()),
            (None, Some(_)) => return Err("sslkey is set but sslcert is not".into()),
            (None, None) => builder.with_no_client_auth(),
        };
        Ok(Connector {
            mode: settings.mode,
            tls: MakeRustlsConnect::new(config),
        })
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The connector tokio-postgres calls for each new connection.
    pub fn make(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{what} {}: {}", path.display(), pem_problem(&e)))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, "sslrootcert")? {
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The server-certificate check for `require`, `verify-ca` and `verify-full`. The
/// handshake's signatures are always verified, whatever the mode, so that the peer
/// holds the key of the certificate it showed (what channel binding relies on).
#[derive(Debug)]
struct ServerCheck {
    check: Check,
    webpki: Option<Arc<WebPkiServerVerifier>>,
}

impl CertificateCheck for ServerCheck {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            // SECURITY: `prefer`/`require` without a root certificate encrypt against a
            // passive listener only, as in libpq; the docs say to use verify-full.
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // webpki checks the chain (and dates) before the name: a name error means
            // the chain itself was good, which is all `verify-ca` asks.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.check == Check::Chain => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
}

/// libpq's TLS parameters taken out of a connection string, and the string without
/// them (which tokio-postgres, knowing none of `sslrootcert`, `sslcert`, `sslkey`,
/// `verify-ca` or `verify-full`, would refuse).
#[derive(Debug, PartialEq, Eq)]
pub struct Extracted {
    pub rest: String,
    pub mode: Option<String>,
    pub root_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl Extracted {
    fn set(&mut self, key: &str, value: String) {
        let slot = match key {
            "sslmode" => &mut self.mode,
            "sslrootcert" => &mut self.root_cert,
            "sslcert" => &mut self.client_cert,
            _ => &mut self.client_key,
        };
        *slot = Some(value);
    }
}

/// Takes the TLS parameters out of `conninfo`, a `postgres://` URL (query parameters,
/// percent-encoded) or a libpq `key=value` string (values optionally single-quoted, with
/// backslash escapes). Anything it cannot make sense of is left in place for
/// tokio-postgres to refuse.
pub fn extract(conninfo: &str) -> Extracted {
    let mut out = Extracted {
        rest: String::new(),
        mode: None,
        root_cert: None,
        client_cert: None,
        client_key: None,
    };
    let trimmed = conninfo.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let Some((base, query)) = conninfo.split_once('?') else {
            out.rest = conninfo.to_owned();
            return out;
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_encoding::percent_decode_str(k).decode_utf8_lossy();
            if TLS_KEYS.contains(&key.as_ref()) {
                let value = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
                out.set(&key, value.into_owned());
            } else {
                kept.push(pair);
            }
        }
        out.rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return out;
    }
    let mut rest = String::with_capacity(conninfo.len());
    for (span, key, value) in key_value_spans(conninfo) {
        match (key, value) {
            (Some(k), Some(v)) if TLS_KEYS.contains(&k) => out.set(k, v),
            _ => {
                if !rest.is_empty() {
                    rest.push(' ');
                }
                rest.push_str(span);
            }
        }
    }
    out.rest = rest;
    out
}

/// Splits a `key=value` string into its parameters: each one's source text, key and
/// unquoted value. A malformed tail comes back as one span without key, left for
/// tokio-postgres to report.
fn key_value_spans(s: &str) -> Vec<(&str, Option<&str>, Option<String>)> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() || bytes[i] != b'=' {
            out.push((&s[start..], None, None));
            return out;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if bytes.get(i) == Some(&b'\'') {
            i += 1;
            let mut closed = false;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if i + 1 < bytes.len() => {
                        value.push(char::from(bytes[i + 1]));
                        i += 2;
                    }
                    b'\'' => {
                        i += 1;
                        closed = true;
                        break;
                    }
                    _ => {
                        let c = s[i..].chars().next().unwrap_or('\u{fffd}');
                        value.push(c);
                        i += c.len_utf8();
                    }
                }
            }
            if !closed {
                out.push((&s[start..], None, None));
                return out;
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    value.push(char::from(bytes[i + 1]));
                    i += 2;
                } else {
                    let c = s[i..].chars().next().unwrap_or('\u{fffd}');
                    value.push(c);
                    i += c.len_utf8();
                }
            }
        }
        out.push((&s[start..i], Some(key), Some(value)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_libpq_mode_but_allow_parses() {
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(SslMode::parse(text), Ok(mode));
            assert_eq!(mode.to_string(), text);
        }
        assert!(
            SslMode::parse("allow")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(SslMode::parse("VERIFY-FULL").is_err());
        assert!(SslMode::parse("").is_err());
    }

    #[test]
    fn tls_parameters_come_out_of_a_url_and_the_rest_stays() {
        let e = extract(
            "postgres://u:p%40ss@db.example.com:5432/app?sslmode=verify-full&\
             sslrootcert=%2Fetc%2Fca.pem&target_session_attrs=read-write&sslcert=/c.pem&sslkey=/k.pem",
        );
        assert_eq!(
            e.rest,
            "postgres://u:p%40ss@db.example.com:5432/app?target_session_attrs=read-write"
        );
        assert_eq!(e.mode.as_deref(), Some("verify-full"));
        assert_eq!(e.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(e.client_cert.as_deref(), Some("/c.pem"));
        assert_eq!(e.client_key.as_deref(), Some("/k.pem"));

        let e = extract("postgresql://h/db?sslmode=require");
        assert_eq!(e.rest, "postgresql://h/db");
        assert_eq!(e.mode.as_deref(), Some("require"));

        let plain = "postgres://u:p@h/db";
        assert_eq!(extract(plain).rest, plain);
        assert_eq!(extract(plain).mode, None);
    }

    #[test]
    fn tls_parameters_come_out_of_a_key_value_string() {
        let e = extract(
            "host=db port=5432 sslmode = verify-ca sslrootcert='/my certs/ca.pem' \
             password='it\\'s' sslkey=/k\\ ey.pem dbname=app",
        );
        assert_eq!(e.rest, "host=db port=5432 password='it\\'s' dbname=app");
        assert_eq!(e.mode.as_deref(), Some("verify-ca"));
        assert_eq!(e.root_cert.as_deref(), Some("/my certs/ca.pem"));
        assert_eq!(e.client_key.as_deref(), Some("/k ey.pem"));
        assert_eq!(e.client_cert, None);
    }

    #[test]
    fn a_malformed_key_value_string_is_left_for_the_driver_to_refuse() {
        let e = extract("host=db sslmode='verify-full");
        assert_eq!(e.mode, None);
        assert!(e.rest.contains("sslmode='verify-full"));
        let e = extract("host=db nonsense");
        assert_eq!(e.rest, "host=db nonsense");
    }

    #[test]
    fn verify_modes_need_a_root_certificate() {
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let err = Connector::new(&TlsSettings {
                mode,
                ..TlsSettings::default()
            })
            .unwrap_err();
            assert!(err.contains("needs a root certificate"), "{err}");
        }
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            let c = Connector::new(&TlsSettings {
                mode,
                ..TlsSettings::default()
            });
            assert!(c.is_ok(), "{mode}");
        }
    }

    #[test]
    fn a_missing_or_malformed_file_is_named_without_its_contents() {
        let dir = std::env::temp_dir().join(format!("user-api-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "SECRET-LOOKING-TEXT not pem").unwrap();
        for root in [dir.join("absent.pem"), garbage.clone()] {
            let err = Connector::new(&TlsSettings {
                mode: SslMode::VerifyFull,
                root_cert: Some(root.clone()),
                ..TlsSettings::default()
            })
            .unwrap_err();
            assert!(err.starts_with("sslrootcert "), "{err}");
            assert!(err.contains(&root.display().to_string()), "{err}");
            assert!(!err.contains("SECRET-LOOKING-TEXT"), "{err}");
        }
        let err = Connector::new(&TlsSettings {
            mode: SslMode::Require,
            client_cert: Some(garbage.clone()),
            ..TlsSettings::default()
        })
        .unwrap_err();
        assert_eq!(err, "sslcert is set but sslkey is not");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
