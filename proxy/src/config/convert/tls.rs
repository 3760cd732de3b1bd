//! A cluster's transport sockets -> how it reaches its endpoints. Weft's proxy serves its own certificate and
//! trust bundle (the SDS names are Istio's), so the forms taken are: no socket (plaintext); the mutual TLS match
//! on `tlsMode` and the plaintext match for the other endpoints (auto mutual TLS, [`weft_xds::mtls`]'s shape);
//! a `transport_socket` with the mesh's mutual TLS (to every endpoint); a `transport_socket` originating TLS
//! with certificates from files ([`weft_xds::origination`]'s shape). Anything else is refused, not ignored.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, UpstreamTlsContext, common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use weft_xds::mtls::{
    CERTIFICATE_SECRET, MTLS_ALPN, RAW_BUFFER_SOCKET, ROOTS_SECRET, TLS_MODE_KEY, TLS_MODE_MUTUAL, TLS_SOCKET,
};

use weft_xds::origination::Origination;

use crate::config::cluster::MeshTls;

/// The cluster's mesh mutual TLS and TLS origination (at most one of them); neither: plaintext.
pub(super) fn transport(c: &Cluster) -> Result<(Option<MeshTls>, Option<Origination>), String> {
    let Some(socket) = c.transport_socket.as_ref().filter(|s| s.name != RAW_BUFFER_SOCKET) else {
        return Ok((mesh_tls(c)?, None));
    };
    if !c.transport_socket_matches.is_empty() {
        return Err("a transport socket together with transport socket matches is not supported".to_string());
    }
    let context = match weft_xds::origination::upstream_context(socket) {
        Some(context) => context?,
        None => return Err(format!("transport socket {:?} is not supported", socket.name)),
    };
    let uses_own_certificate =
        context.common_tls_context.as_ref().is_some_and(|c| !c.tls_certificate_sds_secret_configs.is_empty());
    if uses_own_certificate {
        let mesh = MeshTls { every_endpoint: true, ..mutual(Some(socket))? };
        return Ok((Some(mesh), None));
    }
    Ok((None, Some(weft_xds::origination::parse(&context)?)))
}

/// The cluster's auto mutual TLS (by `tlsMode` match), `None` when it is plaintext only.
fn mesh_tls(c: &Cluster) -> Result<Option<MeshTls>, String> {
    let mut mesh = None;
    for candidate in &c.transport_socket_matches {
        match match_kind(candidate)? {
            MatchKind::Plaintext => {}
            MatchKind::Mutual => mesh = Some(mutual(candidate.transport_socket.as_ref())?),
        }
    }
    Ok(mesh)
}

enum MatchKind {
    Mutual,
    Plaintext,
}

fn match_kind(candidate: &TransportSocketMatch) -> Result<MatchKind, String> {
    let fields = candidate.r#match.as_ref().map(|m| &m.fields);
    let socket = candidate.transport_socket.as_ref().map_or(RAW_BUFFER_SOCKET, |s| s.name.as_str());
    match fields {
        None => Ok(plaintext(candidate, socket)?),
        Some(fields) if fields.is_empty() => Ok(plaintext(candidate, socket)?),
        Some(fields) => {
            let mode = fields.get(TLS_MODE_KEY).and_then(|v| v.kind.as_ref());
            let is_mutual = fields.len() == 1
                && matches!(mode, Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(m)) if m == TLS_MODE_MUTUAL);
            if is_mutual {
                Ok(MatchKind::Mutual)
            } else {
                Err(format!(
                    "transport socket match {:?}: only {{{TLS_MODE_KEY}: {TLS_MODE_MUTUAL}}} is supported",
                    candidate.name
                ))
            }
        }
    }
}

fn plaintext(candidate: &TransportSocketMatch, socket: &str) -> Result<MatchKind, String> {
    if socket == RAW_BUFFER_SOCKET {
        Ok(MatchKind::Plaintext)
    } else {
        Err(format!("transport socket match {:?}: endpoints without a sidecar must be plaintext", candidate.name))
    }
}

fn mutual(socket: Option<&TransportSocket>) -> Result<MeshTls, String> {
    let context: UpstreamTlsContext = match socket {
        Some(TransportSocket { name, config_type: Some(transport_socket::ConfigType::TypedConfig(any)) })
            if name == TLS_SOCKET =>
        {
            weft_xds::unpack(any).map_err(|e| e.to_string())?
        }
        _ => {
            return Err(format!(
                "the {TLS_MODE_MUTUAL} transport socket must be {TLS_SOCKET} with an UpstreamTlsContext"
            ));
        }
    };
    let common = context.common_tls_context.unwrap_or_default();
    check_secrets(&common)?;
    Ok(MeshTls { identities: identities(&common)?, server_name: context.sni, every_endpoint: false })
}

/// The certificate and roots must be the proxy's own (SDS `default` and `ROOTCA`), offered with the mesh ALPN.
fn check_secrets(common: &CommonTlsContext) -> Result<(), String> {
    let names: Vec<&str> = common.tls_certificate_sds_secret_configs.iter().map(|s| s.name.as_str()).collect();
    if names != [CERTIFICATE_SECRET] || !common.tls_certificates.is_empty() {
        return Err(format!("mutual TLS must present the proxy's own certificate (SDS {CERTIFICATE_SECRET:?})"));
    }
    if common.alpn_protocols.iter().all(|p| p.as_bytes() != MTLS_ALPN) {
        return Err(format!("mutual TLS must offer ALPN {:?}", String::from_utf8_lossy(MTLS_ALPN)));
    }
    Ok(())
}

/// The exact URI SANs the peer must carry one of.
fn identities(common: &CommonTlsContext) -> Result<Vec<String>, String> {
    let Some(ValidationContextType::CombinedValidationContext(combined)) = &common.validation_context_type else {
        return Err(format!("mutual TLS must validate against the trust bundle (SDS {ROOTS_SECRET:?})"));
    };
    if combined.validation_context_sds_secret_config.as_ref().map(|s| s.name.as_str()) != Some(ROOTS_SECRET) {
        return Err(format!("mutual TLS must validate against the trust bundle (SDS {ROOTS_SECRET:?})"));
    }
    let default = combined.default_validation_context.clone().unwrap_or_default();
    default
        .match_typed_subject_alt_names
        .iter()
        .map(|san| {
            match (SanType::try_from(san.san_type), san.matcher.as_ref().and_then(|m| m.match_pattern.as_ref())) {
                (Ok(SanType::Uri), Some(MatchPattern::Exact(id))) => Ok(id.clone()),
                _ => Err("peer identities must be exact URI SANs".to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster_with(matches: Vec<TransportSocketMatch>) -> Cluster {
        Cluster {
            name: "outbound|80||reviews.shop.svc.cluster.local".into(),
            transport_socket_matches: matches,
            ..Default::default()
        }
    }

    #[test]
    fn the_operators_socket_matches_read_back_as_the_destinations_identities() {
        let ids = vec!["spiffe://cluster.local/ns/shop/sa/reviews".to_string()];
        let c = cluster_with(weft_xds::mtls::cluster_socket_matches(&ids, "reviews.shop.svc.cluster.local"));
        let mesh = mesh_tls(&c).unwrap().unwrap();
        assert_eq!(
            mesh,
            MeshTls { identities: ids, server_name: "reviews.shop.svc.cluster.local".into(), every_endpoint: false }
        );
        assert_eq!(mesh_tls(&cluster_with(vec![])).unwrap(), None, "no matches: plaintext");
    }

    #[test]
    fn other_transport_sockets_are_refused() {
        let ids = vec!["spiffe://cluster.local/ns/shop/sa/reviews".to_string()];
        let mut matches = weft_xds::mtls::cluster_socket_matches(&ids, "reviews");
        matches[1].transport_socket.as_mut().unwrap().name = TLS_SOCKET.into();
        assert!(mesh_tls(&cluster_with(matches)).unwrap_err().contains("must be plaintext"));

        let mut odd = weft_xds::mtls::cluster_socket_matches(&ids, "reviews");
        odd[0].r#match.as_mut().unwrap().fields.insert("zone".into(), Default::default());
        assert!(mesh_tls(&cluster_with(odd)).unwrap_err().contains("only {tlsMode: weft}"));

        let mut tls = cluster_with(vec![]);
        tls.transport_socket = Some(TransportSocket { name: TLS_SOCKET.into(), config_type: None });
        assert!(transport(&tls).unwrap_err().contains("is not supported"));
        let mut both = cluster_with(weft_xds::mtls::cluster_socket_matches(&ids, "reviews"));
        both.transport_socket = Some(weft_xds::mtls::mesh_tls_socket(&ids, "reviews"));
        assert!(transport(&both).unwrap_err().contains("together"));
    }

    #[test]
    fn a_transport_socket_is_the_mesh_s_tls_to_every_endpoint_or_an_origination() {
        let ids = vec!["spiffe://cluster.local/ns/shop/sa/reviews".to_string()];
        let mut every = cluster_with(vec![]);
        every.transport_socket = Some(weft_xds::mtls::mesh_tls_socket(&ids, "reviews"));
        let (mesh, origination) = transport(&every).unwrap();
        assert_eq!(mesh.map(|m| (m.every_endpoint, m.identities)), Some((true, ids)));
        assert_eq!(origination, None);
        let wanted = Origination { sni: "api.example.com".into(), ..Default::default() };
        let mut originating = cluster_with(vec![]);
        originating.transport_socket = Some(weft_xds::origination::socket(&wanted));
        assert_eq!(transport(&originating).unwrap(), (None, Some(wanted)));
    }
}
