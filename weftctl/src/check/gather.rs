//! What `weftctl check` looks at, read from the API server (and, through its pod proxy, the operators' debug
//! API) into [`Facts`]. Only reads: `get` and `list`, which `kubectl`'s own access covers.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use weft_operator::debug::registry::ProxiesView;

use super::{CrdState, Facts, INJECT_LABEL, PodState, WebhookConfig};
use crate::source::{OPERATOR_SELECTOR, Operators};

/// The labels the chart puts on webhook pods.
const WEBHOOK_SELECTOR: &str = "app.kubernetes.io/part-of=weft,app.kubernetes.io/component=webhook";
/// The chart's webhook configurations.
const MUTATING: &str = "weft-sidecar-injector";
const VALIDATING: &str = "weft-validator";
/// Namespaces the chart never injects, whatever their labels (besides Weft's own).
pub const NEVER_INJECTED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, thiserror::Error)]
#[error("{what}: {error}")]
pub struct GatherError {
    what: String,
    error: kube::Error,
}

fn failed(what: impl Into<String>) -> impl FnOnce(kube::Error) -> GatherError {
    let what = what.into();
    move |error| GatherError { what, error }
}

/// Everything the checks need; with `pre`, only the API server's version. Weft's pods are looked for in
/// `namespace`. A read that fails (e.g. not allowed) is recorded for its section, and the others go on.
pub async fn gather(client: kube::Client, namespace: &str, pre: bool) -> Facts {
    let server = client.apiserver_version().await.map_err(|e| e.to_string()).map(|info| {
        let number =
            |text: &str| text.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0);
        (number(&info.major), number(&info.minor), info.git_version)
    });
    let mut facts = Facts { server, proxies: Ok(Vec::new()), ..Facts::default() };
    if pre || facts.server.is_err() {
        return facts;
    }
    let mut unreadable = Vec::new();
    let mut note = |section: &'static str, result: Result<(), GatherError>| {
        if let Err(err) = result {
            unreadable.push((section, err.to_string()));
        }
    };
    note("crds", crds(&client).await.map(|found| facts.crds = found));
    note("control plane", pods(&client, namespace, OPERATOR_SELECTOR).await.map(|found| facts.operator_pods = found));
    note("webhook", pods(&client, namespace, WEBHOOK_SELECTOR).await.map(|found| facts.webhook_pods = found));
    note("webhook", webhook_configs(&client).await.map(|found| facts.webhook_configs = found));
    note("data plane", injection(&client, namespace, &mut facts).await);
    facts.unreadable = unreadable;
    let operators = Operators::Cluster { client, namespace: namespace.to_string() };
    facts.proxies = match operators.get_each("/debug/proxies").await {
        Err(err) => Err(err.to_string()),
        Ok(answers) => {
            let mut views = Vec::new();
            for (operator, answer) in answers {
                let view = answer.map_err(|e| e.to_string()).and_then(|body| {
                    serde_json::from_str::<ProxiesView>(&body)
                        .map_err(|e| format!("{operator}: not a /debug/proxies answer: {e}"))
                });
                match view {
                    Ok(view) => views.push(view),
                    Err(err) => facts.silent_operators.push(err),
                }
            }
            if views.is_empty() { Err(std::mem::take(&mut facts.silent_operators).join("; ")) } else { Ok(views) }
        }
    };
    facts
}

/// The namespaces labelled for injection (less those never injected) and their pods without a sidecar.
async fn injection(client: &kube::Client, namespace: &str, facts: &mut Facts) -> Result<(), GatherError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let injected =
        namespaces.list(&ListParams::default().labels(INJECT_LABEL)).await.map_err(failed("listing namespaces"))?;
    let injectable = |name: &String| name != namespace && !NEVER_INJECTED.contains(&name.as_str());
    facts.injected_namespaces = injected.items.into_iter().filter_map(|n| n.metadata.name).filter(injectable).collect();
    for name in &facts.injected_namespaces {
        let pods: Api<Pod> = Api::namespaced(client.clone(), name);
        let listed = pods.list(&ListParams::default()).await.map_err(failed(format!("listing pods of {name}")))?;
        facts.pods_without_sidecar.extend(
            listed
                .items
                .iter()
                .filter(|p| lacks_sidecar(p))
                .map(|p| format!("{}.{name}", p.metadata.name.as_deref().unwrap_or_default())),
        );
    }
    Ok(())
}

async fn crds(client: &kube::Client) -> Result<Vec<(String, CrdState)>, GatherError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut states = Vec::new();
    for kind in &weft_crds::kinds::ALL {
        let name = format!("{}.{}", kind.plural, kind.group);
        let crd = api.get_opt(&name).await.map_err(failed(format!("reading CRD {name}")))?;
        let state = match crd {
            None => CrdState::Missing,
            Some(crd) => {
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                let serves = crd.spec.versions.iter().any(|v| v.name == kind.version && v.served);
                if established && serves { CrdState::Established } else { CrdState::NotServing }
            }
        };
        states.push((name, state));
    }
    Ok(states)
}

async fn pods(client: &kube::Client, namespace: &str, selector: &str) -> Result<Vec<PodState>, GatherError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(failed(format!("listing pods of {namespace} ({selector})")))?;
    Ok(listed
        .items
        .into_iter()
        .map(|pod| {
            let status = pod.status.unwrap_or_default();
            let ready = status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True");
            PodState { name: pod.metadata.name.unwrap_or_default(), phase: status.phase.unwrap_or_default(), ready }
        })
        .collect())
}

async fn webhook_configs(client: &kube::Client) -> Result<Vec<(String, Option<WebhookConfig>)>, GatherError> {
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let injector = mutating.get_opt(MUTATING).await.map_err(failed(format!("reading {MUTATING}")))?;
    let injector = injector.map(|c| bundled(c.webhooks.unwrap_or_default().iter().map(|h| &h.client_config)));
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let validator = validating.get_opt(VALIDATING).await.map_err(failed(format!("reading {VALIDATING}")))?;
    let validator = validator.map(|c| bundled(c.webhooks.unwrap_or_default().iter().map(|h| &h.client_config)));
    Ok(vec![(MUTATING.to_string(), injector), (VALIDATING.to_string(), validator)])
}

/// Whether a configuration's webhooks all carry a CA bundle (and it has some).
fn bundled<'a>(clients: impl Iterator<Item = &'a WebhookClientConfig>) -> WebhookConfig {
    let mut count = 0;
    let mut all = true;
    for client in clients {
        count += 1;
        all &= client.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty());
    }
    WebhookConfig { ca_bundle: count > 0 && all }
}

/// A running pod the injector would give a sidecar that has none (the injector's own rules decide: opted out,
/// host network and already injected pods are not counted).
fn lacks_sidecar(pod: &Pod) -> bool {
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    running && weft_webhook::inject::skip_reason(pod).is_none()
}
