//! The whole-mesh scenarios of the e2e suite, written once against [`MeshUnderTest`] and run on every backend:
//! network namespaces on this machine (`netns_mesh`) and a real cluster (`cluster_mesh`).

use std::time::{Duration, Instant};

use crate::canary::{RolloutTarget, StepReport, run_steps, wait_for_weights};
use crate::load::{Sample, tally};
use crate::mesh::{DESTINATION_RULE_YAML, VERSIONS, virtual_service_yaml};
use crate::remote_load::RemoteLoad;
use crate::stats::binomial_band;

/// A mesh with a client pod, `reviews` v1 and v2 pods, all injected, and a control plane.
#[allow(async_fn_in_trait)] // used generically, never as a trait object or across threads
pub trait MeshUnderTest: RolloutTarget {
    /// Starts `weft-load` in the client pod against `reviews`, with extra arguments (e.g. `--header`).
    async fn start_load(&self, extra: &[&str]) -> anyhow::Result<RemoteLoad>;
    /// Requests the client's proxy sent outbound and connections the reviews proxies took inbound, so far.
    async fn proxied_counts(&self) -> anyhow::Result<(f64, f64)>;
    /// Replaces the control plane (every operator replica) while traffic flows.
    async fn restart_operator(&mut self) -> anyhow::Result<()>;
    /// Logs and state worth printing when a scenario fails.
    fn diagnostics(&self) -> String;
}

/// How long each canary step is held under load, and how many requests it needs at least.
pub const STEP_HOLD: Duration = Duration::from_secs(2);
const MIN_STEP_REQUESTS: u64 = 200;

/// Applies the DestinationRule and the canary rule at `weights`, and waits until the client's proxy has them.
pub async fn apply_rules(mesh: &impl MeshUnderTest, weights: [u32; 2]) -> anyhow::Result<()> {
    mesh.apply("reviews-dr.yaml", DESTINATION_RULE_YAML).await?;
    let applied = mesh.apply("reviews-vs.yaml", &virtual_service_yaml(weights)).await?;
    wait_for_weights(mesh, weights, applied).await.map(drop)
}

/// Requests from the client go through its proxy (outbound) and reach the backends through theirs (inbound).
pub async fn traffic_is_captured(mesh: &impl MeshUnderTest) -> anyhow::Result<String> {
    apply_rules(mesh, [50, 50]).await?;
    let (out_before, in_before) = mesh.proxied_counts().await?;
    let samples = run_load(mesh, &[], 100).await?;
    let (counts, failures) = tally(&samples, &VERSIONS);
    anyhow::ensure!(failures == 0, "{failures} requests failed: {:?}", first_failures(&samples));
    let (out_after, in_after) = mesh.proxied_counts().await?;
    let (outbound, inbound) = (out_after - out_before, in_after - in_before);
    anyhow::ensure!(outbound >= samples.len() as f64, "client proxy counted {outbound} of {} requests", samples.len());
    anyhow::ensure!(inbound >= 1.0, "the reviews proxies accepted no inbound connection");
    anyhow::ensure!(counts[0] > 0 && counts[1] > 0, "both versions answer at 50/50: {counts:?}");
    Ok(format!(
        "captured: {} requests, client proxy outbound +{outbound}, reviews proxies inbound connections +{inbound}",
        samples.len()
    ))
}

/// A request carrying `x-debug: 1` goes to v2 whatever the weights; others follow the weights (100/0 here).
pub async fn header_routes_to_v2(mesh: &impl MeshUnderTest) -> anyhow::Result<String> {
    apply_rules(mesh, [100, 0]).await?;
    let debug = run_load(mesh, &["--header", "x-debug: 1"], 100).await?;
    let plain = run_load(mesh, &[], 100).await?;
    let (debug_counts, debug_failed) = tally(&debug, &VERSIONS);
    let (plain_counts, plain_failed) = tally(&plain, &VERSIONS);
    anyhow::ensure!(debug_failed + plain_failed == 0, "failed: {:?}", first_failures(&debug));
    anyhow::ensure!(debug_counts[1] == debug.len(), "with x-debug: {debug_counts:?} (v1, v2)");
    anyhow::ensure!(plain_counts[0] == plain.len(), "without x-debug: {plain_counts:?} (v1, v2)");
    Ok(format!(
        "header routing: x-debug: 1 -> v2 {}/{}, no header -> v1 {}/{}",
        debug_counts[1],
        debug.len(),
        plain_counts[0],
        plain.len()
    ))
}

/// The canary moves 100/0 -> 90/10 -> 50/50 -> 0/100 under continuous load: each step's split inside a 5-sigma
/// band, each edit effective (in the client's proxy) within a second, no failed request.
pub async fn canary_rollout(mesh: &impl MeshUnderTest) -> anyhow::Result<(Vec<StepReport>, String)> {
    const STEPS: [[u32; 2]; 4] = [[100, 0], [90, 10], [50, 50], [0, 100]];
    apply_rules(mesh, STEPS[0]).await?;
    let load = mesh.start_load(&[]).await?;
    load.wait_for(50, Duration::from_secs(20)).await?;
    let totals = load.totals();
    let reports = run_steps(mesh, &totals, &STEPS, STEP_HOLD, STEP_HOLD, |_| {}).await;
    let samples = load.stop().await;
    let mut reports = reports?;
    reports.iter_mut().for_each(|r| r.recount(&samples));
    let mut table = String::from("  target   observed v1 / v2   requests  failed  took effect\n");
    for r in &reports {
        table += &format!(
            "  {:<7}  {:>5.1}% / {:>5.1}%  {:>9}  {:>6}  {:>7.3} s\n",
            format!("{}/{}", r.weights[0], r.weights[1]),
            (1.0 - r.v2_share()) * 100.0,
            r.v2_share() * 100.0,
            r.requests(),
            r.failures,
            r.took_effect.as_secs_f64()
        );
    }
    let failures = samples.iter().filter(|s| !s.ok).count();
    anyhow::ensure!(
        failures == 0,
        "{failures} requests failed during the rollout:\n{table}{:?}",
        first_failures(&samples)
    );
    for r in &reports {
        check_step(r).map_err(|e| anyhow::anyhow!("{e}\n{table}"))?;
    }
    Ok((reports, table))
}

/// One step's split against its target.
fn check_step(r: &StepReport) -> anyhow::Result<()> {
    let target = format!("{}/{}", r.weights[0], r.weights[1]);
    anyhow::ensure!(r.requests() >= MIN_STEP_REQUESTS, "step {target}: only {} requests", r.requests());
    anyhow::ensure!(r.took_effect < Duration::from_secs(1), "step {target} took {:?} to take effect", r.took_effect);
    let ok = r.per_version[0] + r.per_version[1];
    let p = f64::from(r.weights[1]) / f64::from(r.weights[0] + r.weights[1]);
    let (low, high) = binomial_band(ok, p, 5.0);
    let v2 = r.per_version[1] as f64;
    anyhow::ensure!((low..=high).contains(&v2), "step {target}: v2 got {v2} of {ok}, expected {low:.0}..{high:.0}");
    Ok(())
}

/// The control plane is replaced while traffic flows: no request fails, and edits still reach the proxy after.
pub async fn operator_restart(mesh: &mut impl MeshUnderTest) -> anyhow::Result<String> {
    apply_rules(mesh, [0, 100]).await?;
    let load = mesh.start_load(&[]).await?;
    load.wait_for(50, Duration::from_secs(20)).await?;
    let started = Instant::now();
    mesh.restart_operator().await?;
    let restarted = started.elapsed();
    // Keep the traffic going while proxies find the new control plane.
    load.wait_for(load.count() + 300, Duration::from_secs(20)).await?;
    let applied = mesh.apply("reviews-vs.yaml", &virtual_service_yaml([100, 0])).await?;
    let effect = wait_for_weights(mesh, [100, 0], applied).await?;
    let samples = load.stop().await;
    let failures = samples.iter().filter(|s| !s.ok).count();
    anyhow::ensure!(failures == 0, "{failures} of {} requests failed: {:?}", samples.len(), first_failures(&samples));
    Ok(format!(
        "operator restart: {} requests, 0 failed; restart took {:.3} s; an edit after it took effect in {:.3} s",
        samples.len(),
        restarted.as_secs_f64(),
        effect.as_secs_f64()
    ))
}

/// Runs the client load until `n` requests are answered.
async fn run_load(mesh: &impl MeshUnderTest, extra: &[&str], n: usize) -> anyhow::Result<Vec<Sample>> {
    let load = mesh.start_load(extra).await?;
    let waited = load.wait_for(n, Duration::from_secs(20)).await;
    let samples = load.stop().await;
    waited.map(|()| samples)
}

fn first_failures(samples: &[Sample]) -> Vec<String> {
    samples.iter().filter(|s| !s.ok).take(5).map(|s| s.detail.clone()).collect()
}

/// The `reviews` VirtualService with only a TCP route splitting connections at `weights` (v1, v2).
pub fn tcp_virtual_service_yaml(weights: [u32; 2]) -> String {
    format!(
        "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: reviews}}\n\
         spec:\n  hosts: [reviews]\n  tcp:\n  - route:\n\
         \x20   - destination: {{host: reviews, subset: v1}}\n      weight: {}\n\
         \x20   - destination: {{host: reviews, subset: v2}}\n      weight: {}\n",
        weights[0], weights[1]
    )
}
