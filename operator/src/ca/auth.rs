//! Who is asking for a certificate: the caller's bearer token names one workload (namespace and service
//! account). On Kubernetes the token is the pod's projected ServiceAccount token, checked with a `TokenReview`
//! (audience Weft's only). Standalone mode has no API server, so the operator trusts a directory of per-workload
//! token files instead: `DIR/<namespace>/<service account>` holds that workload's token, and the proxy is given
//! the same text in its token file (as a VM would get a bootstrap token). The directory is read per request, so
//! adding a workload needs no restart; tokens are compared by SHA-256 digest.

use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};

/// Istio's audience for workload tokens sent to the CA; Weft's default.
pub const DEFAULT_AUDIENCE: &str = "weft-ca";

/// A caller the authenticator vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub namespace: String,
    pub service_account: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token (metadata `authorization: Bearer ...`)")]
    NoToken,
    #[error("the token is not valid")]
    Rejected,
    #[error("the token is not for audience {0:?}")]
    WrongAudience(String),
    #[error("the token is not a ServiceAccount's ({0:?})")]
    NotAServiceAccount(String),
    #[error("token check failed: {0}")]
    Unavailable(String),
}

/// How tokens are checked.
#[derive(Clone)]
pub enum Authenticator {
    /// Standalone: per-workload token files.
    TokenFiles(PathBuf),
    /// Kubernetes: `TokenReview` against the API server.
    TokenReview { client: kube::Client, audience: String },
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TokenFiles(dir) => write!(f, "TokenFiles({})", dir.display()),
            Self::TokenReview { audience, .. } => write!(f, "TokenReview(audience {audience})"),
        }
    }
}

impl Authenticator {
    pub async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        match self {
            Self::TokenFiles(dir) => {
                let dir = dir.clone();
                let token = token.to_string();
                tokio::task::spawn_blocking(move || token_file_owner(&dir, &token))
                    .await
                    .map_err(|e| AuthError::Unavailable(e.to_string()))?
            }
            Self::TokenReview { client, audience } => review(client, token, audience).await,
        }
    }
}

/// The workload whose token file holds `token`.
fn token_file_owner(dir: &std::path::Path, token: &str) -> Result<Caller, AuthError> {
    let wanted = digest(token.trim().as_bytes());
    let unreadable = |e: std::io::Error| AuthError::Unavailable(format!("{}: {e}", dir.display()));
    for namespace in std::fs::read_dir(dir).map_err(unreadable)?.flatten() {
        let Ok(accounts) = std::fs::read_dir(namespace.path()) else { continue };
        for account in accounts.flatten() {
            let Ok(text) = std::fs::read_to_string(account.path()) else { continue };
            let (namespace_name, account_name) = (namespace.file_name(), account.file_name());
            let (Some(ns), Some(sa)) = (namespace_name.to_str(), account_name.to_str()) else { continue };
            if !text.trim().is_empty() && digest(text.trim().as_bytes()) == wanted {
                return Ok(Caller { namespace: ns.to_string(), service_account: sa.to_string() });
            }
        }
    }
    Err(AuthError::Rejected)
}

fn digest(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().to_vec()
}

async fn review(client: &kube::Client, token: &str, audience: &str) -> Result<Caller, AuthError> {
    let request = TokenReview {
        spec: TokenReviewSpec { token: Some(token.to_string()), audiences: Some(vec![audience.to_string()]) },
        ..Default::default()
    };
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let answer =
        reviews.create(&PostParams::default(), &request).await.map_err(|e| AuthError::Unavailable(e.to_string()))?;
    let status = answer.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        return Err(AuthError::Rejected);
    }
    if !status.audiences.unwrap_or_default().iter().any(|a| a == audience) {
        return Err(AuthError::WrongAudience(audience.to_string()));
    }
    let username = status.user.and_then(|u| u.username).unwrap_or_default();
    service_account_of(&username).ok_or(AuthError::NotAServiceAccount(username))
}

/// `system:serviceaccount:<namespace>:<name>`, the username Kubernetes gives a ServiceAccount token.
pub fn service_account_of(username: &str) -> Option<Caller> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, service_account) = rest.split_once(':')?;
    if namespace.is_empty() || service_account.is_empty() || service_account.contains(':') {
        return None;
    }
    Some(Caller { namespace: namespace.to_string(), service_account: service_account.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_account_username_names_the_workload() {
        let caller = service_account_of("system:serviceaccount:shop:reviews").unwrap();
        assert_eq!(caller, Caller { namespace: "shop".into(), service_account: "reviews".into() });
        for other in ["system:node:worker-1", "system:serviceaccount:shop", "system:serviceaccount::x", "alice"] {
            assert_eq!(service_account_of(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn a_token_file_names_its_workload_and_an_unknown_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shop")).unwrap();
        std::fs::write(dir.path().join("shop/reviews"), "secret-reviews\n").unwrap();
        std::fs::write(dir.path().join("shop/empty"), "\n").unwrap();
        let auth = Authenticator::TokenFiles(dir.path().to_path_buf());
        let caller = auth.authenticate("secret-reviews").await.unwrap();
        assert_eq!(caller, Caller { namespace: "shop".into(), service_account: "reviews".into() });
        assert!(matches!(auth.authenticate("secret-ratings").await, Err(AuthError::Rejected)));
        assert!(matches!(auth.authenticate("").await, Err(AuthError::Rejected)), "an empty file is no token");
    }
}
