//! The certificate service on the operator's TLS port: `CreateCertificate` authenticates the caller's token,
//! signs its CSR for exactly its own identity, and answers with the chain. Hand-written tonic glue for Istio's
//! one-method service ([`weft_xds::ca`]); there is no protoc here and the two messages are small.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};
use weft_xds::SpiffeId;
use weft_xds::ca::{CREATE_CERTIFICATE, CertificateRequest, CertificateResponse};

use super::auth::{AuthError, Authenticator};
use super::authority::{Authority, SignError};
use crate::metrics::Metrics;

/// What the CA hands out.
#[derive(Debug, Clone)]
pub struct Issuance {
    pub trust_domain: String,
    /// Lifetime when the request asks for none; also the longest granted.
    pub max_lifetime: Duration,
}

#[derive(Clone)]
pub struct CertificateService {
    inner: Arc<Inner>,
}

struct Inner {
    authority: Arc<Authority>,
    authenticator: Authenticator,
    issuance: Issuance,
    metrics: Arc<Metrics>,
}

impl CertificateService {
    pub fn new(
        authority: Arc<Authority>,
        authenticator: Authenticator,
        issuance: Issuance,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { inner: Arc::new(Inner { authority, authenticator, issuance, metrics }) }
    }
}

impl Inner {
    async fn create(&self, request: Request<CertificateRequest>) -> Result<CertificateResponse, Status> {
        let token = bearer_token(request.metadata()).ok_or(AuthError::NoToken).map_err(unauthenticated)?;
        let caller = self.authenticator.authenticate(token).await.map_err(unauthenticated)?;
        let identity = SpiffeId::new(&self.issuance.trust_domain, &caller.namespace, &caller.service_account);
        let request = request.into_inner();
        let lifetime = granted_lifetime(request.validity_duration, self.issuance.max_lifetime);
        match self.authority.sign_workload(&request.csr, &identity, lifetime, SystemTime::now()) {
            Ok(cert_chain) => {
                tracing::info!(%identity, lifetime_s = lifetime.as_secs(), "certificate issued");
                self.metrics.certificate_issued("issued");
                Ok(CertificateResponse { cert_chain })
            }
            Err(err) => {
                tracing::warn!(%identity, error = %err, "certificate refused");
                self.metrics.certificate_issued("refused");
                Err(match err {
                    SignError::Sign(_) => Status::internal(err.to_string()),
                    SignError::Csr(_) | SignError::WrongIdentity { .. } => Status::invalid_argument(err.to_string()),
                })
            }
        }
    }
}

fn unauthenticated(err: AuthError) -> Status {
    tracing::warn!(error = %err, "certificate request not authenticated");
    match err {
        AuthError::Unavailable(_) => Status::unavailable(err.to_string()),
        _ => Status::unauthenticated(err.to_string()),
    }
}

/// The requested lifetime (seconds), capped by the CA's; none or nonsense asked: the CA's.
pub fn granted_lifetime(asked_seconds: i64, max: Duration) -> Duration {
    match u64::try_from(asked_seconds) {
        Ok(seconds) if seconds > 0 => Duration::from_secs(seconds).min(max),
        _ => max,
    }
}

fn bearer_token(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim();
    (!token.is_empty()).then_some(token)
}

impl NamedService for CertificateService {
    const NAME: &'static str = weft_xds::ca::SERVICE;
}

struct CreateCertificate(Arc<Inner>);

impl UnaryService<CertificateRequest> for CreateCertificate {
    type Response = CertificateResponse;
    type Future = BoxFuture<Response<CertificateResponse>, Status>;

    fn call(&mut self, request: Request<CertificateRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.create(request).await.map(Response::new) })
    }
}

impl<B> Service<http::Request<B>> for CertificateService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            if request.uri().path() != CREATE_CERTIFICATE {
                return Ok(Status::unimplemented("unknown method").into_http());
            }
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(CreateCertificate(inner), request).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifetime_asked_for_is_capped_by_the_cas() {
        let day = Duration::from_secs(86_400);
        assert_eq!(granted_lifetime(3600, day), Duration::from_secs(3600));
        assert_eq!(granted_lifetime(10 * 86_400, day), day);
        assert_eq!(granted_lifetime(0, day), day);
        assert_eq!(granted_lifetime(-5, day), day);
    }
}
