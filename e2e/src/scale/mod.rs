//! The control-plane scale benchmark (`make bench-scale`): one real operator in standalone mode, S Services,
//! P proxies (light in-process ADS clients that subscribe and ACK like `weft-proxy`), and what the operator pays
//! to start, to push one VirtualService edit, one endpoint change, and a churn of edits: CPU, bytes and messages
//! sent, and how long until every proxy has the change.

pub mod fake_proxy;
pub mod mesh_config;
pub mod operator;
pub mod probe;
pub mod report;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, route, route_action};
use weft_xds::ResourceType;

use crate::mesh::replace_config_file;
pub use fake_proxy::Protocol;
use fake_proxy::{FakeProxy, Record};
use mesh_config::{MeshShape, pod_ip, service_file_name, vs_file_name};
use operator::{MeasuredOperator, Sent};
use probe::{ProbeBackend, ProbeResult};

/// One cell of the grid.
#[derive(Debug, Clone, Copy)]
pub struct CellSpec {
    pub services: usize,
    pub proxies: usize,
    pub namespaces: usize,
    /// Edits per second and for how long, for the churn phase (none when `None`).
    pub churn: Option<(u32, Duration)>,
    /// How long any phase may take before it is reported as not converged.
    pub patience: Duration,
    /// What the proxies speak.
    pub protocol: Protocol,
    /// The operator's `--proxy-scope`.
    pub scope: ProxyScope,
}

/// How much of the mesh the operator sends each proxy (its `--proxy-scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyScope {
    /// The proxy's namespace and what its rules name (state-of-the-world proxies still get everything).
    Namespace,
    Mesh,
}

impl ProxyScope {
    pub fn as_flag(self) -> &'static str {
        match self {
            Self::Namespace => "namespace",
            Self::Mesh => "mesh",
        }
    }
}

impl CellSpec {
    /// The proxies a change to Service `service` reaches: those holding it (proxy `i` is in namespace
    /// `i % namespaces`, as Service `i` is).
    fn affected_by(&self, shape: &MeshShape, service: usize) -> Vec<usize> {
        let scoped = self.scope == ProxyScope::Namespace && self.protocol == Protocol::Delta;
        (0..self.proxies).filter(|&i| !scoped || shape.namespace_of(i) == shape.namespace_of(service)).collect()
    }
}

/// What one change cost and how it spread.
#[derive(Debug, Clone, Default)]
pub struct ChangeCost {
    pub cpu: Duration,
    pub sent: Sent,
    /// Per proxy, until the change arrived; sorted. Proxies it never reached are missing.
    pub latencies: Vec<Duration>,
    /// The proxies that hold the changed Service.
    pub proxies: usize,
    /// Responses of other types the change caused, over all proxies.
    pub other_responses: usize,
    /// Proxies not holding the changed Service that were sent something anyway.
    pub bystanders: usize,
}

/// What a churn of edits cost.
#[derive(Debug, Clone, Default)]
pub struct ChurnCost {
    pub edits: usize,
    pub cpu_per_edit: Duration,
    /// Proxies that ended with the final state.
    pub converged: usize,
    /// The proxies that hold the edited Service.
    pub proxies: usize,
    /// The longest time any proxy went without an edit that had been made.
    pub max_lag: Duration,
}

#[derive(Debug, Clone)]
pub struct CellResult {
    pub spec: CellSpec,
    pub startup: Duration,
    /// From the proxies' start until every one had a complete config.
    pub all_ready: Duration,
    pub rss_mib: f64,
    pub peak_mib: f64,
    /// Clusters a proxy holds, on average.
    pub clusters_per_proxy: f64,
    /// A real proxy calling Services it holds no config for.
    pub probe: ProbeResult,
    pub edit: ChangeCost,
    pub endpoint: ChangeCost,
    pub churn: Option<ChurnCost>,
}

type Records = Vec<Arc<Mutex<Record>>>;

/// Runs one cell from a fresh directory and operator.
pub async fn run_cell(spec: CellSpec) -> anyhow::Result<CellResult> {
    let dir = tempfile::Builder::new().prefix("weft-scale-").tempdir()?;
    let config = dir.path().join("config");
    std::fs::create_dir(&config)?;
    let shape = MeshShape { services: spec.services, namespaces: spec.namespaces };
    shape.write(&config)?;
    let probe_backend = ProbeBackend::start(dir.path(), &config)?;
    let log = dir.path().join("operator.log");
    let (operator, startup) = MeasuredOperator::start(&config, &log, spec.scope.as_flag(), spec.patience).await?;
    let (records, tasks, all_ready) = start_proxies(&operator, &shape, spec).await?;
    let (rss_mib, peak_mib) = operator.memory_mib();
    let held: usize = records.iter().filter_map(|r| r.lock().ok().map(|r| r.clusters)).sum();
    let clusters_per_proxy = held as f64 / records.len().max(1) as f64;
    let probe = probe_backend.measure(dir.path(), operator.xds, spec.patience).await?;
    // The proxies holding the changed Service, and the others.
    let pick = |indices: &[usize]| -> (Records, Records) {
        let (holding, others): (Vec<_>, Vec<_>) = (0..records.len()).partition(|i| indices.contains(i));
        (holding.iter().map(|&i| records[i].clone()).collect(), others.iter().map(|&i| records[i].clone()).collect())
    };
    let edited = spec.affected_by(&shape, 0);
    let (holding, others) = pick(&edited);
    let edit = measure_change(&operator, (&holding, &others), ResourceType::Route, spec.patience, || {
        replace_config_file(&config, &vs_file_name(0), &shape.virtual_service_file(0, [80, 20])).map(drop)
    })
    .await?;
    let moved = spec.affected_by(&shape, 1);
    let (holding, others) = pick(&moved);
    let endpoint = measure_change(&operator, (&holding, &others), ResourceType::Endpoint, spec.patience, || {
        replace_config_file(&config, &service_file_name(1), &shape.service_file(1, pod_ip(1, 3))).map(drop)
    })
    .await?;
    let churn = match spec.churn {
        Some((rate, length)) => {
            Some(churn(&operator, &records, &edited, &shape, &config, rate, length, spec.patience).await?)
        }
        None => None,
    };
    tasks.iter().for_each(|t| t.abort());
    Ok(CellResult { spec, startup, all_ready, rss_mib, peak_mib, clusters_per_proxy, probe, edit, endpoint, churn })
}

async fn start_proxies(
    operator: &MeasuredOperator,
    shape: &MeshShape,
    spec: CellSpec,
) -> anyhow::Result<(Records, Vec<tokio::task::JoinHandle<()>>, Duration)> {
    let started = Instant::now();
    let mut records = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..spec.proxies {
        let record = Arc::new(Mutex::new(Record::default()));
        let proxy = FakeProxy {
            name: format!("load-{i}"),
            namespace: shape.namespace_of(i),
            record: record.clone(),
            // One proxy per namespace keeps its routes, to check what the others converge to.
            keep_routes: i < spec.namespaces,
            protocol: spec.protocol,
        };
        let address = operator.xds;
        let outcome = record.clone();
        tasks.push(tokio::spawn(async move {
            let ended = match proxy.run(address).await {
                Ok(()) => "the operator ended the stream".to_string(),
                Err(err) => format!("{err:#}"),
            };
            if let Ok(mut record) = outcome.lock() {
                record.ended = Some(ended);
            }
        }));
        records.push(record);
    }
    let ready = || records.iter().filter(|r| r.lock().is_ok_and(|r| r.ready())).count();
    if wait_until(spec.patience, || ready() == records.len()).await.is_err() {
        let ended: Vec<String> = records.iter().filter_map(|r| r.lock().ok().and_then(|r| r.ended.clone())).collect();
        anyhow::bail!(
            "{} of {} proxies not ready within {:?}; {} streams ended{}",
            records.len() - ready(),
            records.len(),
            spec.patience,
            ended.len(),
            ended.first().map(|e| format!(", the first: {e}")).unwrap_or_default()
        );
    }
    Ok((records, tasks, started.elapsed()))
}

/// Polls `done` every 10 ms until it holds; an error after `patience`.
async fn wait_until(patience: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let until = Instant::now() + patience;
    while !done() {
        anyhow::ensure!(Instant::now() < until, "not done within {patience:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Waits until the operator has sent nothing for a while (what a change caused has been sent), up to `patience`.
async fn quiescent(operator: &MeasuredOperator, patience: Duration) -> anyhow::Result<Sent> {
    let until = Instant::now() + patience;
    let mut last = operator.sent().await?;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = operator.sent().await?;
        if now == last || Instant::now() > until {
            return Ok(now);
        }
        last = now;
    }
}

/// Applies one change and measures it until every proxy of `records` (those holding what changes) received a
/// `kind` response after it (or `patience`). Responses are counted over those proxies; bytes and CPU over all.
async fn measure_change(
    operator: &MeasuredOperator,
    (records, bystanders): (&Records, &Records),
    kind: ResourceType,
    patience: Duration,
    apply: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<ChangeCost> {
    let before = quiescent(operator, patience).await?;
    let cpu = operator.cpu();
    let changed = Instant::now();
    apply()?;
    let any_after =
        |r: &Mutex<Record>| r.lock().is_ok_and(|r| ResourceType::ALL.iter().any(|k| r.count_after(*k, changed) > 0));
    let reached = || records.iter().filter(|r| r.lock().is_ok_and(|r| r.first_after(kind, changed).is_some())).count();
    let _ = wait_until(patience, || reached() == records.len()).await;
    let after = quiescent(operator, patience).await?;
    let mut latencies = Vec::new();
    let mut other_responses = 0;
    for record in records {
        let Ok(record) = record.lock() else { continue };
        latencies.extend(record.first_after(kind, changed).map(|at| at - changed));
        other_responses +=
            ResourceType::ALL.iter().filter(|k| **k != kind).map(|k| record.count_after(*k, changed)).sum::<usize>();
    }
    latencies.sort();
    let sent = Sent { messages: after.messages - before.messages, bytes: after.bytes - before.bytes };
    let bystanders = bystanders.iter().filter(|r| any_after(r)).count();
    let cpu = operator.cpu().saturating_sub(cpu);
    Ok(ChangeCost { cpu, sent, latencies, proxies: records.len(), other_responses, bystanders })
}

/// `rate` edits per second of one VirtualService for `length`; then whether every proxy of `affected` (indices
/// into `records`) ends at the last one.
#[allow(clippy::too_many_arguments)]
async fn churn(
    operator: &MeasuredOperator,
    records: &Records,
    affected: &[usize],
    shape: &MeshShape,
    config: &std::path::Path,
    rate: u32,
    length: Duration,
    patience: Duration,
) -> anyhow::Result<ChurnCost> {
    quiescent(operator, patience).await?;
    let cpu = operator.cpu();
    let edits = (f64::from(rate) * length.as_secs_f64()).round().max(1.0) as usize;
    let mut times = Vec::with_capacity(edits);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let mut last_weights = [0, 0];
    for k in 0..edits {
        ticker.tick().await;
        last_weights = [70 - (k % 40) as u32, 30 + (k % 40) as u32];
        replace_config_file(config, &vs_file_name(0), &shape.virtual_service_file(0, last_weights))?;
        times.push(Instant::now());
    }
    let converged = || converged_proxies(records, affected, shape.namespaces, last_weights);
    let _ = wait_until(patience, || converged() == affected.len()).await;
    quiescent(operator, patience).await?;
    let cpu_per_edit = operator.cpu().saturating_sub(cpu) / edits as u32;
    let mut max_lag = Duration::ZERO;
    for &i in affected {
        let Ok(record) = records[i].lock() else { continue };
        for at in &times {
            let lag = record.first_after(ResourceType::Route, *at).map_or(patience, |got| got - *at);
            max_lag = max_lag.max(lag);
        }
    }
    Ok(ChurnCost { edits, cpu_per_edit, converged: converged(), proxies: affected.len(), max_lag })
}

/// Proxies of `affected` holding the final routes: each namespace's first proxy (which keeps its routes) has
/// `weights` for `svc-0`, and every other proxy of the namespace has the same route version (proxy `i` is in
/// namespace `i % namespaces`).
fn converged_proxies(records: &Records, affected: &[usize], namespaces: usize, weights: [u32; 2]) -> usize {
    let namespaces = namespaces.max(1);
    let version = |i: usize| records[i].lock().map(|r| r.versions[fake_proxy::slot(ResourceType::Route)].clone());
    let good: Vec<Option<String>> = (0..namespaces.min(records.len()))
        .map(|i| routes_hold(&records[i], weights).then(|| version(i).ok()).flatten())
        .collect();
    affected.iter().filter(|&&i| good[i % namespaces].is_some() && version(i).ok() == good[i % namespaces]).count()
}

/// Whether a proxy's last routes give `svc-0` the final weights.
fn routes_hold(record: &Mutex<Record>, weights: [u32; 2]) -> bool {
    let Ok(record) = record.lock() else { return false };
    record.last_routes.iter().filter_map(|any| weft_xds::unpack::<RouteConfiguration>(any).ok()).any(|config| {
        config.virtual_hosts.iter().filter(|v| v.name.starts_with("svc-0.ns0.")).any(|vhost| {
            vhost.routes.iter().any(|r| match &r.action {
                Some(route::Action::Route(action)) => match &action.cluster_specifier {
                    Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
                        w.clusters.iter().map(|c| c.weight.as_ref().map_or(0, |v| v.value)).collect::<Vec<_>>()
                            == weights
                    }
                    _ => false,
                },
                _ => false,
            })
        })
    })
}
