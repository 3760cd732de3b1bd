//! The contract for mutual TLS between sidecars, in Istio's xDS shape so an Envoy could consume it: a cluster
//! whose endpoints may run a sidecar carries two `transport_socket_matches` — TLS for endpoints whose metadata
//! says [`TLS_MODE_KEY`] = [`TLS_MODE_MUTUAL`] under [`TRANSPORT_SOCKET_MATCH`], plaintext for the others. The TLS
//! context names the proxy's own certificate and the trust bundle as SDS secrets ([`CERTIFICATE_SECRET`],
//! [`ROOTS_SECRET`]; a proxy serves them itself, as Istio's agent does), lists the destination's workload
//! identities as exact URI SANs, and offers the ALPN [`MTLS_ALPN`], which is how the server's proxy tells a
//! sidecar's TLS from an application's own TLS on the same port.

use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ConfigSource, Metadata, TransportSocket, config_source, transport_socket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SdsSecretConfig, SubjectAltNameMatcher, UpstreamTlsContext,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    subject_alt_name_matcher::SanType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use envoy_types::pb::google::protobuf::{Struct, Value, value};

/// The pod label (set by the injector when mutual TLS is on) saying the pod's sidecar speaks mutual TLS, with the
/// value [`TLS_MODE_MUTUAL`] (Istio's `security.istio.io/tlsMode: istio`). A pod without it gets plaintext.
pub const TLS_MODE_LABEL: &str = "security.weft.dev/tlsMode";
/// The init container the injector adds: `weft-proxy init`, which installs the pod's capture rules once, when the
/// pod starts.
pub const INIT_CONTAINER: &str = "weft-init";
/// Its flag listing the pod ports whose connections bypass the sidecar (`--exclude-inbound-ports 8081,9090`, from
/// the pod's `weft.dev/exclude-inbound-ports` annotation as admitted). Nothing on the pod terminates mutual TLS on
/// such a port, so its endpoints are not marked [`TLS_MODE_MUTUAL`] and clients send them plaintext.
pub const EXCLUDE_INBOUND_PORTS_FLAG: &str = "--exclude-inbound-ports";

/// Whether the command line of [`INIT_CONTAINER`] excludes `port` from inbound capture
/// ([`EXCLUDE_INBOUND_PORTS_FLAG`], as a separate argument or `--flag=LIST`). Read from the container rather than
/// the annotation: an annotation edited later changes no capture rule.
pub fn inbound_port_excluded<'a>(init_command: impl IntoIterator<Item = &'a str>, port: u16) -> bool {
    let mut args = init_command.into_iter();
    while let Some(arg) = args.next() {
        let list = match arg.strip_prefix(EXCLUDE_INBOUND_PORTS_FLAG) {
            Some("") => args.next(),
            Some(joined) => joined.strip_prefix('='),
            None => None,
        };
        if list.is_some_and(|list| list.split(',').any(|item| item.trim().parse::<u16>() == Ok(port))) {
            return true;
        }
    }
    false
}

/// Endpoint metadata filter read by Envoy's transport socket matching.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";
/// Key under [`TRANSPORT_SOCKET_MATCH`] saying how to talk to the endpoint.
pub const TLS_MODE_KEY: &str = "tlsMode";
/// Value of [`TLS_MODE_KEY`] for an endpoint whose pod runs a Weft sidecar.
pub const TLS_MODE_MUTUAL: &str = "weft";
/// `transport_socket_matches` entry names.
pub const MATCH_MUTUAL: &str = "tlsMode-weft";
pub const MATCH_PLAINTEXT: &str = "tlsMode-disabled";
/// SDS name of the proxy's own certificate and key (Istio's name).
pub const CERTIFICATE_SECRET: &str = "default";
/// SDS name of the trust bundle (Istio's name).
pub const ROOTS_SECRET: &str = "ROOTCA";
/// The ALPN protocol a sidecar offers when it originates mutual TLS to another sidecar.
pub const MTLS_ALPN: &[u8] = b"weft-mtls";
/// Offered before [`MTLS_ALPN`] by a sidecar whose connection carries HTTP (either version), as Istio's offer
/// `istio-http/1.1` or `istio-h2` before `istio`: the server's proxy (which prefers it) serves HTTP without
/// reading the first bytes, and an Envoy picks the inbound chain's HTTP twin by it.
pub const MTLS_HTTP_ALPN: &[u8] = b"weft-mtls-http";
/// Offered before [`MTLS_ALPN`] by a sidecar forwarding TCP: the server's proxy forwards it at once instead of
/// waiting to see whether it is HTTP (a server-first protocol's client sends nothing until greeted). An Envoy,
/// knowing no chain for it, falls back to the [`MTLS_ALPN`] chain, which is TCP.
pub const MTLS_TCP_ALPN: &[u8] = b"weft-mtls-tcp";

/// What a sidecar's connection carries, as the ALPN the server's proxy chose from the client's offer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    Http,
    Tcp,
}

impl Carried {
    /// The ALPN list a client offers for it: the mark, then the mesh's own (what proxies before the marks know).
    pub fn offer(self) -> Vec<Vec<u8>> {
        let mark = match self {
            Carried::Http => MTLS_HTTP_ALPN,
            Carried::Tcp => MTLS_TCP_ALPN,
        };
        vec![mark.to_vec(), MTLS_ALPN.to_vec()]
    }

    /// What the server's list (marks first, so it picks one the client offered) chose; `None`: the client
    /// offered no mark (a proxy before them), so the connection must be looked at.
    pub fn of_chosen(alpn: Option<&[u8]>) -> Option<Self> {
        match alpn? {
            MTLS_HTTP_ALPN => Some(Carried::Http),
            MTLS_TCP_ALPN => Some(Carried::Tcp),
            _ => None,
        }
    }

    /// A server's ALPN list: the marks first (rustls, like OpenSSL's servers, picks the first of its own that the
    /// client offered), then the mesh's own for clients without marks.
    pub fn server_list() -> Vec<Vec<u8>> {
        vec![MTLS_HTTP_ALPN.to_vec(), MTLS_TCP_ALPN.to_vec(), MTLS_ALPN.to_vec()]
    }
}

/// Transport socket names (Envoy's).
pub const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
pub const RAW_BUFFER_SOCKET: &str = "envoy.transport_sockets.raw_buffer";

fn text(value: &str) -> Value {
    Value { kind: Some(value::Kind::StringValue(value.to_string())) }
}

/// `{tlsMode: weft}`: the match of the mutual TLS socket, and the endpoint metadata that selects it.
fn mutual_match() -> Struct {
    Struct { fields: [(TLS_MODE_KEY.to_string(), text(TLS_MODE_MUTUAL))].into_iter().collect() }
}

/// The metadata of an endpoint that runs a sidecar.
pub fn meshed_endpoint_metadata() -> Metadata {
    Metadata {
        filter_metadata: [(TRANSPORT_SOCKET_MATCH.to_string(), mutual_match())].into_iter().collect(),
        ..Default::default()
    }
}

/// Whether an endpoint's metadata says it runs a sidecar.
pub fn is_meshed_endpoint(metadata: Option<&Metadata>) -> bool {
    let mode = metadata
        .and_then(|m| m.filter_metadata.get(TRANSPORT_SOCKET_MATCH))
        .and_then(|s| s.fields.get(TLS_MODE_KEY))
        .and_then(|v| v.kind.as_ref());
    matches!(mode, Some(value::Kind::StringValue(mode)) if mode == TLS_MODE_MUTUAL)
}

pub(crate) fn sds(name: &str) -> SdsSecretConfig {
    let ads = ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        resource_api_version: envoy_types::pb::envoy::config::core::v3::ApiVersion::V3 as i32,
        ..Default::default()
    };
    SdsSecretConfig { name: name.to_string(), sds_config: Some(ads) }
}

/// A cluster's sockets: mutual TLS to sidecars whose identity is one of `identities` (SPIFFE ids), sending
/// `sni`; plaintext to the other endpoints.
pub fn cluster_socket_matches(identities: &[String], sni: &str) -> Vec<TransportSocketMatch> {
    vec![
        TransportSocketMatch {
            name: MATCH_MUTUAL.to_string(),
            r#match: Some(mutual_match()),
            transport_socket: Some(mesh_tls_socket(identities, sni)),
        },
        TransportSocketMatch {
            name: MATCH_PLAINTEXT.to_string(),
            r#match: Some(Struct::default()),
            transport_socket: Some(socket(RAW_BUFFER_SOCKET, crate::pack(&RawBuffer {}))),
        },
    ]
}

/// The mesh's mutual TLS to a sidecar whose identity is one of `identities`, sending `sni`: the proxy's own
/// certificate and the trust bundle (SDS), the mesh ALPN.
pub fn mesh_tls_socket(identities: &[String], sni: &str) -> TransportSocket {
    let validation = CombinedCertificateValidationContext {
        default_validation_context: Some(CertificateValidationContext {
            match_typed_subject_alt_names: identities.iter().map(|id| san_matcher(SanType::Uri, id)).collect(),
            ..Default::default()
        }),
        validation_context_sds_secret_config: Some(sds(ROOTS_SECRET)),
        ..Default::default()
    };
    let context = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds(CERTIFICATE_SECRET)],
            alpn_protocols: vec![String::from_utf8_lossy(MTLS_ALPN).into_owned()],
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(validation)),
            ..Default::default()
        }),
        sni: sni.to_string(),
        ..Default::default()
    };
    socket(TLS_SOCKET, crate::pack(&context))
}

/// An exact SAN matcher of one type.
pub(crate) fn san_matcher(kind: SanType, value: &str) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: kind as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(value.to_string())),
            ignore_case: false,
        }),
        oid: String::new(),
    }
}

pub(crate) fn socket(name: &str, config: envoy_types::pb::google::protobuf::Any) -> TransportSocket {
    TransportSocket { name: name.to_string(), config_type: Some(transport_socket::ConfigType::TypedConfig(config)) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_excluded_inbound_port_is_found_in_the_init_container_s_command() {
        let excluded = |command: &str, port| super::inbound_port_excluded(command.split(' '), port);
        assert!(excluded("weft-proxy init --proxy-uid 1337 --exclude-inbound-ports 8081,80", 80));
        assert!(excluded("weft-proxy init --exclude-inbound-ports=80", 80));
        assert!(!excluded("weft-proxy init --exclude-inbound-ports 8080,8081 --exclude-outbound-ports 80", 80));
        assert!(!excluded("weft-proxy init --exclude-inbound-portsx 80", 80));
        assert!(!excluded("weft-proxy init --exclude-inbound-ports", 80));
    }

    use super::*;

    /// What a server picks from an offer the way rustls does: the first of its own list the client offered.
    fn chosen<'a>(server: &'a [Vec<u8>], offer: &[Vec<u8>]) -> Option<&'a [u8]> {
        server.iter().find(|ours| offer.contains(ours)).map(Vec::as_slice)
    }

    #[test]
    fn marks_are_chosen_by_new_servers_and_old_ones_still_find_the_mesh_alpn() {
        let (new_server, old_server) = (Carried::server_list(), vec![MTLS_ALPN.to_vec()]);
        for carried in [Carried::Http, Carried::Tcp] {
            let offer = carried.offer();
            assert_eq!(Carried::of_chosen(chosen(&new_server, &offer)), Some(carried));
            assert_eq!(chosen(&old_server, &offer), Some(MTLS_ALPN), "a proxy before the marks still handshakes");
        }
        let old_client = vec![MTLS_ALPN.to_vec()];
        assert_eq!(Carried::of_chosen(chosen(&new_server, &old_client)), None, "unmarked: look at the bytes");
        assert_eq!(Carried::of_chosen(None), None);
    }
}
