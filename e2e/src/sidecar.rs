//! Weft's sidecar in a network-namespace pod, exactly as the webhook injects it: `weft-proxy init` (the init
//! container's iptables rules), `weft-proxy run --transparent` as UID 1337 with the downward-API environment, and
//! `weft-proxy wait` (the classic sidecar's postStart hook). Also reads the proxies' `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::binaries;
use crate::netns::{Netns, Pod};
use crate::process::Process;

/// The proxy's UID; iptables leaves its traffic alone.
pub const PROXY_UID: &str = "1337";
/// Where each sidecar serves `/healthz/ready` and `/metrics` (never captured).
pub const HEALTH_PORT: u16 = 15020;

/// A `weft-proxy` binary UID 1337 can execute (a copy in a world-readable directory: the build directory may not
/// be readable by that user).
#[derive(Debug, Clone)]
pub struct Sidecars {
    proxy: PathBuf,
    /// Mutual TLS: the environment that gives each sidecar a workload identity (empty: plaintext).
    identity_env: Vec<String>,
}

impl Sidecars {
    /// Copies the proxy binary into `dir` (which must be world-readable).
    pub fn prepare(dir: &Path) -> anyhow::Result<Self> {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        let proxy = dir.join("weft-proxy");
        std::fs::copy(binaries::path("weft-proxy")?, &proxy)?;
        std::fs::set_permissions(&proxy, std::fs::Permissions::from_mode(0o755))?;
        Ok(Self { proxy, identity_env: Vec::new() })
    }

    /// Sidecars started from now on get a workload certificate from the CA at `ca` (`https://...`), trusting
    /// `bundle` and proving who they are with `token` (files the proxy user can read), and take their config over
    /// TLS from the same port, as the injector sets it up.
    pub fn with_identity(mut self, ca: &str, bundle: &Path, token: &Path) -> Self {
        self.identity_env = vec![
            // After the plaintext address in the command line: `env` keeps the last value.
            format!("WEFT_XDS_ADDRESS={ca}"),
            format!("WEFT_CA_ADDRESS={ca}"),
            format!("WEFT_TRUST_BUNDLE={}", bundle.display()),
            format!("WEFT_IDENTITY_TOKEN_FILE={}", token.display()),
        ];
        self
    }

    pub fn proxy(&self) -> &Path {
        &self.proxy
    }

    /// `weft-proxy init` in the pod, as the webhook's init container runs it, plus `extra`; the rules it printed.
    pub fn init(&self, ns: &Netns, extra: &[&str]) -> anyhow::Result<String> {
        let mut args = vec![
            "init",
            "--proxy-uid",
            PROXY_UID,
            "--outbound-capture-port",
            "15001",
            "--inbound-capture-port",
            "15006",
        ];
        args.extend(extra);
        Ok(String::from_utf8(ns.exec(&self.proxy, &args)?.stdout)?)
    }

    /// Starts the sidecar in `pod` (namespace `namespace` of the mesh), logging to `log`.
    pub fn start(&self, pod: &Pod, namespace: &str, xds: SocketAddr, log: &Path) -> anyhow::Result<Process> {
        let mut command: Vec<String> =
            ["setpriv", "--reuid=1337", "--regid=1337", "--clear-groups", "env"].map(String::from).into();
        command.extend([
            format!("WEFT_XDS_ADDRESS=http://{xds}"),
            format!("POD_NAME={}", pod.name),
            format!("POD_NAMESPACE={namespace}"),
            format!("POD_IP={}", pod.ip),
            "SERVICE_ACCOUNT=default".into(),
        ]);
        command.extend(self.identity_env.iter().cloned());
        command.extend([
            "WEFT_LOG=info,weft_proxy::transparent=debug,weft_proxy::inbound=debug".into(),
            self.proxy.display().to_string(),
            "run".into(),
            "--transparent".into(),
        ]);
        pod.ns.spawn(&format!("{} proxy", pod.name), &command, log)
    }

    /// `weft-proxy wait` inside the pod, as the classic sidecar's postStart hook runs it.
    pub async fn wait_ready(&self, ns: &Netns) -> anyhow::Result<()> {
        let (ns_name, proxy) = (ns.name().to_string(), self.proxy.clone());
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("ip")
                .args(["netns", "exec", &ns_name])
                .arg(proxy)
                .args(["wait", "--timeout", "30s"])
                .output()
        })
        .await??;
        anyhow::ensure!(output.status.success(), "weft-proxy wait: {}", String::from_utf8_lossy(&output.stderr).trim());
        Ok(())
    }
}

/// A pod's sidecar `/metrics`, scraped from `from` (the node, as Prometheus would).
pub async fn scrape(from: &Netns, pod: &Pod) -> anyhow::Result<String> {
    let to = SocketAddr::new(IpAddr::V4(pod.ip), HEALTH_PORT);
    let (status, _, body) = from.http_get(to, "proxy", "/metrics", Duration::from_secs(5)).await?;
    anyhow::ensure!(status == 200, "metrics of {}: {status}", pod.name);
    Ok(body)
}

/// The sum of the samples of `name` in Prometheus text that carry every label in `labels`.
pub fn metric_sum(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let wanted = metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            if wanted { value.parse::<f64>().ok() } else { None }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_only_the_series_with_every_label() {
        let text = "# HELP x\nweft_proxy_requests_total{direction=\"outbound\",cluster=\"a\"} 3\n\
                    weft_proxy_requests_total{direction=\"outbound\",cluster=\"b\"} 4\n\
                    weft_proxy_requests_total{direction=\"inbound\",cluster=\"a\"} 5\nother 9\n";
        assert_eq!(metric_sum(text, "weft_proxy_requests_total", &[("direction", "outbound")]), 7.0);
        assert_eq!(metric_sum(text, "weft_proxy_requests_total", &[("cluster", "a")]), 8.0);
        assert_eq!(metric_sum(text, "other", &[]), 9.0);
    }
}
