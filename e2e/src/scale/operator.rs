//! The operator under measurement: the real `weft-operator` binary in standalone mode, with what the scale
//! benchmark reads from outside it: CPU time and memory (`/proc`) and what it sent (`/metrics`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::binaries;
use crate::http_client::HttpClient;
use crate::net::{free_port, localhost};
use crate::process::Process;

pub struct MeasuredOperator {
    pub process: Process,
    pub xds: SocketAddr,
    metrics: SocketAddr,
    pid: u32,
}

/// What the operator had sent so far, from its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sent {
    pub messages: f64,
    pub bytes: f64,
}

impl MeasuredOperator {
    /// Starts the operator on `config` with `--proxy-scope scope` and waits (up to `deadline`) until it is ready.
    pub async fn start(config: &Path, log: &Path, scope: &str, deadline: Duration) -> anyhow::Result<(Self, Duration)> {
        let (xds, metrics) = (free_port(localhost())?, free_port(localhost())?);
        let args = [
            "--config-dir".to_string(),
            config.display().to_string(),
            "--xds-listen".into(),
            xds.to_string(),
            "--metrics-listen".into(),
            metrics.to_string(),
            "--log".into(),
            "warn".into(),
            "--proxy-scope".into(),
            scope.into(),
        ];
        let started = Instant::now();
        let process = Process::spawn("operator", &binaries::path("weft-operator")?, &args, log)?;
        let pid = process.pid().ok_or_else(|| anyhow::anyhow!("operator did not start"))?;
        let operator = Self { process, xds, metrics, pid };
        let health = HttpClient::new(metrics);
        loop {
            if health.get("localhost", "/readyz", &[]).await.is_ok_and(|r| r.status == 200) {
                return Ok((operator, started.elapsed()));
            }
            anyhow::ensure!(started.elapsed() < deadline, "operator not ready after {deadline:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// CPU time (user and system) used so far.
    pub fn cpu(&self) -> Duration {
        crate::process::cpu_time(self.pid)
    }

    /// `VmRSS` and `VmHWM` (peak) in MiB.
    pub fn memory_mib(&self) -> (f64, f64) {
        memory_mib(self.pid)
    }

    /// Responses and bytes sent so far, over every type.
    pub async fn sent(&self) -> anyhow::Result<Sent> {
        let text = HttpClient::new(self.metrics).get("localhost", "/metrics", &[]).await?.body;
        let sum = |name: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                .sum()
        };
        Ok(Sent {
            messages: sum("weft_operator_xds_pushes_total{"),
            bytes: sum("weft_operator_xds_pushed_bytes_total{"),
        })
    }
}

/// `VmRSS` and `VmHWM` (peak) of process `pid` in MiB.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}
