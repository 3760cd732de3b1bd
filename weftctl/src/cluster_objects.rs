//! The cluster's objects `weftctl analyze -n NS | -A` looks at, read from the API server (`list` only): Weft's
//! resources, Services, Pods and Namespaces of every namespace, since references cross namespaces (a
//! VirtualService in one routes to a Service in another; mesh-wide policies live in Weft's namespace). Pods and
//! Namespaces of the namespaces the chart never injects (kube-system, kube-public, kube-node-lease, Weft's own)
//! are left out: their pods are meant to run without a sidecar. Secrets are not listed: only those a
//! DestinationRule's `credentialName` names are read (`get`), to tell whether they exist.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;
use weft_crds::DestinationRuleSpec;
use weft_operator::source::Kind;
use weft_operator::source::kube::crd_resource;

use crate::check::gather::NEVER_INJECTED;

#[derive(Debug, thiserror::Error)]
#[error("listing {what}: {error}")]
pub struct ListError {
    what: String,
    error: kube::Error,
}

/// Objects asked for per page.
const PAGE: u32 = 500;

/// Every object the analysis reads, as the API server gives them (with `apiVersion` and `kind`). A Weft kind
/// whose CRD is not installed (an older release) has no objects.
pub async fn list(client: &kube::Client, weft_namespace: &str) -> Result<Vec<Value>, ListError> {
    let namespaces = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"));
    // Not EndpointSlices (no problem of theirs is reported) nor Nodes; Secrets only as rules name them, below.
    let kinds = Kind::all().filter(|k| !matches!(k, Kind::EndpointSlice | Kind::Node | Kind::Secret)).map(crd_resource);
    let mut objects = Vec::new();
    for resource in std::iter::once(namespaces).chain(kinds) {
        for mut object in list_all(client, &resource).await? {
            // List items come without their type.
            let types = kube::api::TypeMeta { api_version: resource.api_version.clone(), kind: resource.kind.clone() };
            object.types = Some(types);
            object.metadata.managed_fields = None;
            if let Ok(value) = serde_json::to_value(&object)
                && relevant(&value, weft_namespace)
            {
                objects.push(value);
            }
        }
    }
    let named = named_secrets(&objects);
    objects.extend(get_secrets(client, named).await?);
    Ok(objects)
}

/// The Secrets (namespace, name) the DestinationRules among `objects` may read for a `credentialName`. Pure.
fn named_secrets(objects: &[Value]) -> Vec<(String, String)> {
    let mut named = Vec::new();
    for rule in objects.iter().filter(|o| o.pointer("/kind").and_then(Value::as_str) == Some("DestinationRule")) {
        let namespace = rule.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
        // A rule that does not parse is reported invalid; it names no Secret in force.
        let Some(spec) = rule.get("spec").and_then(|s| serde_json::from_value::<DestinationRuleSpec>(s.clone()).ok())
        else {
            continue;
        };
        let names = spec.tls_settings().into_iter().filter_map(|(_, tls)| tls.credential_name.clone());
        for name in names.flat_map(|name| weft_operator::index::credentials::secrets_read(&name)) {
            named.push((namespace.to_string(), name));
        }
    }
    named.sort();
    named.dedup();
    named
}

/// The Secrets that exist among `named`, each trimmed to what `credentialName` reads (nothing else of it is kept).
async fn get_secrets(client: &kube::Client, named: Vec<(String, String)>) -> Result<Vec<Value>, ListError> {
    let mut found = Vec::new();
    for (namespace, name) in named {
        let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &namespace);
        let secret = match api.get_opt(&name).await {
            Ok(Some(secret)) => weft_operator::index::credentials::trimmed(secret),
            Ok(None) => continue,
            // Many users may not read Secrets: the analysis goes on, the rules naming it judged as if it were
            // missing, and says so.
            Err(kube::Error::Api(status)) if status.code == 403 => {
                eprintln!(
                    "weftctl: cannot read Secret {namespace}/{name} (forbidden): its rules' credentialName is not checked"
                );
                continue;
            }
            Err(error) => return Err(ListError { what: format!("secret {namespace}/{name}"), error }),
        };
        let mut value = serde_json::to_value(&secret).unwrap_or_default();
        if let Some(fields) = value.as_object_mut() {
            fields.insert("apiVersion".into(), "v1".into());
            fields.insert("kind".into(), "Secret".into());
        }
        found.push(value);
    }
    Ok(found)
}

/// Every object of one resource, page by page.
async fn list_all(client: &kube::Client, resource: &ApiResource) -> Result<Vec<DynamicObject>, ListError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let mut objects = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(kube::Error::Api(status)) if status.code == 404 && !resource.group.is_empty() => return Ok(objects),
            Err(error) => return Err(ListError { what: resource.plural.clone(), error }),
        };
        objects.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(objects),
        }
    }
}

/// Whether an object takes part: not a Pod or Namespace of a namespace the chart never injects. Pure.
fn relevant(object: &Value, weft_namespace: &str) -> bool {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    let namespace = match text("/kind") {
        "Namespace" => text("/metadata/name"),
        "Pod" => text("/metadata/namespace"),
        _ => return true,
    };
    namespace != weft_namespace && !NEVER_INJECTED.contains(&namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_secrets_read_are_those_rules_name_with_their_roots() {
        let rule = json!({"kind": "DestinationRule", "metadata": {"namespace": "shop", "name": "a"}, "spec": {"host": "api",
            "trafficPolicy": {"tls": {"mode": "MUTUAL", "credentialName": "client"},
                "portLevelSettings": [{"port": {"number": 443}, "tls": {"mode": "SIMPLE", "credentialName": "roots"}}]}}});
        let other = json!({"kind": "Service", "metadata": {"namespace": "shop", "name": "x"}, "spec": {"credentialName": "no"}});
        let named: Vec<String> = named_secrets(&[rule, other]).into_iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
        assert_eq!(named, ["shop/client", "shop/client-cacert", "shop/roots", "shop/roots-cacert"]);
    }

    #[test]
    fn pods_and_namespaces_never_injected_are_left_out_but_weft_policies_are_kept() {
        let object = |kind: &str, namespace: &str, name: &str| json!({"kind": kind, "metadata": {"namespace": namespace, "name": name}});
        assert!(relevant(&object("Pod", "shop", "web-1"), "weft"));
        assert!(!relevant(&object("Pod", "kube-system", "coredns-1"), "weft"));
        assert!(!relevant(&object("Pod", "weft", "weft-operator-1"), "weft"));
        assert!(!relevant(&json!({"kind": "Namespace", "metadata": {"name": "kube-public"}}), "weft"));
        assert!(relevant(&json!({"kind": "Namespace", "metadata": {"name": "shop"}}), "weft"));
        assert!(relevant(&object("PeerAuthentication", "weft", "default"), "weft"), "mesh-wide policy");
    }
}
