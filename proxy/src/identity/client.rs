//! Getting and renewing the certificate: read the token and trust bundle, make a key and CSR, ask the CA over
//! TLS (verified against the trust bundle), publish the credentials, sleep until half their lifetime, again.
//! Failures are retried with backoff; the last good credentials stay published until they expire.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::watch;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use weft_xds::ca::{CREATE_CERTIFICATE, CertificateRequest, CertificateResponse};

use super::csr;
use super::tls::{Credentials, CredentialsError, Pem};
use super::{IdentitySettings, renewal_time};
use crate::metrics::Metrics;

const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error("the trust bundle {0} holds no certificate")]
    NoRoots(String),
    #[error("--ca-address {0:?}: {1}")]
    Address(String, String),
    #[error("making the key and CSR: {0}")]
    Csr(#[from] rcgen::Error),
    #[error("the CA is unreachable: {0}")]
    Connect(String),
    #[error("the CA refused: {0}")]
    Refused(String),
    #[error("the CA's answer is unusable: {0}")]
    Answer(#[from] CredentialsError),
}

/// Keeps `published` holding valid credentials, forever.
pub async fn run(
    settings: IdentitySettings,
    published: watch::Sender<Option<Arc<Credentials>>>,
    metrics: Arc<Metrics>,
) {
    let mut retry = FIRST_RETRY;
    loop {
        let wait = match fetch(&settings).await {
            Ok(credentials) => {
                retry = FIRST_RETRY;
                let received = SystemTime::now();
                let renew = renewal_time(received, credentials.not_after);
                tracing::info!(identity = %credentials.id, expires = ?credentials.not_after, "workload certificate");
                metrics.certificate(true, credentials.not_after);
                published.send_replace(Some(Arc::new(credentials)));
                renew.duration_since(received).unwrap_or_default()
            }
            Err(err) => {
                tracing::warn!(identity = %settings.id, error = %err, retry_ms = retry.as_millis() as u64, "no workload certificate");
                metrics.certificate(false, SystemTime::UNIX_EPOCH);
                let wait = retry;
                retry = (retry * 2).min(LONGEST_RETRY);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// One round: a new key, a CSR, the CA's answer.
pub async fn fetch(settings: &IdentitySettings) -> Result<Credentials, FetchError> {
    let read =
        |path: &std::path::Path| std::fs::read(path).map_err(|e| FetchError::Read(path.display().to_string(), e));
    let roots_pem = read(&settings.roots_file)?;
    let roots: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&roots_pem).filter_map(Result::ok).collect();
    if roots.is_empty() {
        return Err(FetchError::NoRoots(settings.roots_file.display().to_string()));
    }
    let token = String::from_utf8_lossy(&read(&settings.token_file)?).trim().to_string();
    let request = csr::new_request(&settings.id)?;
    let answer = ask(settings, &roots_pem, &token, &request.csr_pem).await?;
    let chain: Vec<CertificateDer<'static>> = answer
        .cert_chain
        .iter()
        .flat_map(|pem| CertificateDer::pem_slice_iter(pem.as_bytes()))
        .filter_map(Result::ok)
        .collect();
    let pem = Pem { chain: answer.cert_chain.concat(), key: request.key_pem };
    Ok(Credentials::new(settings.id.clone(), chain, request.key_der, roots, pem)?)
}

async fn ask(
    settings: &IdentitySettings,
    roots_pem: &[u8],
    token: &str,
    csr_pem: &str,
) -> Result<CertificateResponse, FetchError> {
    let address = |m: String| FetchError::Address(settings.ca_address.clone(), m);
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(roots_pem));
    let endpoint = Endpoint::from_shared(settings.ca_address.clone())
        .map_err(|e| address(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .tls_config(tls)
        .map_err(|e| address(e.to_string()))?;
    let channel = endpoint.connect().await.map_err(|e| FetchError::Connect(weft_process::error_chain(&e)))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| FetchError::Connect(weft_process::error_chain(&e)))?;
    let mut request = tonic::Request::new(CertificateRequest {
        csr: csr_pem.to_string(),
        validity_duration: settings.lifetime.as_secs() as i64,
        metadata: None,
    });
    let bearer =
        format!("Bearer {token}").parse().map_err(|_| FetchError::Refused("the token is not printable text".into()))?;
    request.metadata_mut().insert("authorization", bearer);
    let path = http::uri::PathAndQuery::from_static(CREATE_CERTIFICATE);
    let response = grpc
        .unary(request, path, tonic_prost::ProstCodec::default())
        .await
        .map_err(|status| FetchError::Refused(format!("{:?}: {}", status.code(), status.message())))?;
    Ok(response.into_inner())
}
