//! Wiring of a running proxy: xDS client -> config channel -> data plane -> listeners, plus the admin listener.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::net::TcpListener;
use tokio::sync::watch;
use weft_xds::ProxyNode;

use crate::admin::{self, AdminState};
use crate::config::ProxyConfig;
use crate::dataplane::{self, Runtime};
use crate::http::outbound;
use crate::xds::{client, state::ClientState};

/// Everything a proxy needs to start, validated.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub xds_address: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_ip: Option<IpAddr>,
    pub outbound_listen: SocketAddr,
    pub admin_listen: SocketAddr,
}

/// The Service port meant by a request whose authority has no port.
const DEFAULT_HTTP_PORT: u16 = 80;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--xds-address {0:?}: {1}")]
    XdsAddress(String, String),
    #[error("binding {what} {address}: {source}")]
    Bind { what: &'static str, address: SocketAddr, source: std::io::Error },
}

impl ProxySettings {
    fn node(&self) -> Node {
        let id = ProxyNode { pod_name: self.pod_name.clone(), namespace: self.pod_namespace.clone(), ip: self.pod_ip };
        Node { id: id.to_string(), cluster: format!("{}.{}", self.pod_name, self.pod_namespace), ..Default::default() }
    }

    /// Checks what can be checked before any port binds.
    pub fn xds_endpoint(&self) -> Result<tonic::transport::Endpoint, StartError> {
        let bad = |m: String| StartError::XdsAddress(self.xds_address.clone(), m);
        let endpoint =
            tonic::transport::Endpoint::from_shared(self.xds_address.clone()).map_err(|e| bad(e.to_string()))?;
        if endpoint.uri().scheme_str() != Some("http") {
            return Err(bad("must start with http:// (TLS to the control plane is not available yet)".into()));
        }
        Ok(endpoint
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10)))
    }
}

/// Starts the proxy and runs until the process ends.
pub async fn run(settings: ProxySettings) -> Result<(), StartError> {
    let endpoint = settings.xds_endpoint()?;
    let bind = |what: &'static str, address: SocketAddr| async move {
        TcpListener::bind(address).await.map_err(|source| StartError::Bind { what, address, source })
    };
    let outbound_listener = bind("outbound listener", settings.outbound_listen).await?;
    let admin_listener = bind("admin listener", settings.admin_listen).await?;
    let (config_tx, config_rx) = watch::channel(Arc::new(ProxyConfig::default()));
    let (runtime_tx, runtime_rx) = watch::channel(Arc::new(Runtime::default()));
    let ready = Arc::new(AtomicBool::new(false));
    tracing::info!(
        outbound = %settings.outbound_listen,
        admin = %settings.admin_listen,
        xds = %settings.xds_address,
        node = %settings.node().id,
        "weft-proxy starting"
    );
    tokio::spawn(client::run(endpoint, ClientState::new(settings.node()), config_tx, ready.clone()));
    tokio::spawn(dataplane::maintain(config_rx.clone(), runtime_tx));
    tokio::spawn(admin::serve(admin_listener, AdminState { config: config_rx, ready }));
    outbound::serve(outbound_listener, runtime_rx, DEFAULT_HTTP_PORT).await;
    Ok(())
}
