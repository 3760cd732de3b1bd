//! `weft-webhook`: Weft's admission webhook. The mutating side injects `weft-init` and the `weft-proxy` sidecar into
//! pods; the validating side checks Weft's resources (every kind of `weft_crds::kinds`) before they are stored.
//!
//! Pure cores ([`inject`], [`validate`]) and the wire format ([`admission`]) are separate from the HTTPS edge
//! ([`server`], [`tls`]), so nearly everything is tested without sockets.

#![forbid(unsafe_code)]

pub mod admission;
pub mod config;
pub mod discover;
pub mod inject;
pub mod limits;
pub mod quantity;
pub mod server;
pub mod tls;
pub mod validate;

pub use config::{InjectConfig, ProxyResources, SidecarMode};

/// Makes `ring` the process's rustls crypto provider. Call first thing; calling again is harmless.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::config::{InjectConfig, SidecarMode};

    pub fn config(mode: SidecarMode) -> InjectConfig {
        InjectConfig::with_defaults("weft-proxy:test", mode)
    }
}
