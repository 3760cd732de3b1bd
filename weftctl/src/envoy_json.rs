//! xDS resources in Envoy's own JSON (protobuf's JSON mapping: camelCase fields, `@type` in `Any`, 64-bit numbers
//! and durations as strings), as `istioctl proxy-config -o json` prints them, for `weftctl proxy-config -o
//! json|yaml`. The message descriptors are the ones the `envoy-types` crate is generated from
//! (`descriptors/envoy-types.bin`, copied by `scripts/update-envoy-descriptors.sh`; a test fails when the copy
//! is stale), read with `prost-reflect`, plus Weft's own messages that configs carry in `Any`
//! ([`weft_messages`]).

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto};
use serde_json::Value;

/// The descriptor set of Envoy's API (and the protos it imports).
pub static DESCRIPTORS: &[u8] = include_bytes!("../descriptors/envoy-types.bin");

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("the Envoy descriptors do not load: {0}")]
    Descriptors(String),
    #[error("no message type for xDS type {0}")]
    UnknownType(String),
    #[error("{0}")]
    Decode(String),
}

/// The message type of each of the debug API's xDS type names.
fn message_type(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "CDS" => "envoy.config.cluster.v3.Cluster",
        "EDS" => "envoy.config.endpoint.v3.ClusterLoadAssignment",
        "LDS" => "envoy.config.listener.v3.Listener",
        "RDS" => "envoy.config.route.v3.RouteConfiguration",
        "VHDS" => "envoy.config.route.v3.VirtualHost",
        _ => return None,
    })
}

fn pool() -> Result<&'static DescriptorPool, JsonError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    let load = || {
        let mut pool = DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string())?;
        pool.add_file_descriptor_proto(weft_messages()).map_err(|e| e.to_string())?;
        Ok(pool)
    };
    POOL.get_or_init(load).as_ref().map_err(|e| JsonError::Descriptors(e.clone()))
}

/// Weft's messages in configs (`weft_xds::lb::PeakEwma`, a typed load balancing policy), described as the
/// `prost` derive in weft-xds encodes them.
fn weft_messages() -> FileDescriptorProto {
    let uint64 = |name: &str, number: i32, json: &str| FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        label: Some(Label::Optional as i32),
        r#type: Some(Type::Uint64 as i32),
        json_name: Some(json.into()),
        ..FieldDescriptorProto::default()
    };
    let peak_ewma = DescriptorProto {
        name: Some("PeakEwma".into()),
        field: vec![uint64("decay_ms", 1, "decayMs"), uint64("default_rtt_ms", 2, "defaultRttMs")],
        ..DescriptorProto::default()
    };
    FileDescriptorProto {
        name: Some("weft/lb/v1alpha1/lb.proto".into()),
        package: Some("weft.lb.v1alpha1".into()),
        message_type: vec![peak_ewma],
        syntax: Some("proto3".into()),
        ..FileDescriptorProto::default()
    }
}

/// One resource (`bytes`, of the debug API's type `kind`) as Envoy's JSON.
pub fn to_json(kind: &str, bytes: &[u8]) -> Result<Value, JsonError> {
    let name = message_type(kind).ok_or_else(|| JsonError::UnknownType(kind.to_string()))?;
    let descriptor = pool()?.get_message_by_name(name).ok_or_else(|| JsonError::UnknownType(name.to_string()))?;
    let message = DynamicMessage::decode(descriptor, bytes).map_err(|e| JsonError::Decode(e.to_string()))?;
    let options = SerializeOptions::new().skip_default_fields(true);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| JsonError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    use envoy_types::pb::google::protobuf::{Any, Duration};
    use prost::Message;
    use std::collections::HashMap;

    #[test]
    fn a_cluster_comes_out_as_envoy_writes_it() {
        let options = HttpProtocolOptions::default();
        let cluster = Cluster {
            name: "outbound|80|v1|reviews.shop.svc.cluster.local".into(),
            connect_timeout: Some(Duration { seconds: 1, nanos: 500_000_000 }),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(cluster::DiscoveryType::Eds as i32)),
            typed_extension_protocol_options: HashMap::from([(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
                Any {
                    type_url: "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
                    value: options.encode_to_vec(),
                },
            )]),
            ..Cluster::default()
        };
        let json = to_json("CDS", &cluster.encode_to_vec()).unwrap();
        assert_eq!(json["name"], "outbound|80|v1|reviews.shop.svc.cluster.local");
        assert_eq!(json["connectTimeout"], "1.500s", "durations as Envoy writes them");
        assert_eq!(json["type"], "EDS", "enums by name");
        let any = &json["typedExtensionProtocolOptions"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
        assert_eq!(any["@type"], "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
        assert!(json.get("lbPolicy").is_none(), "defaults left out");
        assert!(matches!(to_json("SDS", &[]), Err(JsonError::UnknownType(_))));
    }

    #[test]
    fn weft_messages_decode_as_weft_xds_encodes_them() {
        use prost::Name;
        let policy = weft_xds::lb::PeakEwma { decay_ms: 5_000, default_rtt_ms: 7 };
        let descriptor = pool().unwrap().get_message_by_name(&weft_xds::lb::PeakEwma::full_name()).unwrap();
        let message = DynamicMessage::decode(descriptor, policy.encode_to_vec().as_slice()).unwrap();
        let json = message.serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new()).unwrap();
        assert_eq!(json, serde_json::json!({"decayMs": "5000", "defaultRttMs": "7"}));
    }

    /// The copy must be the descriptor set of the envoy-types version the workspace builds with.
    #[test]
    fn the_descriptor_copy_is_the_envoy_types_crates() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--locked", "--offline"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
        let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
        let packages = metadata["packages"].as_array().unwrap();
        let envoy = packages.iter().find(|p| p["name"] == "envoy-types").unwrap();
        let manifest = std::path::Path::new(envoy["manifest_path"].as_str().unwrap());
        let shipped = std::fs::read(manifest.parent().unwrap().join("src/generated/types.bin")).unwrap();
        assert!(
            shipped == DESCRIPTORS,
            "weftctl/descriptors/envoy-types.bin is stale: run scripts/update-envoy-descriptors.sh"
        );
    }
}
