//! TLS origination to a cluster's endpoints (DestinationRule `tls.mode` `SIMPLE` and `MUTUAL`): the
//! application speaks plaintext to its sidecar, the sidecar TLS to the server. The server's certificate must
//! chain to `caCertificates` (Mozilla's roots when unset), pass the revocation lists of `caCrl` when set (the
//! whole chain, as Envoy checks a `crl`), and carry one of `subjectAltNames`, or else the SNI;
//! `insecureSkipVerify` accepts any. `MUTUAL` presents a client certificate. The files are read (or the
//! inline PEM from a `credentialName` Secret parsed) when the cluster's config arrives, and again when one
//! changes (see `super::tls`); one that cannot be read fails the cluster's connections with that message.
//! ALPN follows the connection pool: `h2` for HTTP/2, `http/1.1` for HTTP/1, none for TCP.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::verify_server_name;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use weft_xds::identity::uri_sans;
use weft_xds::origination::{Origination, Pem};

use crate::tls_verify::{CheckedVerifier, NameCheck};

/// What the connection carries, for ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Tcp,
    Http1,
    Http2,
}

/// A cluster's TLS origination, ready to connect.
pub struct Originator {
    /// By [`Alpn`]: TCP, HTTP/1, HTTP/2.
    configs: [Arc<ClientConfig>; 3],
    server_name: ServerName<'static>,
}

impl Originator {
    /// Reads the files `origination` names and builds its TLS settings; a message naming what failed.
    pub fn build(origination: &Origination) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_name = ServerName::try_from(origination.sni.clone())
            .map_err(|e| format!("server name {:?}: {e}", origination.sni))?;
        let roots = Arc::new(roots(origination.ca_certificates.as_ref())?);
        let (crls, parsed_crls) = match &origination.crl {
            Some(pem) => revocation_lists(pem)?,
            None => (Vec::new(), Vec::new()),
        };
        let names = OneOf(origination.subject_alt_names.clone());
        let verifier: Arc<dyn ServerCertVerifier> = if origination.insecure_skip_verify {
            Arc::new(CheckedVerifier::trusting_anything(names, provider.clone()))
        } else if origination.subject_alt_names.is_empty() {
            // Revocation as Envoy checks a `crl` (BoringSSL's CRL_CHECK_ALL): the whole chain, a certificate
            // no current list covers refused, an expired list refused.
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .with_crls(crls)
                .enforce_revocation_expiration()
                .build()
                .map_err(|e| e.to_string())?
        } else {
            Arc::new(CheckedVerifier::new(roots, names, provider.clone()).with_crls(parsed_crls))
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let base = match &origination.client_certificate {
            Some((chain, key)) => builder.with_client_auth_cert(certificates(chain)?, private_key(key)?),
            None => Ok(builder.with_no_client_auth()),
        }
        .map_err(|e| format!("client certificate: {e}"))?;
        let with_alpn = |protocols: &[&[u8]]| {
            let mut config = base.clone();
            config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
            Arc::new(config)
        };
        Ok(Self { configs: [with_alpn(&[]), with_alpn(&[b"http/1.1"]), with_alpn(&[b"h2"])], server_name })
    }

    /// `stream` in TLS to the server, the handshake within `limit`.
    pub async fn connect(&self, stream: TcpStream, limit: Duration, alpn: Alpn) -> io::Result<TlsStream<TcpStream>> {
        let config = self.configs[alpn as usize].clone();
        let handshake = tokio_rustls::TlsConnector::from(config).connect(self.server_name.clone(), stream);
        match tokio::time::timeout(limit, handshake).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")),
        }
    }
}

fn roots(ca: Option<&Pem>) -> Result<RootCertStore, String> {
    let Some(ca) = ca else {
        return Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() });
    };
    let mut store = RootCertStore::empty();
    for certificate in certificates(ca)? {
        store.add(certificate).map_err(|e| format!("caCertificates {}: {e}", ca.describe()))?;
    }
    Ok(store)
}

/// Every PEM section of type `T` in `pem` (a file, or inline text); a message naming it when it cannot be read
/// or holds no `what`.
fn sections<T: PemObject>(pem: &Pem, what: &str) -> Result<Vec<T>, String> {
    let failed = |e: rustls::pki_types::pem::Error| format!("{}: {e}", pem.describe());
    let parsed: Result<Vec<T>, _> = match pem {
        Pem::File(path) => T::pem_file_iter(path).map_err(failed)?.collect(),
        Pem::Inline(text) => T::pem_slice_iter(text).collect(),
    };
    let sections = parsed.map_err(failed)?;
    if sections.is_empty() {
        return Err(format!("{}: no PEM {what} in it", pem.describe()));
    }
    Ok(sections)
}

fn certificates(pem: &Pem) -> Result<Vec<CertificateDer<'static>>, String> {
    sections(pem, "certificate")
}

/// The revocation lists in `pem`, as rustls' verifier takes them (DER) and as webpki checks them (parsed).
type RevocationLists = (Vec<CertificateRevocationListDer<'static>>, Vec<webpki::CertRevocationList<'static>>);

fn revocation_lists(pem: &Pem) -> Result<RevocationLists, String> {
    let lists: Vec<CertificateRevocationListDer<'static>> = sections(pem, "revocation list (X509 CRL)")?;
    // Parsed here, so that the message names the file: webpki takes version 2 lists only (what a CA writes with
    // CRL extensions; `openssl ca -gencrl` needs `crl_extensions` for it), no delta or indirect lists.
    let parsed = lists
        .iter()
        .map(|list| webpki::OwnedCertRevocationList::from_der(list).map(webpki::CertRevocationList::from))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a revocation list this proxy reads (version 2 only): {e:?}", pem.describe()))?;
    Ok((lists, parsed))
}

fn private_key(pem: &Pem) -> Result<PrivateKeyDer<'static>, String> {
    match pem {
        Pem::File(path) => PrivateKeyDer::from_pem_file(path),
        Pem::Inline(text) => PrivateKeyDer::from_pem_slice(text),
    }
    .map_err(|e| format!("{}: {e}", pem.describe()))
}

/// The certificate must carry one of these names: DNS names and IP addresses as rustls matches them, URIs
/// exactly.
#[derive(Debug)]
struct OneOf(Vec<String>);

impl NameCheck for OneOf {
    fn check(&self, parsed: &ParsedCertificate<'_>, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let uris = uri_sans(end_entity);
        let named = |name: &String| match ServerName::try_from(name.as_str()) {
            Ok(server_name) if !name.contains("://") => verify_server_name(parsed, &server_name).is_ok(),
            _ => uris.contains(name),
        };
        if self.0.iter().any(named) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
        }
    }
}
