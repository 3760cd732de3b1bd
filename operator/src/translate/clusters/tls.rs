//! How a cluster reaches its endpoints, from the DestinationRule's `tls` (its port's, subset's or the rule's):
//! unset, auto mutual TLS (the mesh's mutual TLS to the endpoints that run a sidecar, plaintext to the others,
//! by `transport_socket_matches`); `DISABLE`, plaintext; `ISTIO_MUTUAL`, the mesh's mutual TLS to every
//! endpoint; `SIMPLE`/`MUTUAL`, TLS origination with certificates from files. The peer identities of mutual TLS
//! are the Service's workload identities, in its namespace (Istio's "service accounts of the service"), unless
//! `subjectAltNames` says otherwise. Pure.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
use envoy_types::pb::envoy::config::core::v3::TransportSocket;
use weft_crds::destination_rule::{ClientTlsSettings, TlsMode};
use weft_xds::SpiffeId;
use weft_xds::origination::Origination;

use crate::index::{ServiceModel, ServicePortModel};

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

/// The transport of `service`'s `port` under `tls`, in a mesh with a CA of `trust_domain` (else no mutual TLS).
pub(super) fn transport(
    service: &ServiceModel,
    port: &ServicePortModel,
    trust_domain: Option<&str>,
    tls: Option<&ClientTlsSettings>,
) -> Transport {
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
            let origination = Origination {
                sni,
                subject_alt_names: settings.subject_alt_names,
                ca_certificates: settings.ca_certificates,
                client_certificate: match settings.mode {
                    TlsMode::Mutual => settings.client_certificate.zip(settings.private_key),
                    _ => None,
                },
                insecure_skip_verify: settings.insecure_skip_verify.unwrap_or(false),
            };
            Transport::socket(weft_xds::origination::socket(&origination))
        }
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
        let (clusters, endpoints) = super::super::of_service(service, rule, snapshot.trust_domain.as_deref());
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
        let (clusters, endpoints) = super::super::of_service(service, rule, None);
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
        let (simple, _) = translated("{mode: SIMPLE, caCertificates: /etc/ca.pem}");
        let context = weft_xds::origination::upstream_context(&simple.transport_socket.unwrap()).unwrap().unwrap();
        let origination = weft_xds::origination::parse(&context).unwrap();
        assert_eq!(
            (origination.sni.as_str(), origination.ca_certificates.as_deref()),
            ("db.shop.svc.cluster.local", Some("/etc/ca.pem"))
        );
    }
}
