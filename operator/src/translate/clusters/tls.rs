//! How a cluster reaches its endpoints, from the DestinationRule's `tls` (its port's, subset's or the rule's):
//! unset, auto mutual TLS (the mesh's mutual TLS to the endpoints that run a sidecar, plaintext to the others,
//! by `transport_socket_matches`); `DISABLE`, plaintext; `ISTIO_MUTUAL`, the mesh's mutual TLS to every
//! endpoint; `SIMPLE`/`MUTUAL`, TLS origination with certificates from files, or from the Secret
//! `credentialName` names (inline; a missing Secret or key is empty, so the proxy trusts and presents nothing
//! rather than anything else, and the rule's status says why). The peer identities of mutual TLS
//! are the Service's workload identities, in its namespace (Istio's "service accounts of the service"), unless
//! `subjectAltNames` says otherwise. Pure.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
use envoy_types::pb::envoy::config::core::v3::TransportSocket;
use weft_crds::destination_rule::{ClientTlsSettings, TlsMode};
use weft_xds::SpiffeId;
use weft_xds::origination::{Origination, Pem};

use crate::index::credentials::{Credentials, reads_roots, resolve};
use crate::index::{ServiceModel, ServicePortModel};

/// What a cluster's transport is made with besides its Service and policy.
pub(super) struct TransportContext<'a> {
    /// The mesh's trust domain when it has a CA (else no mutual TLS).
    pub trust_domain: Option<&'a str>,
    /// The namespace of the DestinationRule applied, whose Secrets a `credentialName` names, and the Secrets.
    pub credentials: Option<(&'a str, &'a Credentials)>,
}

/// A cluster's transport sockets, and whether its endpoints that run a sidecar are marked so (auto mutual TLS).
#[derive(Default)]
pub(super) struct Transport {
    matches: Vec<TransportSocketMatch>,
    socket: Option<TransportSocket>,
    pub marks_sidecars: bool,
}

impl Transport {
    pub fn apply(self, cluster: &mut Cluster) {
        cluster.transport_socket_matches = self.matches;
        cluster.transport_socket = self.socket;
    }

    fn socket(socket: TransportSocket) -> Self {
        Self { socket: Some(socket), ..Self::default() }
    }
}

/// The transport of `service`'s `port` under `tls`.
pub(super) fn transport(
    service: &ServiceModel,
    port: &ServicePortModel,
    context: &TransportContext<'_>,
    tls: Option<&ClientTlsSettings>,
) -> Transport {
    let trust_domain = context.trust_domain;
    let fqdn = service.fqdn();
    let sni = tls.and_then(|t| t.sni.clone()).unwrap_or_else(|| fqdn.clone());
    let plaintext = Transport::default;
    match tls.map(|t| t.mode) {
        None => {
            let peers = trust_domain.map(|domain| peer_identities(service, port, domain)).unwrap_or_default();
            if peers.is_empty() {
                return plaintext();
            }
            let matches = weft_xds::mtls::cluster_socket_matches(&peers, &sni);
            Transport { matches, socket: None, marks_sidecars: true }
        }
        Some(TlsMode::Disable) => plaintext(),
        Some(TlsMode::IstioMutual) => {
            // Without a CA there is no mutual TLS to speak: plaintext, as the endpoints' sidecars accept it.
            let Some(domain) = trust_domain else { return plaintext() };
            let wanted = tls.map(|t| t.subject_alt_names.clone()).unwrap_or_default();
            let peers = if wanted.is_empty() { peer_identities(service, port, domain) } else { wanted };
            Transport::socket(weft_xds::mtls::mesh_tls_socket(&peers, &sni))
        }
        Some(TlsMode::Simple | TlsMode::Mutual) => {
            let settings = tls.cloned().unwrap_or_default();
            let ((ca_certificates, crl), client_certificate) = match &settings.credential_name {
                Some(name) => {
                    let (roots, client) = from_secret(context, name, settings.mode);
                    (roots.filter(|_| reads_roots(&settings)).unwrap_or_default(), client)
                }
                None => (
                    (settings.ca_certificates.map(Pem::File), settings.ca_crl.map(Pem::File)),
                    match settings.mode {
                        TlsMode::Mutual => {
                            settings.client_certificate.map(Pem::File).zip(settings.private_key.map(Pem::File))
                        }
                        _ => None,
                    },
                ),
            };
            let origination = Origination {
                sni,
                subject_alt_names: settings.subject_alt_names,
                ca_certificates,
                crl,
                client_certificate,
                insecure_skip_verify: settings.insecure_skip_verify.unwrap_or(false),
            };
            Transport::socket(weft_xds::origination::socket(&origination))
        }
    }
}

/// Roots, and the revocation lists that come with them.
type Roots = (Option<Pem>, Option<Pem>);

/// The roots (with their revocation lists, if any) and (`MUTUAL`) client certificate of the Secret `name`:
/// `SIMPLE` trusts its roots, `MUTUAL` presents its certificate and trusts its roots if it has any (the system's
/// otherwise, as without `caCertificates`). What is missing is empty, never left out: nothing is trusted or
/// presented in its place.
fn from_secret(context: &TransportContext<'_>, name: &str, mode: TlsMode) -> (Option<Roots>, Option<(Pem, Pem)>) {
    let found = context.credentials.and_then(|(namespace, credentials)| resolve(credentials, namespace, name));
    let found = found.unwrap_or_default();
    let inline = |part: Option<Vec<u8>>| Pem::Inline(part.unwrap_or_default());
    let crl = found.crl.map(Pem::Inline);
    match mode {
        TlsMode::Mutual => {
            (Some((found.ca.map(Pem::Inline), crl)), Some((inline(found.certificate), inline(found.key))))
        }
        _ => (Some((Some(inline(found.ca)), crl)), None),
    }
}

/// The SPIFFE ids behind `port`'s endpoints, sorted, each once; empty when no endpoint runs a sidecar.
fn peer_identities(service: &ServiceModel, port: &ServicePortModel, trust_domain: &str) -> Vec<String> {
    let accounts: BTreeSet<&str> = port.endpoints.iter().filter_map(|e| e.sidecar_account.as_deref()).collect();
    accounts.into_iter().map(|account| SpiffeId::new(trust_domain, &service.namespace, account).to_string()).collect()
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;

    use crate::index::snapshot_of_yaml;

    const MESHED: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\n\
spec: {selector: {app: db}, ports: [{port: 5432}]}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: db-1, namespace: shop, labels: {app: db, security.weft.dev/tlsMode: weft}}\n\
spec: {serviceAccountName: db}\nstatus: {podIP: 10.0.0.9}\n";

    /// The cluster of port 5432 and whether its endpoint is marked as running a sidecar, under `tls`.
    fn translated(tls: &str) -> (Cluster, bool) {
        let rule = format!(
            "---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: db, namespace: shop}}\n\
             spec: {{host: db, trafficPolicy: {{tls: {tls}}}}}\n"
        );
        let yaml = if tls.is_empty() { MESHED.to_string() } else { format!("{MESHED}{rule}") };
        let mut snapshot = snapshot_of_yaml(&yaml);
        snapshot.trust_domain = Some("cluster.local".into());
        let service = &snapshot.services["db.shop.svc.cluster.local"];
        let rule = snapshot.default_destination_rule("db.shop.svc.cluster.local");
        let (clusters, endpoints) = super::super::of_service(service, rule, &snapshot, true);
        let marked = endpoints[0].endpoints[0].lb_endpoints[0].metadata.is_some();
        (clusters[0].clone(), marked)
    }

    #[test]
    fn passthrough_is_an_original_destination_cluster_without_endpoints() {
        let yaml = format!(
            "{MESHED}---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: db, namespace: shop}}\n\
             spec: {{host: db, trafficPolicy: {{loadBalancer: {{simple: PASSTHROUGH}}}}}}\n"
        );
        let snapshot = snapshot_of_yaml(&yaml);
        let service = &snapshot.services["db.shop.svc.cluster.local"];
        let rule = snapshot.default_destination_rule("db.shop.svc.cluster.local");
        let (clusters, endpoints) = super::super::of_service(service, rule, &snapshot, true);
        assert!(super::super::is_original_destination(&clusters[0]));
        assert!(clusters[0].eds_cluster_config.is_none() && endpoints.is_empty());
    }

    #[test]
    fn each_mode_gives_its_transport() {
        let (auto, marked) = translated("");
        assert_eq!((auto.transport_socket_matches.len(), auto.transport_socket.is_some(), marked), (2, false, true));
        let (disabled, marked) = translated("{mode: DISABLE}");
        assert_eq!(
            (disabled.transport_socket_matches.len(), disabled.transport_socket.is_some(), marked),
            (0, false, false)
        );
        let (mutual, marked) = translated("{mode: ISTIO_MUTUAL, sni: db.internal}");
        assert_eq!((mutual.transport_socket_matches.len(), marked), (0, false));
        let socket = mutual.transport_socket.expect("the mesh's TLS to every endpoint");
        let context = weft_xds::origination::upstream_context(&socket).unwrap().unwrap();
        assert_eq!(context.sni, "db.internal");
        let (simple, _) = translated("{mode: SIMPLE, caCertificates: /etc/ca.pem, caCrl: /etc/crl.pem}");
        let context = weft_xds::origination::upstream_context(&simple.transport_socket.unwrap()).unwrap().unwrap();
        let origination = weft_xds::origination::parse(&context).unwrap();
        assert_eq!(
            (origination.sni.as_str(), origination.ca_certificates, origination.crl),
            ("db.shop.svc.cluster.local", Some("/etc/ca.pem".into()), Some("/etc/crl.pem".into()))
        );
    }

    #[test]
    fn credential_name_takes_the_secret_of_the_rule_s_namespace_inline_and_a_missing_one_trusts_nothing() {
        use weft_xds::origination::{Pem, parse, upstream_context};
        let rule = "---\napiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: db, namespace: shop}\n\
            spec: {host: db, workloadSelector: {matchLabels: {app: web}}, trafficPolicy: {tls: {mode: MUTUAL, credentialName: db-client}}}\n";
        let secret = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: db-client, namespace: shop}\ntype: kubernetes.io/tls\n\
            stringData: {tls.crt: CHAIN, tls.key: KEY, ca.crt: ROOTS, ca.crl: REVOKED, password: hunter2}\n";
        let origination_of = |yaml: &str| {
            let snapshot = snapshot_of_yaml(yaml);
            let service = &snapshot.services["db.shop.svc.cluster.local"];
            let labels = std::collections::BTreeMap::from([("app".to_string(), "web".to_string())]);
            let rules = snapshot.workload_destination_rules("shop", &labels);
            let (clusters, _) = super::super::of_service(service, rules.values().next().copied(), &snapshot, true);
            let context = upstream_context(clusters[0].transport_socket.as_ref().unwrap()).unwrap().unwrap();
            (parse(&context).unwrap(), crate::status::targets(&snapshot))
        };
        let (found, status) = origination_of(&format!("{MESHED}{rule}{secret}"));
        assert_eq!(found.client_certificate, Some((Pem::Inline(b"CHAIN".to_vec()), Pem::Inline(b"KEY".to_vec()))));
        assert_eq!(found.ca_certificates, Some(Pem::Inline(b"ROOTS".to_vec())));
        assert_eq!(found.crl, Some(Pem::Inline(b"REVOKED".to_vec())), "the revocation lists beside the roots");
        let resolved = |status: &[crate::status::StatusTarget]| {
            let rule = status.iter().find(|t| t.key.name == "db").unwrap();
            let condition = rule.conditions.iter().find(|c| c.type_ == "ResolvedRefs").unwrap();
            (condition.reason, condition.message.clone())
        };
        // REVOKED is no CRL: carried as it is, but the rule's status says the proxy cannot read it.
        let (reason, message) = resolved(&status);
        assert_eq!(reason, "InvalidCredential", "{message}");
        assert!(message.contains("revocation lists of Secret shop/db-client"), "{message}");
        let (_, status) = origination_of(&format!("{MESHED}{rule}{}", secret.replace(", ca.crl: REVOKED", "")));
        assert_eq!(resolved(&status).0, "ResolvedRefs");
        let skipping = rule.replace("credentialName: db-client", "credentialName: db-client, insecureSkipVerify: true");
        let (_, status) = origination_of(&format!("{MESHED}{skipping}{secret}"));
        assert_eq!(resolved(&status).0, "ResolvedRefs", "verifying nothing, the rule uses no revocation list");

        // Without the Secret: nothing to present or trust (the connection fails), and the status says why.
        let (missing, status) = origination_of(&format!("{MESHED}{rule}"));
        assert_eq!(missing.client_certificate, Some((Pem::Inline(Vec::new()), Pem::Inline(Vec::new()))));
        assert_eq!(
            resolved(&status),
            ("InvalidCredential", "spec.trafficPolicy.tls.credentialName: no Secret shop/db-client".to_string())
        );
        // An operator that reads no Secrets says so.
        let mut unread = snapshot_of_yaml(&format!("{MESHED}{rule}{secret}"));
        unread.credentials = Default::default();
        unread.secrets_unread = true;
        let (_, message) = resolved(&crate::status::targets(&unread));
        assert!(message.ends_with("no Secret shop/db-client (this operator reads no Secrets: --read-secrets false, the chart's operator.readSecrets=false)"), "{message}");
        // A Secret of the same name in another namespace is not the rule's.
        let (elsewhere, _) =
            origination_of(&format!("{MESHED}{rule}{}", secret.replace("namespace: shop", "namespace: web")));
        assert_eq!(elsewhere.client_certificate, missing.client_certificate);
    }
}
