//! What both TLS sides share — the client to PostgreSQL (`db::tls`) and HTTPS for clients
//! (`http::https`, whose `user-api healthcheck` is a client too): the crypto provider,
//! PEM errors in words, and the half of a server-certificate verifier that never varies.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The crypto provider of both TLS sides.
pub fn provider() -> Arc<CryptoProvider> {
    // ring, not aws-lc-rs: a fraction of the size in a static binary, and no cmake or
    // target C toolchain to build it; rustls now flags it for lacking post-quantum key
    // exchange, which PostgreSQL servers do not offer yet either.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A PEM error in words, never with the file's contents.
pub(crate) fn pem_problem(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as Pem;
    match e {
        Pem::Io(io) => format!("cannot read it: {io}"),
        Pem::NoItemsFound => "no PEM item of the expected kind in the file".into(),
        _ => "not a valid PEM file".into(),
    }
}

/// Which server certificates a client accepts: the part of a verifier that differs
/// between its users.
pub(crate) trait CertificateCheck: fmt::Debug + Send + Sync {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error>;
}

/// A server-certificate verifier: `check` decides on the certificate, and the
/// handshake's signatures are always verified with the provider's algorithms, so the
/// server must hold the key of the certificate it showed, whatever `check` accepts.
#[derive(Debug)]
pub(crate) struct Verifier<C> {
    check: C,
    provider: Arc<CryptoProvider>,
}

impl<C: CertificateCheck> Verifier<C> {
    pub(crate) fn new(check: C, provider: Arc<CryptoProvider>) -> Verifier<C> {
        Verifier { check, provider }
    }

    fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.provider.signature_verification_algorithms
    }
}

impl<C: CertificateCheck> ServerCertVerifier for Verifier<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check
            .check(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}
