//! Verifying a server's certificate: its chain against roots, then its names with a check of the caller's
//! choosing. Mesh TLS checks that the peer is a workload of the trust domain (its SPIFFE id, a URI SAN); TLS
//! origination checks `subjectAltNames`. One rustls verifier serves both, so the signature checks are written
//! once. With revocation lists (DestinationRule `caCrl`), the chain is verified by webpki directly, as rustls
//! does for its own verifier with CRLs, since rustls' chain check for custom verifiers takes none.

use std::fmt::Debug;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

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
    /// Revocation lists: every certificate of the chain below the root must be covered by a current one of its
    /// issuer's and not be revoked in it; none: no revocation check.
    crls: Vec<webpki::CertRevocationList<'static>>,
}

impl<C: NameCheck> CheckedVerifier<C> {
    pub fn new(roots: Arc<RootCertStore>, names: C, provider: Arc<CryptoProvider>) -> Self {
        Self { roots: Some(roots), names, provider, crls: Vec::new() }
    }

    /// Accepts any server certificate; the handshake's signatures are still checked.
    pub fn trusting_anything(names: C, provider: Arc<CryptoProvider>) -> Self {
        Self { roots: None, names, provider, crls: Vec::new() }
    }

    /// Also checks revocation against `crls`.
    pub fn with_crls(self, crls: Vec<webpki::CertRevocationList<'static>>) -> Self {
        Self { crls, ..self }
    }

    /// The chain to `roots`, with revocation when there are lists.
    fn verify_chain(
        &self,
        (parsed, end_entity): (&ParsedCertificate<'_>, &CertificateDer<'_>),
        roots: &RootCertStore,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let algorithms = self.provider.signature_verification_algorithms.all;
        if self.crls.is_empty() {
            return verify_server_cert_signed_by_trust_anchor(parsed, roots, intermediates, now, algorithms);
        }
        let crls: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = webpki::RevocationOptionsBuilder::new(&crls)
            .map_err(|_| CertificateError::UnknownRevocationStatus)?
            .with_depth(webpki::RevocationCheckDepth::Chain)
            .with_status_policy(webpki::UnknownStatusPolicy::Deny)
            .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
            .build();
        let certificate = webpki::EndEntityCert::try_from(end_entity).map_err(certificate_error)?;
        let usage = webpki::KeyUsage::server_auth();
        certificate
            .verify_for_usage(algorithms, &roots.roots, intermediates, now, usage, Some(revocation), None)
            .map(|_| ())
            .map_err(certificate_error)
    }
}

/// webpki's verdict as rustls reports it: the kinds a handshake's failure is told by, anything else as itself.
fn certificate_error(error: webpki::Error) -> rustls::Error {
    let kind = match error {
        webpki::Error::CertRevoked => CertificateError::Revoked,
        webpki::Error::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
        webpki::Error::CrlExpired { .. } => CertificateError::ExpiredRevocationList,
        webpki::Error::UnknownIssuer => CertificateError::UnknownIssuer,
        webpki::Error::CertExpired { .. } | webpki::Error::InvalidCertValidity => CertificateError::Expired,
        webpki::Error::CertNotValidYet { .. } => CertificateError::NotValidYet,
        webpki::Error::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        webpki::Error::BadDer | webpki::Error::BadDerTime | webpki::Error::TrailingData(_) => {
            CertificateError::BadEncoding
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        webpki::Error::IssuerNotCrlSigner => {
            return rustls::Error::InvalidCertRevocationList(rustls::CertRevocationListError::IssuerInvalidForCrl);
        }
        webpki::Error::InvalidCrlSignatureForPublicKey => {
            return rustls::Error::InvalidCertRevocationList(rustls::CertRevocationListError::BadSignature);
        }
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(kind)
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
        self.verify_chain((&parsed, end_entity), roots, intermediates, now)?;
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
