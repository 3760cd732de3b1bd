//! Picks the sidecar mode at startup: from `--native-sidecars true|false`, or (auto) from the API server's version,
//! read with the in-cluster config or KUBECONFIG. An unreachable server in auto mode falls back to classic
//! sidecars, which work on every version, with a warning.

use std::time::Duration;

use crate::config::{SidecarMode, native_sidecars_supported};

/// The `--native-sidecars` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NativeSidecars {
    /// Native when the API server is Kubernetes >= 1.29, classic otherwise or when it cannot be asked.
    Auto,
    /// Always native (the cluster must be >= 1.29, or 1.28 with the SidecarContainers feature gate).
    True,
    /// Always classic.
    False,
}

/// How long startup waits for the API server's `/version`.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The mode to inject with.
pub async fn sidecar_mode(flag: NativeSidecars) -> SidecarMode {
    match flag {
        NativeSidecars::True => SidecarMode::Native,
        NativeSidecars::False => SidecarMode::Classic,
        NativeSidecars::Auto => match tokio::time::timeout(VERSION_TIMEOUT, server_version()).await {
            Ok(Ok((major, minor, git))) => match native_sidecars_supported(&major, &minor, &git) {
                Some(native) => {
                    let mode = if native { SidecarMode::Native } else { SidecarMode::Classic };
                    tracing::info!(version = %git, %mode, "sidecar mode from the API server version");
                    mode
                }
                None => {
                    tracing::warn!(major = ?major, minor = ?minor, git_version = ?git, "unreadable API server version; using classic sidecars");
                    SidecarMode::Classic
                }
            },
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cannot read the API server version; using classic sidecars");
                SidecarMode::Classic
            }
            Err(_) => {
                tracing::warn!(timeout = ?VERSION_TIMEOUT, "API server version timed out; using classic sidecars");
                SidecarMode::Classic
            }
        },
    }
}

async fn server_version() -> Result<(String, String, String), kube::Error> {
    let client = kube::Client::try_default().await?;
    let info = client.apiserver_version().await?;
    Ok((info.major, info.minor, info.git_version))
}
