//! `trafficPolicy.tls` (Istio's `ClientTLSSettings`): how the client's sidecar talks to the host. Unset: auto
//! mutual TLS (mutual TLS to the endpoints that run a sidecar, plaintext to the others). `DISABLE`: plaintext to
//! every endpoint. `ISTIO_MUTUAL`: the mesh's mutual TLS to every endpoint. `SIMPLE`: TLS origination (the
//! application speaks plaintext, the sidecar TLS) verifying the server against `caCertificates` (the system's
//! roots when unset). `MUTUAL`: the same, presenting `clientCertificate`/`privateKey`. File paths are on the
//! sidecar's file system; `credentialName` names a Secret holding the same certificates instead.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::DestinationRuleSpec;
use crate::field_path::Path;

impl DestinationRuleSpec {
    /// Every `tls` of the rule with its field path: its policy's, its ports', its subsets' and their ports'.
    pub fn tls_settings(&self) -> Vec<(Path, &ClientTlsSettings)> {
        // Most rules set no TLS at all, and this runs for every rule at every status pass and config comparison:
        // no paths are built for them.
        let mut policies =
            self.traffic_policy.iter().chain(self.subsets.iter().filter_map(|s| s.traffic_policy.as_ref()));
        if !policies.any(|p| p.tls.is_some() || p.port_level_settings.iter().any(|level| level.tls.is_some())) {
            return Vec::new();
        }
        let root = Path::root("spec");
        let subsets = self.subsets.iter().enumerate().filter_map(|(i, subset)| {
            Some((root.field("subsets").index(i).field("trafficPolicy"), subset.traffic_policy.as_ref()?))
        });
        let policies = self.traffic_policy.iter().map(|policy| (root.field("trafficPolicy"), policy)).chain(subsets);
        let mut found = Vec::new();
        for (path, policy) in policies {
            found.extend(policy.tls.as_ref().map(|tls| (path.field("tls"), tls)));
            for (i, level) in policy.port_level_settings.iter().enumerate() {
                let level_path = path.field("portLevelSettings").index(i).field("tls");
                found.extend(level.tls.as_ref().map(|tls| (level_path, tls)));
            }
        }
        found
    }
}

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
    /// `SIMPLE`/`MUTUAL`: the certificates from a Secret of the rule's namespace instead of files (Istio's keys:
    /// `cert`, `key`, `cacert`, else `tls.crt`, `tls.key`, `ca.crt`; roots from a Secret `<name>-cacert` first).
    /// Only in a rule with a `workloadSelector`, as Istio applies it at sidecars.
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
    /// `SIMPLE`/`MUTUAL`: a file of certificate revocation lists (PEM): the server's certificate and every
    /// intermediate of its chain must be covered by a current CRL of their issuer, and not revoked in it (what
    /// Envoy's `crl` enforces). Needs `caCertificates`. Not with `credentialName`, whose Secret carries the
    /// CRL instead (`crl` with `cacert`, `ca.crl` with `ca.crt`).
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
