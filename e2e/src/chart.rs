//! The Helm charts (`charts/weft-crds`, `charts/weft`) as the chart checks see them: finds `helm`, runs
//! `helm lint` and `helm template`, and parses every rendered manifest into JSON values to inspect. A tiny fake
//! API server ([`FakeApiServer`]) answers helm's discovery and `lookup` calls, so what a chart does on
//! `helm upgrade` (reusing objects that exist) can be rendered too, without a cluster.

use std::collections::HashMap;
use std::convert::Infallible;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// The command that installs helm where [`Helm::find`] looks.
pub const INSTALL_HELM: &str = "scripts/install-helm.sh";

/// The repository root (the workspace folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `charts/<name>` in the repository.
pub fn chart_dir(name: &str) -> PathBuf {
    repo_root().join("charts").join(name)
}

/// A helm binary.
#[derive(Debug, Clone)]
pub struct Helm {
    path: PathBuf,
}

/// What one helm run printed.
#[derive(Debug, Clone)]
pub struct HelmOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Helm {
    /// `$WEFT_HELM`, else `helm` on PATH, else `~/.cache/weft/bin/helm` (where `scripts/install-helm.sh` puts it).
    /// An error, naming the install command, when there is none: the chart checks are part of `make test`.
    pub fn find() -> anyhow::Result<Self> {
        let mut candidates = Vec::new();
        if let Some(path) = std::env::var_os("WEFT_HELM").filter(|p| !p.is_empty()) {
            candidates.push(PathBuf::from(path));
        }
        if let Some(paths) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&paths).map(|dir| dir.join("helm")));
        }
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join(".cache/weft/bin/helm"));
        }
        for path in candidates {
            if path.is_file() {
                let helm = Self { path };
                let version = helm.run(["version", "--short"])?;
                if version.success {
                    return Ok(helm);
                }
            }
        }
        bail!("helm not found (looked at $WEFT_HELM, PATH and ~/.cache/weft/bin/helm): run `{INSTALL_HELM}`")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs helm with `args`, offline (an unreachable KUBECONFIG, so nothing can touch a real cluster).
    pub fn run<I, S>(&self, args: I) -> anyhow::Result<HelmOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with_kubeconfig(args, Path::new("/nonexistent/weft-chart-checks"))
    }

    /// Runs helm with `args` against the cluster of `kubeconfig` (a [`FakeApiServer`]'s).
    pub fn run_with_kubeconfig<I, S>(&self, args: I, kubeconfig: &Path) -> anyhow::Result<HelmOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let output = Command::new(&self.path)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HELM_CACHE_HOME", std::env::temp_dir().join("weft-chart-checks/helm-cache"))
            .env("HELM_CONFIG_HOME", std::env::temp_dir().join("weft-chart-checks/helm-config"))
            .env("HELM_DATA_HOME", std::env::temp_dir().join("weft-chart-checks/helm-data"))
            .output()
            .with_context(|| format!("running {}", self.path.display()))?;
        Ok(HelmOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// `helm lint --strict <chart> <args>`; the error carries helm's whole report.
    pub fn lint(&self, chart: &Path, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["lint".as_ref(), "--strict".as_ref(), chart.as_os_str()];
        all.extend(args.iter().map(OsStr::new));
        let out = self.run(all)?;
        if !out.success {
            bail!("helm lint --strict {} {args:?} failed:\n{}{}", chart.display(), out.stdout, out.stderr);
        }
        Ok(out.stdout)
    }

    /// `helm template <release> <chart> -n <namespace> <args>`: the rendered text, or helm's error.
    pub fn template_text(&self, release: &str, chart: &Path, namespace: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["template".as_ref(), release.as_ref(), chart.as_os_str(), "-n".as_ref(), namespace.as_ref()];
        all.extend(args.iter().map(OsStr::new));
        let out = self.run(all)?;
        if !out.success {
            bail!("helm template {} {args:?} failed:\n{}", chart.display(), out.stderr);
        }
        Ok(out.stdout)
    }

    /// `helm template`, every rendered manifest parsed.
    pub fn template(&self, release: &str, chart: &Path, namespace: &str, args: &[&str]) -> anyhow::Result<Manifests> {
        let text = self.template_text(release, chart, namespace, args)?;
        Manifests::parse(&text)
            .with_context(|| format!("parsing what helm template {} {args:?} rendered", chart.display()))
    }
}

/// `helm template --dry-run=server` against `api`: templates run with `lookup` answered by the fake API server,
/// as on a real `helm upgrade` (objects the server holds are found). OpenAPI validation is off (the fake has no
/// OpenAPI documents).
pub fn template_against(
    helm: &Helm,
    api: &FakeApiServer,
    release: &str,
    chart: &Path,
    namespace: &str,
    args: &[&str],
) -> anyhow::Result<Manifests> {
    let mut all = vec![
        "template".as_ref(),
        release.as_ref(),
        chart.as_os_str(),
        "-n".as_ref(),
        namespace.as_ref(),
        "--dry-run=server".as_ref(),
        "--disable-openapi-validation".as_ref(),
    ];
    all.extend(args.iter().map(OsStr::new));
    let out = helm.run_with_kubeconfig(all, &api.kubeconfig())?;
    if !out.success {
        bail!("helm template --dry-run=server {} {args:?} failed:\n{}", chart.display(), out.stderr);
    }
    Manifests::parse(&out.stdout)
}

/// Every object a chart rendered.
#[derive(Debug, Clone)]
pub struct Manifests {
    pub objects: Vec<Value>,
}

impl Manifests {
    /// Parses multi-document YAML (helm's output); empty documents are skipped, every other one must be an object
    /// with `apiVersion`, `kind` and `metadata.name`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let objects: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let objects: Vec<Value> = objects.into_iter().filter(|v| !v.is_null()).collect();
        for (i, object) in objects.iter().enumerate() {
            for field in ["/apiVersion", "/kind", "/metadata/name"] {
                if !object.pointer(field).is_some_and(Value::is_string) {
                    bail!("document {} has no {field}: {object}", i + 1);
                }
            }
        }
        Ok(Self { objects })
    }

    /// Every object of this kind.
    pub fn of_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Value> + use<'a> {
        let kind = kind.to_string();
        self.objects.iter().filter(move |o| o["kind"] == kind.as_str())
    }

    /// The object of this kind and name, if rendered.
    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.of_kind(kind).find(|o| o["metadata"]["name"] == name)
    }

    /// The object of this kind and name; an error listing what was rendered when it is missing.
    pub fn get(&self, kind: &str, name: &str) -> anyhow::Result<&Value> {
        self.find(kind, name).with_context(|| format!("no {kind} {name} rendered; rendered: {}", self.summary()))
    }

    /// `Kind/name` of every object, for messages.
    pub fn summary(&self) -> String {
        let names: Vec<String> = self
            .objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"].as_str().unwrap_or("?"), o["metadata"]["name"].as_str().unwrap_or("?")))
            .collect();
        names.join(", ")
    }
}

/// The kinds the fake API server knows: (group, version, plural, kind, namespaced).
const KINDS: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "secrets", "Secret", true),
    ("", "v1", "services", "Service", true),
    ("", "v1", "serviceaccounts", "ServiceAccount", true),
    ("", "v1", "configmaps", "ConfigMap", true),
    ("", "v1", "namespaces", "Namespace", false),
    ("apps", "v1", "deployments", "Deployment", true),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false),
    ("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", false),
    ("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", false),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false),
    ("cert-manager.io", "v1", "issuers", "Issuer", true),
    ("cert-manager.io", "v1", "certificates", "Certificate", true),
];

/// Just enough of a Kubernetes API server for helm: `/version`, discovery of [`KINDS`], and GET of the objects it
/// was started with (404 for everything else). Records the paths it was asked for.
#[derive(Debug)]
pub struct FakeApiServer {
    address: SocketAddr,
    dir: tempfile::TempDir,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeApiServer {
    /// Serves `objects` (each with apiVersion, kind, metadata.name and, when namespaced, metadata.namespace) on
    /// 127.0.0.1, from a thread of its own; a kubeconfig pointing at it is written to a temporary folder.
    pub fn start(objects: &[Value]) -> anyhow::Result<Self> {
        let mut by_path = HashMap::new();
        for object in objects {
            by_path.insert(object_path(object)?, object.clone());
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let dir = tempfile::tempdir()?;
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"http://{address}\"}}}}]\n\
             users: [{{name: fake, user: {{token: fake}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\ncurrent-context: fake\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig)?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::new(by_path);
        let log = requests.clone();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                let serve = async {
                    while let Ok((stream, _)) = listener.accept().await {
                        let (state, log) = (state.clone(), log.clone());
                        tokio::spawn(async move {
                            let service = service_fn(move |request: Request<Incoming>| {
                                let path = request.uri().path().to_string();
                                if let Ok(mut log) = log.lock() {
                                    log.push(path.clone());
                                }
                                let (status, body) = answer(&state, &path);
                                let response = Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body.to_string())));
                                async move { Ok::<_, Infallible>(response.unwrap_or_default()) }
                            });
                            let connection = hyper::server::conn::http1::Builder::new();
                            let _ = connection.serve_connection(TokioIo::new(stream), service).await;
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(Self { address, dir, requests, stop: Some(stop) })
    }

    /// A kubeconfig that points at this server.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Every path asked for so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }
}

/// `/api/v1/namespaces/NS/secrets/NAME`, `/apis/GROUP/VERSION/PLURAL/NAME`, ...
fn object_path(object: &Value) -> anyhow::Result<String> {
    let api_version = object["apiVersion"].as_str().context("apiVersion")?;
    let kind = object["kind"].as_str().context("kind")?;
    let name = object["metadata"]["name"].as_str().context("metadata.name")?;
    let &(group, version, plural, _, namespaced) = KINDS
        .iter()
        .find(|(g, v, _, k, _)| group_version(g, v) == api_version && *k == kind)
        .with_context(|| format!("the fake API server does not know {api_version} {kind}"))?;
    let base = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
    if namespaced {
        let namespace = object["metadata"]["namespace"].as_str().context("metadata.namespace")?;
        Ok(format!("{base}/namespaces/{namespace}/{plural}/{name}"))
    } else {
        Ok(format!("{base}/{plural}/{name}"))
    }
}

fn answer(objects: &HashMap<String, Value>, path: &str) -> (StatusCode, Value) {
    let mut groups: Vec<(&str, &str)> = KINDS.iter().filter(|k| !k.0.is_empty()).map(|k| (k.0, k.1)).collect();
    groups.dedup();
    let resources = |group: &str, version: &str| {
        let list: Vec<Value> = KINDS
            .iter()
            .filter(|k| k.0 == group && k.1 == version)
            .map(|&(_, _, plural, kind, namespaced)| {
                json!({"name": plural, "singularName": kind.to_lowercase(), "namespaced": namespaced, "kind": kind,
                       "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]})
            })
            .collect();
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(group, version),
               "resources": list})
    };
    let found = match path {
        "/version" => Some(json!({"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"})),
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})),
        "/apis" => {
            let list: Vec<Value> = groups
                .iter()
                .map(|(group, version)| {
                    let gv = json!({"groupVersion": group_version(group, version), "version": version});
                    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}))
        }
        "/api/v1" => Some(resources("", "v1")),
        _ => groups
            .iter()
            .find(|(group, version)| path == format!("/apis/{group}/{version}"))
            .map(|(group, version)| resources(group, version))
            .or_else(|| objects.get(path).cloned()),
    };
    match found {
        Some(body) => (StatusCode::OK, body),
        None => (
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                   "message": format!("{path} not found")}),
        ),
    }
}
