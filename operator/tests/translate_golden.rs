//! Golden tests of translation: YAML cluster state in `testdata/translate/*.yaml` -> the xDS resources one proxy
//! receives, as readable text in `*.golden`. `WEFT_UPDATE_GOLDEN=1 cargo test -p weft-operator --test translate_golden`
//! rewrites the golden files; review the diff before committing.

// Test helpers panic on broken fixtures: that is a test failure with a clear location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::{Listener, listener_filter};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use weft_operator::index::{Index, Snapshot};
use weft_operator::source::file::{DirectoryState, FileRead, as_events};
use weft_operator::translate::{ProxyResources, translate};
use weft_xds::ProxyNode;
use weft_xds::filters::{CORS, FAULT, HTTP_CONNECTION_MANAGER, TCP_PROXY, TLS_INSPECTOR};

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Loads YAML files through the real file source and index.
fn snapshot_of(files: &[PathBuf]) -> Snapshot {
    let contents: BTreeMap<PathBuf, FileRead> =
        files.iter().map(|p| (p.clone(), FileRead::Text(std::fs::read_to_string(p).unwrap()))).collect();
    let mut state = DirectoryState::default();
    let update = state.update(&contents);
    assert!(update.new_problems.is_empty(), "test input has problems: {:?}", update.new_problems);
    let mut index = Index::default();
    for event in as_events(&state.resources()) {
        index.apply(event);
    }
    index.snapshot()
}

/// The proxy a case is translated for: `# proxy: POD.NAMESPACE` on the first line, else `client.default`.
fn proxy_of(text: &str) -> ProxyNode {
    let id = text.lines().next().and_then(|l| l.strip_prefix("# proxy: ")).unwrap_or("client.default");
    let (pod, namespace) = id.rsplit_once('.').unwrap();
    ProxyNode { pod_name: pod.into(), namespace: namespace.into(), ip: None }
}

/// `{:#?}` without the lines that only restate protobuf defaults, so the golden shows what was set.
fn readable(value: &impl Debug) -> String {
    let text = format!("{value:#?}");
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_end_matches(',').trim();
        let is_default =
            ["None", "[]", "{}", "0", "false", "\"\""].iter().any(|d| trimmed.ends_with(&format!(": {d}")));
        if !is_default {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn render(resources: &ProxyResources) -> String {
    let mut out = String::new();
    for c in &resources.clusters {
        out += &format!("# CDS {}\n{}\n", c.name, readable(c));
    }
    for e in &resources.endpoints {
        out += &format!("# EDS {}\n{}\n", e.cluster_name, readable(e));
    }
    for l in &resources.listeners {
        out += &render_listener(l);
    }
    for r in &resources.routes {
        // Per-route filter configurations (fault, CORS) are protobuf bytes in an Any: shown decoded, after the
        // routes, in filter name order.
        let mut config = r.clone();
        let mut faults = String::new();
        for route in config.virtual_hosts.iter_mut().flat_map(|h| h.routes.iter_mut()) {
            let mut filters: Vec<_> = route.typed_per_filter_config.iter_mut().collect();
            filters.sort_by(|a, b| a.0.cmp(b.0));
            for (filter, any) in filters {
                let decoded = match filter.as_str() {
                    FAULT => readable(&weft_xds::unpack::<HttpFault>(any).unwrap()),
                    CORS => readable(&weft_xds::unpack::<CorsPolicy>(any).unwrap()),
                    other => panic!("unexpected per-route filter config {other}"),
                };
                faults += &format!("## {filter} of route {}\n{decoded}", route.name);
                any.value.clear();
            }
        }
        out += &format!("# RDS {}\n{}{faults}\n", config.name, readable(&config));
    }
    out
}

/// A listener, its filters' and listener filters' typed configs (protobuf bytes in an Any) shown decoded after it.
fn render_listener(listener: &Listener) -> String {
    let mut listener = listener.clone();
    let mut decoded = String::new();
    for chain in &mut listener.filter_chains {
        for filter in &mut chain.filters {
            let Some(ConfigType::TypedConfig(any)) = &mut filter.config_type else { continue };
            decoded += &match filter.name.as_str() {
                HTTP_CONNECTION_MANAGER => format!(
                    "## its HttpConnectionManager\n{}",
                    readable(&weft_xds::unpack::<HttpConnectionManager>(any).unwrap())
                ),
                TCP_PROXY => format!(
                    "## TcpProxy of chain {}\n{}",
                    chain.name,
                    readable(&weft_xds::unpack::<TcpProxy>(any).unwrap())
                ),
                other => panic!("unexpected network filter {other}"),
            };
            any.value.clear();
        }
    }
    for filter in &mut listener.listener_filters {
        let Some(listener_filter::ConfigType::TypedConfig(any)) = &mut filter.config_type else { continue };
        assert_eq!(filter.name, TLS_INSPECTOR, "unexpected listener filter");
        decoded += &format!("## its TlsInspector\n{}", readable(&weft_xds::unpack::<TlsInspector>(any).unwrap()));
        any.value.clear();
    }
    format!("# LDS {}\n{}{decoded}\n", listener.name, readable(&listener))
}

fn check_golden(case: &str, inputs: &[PathBuf]) {
    let first = std::fs::read_to_string(&inputs[0]).unwrap();
    let rendered = render(&translate(&snapshot_of(inputs), &proxy_of(&first)));
    let golden: &Path = &testdata().join("translate").join(format!("{case}.golden"));
    if std::env::var_os("WEFT_UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, &rendered).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(golden).unwrap_or_default();
    if expected != rendered {
        let first_difference = expected.lines().zip(rendered.lines()).position(|(a, b)| a != b);
        panic!(
            "{case}: translation differs from {} (first differing line: {first_difference:?}).\n\
             Run WEFT_UPDATE_GOLDEN=1 cargo test -p weft-operator --test translate_golden and review the diff.",
            golden.display()
        );
    }
}

#[test]
fn canary_with_header_rule_and_subsets() {
    check_golden("canary", &[testdata().join("translate/canary.yaml")]);
}

#[test]
fn multiple_ports_namespaces_and_lb_policies() {
    check_golden("multiport", &[testdata().join("translate/multiport.yaml")]);
}

#[test]
fn retries_faults_mirrors_rewrites_headers_redirects_and_direct_responses() {
    check_golden("traffic", &[testdata().join("translate/traffic.yaml")]);
}

#[test]
fn tcp_and_tls_routes_as_filter_chains() {
    check_golden("l4", &[testdata().join("translate/l4.yaml")]);
}

#[test]
fn objects_read_back_from_a_real_cluster() {
    let dir = testdata().join("cluster-fixtures");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    inputs.sort();
    check_golden("cluster-fixtures", &inputs);
}

#[test]
fn destination_rule_policies_as_cluster_fields() {
    check_golden("policies", &[testdata().join("translate/policies.yaml")]);
}

#[test]
fn export_to_as_a_proxy_in_one_namespace_sees_it() {
    check_golden("export-to", &[testdata().join("translate/export-to.yaml")]);
}

#[test]
fn destination_rules_as_a_proxy_in_one_namespace_looks_them_up() {
    check_golden("dr-scope", &[testdata().join("translate/dr-scope.yaml")]);
}

#[test]
fn wildcard_hosts_exact_first_then_the_longest() {
    check_golden("wildcard", &[testdata().join("translate/wildcard.yaml")]);
}

#[test]
fn delegated_rules_merged_under_their_root_rule() {
    check_golden("delegate", &[testdata().join("translate/delegate.yaml")]);
}
