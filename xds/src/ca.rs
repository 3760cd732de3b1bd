//! The certificate service a proxy asks for its workload certificate: Istio's `IstioCertificateService` wire
//! format (`istio/v1/auth/ca.proto`), so the two sides share one definition and an Istio agent could ask too.
//! The caller authenticates with `authorization: Bearer <token>`; the CSR must ask for exactly the caller's
//! identity.

/// The gRPC service name.
pub const SERVICE: &str = "istio.v1.auth.IstioCertificateService";
/// The one method's path.
pub const CREATE_CERTIFICATE: &str = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

/// `IstioCertificateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CertificateRequest {
    /// PEM-encoded certificate signing request.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// Requested lifetime in seconds; the CA may shorten it.
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
    #[prost(message, optional, tag = "4")]
    pub metadata: Option<prost_types::Struct>,
}

/// `IstioCertificateResponse`: PEM certificates, the workload's first and the root last.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CertificateResponse {
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}
