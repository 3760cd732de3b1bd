//! Verifying a server's certificate: its chain against roots, then its names with a check of the caller's
//! choosing. Mesh TLS checks that the peer is a workload of the trust domain (its SPIFFE id, a URI SAN); TLS
//! origination checks `subjectAltNames`. One rustls verifier serves both, so the signature checks are written
//! once.

use std::fmt::Debug;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// What a server's certificate must name, once its chain is verified.
pub trait NameCheck: Debug + Send + Sync {
    fn check(&self, parsed: &ParsedCertificate<'_>, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error>;
}

/// Verifies the chain against `roots` and the names with `names`; without roots, accepts any certificate
/// (`insecureSkipVerify`). The name the client dialled is not looked at: the check decides.
#[derive(Debug)]
pub struct CheckedVerifier<C> {
    roots: Option<Arc<RootCertStore>>,
    names: C,
    provider: Arc<CryptoProvider>,
}

impl<C: NameCheck> CheckedVerifier<C> {
    pub fn new(roots: Arc<RootCertStore>, names: C, provider: Arc<CryptoProvider>) -> Self {
        Self { roots: Some(roots), names, provider }
    }

    /// Accepts any server certificate; the handshake's signatures are still checked.
    pub fn trusting_anything(names: C, provider: Arc<CryptoProvider>) -> Self {
        Self { roots: None, names, provider }
    }
}

impl<C: NameCheck> ServerCertVerifier for CheckedVerifier<C> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else { return Ok(ServerCertVerified::assertion()) };
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let algorithms = self.provider.signature_verification_algorithms.all;
        verify_server_cert_signed_by_trust_anchor(&parsed, roots, intermediates, now, algorithms)?;
        self.names.check(&parsed, end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
