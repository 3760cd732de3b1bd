//! Workload identity: the SPIFFE id `spiffe://<trust domain>/ns/<namespace>/sa/<service account>` that a
//! workload's certificate carries as its URI SAN, shared by the operator (which signs it) and the proxy (which
//! asks for it and checks its peers'). Pure.

use std::fmt;
use std::str::FromStr;

/// Istio's and Kubernetes' default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// A workload identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a workload SPIFFE id (spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT)")]
pub struct NotASpiffeId(pub String);

impl SpiffeId {
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> Self {
        Self {
            trust_domain: trust_domain.to_string(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}/ns/{}/sa/{}", self.trust_domain, self.namespace, self.service_account)
    }
}

impl FromStr for SpiffeId {
    type Err = NotASpiffeId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || NotASpiffeId(text.to_string());
        let rest = text.strip_prefix("spiffe://").ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [trust_domain, "ns", namespace, "sa", service_account] = parts.as_slice() else { return Err(bad()) };
        let fine = |part: &str| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        };
        if ![trust_domain, namespace, service_account].iter().all(|part| fine(part)) {
            return Err(bad());
        }
        Ok(Self::new(trust_domain, namespace, service_account))
    }
}

/// The workload identity a certificate (DER) carries: its first URI SAN that is a SPIFFE id.
pub fn spiffe_id_of(certificate: &[u8]) -> Option<SpiffeId> {
    uri_sans(certificate).iter().find_map(|uri| uri.parse().ok())
}

/// Every URI SAN of a certificate (DER); empty when it does not parse.
pub fn uri_sans(certificate: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, parsed)) = X509Certificate::from_der(certificate) else { return Vec::new() };
    let Ok(Some(sans)) = parsed.subject_alternative_name() else { return Vec::new() };
    sans.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spiffe_id_round_trips_and_anything_else_is_refused() {
        let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/reviews".parse().unwrap();
        assert_eq!(id, SpiffeId::new("cluster.local", "default", "reviews"));
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/reviews");
        for bad in [
            "https://cluster.local/ns/default/sa/reviews",
            "spiffe://cluster.local/ns/default",
            "spiffe://cluster.local/ns//sa/reviews",
            "spiffe://cluster.local/sa/default/ns/reviews",
            "spiffe://cluster.local/ns/default/sa/reviews/extra",
            "spiffe://cluster.local/ns/de fault/sa/reviews",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad}");
        }
    }
}
