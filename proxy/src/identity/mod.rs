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

/// Never renew sooner than this after a certificate arrived (a CA granting absurdly short lifetimes must not be
/// asked in a loop).
const MIN_RENEWAL_WAIT: Duration = Duration::from_secs(1);

/// When to renew a certificate that arrived at `received` and expires at `expires`: halfway through what was
/// left of it (Istio's default grace ratio). Measured from its arrival, not its `notBefore`, which the CA dates
/// back for clock skew.
pub fn renewal_time(received: SystemTime, expires: SystemTime) -> SystemTime {
    let left = expires.duration_since(received).unwrap_or_default();
    received + (left / 2).max(MIN_RENEWAL_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_renewed_halfway_through_what_is_left_of_it() {
        let received = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        assert_eq!(renewal_time(received, received + day), received + day / 2);
        let short = Duration::from_millis(600);
        assert_eq!(renewal_time(received, received + short), received + MIN_RENEWAL_WAIT, "never in a loop");
        assert_eq!(renewal_time(received, received - day), received + MIN_RENEWAL_WAIT, "already expired");
    }
}
