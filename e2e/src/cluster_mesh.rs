//! The e2e suite's cluster backend: any cluster from KUBECONFIG. Installs (or upgrades) the charts, labels a fresh
//! namespace for injection, deploys two versions of the echo backend and a client, and drives everything with
//! `kubectl`, the way a user would. Needs the images (`make images`, pushed or loaded into the cluster).
//!
//! Settings (environment): `WEFT_E2E_IMAGE_REGISTRY` (default `ghcr.io/weft-mesh`), `WEFT_E2E_IMAGE_TAG`
//! (default: the chart's appVersion), `WEFT_E2E_SKIP_INSTALL=1` (use the Weft already installed in
//! `weft-system`), `WEFT_E2E_KEEP=1` (keep the test namespace).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::canary::RolloutTarget;
use crate::remote_load::RemoteLoad;
use crate::scenario::MeshUnderTest;

const SYSTEM_NAMESPACE: &str = "weft-system";
const ROLLOUT_TIMEOUT: &str = "180s";

pub struct ClusterMesh {
    namespace: String,
    keep: bool,
}

impl ClusterMesh {
    pub async fn start() -> anyhow::Result<Self> {
        let registry = std::env::var("WEFT_E2E_IMAGE_REGISTRY").unwrap_or_else(|_| "ghcr.io/weft-mesh".into());
        let tag = match std::env::var("WEFT_E2E_IMAGE_TAG") {
            Ok(tag) => tag,
            Err(_) => app_version()?,
        };
        if std::env::var("WEFT_E2E_SKIP_INSTALL").as_deref() != Ok("1") {
            install_weft(&registry, &tag).await?;
        }
        let namespace = format!("weft-e2e-{}", std::process::id());
        let mesh = Self { namespace, keep: std::env::var("WEFT_E2E_KEEP").as_deref() == Ok("1") };
        kubectl(&["create", "namespace", &mesh.namespace]).await?;
        kubectl(&["label", "namespace", &mesh.namespace, "weft.dev/inject=enabled"]).await?;
        mesh.kubectl_apply(&workloads(&format!("{registry}/weft-e2e:{tag}"))).await?;
        for deployment in ["reviews-v1", "reviews-v2", "client"] {
            let target = format!("deployment/{deployment}");
            kubectl(&["-n", &mesh.namespace, "rollout", "status", &target, "--timeout", ROLLOUT_TIMEOUT]).await?;
        }
        mesh.check_injected().await?;
        Ok(mesh)
    }

    /// Every pod of the namespace got the sidecar and the init container (the webhook's annotation says which
    /// way).
    async fn check_injected(&self) -> anyhow::Result<()> {
        let pods: serde_json::Value =
            serde_json::from_str(&kubectl(&["-n", &self.namespace, "get", "pods", "-o", "json"]).await?)?;
        for pod in pods["items"].as_array().into_iter().flatten() {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let names: Vec<&str> = ["containers", "initContainers"]
                .iter()
                .flat_map(|k| pod["spec"][k].as_array().into_iter().flatten())
                .filter_map(|c| c["name"].as_str())
                .collect();
            anyhow::ensure!(
                names.contains(&"weft-proxy") && names.contains(&"weft-init"),
                "pod {name} was not injected: containers {names:?}"
            );
            anyhow::ensure!(
                pod["metadata"]["annotations"]["weft.dev/injected"].is_string(),
                "pod {name}: no annotation"
            );
        }
        Ok(())
    }

    async fn kubectl_apply(&self, yaml: &str) -> anyhow::Result<()> {
        kubectl_stdin(&["-n", &self.namespace, "apply", "-f", "-"], yaml).await.map(drop)
    }

    /// `weft-load --print-body` inside a pod: a sidecar endpoint seen from the pod itself.
    async fn get_in_pod(&self, target: &str, container: &str, url: &str) -> anyhow::Result<String> {
        kubectl(&[
            "-n",
            &self.namespace,
            "exec",
            target,
            "-c",
            container,
            "--",
            "weft-load",
            "--url",
            url,
            "--print-body",
        ])
        .await
    }
}

impl RolloutTarget for ClusterMesh {
    async fn apply(&self, _name: &str, yaml: &str) -> anyhow::Result<Instant> {
        self.kubectl_apply(yaml).await?;
        Ok(Instant::now())
    }

    async fn client_config_dump(&self) -> anyhow::Result<String> {
        self.get_in_pod("deploy/client", "client", "http://127.0.0.1:15000/config_dump").await
    }
}

impl MeshUnderTest for ClusterMesh {
    async fn start_load(&self, extra: &[&str]) -> anyhow::Result<RemoteLoad> {
        let mut command = Command::new("kubectl");
        command.args(["-n", &self.namespace, "exec", "-i", "deploy/client", "-c", "client", "--", "weft-load"]);
        command.args(["--url", "http://reviews:9080/", "--concurrency", "2", "--until-stdin-closes"]).args(extra);
        RemoteLoad::spawn(command)
    }

    async fn proxied_counts(&self) -> anyhow::Result<(f64, f64)> {
        let metrics = "http://127.0.0.1:15020/metrics";
        let client = self.get_in_pod("deploy/client", "client", metrics).await?;
        let outbound = crate::sidecar::metric_sum(&client, "weft_proxy_requests_total", &[("direction", "outbound")]);
        let mut inbound = 0.0;
        for deployment in ["deploy/reviews-v1", "deploy/reviews-v2"] {
            let text = self.get_in_pod(deployment, "app", metrics).await?;
            inbound +=
                crate::sidecar::metric_sum(&text, "weft_proxy_tcp_connections_total", &[("direction", "inbound")]);
        }
        Ok((outbound, inbound))
    }

    async fn restart_operator(&mut self) -> anyhow::Result<()> {
        kubectl(&["-n", SYSTEM_NAMESPACE, "rollout", "restart", "deployment/weft-operator"]).await?;
        kubectl(&[
            "-n",
            SYSTEM_NAMESPACE,
            "rollout",
            "status",
            "deployment/weft-operator",
            "--timeout",
            ROLLOUT_TIMEOUT,
        ])
        .await
        .map(drop)
    }

    fn diagnostics(&self) -> String {
        let run = |args: &[&str]| {
            std::process::Command::new("kubectl")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
                .unwrap_or_else(|e| e.to_string())
        };
        format!(
            "--- pods ---\n{}\n--- operator log ---\n{}\n--- client proxy log ---\n{}",
            run(&["get", "pods", "-n", &self.namespace, "-o", "wide"]),
            run(&["-n", SYSTEM_NAMESPACE, "logs", "deployment/weft-operator", "--tail", "40"]),
            run(&["-n", &self.namespace, "logs", "deployment/client", "-c", "weft-proxy", "--tail", "40"]),
        )
    }
}

impl Drop for ClusterMesh {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::process::Command::new("kubectl")
                .args(["delete", "namespace", &self.namespace, "--wait=false"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `helm upgrade --install` of both charts with the images under test; waits until Weft is available.
async fn install_weft(registry: &str, tag: &str) -> anyhow::Result<()> {
    let helm = crate::chart::Helm::find()?.path().to_path_buf();
    let chart = |name: &str| crate::chart::chart_dir(name).display().to_string();
    let crds = chart("weft-crds");
    run(Command::new(&helm).args([
        "upgrade",
        "--install",
        "weft-crds",
        &crds,
        "-n",
        SYSTEM_NAMESPACE,
        "--create-namespace",
        "--wait",
    ]))
    .await?;
    let mut weft = Command::new(&helm);
    weft.args(["upgrade", "--install", "weft", &chart("weft"), "-n", SYSTEM_NAMESPACE, "--wait", "--timeout", "5m"]);
    for component in ["operator", "webhook", "proxy"] {
        weft.args(["--set", &format!("{component}.image.repository={registry}/weft-{component}")]);
        weft.args(["--set", &format!("{component}.image.tag={tag}")]);
    }
    run(&mut weft).await.map(drop)
}

/// The charts' appVersion, the default image tag.
fn app_version() -> anyhow::Result<String> {
    let text = std::fs::read_to_string(crate::chart::chart_dir("weft").join("Chart.yaml"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .context("charts/weft/Chart.yaml has no appVersion")
}

async fn kubectl(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("kubectl").args(args)).await
}

async fn kubectl_stdin(args: &[&str], input: &str) -> anyhow::Result<String> {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).await?;
    }
    finish(child.wait_with_output().await?, &format!("kubectl {}", args.join(" ")))
}

async fn run(command: &mut Command) -> anyhow::Result<String> {
    let what = format!("{:?}", command.as_std());
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .with_context(|| format!("{what} timed out"))??;
    finish(output, &what)
}

fn finish(output: std::process::Output, what: &str) -> anyhow::Result<String> {
    anyhow::ensure!(output.status.success(), "{what} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The test's workloads: `reviews` v1 and v2 (weft-echo) behind Service `reviews`, and a client pod.
fn workloads(image: &str) -> String {
    let deployment = |name: &str, labels: &str, container: &str, command: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {labels}}}\n\
             \x20 template:\n    metadata: {{labels: {labels}}}\n    spec:\n      containers:\n\
             \x20     - name: {container}\n        image: {image}\n        command: {command}\n\
             \x20       ports: [{{name: http, containerPort: 9080}}]\n---\n"
        )
    };
    let mut yaml = String::new();
    for version in crate::mesh::VERSIONS {
        let command = format!("[weft-echo, --listen, \"0.0.0.0:9080\", --name, reviews, --version, {version}]");
        yaml += &deployment(
            &format!("reviews-{version}"),
            &format!("{{app: reviews, version: {version}}}"),
            "app",
            &command,
        );
    }
    yaml += &deployment("client", "{app: client}", "client", "[sleep, infinity]");
    yaml += "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec:\n  selector: {app: reviews}\n\
             \x20 ports: [{name: http, port: 9080, targetPort: http}]\n";
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workloads_are_valid_yaml_with_three_deployments_and_a_service() {
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&workloads("example/weft-e2e:1")).unwrap();
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(kinds, ["Deployment", "Deployment", "Deployment", "Service"]);
        assert_eq!(docs[1]["spec"]["template"]["metadata"]["labels"]["version"], "v2");
        assert_eq!(docs[0]["spec"]["template"]["spec"]["containers"][0]["command"][6], "v1");
        assert_eq!(docs[3]["spec"]["ports"][0]["targetPort"], "http");
    }
}
