//! The live data plane: the accepted config plus one balancer per cluster, rebuilt as config arrives and read by
//! every request. Balancers are kept across updates when their settings are unchanged, so connection pools and
//! latency estimates survive endpoint and route edits.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::ProxyConfig;
use crate::upstream::ClusterBalancer;

/// What a request reads: the config and a balancer per cluster name.
#[derive(Default)]
pub struct Runtime {
    pub config: Arc<ProxyConfig>,
    pub clusters: HashMap<String, Arc<ClusterBalancer>>,
}

/// Follows `configs`, publishing a new [`Runtime`] for each config.
pub async fn maintain(mut configs: watch::Receiver<Arc<ProxyConfig>>, runtimes: watch::Sender<Arc<Runtime>>) {
    loop {
        let config = configs.borrow_and_update().clone();
        let previous = runtimes.borrow().clone();
        runtimes.send_replace(Arc::new(rebuild(&previous, config)));
        if configs.changed().await.is_err() {
            return;
        }
    }
}

fn rebuild(previous: &Runtime, config: Arc<ProxyConfig>) -> Runtime {
    let clusters = config
        .clusters
        .values()
        .map(|cluster| {
            let balancer = match previous.clusters.get(&cluster.name) {
                Some(existing) if existing.fits(cluster) => {
                    existing.configure(cluster);
                    existing.clone()
                }
                _ => Arc::new(ClusterBalancer::new(cluster)),
            };
            balancer.set_endpoints(config.endpoints.get(&cluster.eds_name).map(Vec::as_slice).unwrap_or_default());
            (cluster.name.clone(), balancer)
        })
        .collect();
    Runtime { config, clusters }
}
