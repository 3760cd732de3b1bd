//! `weftctl analyze`: every problem in a set of YAML files (`-f`) or in the cluster's objects (`-n`/`-A`, read by
//! [`crate::cluster_objects`]), or in both (the files as if applied over the cluster), reported at once, in
//! order, with the field path and the same message the validating webhook and the operator's status give; then
//! the problems only the objects together show: references that do not resolve (a subset no DestinationRule
//! defines, a host that is no Service), two VirtualServices for one host, a namespace with workloads but no
//! injection label, a pod without a sidecar in an injected namespace. Pure: documents in, findings out.

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
    /// Empty for an object read from the cluster.
    pub file: PathBuf,
    /// 1-based document index in the file and the line it starts on (0: the file as a whole).
    pub document: usize,
    pub line: usize,
    /// `Kind namespace/name`, when the document was one.
    pub object: Option<String>,
    /// The namespace the object is in (a Namespace: its own name), when the document says.
    pub namespace: Option<String>,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "Error",
            Level::Warning => "Warning",
        };
        write!(f, "{level}")?;
        if !self.file.as_os_str().is_empty() {
            write!(f, " [{}", self.file.display())?;
            if self.document > 0 {
                write!(f, ":{}", self.line)?;
            }
            write!(f, "]")?;
        }
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
    namespace: Option<String>,
}

/// One document to analyze: from a file (its name, 1-based index and first line), or an object read from the
/// cluster (no file, index 0).
#[derive(Debug, Clone)]
pub struct Document {
    pub file: PathBuf,
    pub index: usize,
    pub line: usize,
    /// The parsed document, or why it does not parse.
    pub value: Result<serde_json::Value, String>,
}

impl Document {
    /// An object as the API server gave it.
    pub fn from_cluster(value: serde_json::Value) -> Self {
        Self { file: PathBuf::new(), index: 0, line: 0, value: Ok(value) }
    }
}

/// The documents of `files` (name and text), in order.
pub fn documents(files: &[(PathBuf, String)]) -> Vec<Document> {
    let mut documents = Vec::new();
    for (file, text) in files {
        for doc in yaml_documents(text) {
            documents.push(Document { file: file.clone(), index: doc.index, line: doc.line, value: doc.value });
        }
    }
    documents
}

/// Every problem of `files` (name and text, in the order given), errors and warnings in file order.
pub fn analyze(files: &[(PathBuf, String)]) -> Vec<Finding> {
    analyze_documents(documents(files))
}

/// `Kind`, namespace and name of a document, as it says them (namespace `default` when it names none; a
/// Namespace's is its own name).
fn identity(value: &serde_json::Value) -> Option<(String, String, String)> {
    let kind = value.get("kind")?.as_str()?.to_string();
    let metadata = value.get("metadata")?;
    let name = metadata.get("name")?.as_str()?.to_string();
    let namespace = match kind.as_str() {
        "Namespace" => name.clone(),
        _ => metadata.get("namespace").and_then(|n| n.as_str()).unwrap_or("default").to_string(),
    };
    Some((kind, namespace, name))
}

/// `documents` as applied with `kubectl apply -n namespace`: those of a namespaced kind that name no namespace
/// are in `namespace`.
pub fn in_namespace(documents: Vec<Document>, namespace: &str) -> Vec<Document> {
    let place = |mut value: serde_json::Value| {
        let namespaced = value.get("kind").and_then(|k| k.as_str()).is_some_and(|k| k != "Namespace" && k != "List");
        if let Some(metadata) = value.get_mut("metadata").and_then(|m| m.as_object_mut())
            && namespaced
            && !metadata.contains_key("namespace")
        {
            metadata.insert("namespace".into(), namespace.into());
        }
        value
    };
    documents.into_iter().map(|doc| Document { value: doc.value.map(place), ..doc }).collect()
}

/// The cluster's objects the files do not replace (the files are analyzed as if applied), then the files'.
pub fn over_cluster(cluster: Vec<serde_json::Value>, files: Vec<Document>) -> Vec<Document> {
    let replaced: BTreeSet<_> = files.iter().filter_map(|d| d.value.as_ref().ok().and_then(identity)).collect();
    let kept = cluster.into_iter().filter(|v| identity(v).is_none_or(|id| !replaced.contains(&id)));
    kept.map(Document::from_cluster).chain(files).collect()
}

/// Every problem of `documents`, errors and warnings in document order.
pub fn analyze_documents(documents: Vec<Document>) -> Vec<Finding> {
    let mut collected = Collected::default();
    for (order, doc) in documents.into_iter().enumerate() {
        collected.take(order, doc);
    }
    let Collected { mut findings, resources, places, namespaces } = collected;
    findings.extend(cross_resource(&resources, &places));
    findings.extend(injection(&resources, &places, &namespaces));
    findings.sort_by_key(|(order, finding)| (*order, finding.level));
    let mut seen = BTreeSet::new();
    findings.into_iter().map(|(_, f)| f).filter(|f| seen.insert(f.to_string())).collect()
}

/// The documents' own problems, and what the analysis of them together needs.
#[derive(Default)]
struct Collected {
    findings: Vec<(usize, Finding)>,
    resources: Vec<Resource>,
    places: BTreeMap<ResourceKey, Place>,
    namespaces: Vec<(Namespace, Place)>,
}

impl Collected {
    /// The `order`th document: its problems, or its resources.
    fn take(&mut self, order: usize, doc: Document) {
        let namespace = doc.value.as_ref().ok().and_then(identity).map(|(_, namespace, _)| namespace);
        let place = Place { file: doc.file, document: doc.index, line: doc.line, order, namespace };
        let found = |level, object, message| (order, finding(level, &place, object, message));
        let value = match doc.value {
            Ok(value) => value,
            Err(message) => {
                let first = message.lines().next().unwrap_or_default();
                self.findings.push(found(Level::Error, None, format!("invalid YAML: {first}")));
                return;
            }
        };
        let object = describe(&value);
        if value.get("kind").and_then(|k| k.as_str()) == Some("Namespace") {
            if let Ok(namespace) = serde_json::from_value::<Namespace>(value) {
                self.namespaces.push((namespace, place));
            }
            return;
        }
        match decode_document(value) {
            Ok(Decoded::Resources(decoded)) => {
                for resource in decoded {
                    self.places.insert(resource.key(), place.clone());
                    self.resources.push(resource);
                }
            }
            Ok(Decoded::Ignored { .. }) => {}
            Err(errors) => {
                self.findings.extend(errors.iter().map(|e| found(Level::Error, object.clone(), e.to_string())));
            }
        }
    }
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
        resources.iter().filter_map(|r| if let Resource::Pod(p) = r { Some((r.key(), &**p)) } else { None }).collect();
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
            // The injector's own reasons (opted out, host network, injected already) and a sidecar put there by hand.
            let has_sidecar = pod.spec.as_ref().is_some_and(|s| {
                s.containers.iter().chain(s.init_containers.iter().flatten()).any(|c| c.name == SIDECAR)
            });
            if weft_webhook::inject::skip_reason(pod).is_some() || has_sidecar {
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
    let namespace = place.namespace.clone();
    Finding { level, file: place.file.clone(), document: place.document, line: place.line, object, namespace, message }
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
