//! The e2e suite: the user's journey (traffic captured, header routing, a canary rollout under load, the control
//! plane restarted under load) on each backend. `local`: pods as network namespaces on this machine (root only;
//! skipped with a printed reason otherwise). `cluster`: any cluster from KUBECONFIG, when WEFT_E2E_CLUSTER=1
//! (see `make e2e-cluster` and `make e2e-kind`).

use std::time::{Duration, Instant};

use weft_e2e::canary::RolloutTarget;
use weft_e2e::mesh::{DESTINATION_RULE_YAML, VERSIONS};
use weft_e2e::netns;
use weft_e2e::netns_mesh::NetnsMesh;
use weft_e2e::scenario::{self, MeshUnderTest};
use weft_e2e::stats::binomial_band;

/// Runs every scenario on one mesh and prints what each measured.
async fn journey(mesh: &mut impl MeshUnderTest, backend: &str) -> anyhow::Result<()> {
    let run = async {
        let mut report = vec![scenario::traffic_is_captured(mesh).await?, scenario::header_routes_to_v2(mesh).await?];
        let (_, table) = scenario::canary_rollout(mesh).await?;
        report.push(format!("canary rollout under continuous load:\n{table}"));
        report.push(scenario::operator_restart(mesh).await?);
        anyhow::Ok(report)
    };
    match run.await {
        Ok(report) => {
            println!("e2e [{backend}]\n{}", report.join("\n"));
            Ok(())
        }
        Err(err) => Err(err.context(mesh.diagnostics())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backend() -> anyhow::Result<()> {
    if let Err(reason) = netns::preflight() {
        eprintln!("skipping the local e2e backend: {reason}");
        return Ok(());
    }
    let mut mesh = NetnsMesh::start().await?;
    journey(&mut mesh, "local: network namespaces").await?;
    let handshakes = mesh.inbound_mutual_tls_handshakes().await?;
    anyhow::ensure!(handshakes > 0.0, "the journey ran, but no sidecar-to-sidecar traffic was mutual TLS");
    println!("mutual TLS: the reviews sidecars accepted {handshakes} handshakes from the client's");
    let before = mesh.inbound_mutual_tls_handshakes().await?;
    let scenarios = [
        tcp_canary(&mesh).await,
        tls_by_server_name(&mesh).await,
        tcp_by_client_labels(&mesh).await,
        passthrough(&mesh).await,
    ];
    for report in scenarios.into_iter().chain([authorization(&mesh).await, strict_mode(&mesh).await]) {
        println!("{}", report.map_err(|err| err.context(mesh.diagnostics()))?);
    }
    // Each connection a tcp or tls route sent to a reviews pod went over mutual TLS between the sidecars.
    let routed = mesh.inbound_mutual_tls_handshakes().await? - before;
    anyhow::ensure!(routed >= 200.0, "only {routed} of the tcp canary's 200 connections were mutual TLS");
    println!("mutual TLS: {routed} handshakes for the tcp and tls routes' connections");
    Ok(())
}

/// A mesh-wide STRICT PeerAuthentication (in the root namespace): plaintext from outside the mesh, which
/// PERMISSIVE let through, no longer reaches the application, while the client's sidecar still gets through
/// over mutual TLS.
async fn strict_mode(mesh: &NetnsMesh) -> anyhow::Result<String> {
    anyhow::ensure!(mesh.answers_plaintext_from_outside().await, "PERMISSIVE: plaintext from outside gets an answer");
    let applied = mesh.apply("peer-authentication.yaml", STRICT_MESH_YAML).await?;
    let until = Instant::now() + Duration::from_secs(10);
    while mesh.answers_plaintext_from_outside().await {
        anyhow::ensure!(Instant::now() < until, "plaintext still reaches reviews 10 s after STRICT");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused_after = applied.elapsed();
    let counts = mesh.versions_per_connection(20).await?;
    // TCP between meshed pods is mutual TLS too: the sidecar sends it to an endpoint of the Service dialled, and
    // the server's sidecar counts it under a Service of its pod (reviews and reviews-raw share the pods' port).
    let counted = || async {
        Ok::<_, anyhow::Error>(mesh.inbound_tcp_for("reviews").await? + mesh.inbound_tcp_for("reviews-raw").await?)
    };
    let counted_before = counted().await?;
    let (status, version) = mesh.late_request_over_tcp().await?;
    anyhow::ensure!(status == 200 && VERSIONS.contains(&version.as_str()), "TCP to reviews-raw: {status} {version:?}");
    let counted = counted().await? - counted_before;
    anyhow::ensure!(counted == 1.0, "the server's sidecars counted {counted} TCP connections for a reviews Service");
    // HTTP to a pod by its address, with a Host no Service answers to, goes to it over mutual TLS too.
    let by_address = mesh.status_from_pod_address(0, "reviews-v1.example").await?;
    anyhow::ensure!(by_address == 200, "HTTP to a reviews pod by its address under STRICT: {by_address}");
    Ok(format!(
        "STRICT mesh-wide: plaintext from outside refused {refused_after:.2?} after the edit; \
         20 connections from the meshed client answered {counts:?}; a connection its sidecar took for TCP (to \
         the reviews-raw cluster IP) answered {status} from {version}; HTTP to a pod by its address {by_address}"
    ))
}

/// AuthorizationPolicies on the `reviews` pods, enforced by their sidecars: an ALLOW for callers of the
/// mesh's `default` namespace lets the client's sidecar through (its identity says `ns/default`) and answers a
/// plaintext request from outside the mesh `403`; then a DENY for `default` on the reviews port closes it to
/// the client too, and removing both opens it again.
async fn authorization(mesh: &NetnsMesh) -> anyhow::Result<String> {
    let policy = |name: &str, spec: &str| {
        format!(
            "---\napiVersion: security.weft.dev/v1alpha1\nkind: AuthorizationPolicy\n\
             metadata: {{name: {name}, namespace: default}}\nspec: {spec}\n"
        )
    };
    let allow = policy(
        "allow-default",
        "{selector: {matchLabels: {app: reviews}}, rules: [{from: [{source: {namespaces: [default]}}]}]}",
    );
    let applied = mesh.apply("authorization.yaml", &allow).await?;
    wait_for_status("plaintext from outside", || mesh.status_from_outside(), Some(403)).await?;
    let allowed_after = applied.elapsed();
    let counts = mesh.versions_per_connection(20).await?;
    let deny = policy(
        "deny-default",
        "{action: DENY, rules: [{from: [{source: {namespaces: [default]}}], to: [{operation: {ports: [\"9080\"]}}]}]}",
    );
    let applied = mesh.apply("authorization.yaml", &format!("{allow}{deny}")).await?;
    wait_for_status("the client", || async { mesh.status_from_client("/").await.ok() }, Some(403)).await?;
    let denied_after = applied.elapsed();
    mesh.apply("authorization.yaml", "").await?;
    wait_for_status("the client", || async { mesh.status_from_client("/").await.ok() }, Some(200)).await?;
    Ok(format!(
        "AuthorizationPolicy: ALLOW namespace default in force {allowed_after:.2?} after the edit (outside: 403; \
         20 requests from the client answered {counts:?}); DENY for default on port 9080 in force \
         {denied_after:.2?} after the edit"
    ))
}

/// Polls `status` until it is `want`, for up to ten seconds.
async fn wait_for_status<F: std::future::Future<Output = Option<u16>>>(
    who: &str,
    mut status: impl FnMut() -> F,
    want: Option<u16>,
) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let got = status().await;
        if got == want {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < until, "{who} got {got:?}, not {want:?}, 10 s after the edit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const STRICT_MESH_YAML: &str = "apiVersion: security.weft.dev/v1alpha1\nkind: PeerAuthentication\n\
metadata: {name: default, namespace: weft-system}\nspec: {mtls: {mode: STRICT}}\n";

/// A VirtualService `tcp` route splits connections by weight (80/20): each new connection goes to one version.
async fn tcp_canary(mesh: &NetnsMesh) -> anyhow::Result<String> {
    mesh.apply("reviews-dr.yaml", DESTINATION_RULE_YAML).await?;
    mesh.apply("reviews-vs.yaml", &scenario::tcp_virtual_service_yaml([80, 20])).await?;
    wait_for_l4_route(mesh, "tcp|default/reviews|0|0").await?;
    let connections = 200;
    let counts = mesh.versions_per_connection(connections).await?;
    let (low, high) = binomial_band(connections as u64, 0.2, 5.0);
    let v2 = counts[1] as f64;
    anyhow::ensure!((low..=high).contains(&v2), "v2 took {v2} of {connections} connections at 20%: {counts:?}");
    Ok(format!("tcp canary 80/20: {connections} connections split {counts:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_backend() -> anyhow::Result<()> {
    if std::env::var("WEFT_E2E_CLUSTER").as_deref() != Ok("1") {
        eprintln!(
            "skipping the cluster e2e backend: set WEFT_E2E_CLUSTER=1 with KUBECONFIG (make e2e-cluster, make e2e-kind)"
        );
        return Ok(());
    }
    let mut mesh = weft_e2e::cluster_mesh::ClusterMesh::start().await?;
    journey(&mut mesh, "cluster: KUBECONFIG").await
}

/// A tcp rule naming its clients by label (`sourceLabels`) takes their connections only: the client pod is named
/// (every connection to v2), then another label is (the client's connections fall to the next rule, v1).
async fn tcp_by_client_labels(mesh: &NetnsMesh) -> anyhow::Result<String> {
    let vs = |app: &str| {
        format!(
            "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: reviews}}\n\
             spec: {{hosts: [reviews], tcp: [{{match: [{{sourceLabels: {{app: {app}}}}}], \
             route: [{{destination: {{host: reviews, subset: v2}}}}]}}, {{route: [{{destination: {{host: reviews, subset: v1}}}}]}}]}}\n"
        )
    };
    let mut report = Vec::new();
    for (app, routed, want) in
        [("client", "tcp|default/reviews|0|0", [0, 20]), ("nobody", "tcp|default/reviews|1|0", [20, 0])]
    {
        mesh.apply("reviews-vs.yaml", &vs(app)).await?;
        wait_for_l4_routes(mesh, |names| names.first().map(String::as_str) == Some(routed)).await?;
        let counts = mesh.versions_per_connection(20).await?;
        anyhow::ensure!(
            counts == want,
            "sourceLabels {{app: {app}}}: 20 connections answered {counts:?}, not {want:?}"
        );
        report.push(format!("app={app}: {counts:?}"));
    }
    Ok(format!("tcp sourceLabels (v1, v2 per 20 connections): {}", report.join(", ")))
}

/// `loadBalancer.simple: PASSTHROUGH`: a request for `reviews` sent to one pod's own address goes to that pod,
/// where the balanced cluster would spread such requests over both versions.
async fn passthrough(mesh: &NetnsMesh) -> anyhow::Result<String> {
    mesh.apply("reviews-vs.yaml", &scenario::tcp_virtual_service_yaml([50, 50]).replace("tcp:", "http:")).await?;
    let balanced = mesh.versions_from_pod_address(1, 40).await?;
    anyhow::ensure!(balanced[0] > 0, "the balanced cluster sent nothing to v1: {balanced:?}");
    let rule = DESTINATION_RULE_YAML.replace("spec:", "spec:\n  trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}");
    mesh.apply("reviews-dr.yaml", &rule).await?;
    let until = Instant::now() + Duration::from_secs(10);
    let passed = loop {
        let counts = mesh.versions_from_pod_address(1, 20).await?;
        if counts == [0, 20] {
            break counts;
        }
        anyhow::ensure!(Instant::now() < until, "PASSTHROUGH: 20 requests to v2's address answered {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    mesh.apply("reviews-dr.yaml", DESTINATION_RULE_YAML).await?;
    Ok(format!("PASSTHROUGH: requests to v2's own address: balanced {balanced:?}, passed through {passed:?}"))
}

/// TLS passthrough by server name: a ClientHello for `v2.reviews.example` reaches v2 (an exact name), one for
/// `web.reviews.example` reaches v1 (`*.reviews.example`).
async fn tls_by_server_name(mesh: &NetnsMesh) -> anyhow::Result<String> {
    let vs = "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {name: reviews}\n\
              spec:\n  hosts: [reviews]\n  tls:\n\
              \x20 - match: [{sniHosts: [v2.reviews.example]}]\n    route: [{destination: {host: reviews, subset: v2}}]\n\
              \x20 - match: [{sniHosts: [\"*.reviews.example\"]}]\n    route: [{destination: {host: reviews, subset: v1}}]\n";
    mesh.apply("reviews-vs.yaml", vs).await?;
    wait_for_l4_route(mesh, "tls|default/reviews|1|0").await?;
    for (server_name, want) in [("v2.reviews.example", 1), ("web.reviews.example", 0), ("v2.reviews.example", 1)] {
        let got = mesh.version_taking(&client_hello(server_name)?).await?;
        anyhow::ensure!(got == want, "a ClientHello for {server_name} reached version index {got}, not {want}");
    }
    Ok("tls routes: ClientHellos reached the version their server name routes to (exact, then wildcard)".into())
}

/// A TLS ClientHello as a real client sends it (made by rustls).
fn client_hello(server_name: &str) -> anyhow::Result<Vec<u8>> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())?;
    let mut client = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    let mut bytes = Vec::new();
    client.write_tls(&mut bytes)?;
    Ok(bytes)
}

async fn wait_for_l4_route(mesh: &NetnsMesh, name: &str) -> anyhow::Result<()> {
    wait_for_l4_routes(mesh, |names| names.iter().any(|n| n == name)).await
}

/// Waits until the client's tcp and tls routes are as `wanted` says.
async fn wait_for_l4_routes(mesh: &NetnsMesh, wanted: impl Fn(&[String]) -> bool) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let names = l4_route_names(&mesh.client_config_dump().await?);
        if wanted(&names) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < until, "the client's proxy did not get the tcp routes in 10 s: {names:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The names of the TCP and TLS routes of every listener in a proxy's config dump.
fn l4_route_names(config_dump: &str) -> Vec<String> {
    let dump: serde_json::Value = serde_json::from_str(config_dump).unwrap_or_default();
    let listeners = dump["listeners"].as_object().into_iter().flat_map(|l| l.values());
    let routes = listeners.flat_map(|l| l["l4_routes"].as_array().into_iter().flatten());
    routes.filter_map(|r| r["name"].as_str().map(str::to_string)).collect()
}
