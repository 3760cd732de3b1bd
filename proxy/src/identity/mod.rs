//! The proxy's workload identity: a key made in memory (it never leaves the process), a certificate for the
//! pod's SPIFFE id obtained from the operator's CA with the workload's token ([`client`]), renewed at half its
//! lifetime, and the TLS configurations built from it ([`tls`]), published on a `watch` so that new
//! connections use the newest certificate while open ones keep theirs.

pub mod client;
pub mod csr;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use weft_xds::SpiffeId;

pub use tls::Credentials;

/// Where and how the proxy gets its certificate.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// The operator's TLS port, e.g. `https://weft-operator.weft-system.svc:15012`.
    pub ca_address: String,
    /// The trust bundle: PEM roots the CA's and every peer's certificate must chain to. Read again at every
    /// renewal, so a root rotation reaches the proxy without a restart.
    pub roots_file: PathBuf,
    /// The workload's token (a projected ServiceAccount token on Kubernetes), read again at every renewal.
    pub token_file: PathBuf,
    pub id: SpiffeId,
    /// The lifetime asked for; the CA may grant less.
    pub lifetime: Duration,
}

/// The current credentials; `None` until the first certificate arrives.
pub type CredentialsRx = watch::Receiver<Option<Arc<Credentials>>>;

/// When to renew a certificate valid from `issued` to `expires`: at half its lifetime (Istio's default grace
/// ratio), never in the past.
pub fn renewal_time(issued: SystemTime, expires: SystemTime, now: SystemTime) -> SystemTime {
    let lifetime = expires.duration_since(issued).unwrap_or_default();
    (issued + lifetime / 2).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_renewed_at_half_its_lifetime() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        assert_eq!(renewal_time(issued, issued + day, issued), issued + day / 2);
        let late = issued + day;
        assert_eq!(renewal_time(issued, issued + day, late), late, "overdue: now");
    }
}
