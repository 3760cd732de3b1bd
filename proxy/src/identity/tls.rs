//! TLS between sidecars: the proxy's credentials as rustls client and server configurations. Both sides
//! present their workload certificate and require the peer's, chained to the trust bundle; the names checked
//! are SPIFFE ids (URI SANs), not DNS names, so the client's verifier checks the chain and that the peer is a
//! workload of the trust domain, and the caller then checks which workload ([`peer_identity`]) against the
//! destination's identities. Both speak the mesh ALPN ([`weft_xds::mtls::MTLS_ALPN`]); the client offers before it
//! a mark for what the connection carries, which the server prefers ([`Carried`]).

use std::sync::Arc;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use weft_xds::SpiffeId;
use weft_xds::identity::{spiffe_id_of, uri_sans};
use weft_xds::mtls::Carried;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::tls_verify::{CheckedVerifier, NameCheck};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the certificate chain is empty")]
    EmptyChain,
    #[error("the certificate does not parse")]
    Unparsable,
    #[error("the certificate is for {found:?}, not {wanted}")]
    WrongIdentity { found: Option<String>, wanted: String },
    #[error("the trust bundle holds no usable root")]
    NoRoots,
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// A workload certificate with its key, and the configurations that use it.
pub struct Credentials {
    pub id: SpiffeId,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Originating mutual TLS (outbound) for HTTP, and for TCP: the same but for the ALPN offered (and one
    /// session cache, so either resumes the other's sessions).
    client_http: Arc<rustls::ClientConfig>,
    client_tcp: Arc<rustls::ClientConfig>,
    /// Terminating mutual TLS (inbound).
    pub server: Arc<rustls::ServerConfig>,
    /// The certificate chain and key in PEM, for the xDS connection (tonic takes PEM); never logged or shown.
    pub pem: Pem,
}

/// A certificate chain and its key, PEM.
#[derive(Clone)]
pub struct Pem {
    pub chain: String,
    pub key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("id", &self.id).field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

impl Credentials {
    /// From the CA's answer (`chain`: the workload's certificate first), the key, and the trust bundle. The
    /// certificate must be for `id`.
    pub fn new(
        id: SpiffeId,
        chain: Vec<CertificateDer<'static>>,
        key_der: Vec<u8>,
        roots: Vec<CertificateDer<'static>>,
        pem: Pem,
    ) -> Result<Self, CredentialsError> {
        let leaf = chain.first().ok_or(CredentialsError::EmptyChain)?;
        let (_, parsed) = X509Certificate::from_der(leaf).map_err(|_| CredentialsError::Unparsable)?;
        let found = uri_sans(leaf).into_iter().next();
        if found.as_deref() != Some(id.to_string().as_str()) {
            return Err(CredentialsError::WrongIdentity { found, wanted: id.to_string() });
        }
        let validity = parsed.validity();
        let at = |t: i64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
        let (not_before, not_after) = (at(validity.not_before.timestamp()), at(validity.not_after.timestamp()));
        let mut store = RootCertStore::empty();
        let (added, _) = store.add_parsable_certificates(roots);
        if added == 0 {
            return Err(CredentialsError::NoRoots);
        }
        let store = Arc::new(store);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.clone()));
        let tls = |e: rustls::Error| CredentialsError::Tls(e.to_string());
        let names = OfTrustDomain(id.trust_domain.clone());
        let verifier = Arc::new(CheckedVerifier::new(store.clone(), names, provider.clone()));
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain.clone(), key())
            .map_err(tls)?;
        client.alpn_protocols = Carried::Http.offer();
        let mut client_tcp = client.clone();
        client_tcp.alpn_protocols = Carried::Tcp.offer();
        let client_verifier = WebPkiClientVerifier::builder_with_provider(store, provider.clone())
            .build()
            .map_err(|e| CredentialsError::Tls(e.to_string()))?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain, key())
            .map_err(tls)?;
        server.alpn_protocols = Carried::server_list();
        let (client_http, client_tcp) = (Arc::new(client), Arc::new(client_tcp));
        Ok(Self { id, not_before, not_after, client_http, client_tcp, server: Arc::new(server), pem })
    }

    /// The configuration originating mutual TLS for a connection carrying `carried`.
    pub fn client(&self, carried: Carried) -> Arc<rustls::ClientConfig> {
        match carried {
            Carried::Http => self.client_http.clone(),
            Carried::Tcp => self.client_tcp.clone(),
        }
    }
}

/// The SPIFFE id of a peer's certificate (its first URI SAN that is one).
pub fn peer_identity(certificates: Option<&[CertificateDer<'_>]>) -> Option<SpiffeId> {
    spiffe_id_of(certificates?.first()?)
}

/// A server certificate must name a workload of the trust domain (the server name is not looked at: peers are
/// named by SPIFFE id).
#[derive(Debug)]
struct OfTrustDomain(String);

impl NameCheck for OfTrustDomain {
    fn check(&self, _parsed: &ParsedCertificate<'_>, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        match peer_identity(Some(std::slice::from_ref(end_entity))) {
            Some(id) if id.trust_domain == self.0 => Ok(()),
            _ => Err(rustls::Error::General("the peer is no workload of this trust domain".into())),
        }
    }
}
