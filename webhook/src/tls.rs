//! The serving certificate: loaded from PEM files before the port is bound, then re-read on an interval and swapped
//! in when the files change (cert-manager and Kubernetes secret volumes replace them in place). A change that does
//! not load (a key half-written, a cert that does not match it) keeps the old certificate and is retried.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("TLS certificate {} with key {}: {error}", cert.display(), key.display())]
    Invalid { cert: PathBuf, key: PathBuf, error: std::io::Error },
}

/// Keeps a [`RustlsConfig`] in step with the certificate and key files.
#[derive(Debug)]
pub struct CertReloader {
    cert: PathBuf,
    key: PathBuf,
    config: RustlsConfig,
    /// The file contents now served, and the last contents that failed to load (not retried until they change).
    loaded: Pem,
    rejected: Option<Pem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pem {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl CertReloader {
    /// Loads the certificate chain and key; fails (before anything listens) when they are unreadable or do not match.
    pub async fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.into(), key.into());
        let pem = read(&cert, &key).await?;
        let config = RustlsConfig::from_pem(pem.cert.clone(), pem.key.clone())
            .await
            .map_err(|error| TlsError::Invalid { cert: cert.clone(), key: key.clone(), error })?;
        Ok(Self { cert, key, config, loaded: pem, rejected: None })
    }

    /// The config to serve with; reloads show through every clone.
    pub fn config(&self) -> RustlsConfig {
        self.config.clone()
    }

    /// Re-reads the files; swaps the certificate in when they changed. `Ok(true)` when it did.
    pub async fn check(&mut self) -> Result<bool, TlsError> {
        let pem = read(&self.cert, &self.key).await?;
        if pem == self.loaded || self.rejected.as_ref() == Some(&pem) {
            return Ok(false);
        }
        match self.config.reload_from_pem(pem.cert.clone(), pem.key.clone()).await {
            Ok(()) => {
                self.loaded = pem;
                self.rejected = None;
                Ok(true)
            }
            Err(error) => {
                self.rejected = Some(pem);
                Err(TlsError::Invalid { cert: self.cert.clone(), key: self.key.clone(), error })
            }
        }
    }

    /// Checks every `interval`, forever; logs reloads and failures (each failing content once).
    pub async fn run(mut self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match self.check().await {
                Ok(true) => tracing::info!(cert = %self.cert.display(), "reloaded TLS certificate"),
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "keeping the previous TLS certificate"),
            }
        }
    }
}

async fn read(cert: &Path, key: &Path) -> Result<Pem, TlsError> {
    let read = |path: &Path| {
        let path = path.to_path_buf();
        async move { tokio::fs::read(&path).await.map_err(|error| TlsError::Read { path, error }) }
    };
    Ok(Pem { cert: read(cert).await?, key: read(key).await? })
}
