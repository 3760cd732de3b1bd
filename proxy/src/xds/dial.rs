//! How the proxy reaches the control plane: a fixed endpoint (plaintext, or TLS verified against the trust
//! bundle), or, with a workload identity over TLS, presenting the proxy's current certificate on each new
//! connection, so the operator knows which workload is asking (and serves it only its own pod's config).

use std::path::PathBuf;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::identity::CredentialsRx;

pub enum XdsDial {
    Fixed(Endpoint),
    /// `bundle`: the trust bundle's file, read for each connection so a root rotation reaches it too.
    WithIdentity {
        endpoint: Endpoint,
        bundle: PathBuf,
        credentials: CredentialsRx,
    },
}

impl XdsDial {
    /// The endpoint for the next connection; with an identity, waits for the first certificate.
    pub async fn endpoint(&self) -> Endpoint {
        let (endpoint, bundle, credentials) = match self {
            Self::Fixed(endpoint) => return endpoint.clone(),
            Self::WithIdentity { endpoint, bundle, credentials } => (endpoint, bundle, credentials),
        };
        let mut credentials = credentials.clone();
        let current = match credentials.wait_for(Option::is_some).await {
            Ok(current) => current.clone(),
            Err(_) => None,
        };
        let Some(current) = current else { return endpoint.clone() };
        let roots_pem = match std::fs::read(bundle) {
            Ok(pem) => pem,
            Err(err) => {
                tracing::warn!(bundle = %bundle.display(), error = %err, "cannot read the trust bundle; keeping the last connection settings");
                return endpoint.clone();
            }
        };
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(roots_pem))
            .identity(Identity::from_pem(&current.pem.chain, &current.pem.key));
        endpoint.clone().tls_config(tls).unwrap_or_else(|err| {
            tracing::warn!(error = %err, "the xDS connection cannot present the workload certificate");
            endpoint.clone()
        })
    }
}
