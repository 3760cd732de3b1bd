//! `trafficPolicy.tls` (Istio's `ClientTLSSettings`): how the client's sidecar talks to the host. Unset: auto
//! mutual TLS (mutual TLS to the endpoints that run a sidecar, plaintext to the others). `DISABLE`: plaintext to
//! every endpoint. `ISTIO_MUTUAL`: the mesh's mutual TLS to every endpoint. `SIMPLE`: TLS origination (the
//! application speaks plaintext, the sidecar TLS) verifying the server against `caCertificates` (the system's
//! roots when unset). `MUTUAL`: the same, presenting `clientCertificate`/`privateKey`. File paths are on the
//! sidecar's file system.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    #[serde(default)]
    pub mode: TlsMode,
    /// `MUTUAL`: the client certificate chain (PEM file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// `MUTUAL`: the client certificate's private key (PEM file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// `SIMPLE`/`MUTUAL`: the roots (PEM file) the server's certificate must chain to; unset: the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates: Option<String>,
    /// The certificates as a Secret (Istio). Not supported by Weft yet: refused by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_name: Option<String>,
    /// The server's certificate must carry one of these (DNS names, IP addresses or URIs); unset: `SIMPLE` and
    /// `MUTUAL` check the server name (`sni`), `ISTIO_MUTUAL` the Service's workload identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// The server name sent in the ClientHello; unset: the host's FQDN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// `SIMPLE`/`MUTUAL`: accept any server certificate (no verification at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// A revocation list (Istio). Not supported by Weft yet: refused by validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_crl: Option<String>,
}

/// Istio's client TLS modes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    #[default]
    Disable,
    Simple,
    Mutual,
    IstioMutual,
}
