//! The mesh's certificate authority in the operator: [`authority`] signs (pure), [`store`] (a directory) or
//! [`secret`] (Kubernetes) keeps its key, [`auth`] says who a caller is, [`service`] answers proxies'
//! certificate requests on the TLS port (15012), next to ADS over TLS, and [`bundle`] publishes the trust
//! bundle to namespaces on Kubernetes.

pub mod auth;
pub mod authority;
pub mod bundle;
pub mod secret;
pub mod service;
pub mod store;

pub use auth::Authenticator;
pub use authority::Authority;
pub use service::{CertificateService, Issuance};
