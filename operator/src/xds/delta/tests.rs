//! The delta stream against the xDS protocol's rules, one behaviour per test.

use std::collections::HashMap;

use envoy_types::pb::google::rpc::Status;

use super::*;

fn any(kind: ResourceType, body: &str) -> Arc<Any> {
    Arc::new(Any { type_url: kind.type_url().into(), value: body.as_bytes().to_vec() })
}

/// Clusters and endpoints named `clusters` (content `name=body`), one listener, routes as given.
fn resources(clusters: &[(&str, &str)], routes: &[(&str, &str)]) -> Arc<EncodedResources> {
    let map = |kind: ResourceType, items: &[(&str, &str)]| {
        TypeResources::new(items.iter().map(|(n, b)| (n.to_string(), any(kind, &format!("{n}={b}")))).collect())
    };
    let by_type = BTreeMap::from([
        (ResourceType::Cluster, map(ResourceType::Cluster, clusters)),
        (ResourceType::Endpoint, map(ResourceType::Endpoint, clusters)),
        (ResourceType::Listener, map(ResourceType::Listener, &[("l", "80")])),
        (ResourceType::Route, map(ResourceType::Route, routes)),
    ]);
    Arc::new(EncodedResources { by_type })
}

fn request(kind: ResourceType, subscribe: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: kind.type_url().into(),
        resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn names(response: &DeltaDiscoveryResponse) -> Vec<&str> {
    response.resources.iter().map(|r| r.name.as_str()).collect()
}

/// A stream subscribed to everything (clusters and listeners wildcard; endpoints and routes by name), all ACKed.
fn settled(initial: Arc<EncodedResources>, endpoints: &[&str], routes: &[&str]) -> DeltaStream {
    let mut stream = DeltaStream::default();
    assert!(stream.on_resources(initial).is_empty(), "nothing is sent before the proxy asks");
    for (kind, subscribe) in [
        (ResourceType::Cluster, &[][..]),
        (ResourceType::Endpoint, endpoints),
        (ResourceType::Listener, &[][..]),
        (ResourceType::Route, routes),
    ] {
        let step = stream.on_request(&request(kind, subscribe, ""));
        let [response] = step.responses.as_slice() else { panic!("{kind:?}: one answer, got {:?}", step.responses) };
        let ack = stream.on_request(&request(kind, &[], &response.nonce));
        assert!(matches!(ack.answer, Some(Answer::Ack { .. })), "{kind:?} ACK recognised");
        assert!(ack.responses.is_empty(), "an ACK causes no push");
    }
    stream
}

#[test]
fn a_first_wildcard_request_gets_everything_and_a_named_one_what_it_names() {
    let mut stream = DeltaStream::default();
    stream.on_resources(resources(&[("c1", "a"), ("c2", "a")], &[("80", "c1")]));
    let clusters = stream.on_request(&request(ResourceType::Cluster, &[], ""));
    assert_eq!(names(&clusters.responses[0]), ["c1", "c2"]);
    assert_eq!(clusters.responses[0].resources[0].version.len(), 16, "each resource carries its version");
    let endpoints = stream.on_request(&request(ResourceType::Endpoint, &["c2"], ""));
    assert_eq!(names(&endpoints.responses[0]), ["c2"]);
}

#[test]
fn a_change_sends_only_the_changed_resource() {
    let mut stream = settled(resources(&[("c1", "a"), ("c2", "a")], &[("80", "c1")]), &["c1", "c2"], &["80"]);
    let push = stream.on_resources(resources(&[("c1", "a"), ("c2", "b")], &[("80", "c1")]));
    let types: Vec<_> = push.iter().map(|r| ResourceType::from_type_url(&r.type_url).unwrap()).collect();
    assert_eq!(types, [ResourceType::Cluster, ResourceType::Endpoint]);
    assert_eq!(names(&push[0]), ["c2"]);
    assert_eq!(names(&push[1]), ["c2"]);
    assert!(stream.on_resources(resources(&[("c1", "a"), ("c2", "b")], &[("80", "c1")])).is_empty());
    let shared = [ResourceType::Cluster, ResourceType::Endpoint].map(|k| stream.subscriptions[&k].held.is_shared());
    assert_eq!(shared, [true, true], "a proxy in step keeps no map of its own");
    assert!(stream.subscriptions[&ResourceType::Endpoint].names.is_shared(), "nor a set of the names it follows");
}

#[test]
fn a_removed_cluster_is_removed_after_the_routes_that_used_it() {
    let mut stream = settled(resources(&[("c1", "a")], &[("80", "c1")]), &["c1"], &["80"]);
    let push = stream.on_resources(resources(&[("c2", "a")], &[("80", "c2")]));
    let cds = &push[0];
    assert_eq!(names(cds), ["c2"]);
    assert!(cds.removed_resources.is_empty(), "c1 stays while routes may use it");
    let rds = push.iter().find(|r| r.type_url == ResourceType::Route.type_url()).unwrap();
    let after_routes = stream.on_request(&request(ResourceType::Route, &[], &rds.nonce));
    let removals: Vec<_> = after_routes.responses.iter().map(|r| r.removed_resources.clone()).collect();
    assert_eq!(removals, [vec!["c1".to_string()], vec!["c1".to_string()]], "cluster and endpoints, once routes moved");
}

#[test]
fn a_reconnecting_proxy_is_sent_only_what_it_does_not_hold() {
    let current = resources(&[("c1", "a"), ("c2", "a")], &[]);
    let held = current.of_type(ResourceType::Cluster).unwrap().hashes.clone();
    let mut stream = DeltaStream::default();
    stream.on_resources(resources(&[("c1", "a"), ("c2", "b"), ("c3", "a")], &[]));
    let mut reconnect = request(ResourceType::Cluster, &[], "");
    reconnect.initial_resource_versions =
        held.iter().map(|(n, h)| (n.clone(), version_string(*h))).collect::<HashMap<_, _>>();
    let step = stream.on_request(&reconnect);
    assert_eq!(names(&step.responses[0]), ["c2", "c3"], "c1 is held at its current version");
}

#[test]
fn a_nack_puts_back_what_the_proxy_held_so_the_change_is_sent_again() {
    let mut stream = settled(resources(&[("c1", "a")], &[("80", "c1")]), &["c1"], &["80"]);
    let push = stream.on_resources(resources(&[("c1", "a")], &[("80", "bad")]));
    let mut nack = request(ResourceType::Route, &[], &push[0].nonce);
    nack.error_detail = Some(Status { code: 3, message: "route 80: bad regex".into(), details: vec![] });
    let step = stream.on_request(&nack);
    assert!(matches!(&step.answer, Some(Answer::Nack { message, .. }) if message.contains("bad regex")));
    assert!(step.responses.is_empty(), "the same content is not pushed straight back");
    let fixed = stream.on_resources(resources(&[("c1", "a")], &[("80", "good")]));
    assert_eq!(names(&fixed[0]), ["80"], "the corrected routes are pushed");
}

#[test]
fn unsubscribing_stops_updates_and_a_first_request_with_nothing_to_send_is_answered() {
    let mut stream = settled(resources(&[("c1", "a"), ("c2", "a")], &[("80", "c1")]), &["c1", "c2"], &["80"]);
    let mut drop_c2 = request(ResourceType::Endpoint, &[], "");
    drop_c2.resource_names_unsubscribe = vec!["c2".into()];
    assert!(stream.on_request(&drop_c2).responses.is_empty());
    let push = stream.on_resources(resources(&[("c1", "a"), ("c2", "b")], &[("80", "c1")]));
    let eds: Vec<_> = push.iter().filter(|r| r.type_url == ResourceType::Endpoint.type_url()).collect();
    assert!(eds.is_empty(), "c2's endpoints are no longer wanted: {eds:?}");
    let mut empty = DeltaStream::default();
    empty.on_resources(resources(&[], &[]));
    let answered = empty.on_request(&request(ResourceType::Cluster, &[], ""));
    assert_eq!(answered.responses.len(), 1, "an empty first answer says the proxy is up to date");
    assert!(answered.responses[0].resources.is_empty());
}

/// `next`'s types built as the ADS server builds them: noting what changed since `previous`.
fn since(previous: &EncodedResources, next: &EncodedResources) -> Arc<EncodedResources> {
    let by_type = next
        .by_type
        .iter()
        .map(|(kind, all)| {
            (*kind, TypeResources::new_since(all.map.clone(), previous.of_type(*kind).map(|p| p.as_ref())))
        })
        .collect();
    Arc::new(EncodedResources { by_type })
}

#[test]
fn a_proxy_in_step_gets_the_difference_computed_once_for_all_and_a_lagging_one_its_own() {
    let first = resources(&[("c1", "a"), ("c2", "a"), ("c3", "a")], &[("80", "c1")]);
    let second = since(&first, &resources(&[("c1", "a"), ("c2", "b")], &[("80", "c1")]));
    let mut in_step = settled(first.clone(), &["c1", "c2", "c3"], &["80"]);
    let push = in_step.on_resources(second.clone());
    assert_eq!(names(&push[0]), ["c2"]);
    let third = since(&second, &resources(&[("c1", "b"), ("c2", "b")], &[("80", "c1")]));
    // A stream that never saw `second` is not in step with `third`'s difference: it gets its own.
    let mut lagging = settled(first, &["c1", "c2", "c3"], &["80"]);
    let lagging_push = lagging.on_resources(third.clone());
    assert_eq!(names(&lagging_push[0]), ["c1", "c2"]);
    let cds = in_step.on_request(&request(ResourceType::Cluster, &[], &push[0].nonce));
    assert!(cds.responses.is_empty());
    let in_step_push = in_step.on_resources(third);
    assert_eq!(names(&in_step_push[0]), ["c1"]);
}

/// `base` plus on-demand virtual hosts `hosts` (content `name=body`) and a cluster per host.
fn with_hosts(base: &Arc<EncodedResources>, hosts: &[(&str, &str)]) -> Arc<EncodedResources> {
    let mut resources = (**base).clone();
    let mut clusters = resources.by_type[&ResourceType::Cluster].map.clone();
    clusters.extend(hosts.iter().map(|(n, _)| (format!("c-{n}"), any(ResourceType::Cluster, n))));
    resources.by_type.insert(ResourceType::Cluster, TypeResources::new(clusters));
    let vhosts = hosts.iter().map(|(n, b)| (n.to_string(), any(ResourceType::VirtualHost, &format!("{n}={b}"))));
    resources.by_type.insert(ResourceType::VirtualHost, TypeResources::new(vhosts.collect()));
    Arc::new(resources)
}

#[test]
fn an_on_demand_name_is_answered_with_its_host_or_told_absent_once() {
    let base = resources(&[("c1", "a")], &[("80", "c1")]);
    let mut stream = settled(base.clone(), &["c1"], &["80"]);
    let asked = request(ResourceType::VirtualHost, &["80/ledger.bank", "80/nowhere"], "");
    assert_eq!(
        stream.on_demand_after(&asked),
        Some(["80/ledger.bank".to_string(), "80/nowhere".to_string()].into()),
        "the stream learns what to translate before it answers"
    );
    let push = stream.on_resources(with_hosts(&base, &[("80/ledger.bank", "x")]));
    assert_eq!(push.len(), 1, "the new cluster goes first, before the host that routes to it");
    assert_eq!(names(&push[0]), ["c-80/ledger.bank"]);
    let step = stream.on_request(&asked);
    let [answer] = step.responses.as_slice() else { panic!("one answer: {:?}", step.responses) };
    assert_eq!(names(answer), ["80/ledger.bank"]);
    assert_eq!(answer.removed_resources, ["80/nowhere"], "a name nothing answers to is said to be absent");
    stream.on_request(&request(ResourceType::VirtualHost, &[], &answer.nonce));
    assert!(stream.on_resources(with_hosts(&base, &[("80/ledger.bank", "x")])).is_empty(), "told once");
    assert_eq!(stream.on_demand_after(&request(ResourceType::VirtualHost, &["80/ledger.bank"], "")), None);
    let changed = stream.on_resources(with_hosts(&base, &[("80/ledger.bank", "y")]));
    let hosts: Vec<_> = changed.iter().filter(|r| r.type_url == ResourceType::VirtualHost.type_url()).collect();
    assert_eq!(hosts.len(), 1, "a changed host is pushed like any resource");
    assert_eq!(names(hosts[0]), ["80/ledger.bank"]);
}

#[test]
fn on_demand_names_are_bounded_per_stream() {
    let stream = DeltaStream::default();
    let names: Vec<String> = (0..MAX_ON_DEMAND + 10).map(|i| format!("80/h{i}")).collect();
    let flood = DeltaDiscoveryRequest {
        type_url: ResourceType::VirtualHost.type_url().into(),
        resource_names_subscribe: names,
        ..Default::default()
    };
    assert_eq!(stream.on_demand_after(&flood).map(|n| n.len()), Some(MAX_ON_DEMAND));
}

#[test]
fn a_large_change_goes_out_in_responses_answered_one_by_one() {
    let body = "x".repeat(1000);
    let many: Vec<(String, String)> = (0..40).map(|i| (format!("c{i:02}"), body.clone())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, b)| (n.as_str(), b.as_str())).collect();
    let mut stream = DeltaStream::default();
    stream.on_resources(resources(&many, &[("80", "c00")]));
    let step = stream.on_request(&request(ResourceType::Cluster, &[], ""));
    assert_eq!(step.responses.len(), 3, "40 KB of clusters in responses of about 16 KiB");
    let sizes: Vec<usize> = step.responses.iter().map(|r| r.resources.len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 40);
    assert!(sizes.iter().all(|n| *n * 1000 <= RESPONSE_BYTES), "{sizes:?}");
    let nonces: Vec<&str> = step.responses.iter().map(|r| r.nonce.as_str()).collect();
    let ack = stream.on_request(&request(ResourceType::Cluster, &[], nonces[0]));
    assert!(matches!(ack.answer, Some(Answer::Ack { .. })), "each response is answered on its own");
    let nack = DeltaDiscoveryRequest {
        error_detail: Some(Status { code: 3, message: "bad".into(), details: Vec::new() }),
        ..request(ResourceType::Cluster, &[], nonces[1])
    };
    let nacked = stream.on_request(&nack);
    assert!(matches!(nacked.answer, Some(Answer::Nack { .. })));
    assert!(nacked.responses.is_empty(), "what was rejected is not sent again as it is");
    let last = stream.on_request(&request(ResourceType::Cluster, &[], nonces[2]));
    assert!(matches!(last.answer, Some(Answer::Ack { .. })));
    assert!(stream.on_request(&request(ResourceType::Cluster, &[], nonces[0])).answer.is_none(), "answered before");
    let rejected = names(&step.responses[1])[0].to_string();
    let fixed: Vec<(&str, &str)> =
        many.iter().map(|(n, b)| if *n == rejected { (*n, "fixed") } else { (*n, *b) }).collect();
    let push = stream.on_resources(resources(&fixed, &[("80", "c00")]));
    assert_eq!(names(&push[0]), [rejected.as_str()], "a rejected resource is sent again once it changes");
}

#[test]
fn names_subscribed_a_few_at_a_time_get_what_they_add_and_nothing_again() {
    let all = resources(&[("c1", "a"), ("c2", "a"), ("c3", "a")], &[("80", "c1")]);
    let mut stream = settled(all.clone(), &["c1"], &["80"]);
    let more = stream.on_request(&request(ResourceType::Endpoint, &["c1", "c2", "gone"], ""));
    let [response] = more.responses.as_slice() else { panic!("one answer: {:?}", more.responses) };
    assert_eq!(names(response), ["c2"], "only what was added, not c1 again");
    assert_eq!(response.removed_resources, ["gone"], "and that a name added does not exist");
    let nonce = response.nonce.clone();
    assert!(stream.on_request(&request(ResourceType::Endpoint, &[], &nonce)).responses.is_empty(), "an ACK");
    let last = stream.on_request(&request(ResourceType::Endpoint, &["c3"], ""));
    assert_eq!(names(&last.responses[0]), ["c3"]);
    assert!(last.responses[0].removed_resources.is_empty(), "a name told absent is not told again");
    let nonce = last.responses[0].nonce.clone();
    stream.on_request(&request(ResourceType::Endpoint, &[], &nonce));
    let changed = resources(&[("c1", "a"), ("c2", "b"), ("c3", "a")], &[("80", "c1")]);
    let push = stream.on_resources(changed);
    let endpoints = push.iter().find(|r| r.type_url == ResourceType::Endpoint.type_url()).expect("an EDS push");
    assert_eq!(names(endpoints), ["c2"], "the names added one by one are followed like the others");
}
