//! `weftctl check`: is Weft installed and working in this cluster, and if not, what to do (as `linkerd check`
//! and `istioctl verify-install` do). [`gather`] reads what the checks need from the API server and the
//! operators' debug API into [`Facts`]; [`evaluate`] turns them into results, each with a hint when it failed.
//! Pure: facts in, results out.

pub mod gather;

use std::fmt::Write as _;

use weft_operator::debug::registry::{ProxiesView, SyncState};

/// The oldest Kubernetes the chart installs on (its `kubeVersion`).
pub const MIN_KUBERNETES: (u32, u32) = (1, 22);
/// The label that turns injection on for a namespace.
pub const INJECT_LABEL: &str = "weft.dev/inject=enabled";

/// What the checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The API server's `major.minor` and git version, or why it could not be asked.
    pub server: Result<(u32, u32, String), String>,
    /// Each Weft CRD by name, and its state.
    pub crds: Vec<(String, CrdState)>,
    pub operator_pods: Vec<PodState>,
    pub webhook_pods: Vec<PodState>,
    /// The sidecar injector's and the validator's webhook configurations, by name: `None` when absent.
    pub webhook_configs: Vec<(String, Option<WebhookConfig>)>,
    /// Namespaces labelled for injection.
    pub injected_namespaces: Vec<String>,
    /// Running pods of injected namespaces without a `weft-proxy` container (`POD.NAMESPACE`).
    pub pods_without_sidecar: Vec<String>,
    /// What the operators said of their proxies, or why they could not be asked.
    pub proxies: Result<Vec<ProxiesView>, String>,
    /// Operator replicas that did not answer while others did (their proxies are missing from `proxies`).
    pub silent_operators: Vec<String>,
    /// Reads that failed, by the section they were for: that section reports them instead of its checks.
    pub unreadable: Vec<(&'static str, String)>,
}

impl Default for Facts {
    /// Nothing known yet: the API server not asked, nothing found.
    fn default() -> Self {
        Self {
            server: Err("not asked".into()),
            crds: Vec::new(),
            operator_pods: Vec::new(),
            webhook_pods: Vec::new(),
            webhook_configs: Vec::new(),
            injected_namespaces: Vec::new(),
            pods_without_sidecar: Vec::new(),
            proxies: Ok(Vec::new()),
            silent_operators: Vec::new(),
            unreadable: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrdState {
    Missing,
    /// Created but not (yet) established, or not serving Weft's version.
    NotServing,
    Established,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    pub name: String,
    pub phase: String,
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Every webhook of the configuration carries a CA bundle.
    pub ca_bundle: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warning,
    Failed,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub section: &'static str,
    pub status: Status,
    pub text: String,
    /// What to do about it (failed and warning results).
    pub hint: Option<String>,
}

fn finding(section: &'static str, status: Status, text: impl Into<String>, hint: Option<String>) -> Finding {
    Finding { section, status, text: text.into(), hint }
}

/// Every check's result, in order: the API server, the CRDs, the control plane, the webhooks, the data plane.
/// `pre`: before an install, only what the install needs (the API server and its version).
pub fn evaluate(facts: &Facts, pre: bool) -> Vec<Finding> {
    let mut findings = api_server(facts);
    if pre || facts.server.is_err() {
        return findings;
    }
    for section in ["crds", "control plane", "webhook", "data plane"] {
        let unread: Vec<&String> = facts.unreadable.iter().filter(|(s, _)| *s == section).map(|(_, e)| e).collect();
        if !unread.is_empty() {
            findings.extend(unread.into_iter().map(|error| unreadable(section, error)));
            continue;
        }
        match section {
            "crds" => findings.extend(crds(facts)),
            "control plane" => findings.push(pods(section, "weft-operator", &facts.operator_pods)),
            "webhook" => {
                findings.push(pods(section, "weft-webhook", &facts.webhook_pods));
                findings.extend(webhook_configs(facts));
            }
            _ => findings.extend(data_plane(facts)),
        }
    }
    findings
}

fn unreadable(section: &'static str, error: &str) -> Finding {
    let hint = "weftctl check only gets and lists: kubectl auth can-i list pods,namespaces and get \
                customresourcedefinitions,mutatingwebhookconfigurations,validatingwebhookconfigurations";
    finding(section, Status::Failed, format!("cannot read: {error}"), Some(hint.into()))
}

fn api_server(facts: &Facts) -> Vec<Finding> {
    const SECTION: &str = "kubernetes";
    match &facts.server {
        Err(err) => vec![finding(
            SECTION,
            Status::Failed,
            "cannot reach the Kubernetes API",
            Some(format!("{err} (check KUBECONFIG and `kubectl version`)")),
        )],
        Ok((major, minor, version)) => {
            let reached = finding(SECTION, Status::Ok, format!("can reach the Kubernetes API ({version})"), None);
            let supported = (*major, *minor) >= MIN_KUBERNETES;
            let (min_major, min_minor) = MIN_KUBERNETES;
            let version = match supported {
                true => finding(SECTION, Status::Ok, format!("Kubernetes {major}.{minor} is supported"), None),
                false => finding(
                    SECTION,
                    Status::Failed,
                    format!("Kubernetes {major}.{minor} is older than Weft supports"),
                    Some(format!("Weft needs Kubernetes {min_major}.{min_minor} or newer")),
                ),
            };
            vec![reached, version]
        }
    }
}

fn crds(facts: &Facts) -> Vec<Finding> {
    const SECTION: &str = "crds";
    facts
        .crds
        .iter()
        .map(|(name, state)| match state {
            CrdState::Established => finding(SECTION, Status::Ok, format!("{name} is established"), None),
            CrdState::NotServing => finding(
                SECTION,
                Status::Failed,
                format!("{name} exists but is not established or does not serve Weft's version"),
                Some(format!("kubectl describe crd {name}; reinstall the weft-crds chart")),
            ),
            CrdState::Missing => finding(
                SECTION,
                Status::Failed,
                format!("{name} is missing"),
                Some(
                    "install the CRDs: helm install weft-crds charts/weft-crds (or kubectl apply -f crds/manifests)"
                        .into(),
                ),
            ),
        })
        .collect()
}

fn pods(section: &'static str, what: &str, pods: &[PodState]) -> Finding {
    let ready = pods.iter().filter(|p| p.phase == "Running" && p.ready).count();
    if ready > 0 {
        return finding(section, Status::Ok, format!("{what} is running ({ready} of {} pods ready)", pods.len()), None);
    }
    let states: Vec<String> = pods.iter().map(|p| format!("{} {}{}", p.name, p.phase, ready_mark(p))).collect();
    let text = match pods.is_empty() {
        true => format!("no {what} pod"),
        false => format!("no {what} pod is ready ({})", states.join(", ")),
    };
    finding(
        section,
        Status::Failed,
        text,
        Some(format!(
            "helm install weft charts/weft; kubectl logs -l app.kubernetes.io/component={}",
            what.trim_start_matches("weft-")
        )),
    )
}

fn ready_mark(pod: &PodState) -> &'static str {
    if pod.phase == "Running" && !pod.ready { ", not ready" } else { "" }
}

fn webhook_configs(facts: &Facts) -> Vec<Finding> {
    const SECTION: &str = "webhook";
    facts
        .webhook_configs
        .iter()
        .map(|(name, config)| match config {
            Some(WebhookConfig { ca_bundle: true }) => {
                finding(SECTION, Status::Ok, format!("{name} is configured with a CA bundle"), None)
            }
            Some(WebhookConfig { ca_bundle: false }) => finding(
                SECTION,
                Status::Failed,
                format!("{name} has no CA bundle: the API server cannot call the webhook"),
                Some(
                    "with certManager.enabled, check that cert-manager's CA injector runs; else upgrade the chart"
                        .into(),
                ),
            ),
            None => finding(
                SECTION,
                Status::Failed,
                format!("{name} is missing"),
                Some("helm upgrade --install weft charts/weft".into()),
            ),
        })
        .collect()
}

fn data_plane(facts: &Facts) -> Vec<Finding> {
    const SECTION: &str = "data plane";
    let mut findings = Vec::new();
    findings.push(match facts.injected_namespaces.as_slice() {
        [] => finding(
            SECTION,
            Status::Warning,
            "no namespace is labelled for injection",
            Some(format!("kubectl label namespace NAMESPACE {INJECT_LABEL}")),
        ),
        names => finding(SECTION, Status::Ok, format!("injection is on in {}", names.join(", ")), None),
    });
    if !facts.pods_without_sidecar.is_empty() {
        findings.push(finding(
            SECTION,
            Status::Warning,
            format!("pods without a sidecar in injected namespaces: {}", list(&facts.pods_without_sidecar)),
            Some("they started before injection was on: kubectl rollout restart their deployments".into()),
        ));
    }
    findings.push(proxies(facts));
    findings.extend(facts.silent_operators.iter().map(|err| {
        let hint = "its proxies are not counted above: kubectl logs the operator pod, or delete it to restart it";
        finding(SECTION, Status::Warning, format!("an operator did not answer: {err}"), Some(hint.into()))
    }));
    findings
}

fn proxies(facts: &Facts) -> Finding {
    const SECTION: &str = "data plane";
    let views = match &facts.proxies {
        Ok(views) => views,
        Err(err) => {
            let hint = "weftctl reads the operator's debug API through the API server's pod proxy (port 9090)";
            return finding(SECTION, Status::Failed, format!("cannot ask the operators: {err}"), Some(hint.into()));
        }
    };
    let mut by_state: [Vec<String>; 2] = Default::default();
    let mut connected = 0;
    for proxy in views.iter().flat_map(|v| &v.proxies) {
        connected += 1;
        let states: Vec<SyncState> = proxy.types.values().map(|t| t.state()).collect();
        let name = format!("{}.{}", proxy.pod, proxy.namespace);
        if states.contains(&SyncState::Nacked) {
            by_state[1].push(name);
        } else if states.contains(&SyncState::Stale) {
            by_state[0].push(name);
        }
    }
    let [stale, nacked] = by_state;
    if !nacked.is_empty() {
        let hint = "weftctl proxy-status shows each proxy's message; fix the rule it names";
        return finding(
            SECTION,
            Status::Failed,
            format!("proxies refused config: {}", list(&nacked)),
            Some(hint.into()),
        );
    }
    if !stale.is_empty() {
        let hint = "a proxy that stays stale is stuck or overloaded: weftctl proxy-status, then its logs";
        return finding(
            SECTION,
            Status::Warning,
            format!("proxies not in sync yet: {}", list(&stale)),
            Some(hint.into()),
        );
    }
    match connected {
        0 if !facts.injected_namespaces.is_empty() => finding(
            SECTION,
            Status::Warning,
            "no proxy is connected to the operators",
            Some(
                "pods get a sidecar when created: kubectl rollout restart the deployments of injected namespaces"
                    .into(),
            ),
        ),
        n => finding(SECTION, Status::Ok, format!("{n} proxies connected, all in sync"), None),
    }
}

/// At most a few names, then how many more.
fn list(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        let _ = write!(text, " and {} more", names.len() - SHOWN);
    }
    text
}

/// The results, grouped by section, with a last line saying whether all passed.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    let mut section = "";
    for f in findings {
        if f.section != section {
            section = f.section;
            let _ = writeln!(out, "{}{section}", if out.is_empty() { "" } else { "\n" });
        }
        let mark = match f.status {
            Status::Ok => "ok  ",
            Status::Warning => "WARN",
            Status::Failed => "FAIL",
        };
        let _ = writeln!(out, "  [{mark}] {}", f.text);
        if let Some(hint) = &f.hint {
            let _ = writeln!(out, "         -> {hint}");
        }
    }
    let failed = findings.iter().filter(|f| f.status == Status::Failed).count();
    let warned = findings.iter().filter(|f| f.status == Status::Warning).count();
    let _ = match (failed, warned) {
        (0, 0) => writeln!(out, "\nAll checks passed."),
        (0, w) => writeln!(out, "\nAll checks passed, {w} warning(s)."),
        (f, w) => writeln!(out, "\n{f} check(s) failed, {w} warning(s)."),
    };
    out
}

#[cfg(test)]
mod tests;
