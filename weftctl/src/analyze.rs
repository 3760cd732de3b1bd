//! `weftctl analyze -f DIR|FILE`: every problem in a set of YAML files, reported at once, in file order, with
//! the field path and the same message the validating webhook and the operator's status give; then the problems
//! only the files together show: references that do not resolve (a subset no DestinationRule defines, a host
//! that is no Service), two VirtualServices for one host, a namespace with workloads but no injection label, a
//! pod without a sidecar in an injected namespace. Pure: file names and texts in, findings out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use weft_crds::parse::yaml_documents;
use weft_operator::index::{Index, ROOT_NAMESPACE};
use weft_operator::source::decode::{Decoded, decode_document};
use weft_operator::source::file::as_events;
use weft_operator::source::{Kind, Resource, ResourceKey};
use weft_operator::status;

/// The label that turns injection on for a namespace, and the sidecar's container name.
const INJECT_LABEL: &str = "weft.dev/inject";
const SIDECAR: &str = "weft-proxy";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
}

/// One problem, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub file: PathBuf,
    /// 1-based document index in the file and the line it starts on (0: the file as a whole).
    pub document: usize,
    pub line: usize,
    /// `Kind namespace/name`, when the document was one.
    pub object: Option<String>,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "Error",
            Level::Warning => "Warning",
        };
        write!(f, "{level} [{}", self.file.display())?;
        if self.document > 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, "]")?;
        if let Some(object) = &self.object {
            write!(f, " ({object})")?;
        }
        write!(f, " {}", self.message)
    }
}

/// Where a document is.
#[derive(Debug, Clone)]
struct Place {
    file: PathBuf,
    document: usize,
    line: usize,
    order: usize,
}

/// Every problem of `files` (name and text, in the order given), errors and warnings in file order.
pub fn analyze(files: &[(PathBuf, String)]) -> Vec<Finding> {
    let mut findings: Vec<(usize, Finding)> = Vec::new();
    let mut resources = Vec::new();
    let mut places: BTreeMap<ResourceKey, Place> = BTreeMap::new();
    let mut namespaces = Vec::new();
    let mut order = 0;
    for (file, text) in files {
        for doc in yaml_documents(text) {
            order += 1;
            let place = Place { file: file.clone(), document: doc.index, line: doc.line, order };
            let found = |level, object, message| (order, finding(level, &place, object, message));
            let value = match doc.value {
                Ok(value) => value,
                Err(message) => {
                    let first = message.lines().next().unwrap_or_default();
                    findings.push(found(Level::Error, None, format!("invalid YAML: {first}")));
                    continue;
                }
            };
            let object = describe(&value);
            if value.get("kind").and_then(|k| k.as_str()) == Some("Namespace") {
                if let Ok(namespace) = serde_json::from_value::<Namespace>(value.clone()) {
                    namespaces.push((namespace, place.clone()));
                }
                continue;
            }
            match decode_document(value) {
                Ok(Decoded::Resources(decoded)) => {
                    for resource in decoded {
                        places.insert(resource.key(), place.clone());
                        resources.push(resource);
                    }
                }
                Ok(Decoded::Ignored { .. }) => {}
                Err(errors) => {
                    findings.extend(errors.iter().map(|e| found(Level::Error, object.clone(), e.to_string())));
                }
            }
        }
    }
    findings.extend(cross_resource(&resources, &places));
    findings.extend(injection(&resources, &places, &namespaces));
    findings.sort_by_key(|(order, finding)| (*order, finding.level));
    let mut seen = BTreeSet::new();
    findings.into_iter().map(|(_, f)| f).filter(|f| seen.insert(f.to_string())).collect()
}

/// What the operator itself would say of the valid objects together: their status conditions that are not
/// `True` (rules it would not accept, references that do not resolve), and hosts claimed twice.
fn cross_resource(resources: &[Resource], places: &BTreeMap<ResourceKey, Place>) -> Vec<(usize, Finding)> {
    let mut index = Index::new(None, ROOT_NAMESPACE.to_string());
    for event in as_events(resources) {
        index.apply(event);
    }
    let snapshot = index.snapshot();
    let mut findings = Vec::new();
    let mut at = |key: &ResourceKey, level, message: String| {
        if let Some(place) = places.get(key) {
            findings.push((place.order, finding(level, place, Some(object_name(key)), message)));
        }
    };
    for (key, rejection) in &snapshot.rejections {
        for error in &rejection.errors {
            at(key, Level::Error, error.to_string());
        }
    }
    for target in status::targets(&snapshot) {
        for condition in target.conditions.iter().filter(|c| c.status == "False") {
            let level = if condition.type_ == "Accepted" { Level::Error } else { Level::Warning };
            for message in condition.message.split("; ") {
                at(&target.key, level, message.to_string());
            }
        }
    }
    // Two VirtualServices for one host: proxies use one (exact before wildcard, then the most visible, then
    // namespace/name order); the other's rules for that host are ignored.
    for vs in snapshot.virtual_services.iter() {
        let key = ResourceKey { kind: Kind::VirtualService, namespace: vs.namespace.clone(), name: vs.name.clone() };
        for host in vs.hosts.iter().filter(|h| !h.starts_with('*')) {
            let used = snapshot.virtual_service_for(host, &vs.namespace);
            if let Some(used) = used.filter(|u| (&u.namespace, &u.name) != (&vs.namespace, &vs.name)) {
                let message = format!(
                    "host {host} is also routed by VirtualService {}/{}, which proxies in {} use: this one's rules for it are ignored",
                    used.namespace, used.name, vs.namespace
                );
                at(&key, Level::Warning, message);
            }
        }
    }
    findings
}

/// Namespaces whose workloads run without the mesh: pods in a namespace without the injection label, and pods
/// without the sidecar in a namespace with it. Only namespaces the files define are judged.
fn injection(
    resources: &[Resource],
    places: &BTreeMap<ResourceKey, Place>,
    namespaces: &[(Namespace, Place)],
) -> Vec<(usize, Finding)> {
    let pods: Vec<(ResourceKey, &Pod)> =
        resources.iter().filter_map(|r| if let Resource::Pod(p) = r { Some((r.key(), p)) } else { None }).collect();
    let mut findings = Vec::new();
    for (namespace, place) in namespaces {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let injected =
            namespace.metadata.labels.as_ref().and_then(|l| l.get(INJECT_LABEL)).map(String::as_str) == Some("enabled");
        let own: Vec<&(ResourceKey, &Pod)> = pods.iter().filter(|(key, _)| key.namespace == name).collect();
        if !injected && !own.is_empty() {
            let message = format!(
                "namespace {name} has {} pod(s) but no {INJECT_LABEL}=enabled label: they are not in the mesh",
                own.len()
            );
            findings.push((place.order, finding(Level::Warning, place, Some(format!("Namespace {name}")), message)));
        }
        if !injected {
            continue;
        }
        for (key, pod) in own {
            let opted_out = pod.metadata.annotations.as_ref().and_then(|a| a.get(INJECT_LABEL)).map(String::as_str)
                == Some("false");
            let has_sidecar = pod.spec.as_ref().is_some_and(|s| {
                s.containers.iter().chain(s.init_containers.iter().flatten()).any(|c| c.name == SIDECAR)
            });
            if opted_out || has_sidecar {
                continue;
            }
            let Some(pod_place) = places.get(key) else { continue };
            let message = format!(
                "pod has no {SIDECAR} sidecar although namespace {name} is labelled {INJECT_LABEL}=enabled: restart it to inject"
            );
            findings.push((pod_place.order, finding(Level::Warning, pod_place, Some(object_name(key)), message)));
        }
    }
    findings
}

fn finding(level: Level, place: &Place, object: Option<String>, message: String) -> Finding {
    Finding { level, file: place.file.clone(), document: place.document, line: place.line, object, message }
}

fn object_name(key: &ResourceKey) -> String {
    format!("{:?} {}/{}", key.kind, key.namespace, key.name)
}

/// `Kind namespace/name` of a document, as far as it says.
fn describe(value: &serde_json::Value) -> Option<String> {
    let kind = value.get("kind")?.as_str()?;
    let metadata = value.get("metadata");
    let name = metadata.and_then(|m| m.get("name")).and_then(|n| n.as_str()).unwrap_or("?");
    let namespace = metadata.and_then(|m| m.get("namespace")).and_then(|n| n.as_str()).unwrap_or("default");
    Some(format!("{kind} {namespace}/{name}"))
}
