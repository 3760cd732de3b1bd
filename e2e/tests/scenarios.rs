//! The e2e suite: the user's journey (traffic captured, header routing, a canary rollout under load, the control
//! plane restarted under load) on each backend. `local`: pods as network namespaces on this machine (root only;
//! skipped with a printed reason otherwise). `cluster`: any cluster from KUBECONFIG, when WEFT_E2E_CLUSTER=1
//! (see `make e2e-cluster` and `make e2e-kind`).

use std::time::{Duration, Instant};

use weft_e2e::canary::RolloutTarget;
use weft_e2e::mesh::DESTINATION_RULE_YAML;
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
    let report = tcp_canary(&mesh).await.map_err(|err| err.context(mesh.diagnostics()))?;
    println!("{report}");
    Ok(())
}

/// A VirtualService `tcp` route splits connections by weight (80/20): each new connection goes to one version.
async fn tcp_canary(mesh: &NetnsMesh) -> anyhow::Result<String> {
    mesh.apply("reviews-dr.yaml", DESTINATION_RULE_YAML).await?;
    mesh.apply("reviews-vs.yaml", &scenario::tcp_virtual_service_yaml([80, 20])).await?;
    let until = Instant::now() + Duration::from_secs(10);
    while !mesh.client_config_dump().await?.contains("\"name\":\"tcp|default/reviews|0|0\"") {
        anyhow::ensure!(Instant::now() < until, "the client's proxy did not get the TCP route within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
