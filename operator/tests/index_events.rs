//! The index as watch events drive it: add, modify, delete, restart (relist), and endpoint resolution from the
//! objects a real API server returned (testdata/cluster-fixtures).

// Test helpers panic on broken fixtures: that is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::PathBuf;

use weft_operator::index::{Index, Snapshot};
use weft_operator::source::file::parse_file;
use weft_operator::source::{Event, Kind, Resource, ResourceKey};

fn resources(yaml: &str) -> Vec<Resource> {
    let parsed = parse_file(&PathBuf::from("test.yaml"), yaml);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    parsed.resources
}

fn one(yaml: &str) -> Resource {
    resources(yaml).remove(0)
}

fn fixtures() -> Vec<Resource> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/cluster-fixtures");
    ["service-reviews.yaml", "endpointslices-reviews.yaml", "pods-reviews.yaml"]
        .iter()
        .flat_map(|f| resources(&std::fs::read_to_string(dir.join(f)).unwrap()))
        .collect()
}

fn endpoints(snapshot: &Snapshot, fqdn: &str) -> Vec<(IpAddr, u16, bool, Option<String>)> {
    snapshot.services[fqdn].ports[0]
        .endpoints
        .iter()
        .map(|e| (e.address, e.port, e.ready, e.labels.get("version").cloned()))
        .collect()
}

const REVIEWS: &str = "reviews.default.svc.cluster.local";

#[test]
fn endpoint_slices_from_a_real_cluster_resolve_to_pod_addresses_with_labels() {
    let mut index = Index::default();
    for r in fixtures() {
        index.apply(Event::Applied(r));
    }
    let snapshot = index.snapshot();
    let port = &snapshot.services[REVIEWS].ports[0];
    assert_eq!((port.name.as_str(), port.port), ("http", 80));
    assert_eq!(snapshot.services[REVIEWS].cluster_ips, ["10.96.12.106".parse::<std::net::IpAddr>().unwrap()]);
    let v1 = Some("v1".to_string());
    assert_eq!(
        endpoints(&snapshot, REVIEWS),
        [("10.244.0.11".parse().unwrap(), 8080, true, v1.clone()), ("10.244.0.12".parse().unwrap(), 8080, true, v1)]
    );
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n";

fn pod(name: &str, ip: &str, ready: &str) -> Resource {
    one(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: web}}}}\nstatus:\n  podIP: {ip}\n  conditions: [{{type: Ready, status: \"{ready}\"}}]\n"
    ))
}

fn web_endpoints(index: &mut Index) -> Vec<(String, bool)> {
    endpoints(&index.snapshot(), "web.default.svc.cluster.local")
        .into_iter()
        .map(|(ip, _, ready, _)| (ip.to_string(), ready))
        .collect()
}

#[test]
fn pods_are_added_modified_and_deleted() {
    let mut index = Index::default();
    assert!(index.apply(Event::Applied(one(SERVICE))));
    assert!(index.apply(Event::Applied(pod("web-1", "10.0.0.1", "True"))));
    assert!(index.apply(Event::Applied(pod("web-2", "10.0.0.2", "True"))));
    assert_eq!(web_endpoints(&mut index), [("10.0.0.1".into(), true), ("10.0.0.2".into(), true)]);

    assert!(index.apply(Event::Applied(pod("web-2", "10.0.0.2", "False"))), "readiness change is a change");
    assert_eq!(web_endpoints(&mut index)[1], ("10.0.0.2".into(), false));
    assert!(!index.apply(Event::Applied(pod("web-2", "10.0.0.2", "False"))), "same object again changes nothing");

    let key = ResourceKey { kind: Kind::Pod, namespace: "default".into(), name: "web-1".into() };
    assert!(index.apply(Event::Deleted(key.clone())));
    assert!(!index.apply(Event::Deleted(key)), "deleting twice changes nothing");
    assert_eq!(web_endpoints(&mut index), [("10.0.0.2".into(), false)]);
}

#[test]
fn a_restart_replaces_exactly_one_kind() {
    let mut index = Index::default();
    index.apply(Event::Applied(one(SERVICE)));
    index.apply(Event::Applied(pod("web-1", "10.0.0.1", "True")));
    index.apply(Event::Applied(pod("web-2", "10.0.0.2", "True")));
    // The watch restarts; while it was down web-1 went away and web-3 came.
    let relist = vec![pod("web-2", "10.0.0.2", "True"), pod("web-3", "10.0.0.3", "True")];
    assert!(index.apply(Event::Restarted { kind: Kind::Pod, namespace: None, objects: relist.clone() }));
    assert_eq!(web_endpoints(&mut index), [("10.0.0.2".into(), true), ("10.0.0.3".into(), true)]);
    assert!(index.snapshot().services.contains_key("web.default.svc.cluster.local"), "other kinds untouched");
    assert!(
        !index.apply(Event::Restarted { kind: Kind::Pod, namespace: None, objects: relist }),
        "an identical relist is no change"
    );
}

#[test]
fn hosts_resolve_relative_to_the_namespace_of_the_rule() {
    let mut index = Index::default();
    index.apply(Event::Applied(one(SERVICE)));
    let vs = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: r, namespace: other}\n\
              spec:\n  hosts: [web, web.default, web.default.svc, api.example.com]\n  http: [{route: [{destination: {host: web.default}}]}]\n";
    index.apply(Event::Applied(one(vs)));
    let snapshot = index.snapshot();
    assert_eq!(
        snapshot.virtual_services[0].hosts,
        [
            "web.other.svc.cluster.local",
            "web.default.svc.cluster.local",
            "web.default.svc.cluster.local",
            "api.example.com"
        ]
    );
}

#[test]
fn a_services_cluster_ips_are_kept_when_they_are_addresses() {
    let mut index = Index::default();
    let with_ip = |ip: &str| one(&SERVICE.replace("  selector:", &format!("  clusterIP: {ip}\n  selector:")));
    let web = |index: &mut Index| {
        let ips = index.snapshot().services["web.default.svc.cluster.local"].cluster_ips.clone();
        ips.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    index.apply(Event::Applied(one(SERVICE)));
    assert!(web(&mut index).is_empty(), "not allocated yet");
    assert!(index.apply(Event::Applied(with_ip("10.96.0.10"))), "an address allocated is a change");
    assert_eq!(web(&mut index), ["10.96.0.10"]);
    index.apply(Event::Applied(with_ip("fd00::a")));
    assert_eq!(web(&mut index), ["fd00::a"]);
    index.apply(Event::Applied(with_ip("None")));
    assert!(web(&mut index).is_empty(), "headless");
    index.apply(Event::Applied(with_ip("not-an-ip")));
    assert!(web(&mut index).is_empty());
    // Dual-stack: every family's address, the primary first (`clusterIP` repeats it).
    let dual = "  clusterIP: 10.96.0.10\n  clusterIPs: [10.96.0.10, \"fd00::a\"]\n  selector:";
    index.apply(Event::Applied(one(&SERVICE.replace("  selector:", dual))));
    assert_eq!(web(&mut index), ["10.96.0.10", "fd00::a"]);
}
