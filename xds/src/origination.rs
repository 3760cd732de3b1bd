//! The contract for TLS origination to a host outside the mesh's identities (DestinationRule `tls.mode`
//! `SIMPLE` and `MUTUAL`): a cluster `transport_socket` with an `UpstreamTlsContext` holding the roots, and for
//! `MUTUAL` the client certificate and key, each a file on the proxy's file system or (from a Secret named by
//! `credentialName`) the PEM text inline, as Envoy's `DataSource` allows, and the revocation lists (`crl`); the
//! SNI, and the SANs the server's certificate must carry one of. [`socket`] builds it, [`parse`] reads it back, so the operator and the proxy
//! cannot drift apart.
//!
//! Inline rather than by SDS: only the proxies of the pods a rule selects get its clusters (`credentialName`
//! needs a `workloadSelector`), so the key reaches no other proxy either way, and a Secret's change is a change
//! of those clusters. Envoy redacts inline private keys from its config dump; so does Weft (see [`Pem`]).

use envoy_types::pb::envoy::config::core::v3::{DataSource, TransportSocket, data_source, transport_socket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, TlsCertificate, UpstreamTlsContext,
    certificate_validation_context::TrustChainVerification, common_tls_context::ValidationContextType,
    subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use serde::Serialize;

use crate::mtls::{TLS_SOCKET, san_matcher, socket as named_socket};

/// Where PEM text comes from.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Pem {
    /// A file on the proxy's file system, read when the cluster's config arrives.
    File(String),
    /// The text itself (from a Secret). Empty when the Secret or its key is missing: nothing to trust or
    /// present, so the cluster's connections fail rather than fall back to anything else.
    Inline(Vec<u8>),
}

impl Pem {
    /// What logs and config dumps show: the file, or how long the text is (never the text: it may be a key).
    pub fn describe(&self) -> String {
        match self {
            Pem::File(path) => path.clone(),
            Pem::Inline(text) => format!("[inline, {} bytes]", text.len()),
        }
    }

    fn data_source(&self) -> DataSource {
        let specifier = match self {
            Pem::File(path) => data_source::Specifier::Filename(path.clone()),
            Pem::Inline(text) => data_source::Specifier::InlineBytes(text.clone()),
        };
        DataSource { specifier: Some(specifier), ..Default::default() }
    }

    fn of_data_source(source: Option<&DataSource>, what: &str) -> Result<Self, String> {
        match source.and_then(|s| s.specifier.as_ref()) {
            Some(data_source::Specifier::Filename(path)) => Ok(Pem::File(path.clone())),
            Some(data_source::Specifier::InlineBytes(text)) => Ok(Pem::Inline(text.clone())),
            Some(data_source::Specifier::InlineString(text)) => Ok(Pem::Inline(text.as_bytes().to_vec())),
            _ => Err(format!("the {what} must be a file name or inline PEM")),
        }
    }
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Serialize for Pem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.describe())
    }
}

impl From<&str> for Pem {
    fn from(path: &str) -> Self {
        Pem::File(path.to_string())
    }
}

/// TLS to an endpoint, with certificates from files or inline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Origination {
    /// The server name sent (and checked, unless `subject_alt_names` say otherwise).
    pub sni: String,
    /// The server's certificate must carry one of these (DNS names, IP addresses, or URIs such as SPIFFE ids).
    pub subject_alt_names: Vec<String>,
    /// Roots the server's certificate must chain to; `None`: the system's (Mozilla's list).
    pub ca_certificates: Option<Pem>,
    /// Certificate revocation lists (Envoy's `crl`): the server's certificate and its chain's intermediates
    /// must each be covered by a current one of their issuer's and not revoked; `None`: no revocation check.
    pub crl: Option<Pem>,
    /// `MUTUAL`: the client's certificate chain and key.
    pub client_certificate: Option<(Pem, Pem)>,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
}

/// The cluster's transport socket for `origination`.
pub fn socket(origination: &Origination) -> TransportSocket {
    let validation = CertificateValidationContext {
        trusted_ca: origination.ca_certificates.as_ref().map(Pem::data_source),
        crl: origination.crl.as_ref().map(Pem::data_source),
        match_typed_subject_alt_names: origination
            .subject_alt_names
            .iter()
            .map(|n| san_matcher(san_type(n), n))
            .collect(),
        trust_chain_verification: if origination.insecure_skip_verify {
            TrustChainVerification::AcceptUntrusted as i32
        } else {
            TrustChainVerification::VerifyTrustChain as i32
        },
        ..Default::default()
    };
    let tls_certificates = origination
        .client_certificate
        .iter()
        .map(|(chain, key)| TlsCertificate {
            certificate_chain: Some(chain.data_source()),
            private_key: Some(key.data_source()),
            ..Default::default()
        })
        .collect();
    let context = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates,
            validation_context_type: Some(ValidationContextType::ValidationContext(validation)),
            ..Default::default()
        }),
        sni: origination.sni.clone(),
        ..Default::default()
    };
    named_socket(TLS_SOCKET, crate::pack(&context))
}

/// A SAN's type as written: a URI has a scheme, an IP address parses as one, anything else is a DNS name.
fn san_type(name: &str) -> SanType {
    if name.contains("://") {
        SanType::Uri
    } else if name.parse::<std::net::IpAddr>().is_ok() {
        SanType::IpAddress
    } else {
        SanType::Dns
    }
}

/// Reads a context built by [`socket`] back; a message naming what is not of that shape.
pub fn parse(context: &UpstreamTlsContext) -> Result<Origination, String> {
    let common = context.common_tls_context.clone().unwrap_or_default();
    if !common.tls_certificate_sds_secret_configs.is_empty() || !common.alpn_protocols.is_empty() {
        return Err("TLS origination takes its certificates from files or inline, and no ALPN list".to_string());
    }
    let client_certificate = match common.tls_certificates.as_slice() {
        [] => None,
        [one] => Some((
            Pem::of_data_source(one.certificate_chain.as_ref(), "client certificate")?,
            Pem::of_data_source(one.private_key.as_ref(), "private key")?,
        )),
        _ => return Err("at most one client certificate is supported".to_string()),
    };
    let validation = match common.validation_context_type {
        None => CertificateValidationContext::default(),
        Some(ValidationContextType::ValidationContext(validation)) => validation,
        Some(_) => return Err("the validation context must be given inline, not by SDS".to_string()),
    };
    let ca_certificates = match validation.trusted_ca.as_ref() {
        None => None,
        trusted => Some(Pem::of_data_source(trusted, "trusted CA")?),
    };
    if validation.only_verify_leaf_cert_crl {
        return Err("revocation lists check the whole chain here (only_verify_leaf_cert_crl is not supported)".into());
    }
    let crl = match validation.crl.as_ref() {
        None => None,
        crl => Some(Pem::of_data_source(crl, "revocation list")?),
    };
    let subject_alt_names = validation
        .match_typed_subject_alt_names
        .iter()
        .map(|san| match san.matcher.as_ref().and_then(|m| m.match_pattern.as_ref()) {
            Some(MatchPattern::Exact(name)) => Ok(name.clone()),
            _ => Err("subject alt names must be exact matchers".to_string()),
        })
        .collect::<Result<_, String>>()?;
    let insecure_skip_verify = validation.trust_chain_verification == TrustChainVerification::AcceptUntrusted as i32;
    Ok(Origination {
        sni: context.sni.clone(),
        subject_alt_names,
        ca_certificates,
        crl,
        client_certificate,
        insecure_skip_verify,
    })
}

/// `cluster` with the inline private keys of its TLS origination replaced by `[redacted]` (what Envoy's config
/// dump shows), for views of the config; whether there was one.
pub fn redact_keys(cluster: &mut envoy_types::pb::envoy::config::cluster::v3::Cluster) -> bool {
    let Some(socket) = cluster.transport_socket.as_mut() else { return false };
    let Some(Ok(mut context)) = upstream_context(socket) else { return false };
    let Some(common) = context.common_tls_context.as_mut() else { return false };
    let mut redacted = false;
    for certificate in &mut common.tls_certificates {
        if let Some(DataSource { specifier: Some(data_source::Specifier::InlineBytes(key)), .. }) =
            certificate.private_key.as_mut()
        {
            *key = b"[redacted]".to_vec();
            redacted = true;
        }
    }
    if redacted {
        *socket = named_socket(TLS_SOCKET, crate::pack(&context));
    }
    redacted
}

/// The context of a TLS transport socket, if it is one.
pub fn upstream_context(socket: &TransportSocket) -> Option<Result<UpstreamTlsContext, String>> {
    match (&socket.name, &socket.config_type) {
        (name, Some(transport_socket::ConfigType::TypedConfig(any))) if name == TLS_SOCKET => {
            Some(crate::unpack(any).map_err(|e| e.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_built_reads_back() {
        let mutual = Origination {
            sni: "api.example.com".into(),
            subject_alt_names: vec!["api.example.com".into(), "10.0.0.1".into(), "spiffe://other/ns/a/sa/b".into()],
            ca_certificates: Some("/etc/certs/ca.pem".into()),
            crl: Some("/etc/certs/crl.pem".into()),
            client_certificate: Some(("/etc/certs/cert.pem".into(), "/etc/certs/key.pem".into())),
            insecure_skip_verify: false,
        };
        let simple = Origination { sni: "db".into(), insecure_skip_verify: true, ..Default::default() };
        let from_secret = Origination {
            sni: "api.example.com".into(),
            ca_certificates: Some(Pem::Inline(b"-----BEGIN CERTIFICATE-----\n".to_vec())),
            crl: Some(Pem::Inline(b"-----BEGIN X509 CRL-----\n".to_vec())),
            client_certificate: Some((Pem::Inline(b"chain".to_vec()), Pem::Inline(b"key text".to_vec()))),
            ..Default::default()
        };
        let shown = serde_json::to_string(&from_secret).unwrap();
        assert!(shown.contains(r#""[inline, 8 bytes]""#) && !shown.contains("key text"), "{shown}");
        let mut cluster = envoy_types::pb::envoy::config::cluster::v3::Cluster {
            transport_socket: Some(socket(&from_secret)),
            ..Default::default()
        };
        assert!(redact_keys(&mut cluster));
        let context = upstream_context(cluster.transport_socket.as_ref().unwrap()).unwrap().unwrap();
        let shown = parse(&context).unwrap();
        assert_eq!(shown.client_certificate.unwrap().1, Pem::Inline(b"[redacted]".to_vec()));
        assert_eq!(shown.ca_certificates, from_secret.ca_certificates, "only the key");
        for origination in [mutual, simple, from_secret] {
            let socket = socket(&origination);
            let context = upstream_context(&socket).unwrap().unwrap();
            assert_eq!(parse(&context), Ok(origination));
        }
    }
}
