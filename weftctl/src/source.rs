//! Where weftctl reads the operator's debug API: operators given by address (standalone mode, a port-forward), or
//! every operator replica of a cluster, found from KUBECONFIG and reached through the API server's pod proxy
//! (`/api/v1/namespaces/NS/pods/POD:9090/proxy/...`), so nothing but `kubectl`'s own access is needed. Each
//! replica serves the proxies connected to it: all are asked and the answers put together.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// The labels the chart puts on operator pods.
pub(crate) const OPERATOR_SELECTOR: &str = "app.kubernetes.io/part-of=weft,app.kubernetes.io/component=operator";
/// The operator's metrics and debug port.
const DEBUG_PORT: u16 = 9090;
/// How long one operator may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0:?} is not an operator address (HOST:PORT or http://HOST:PORT)")]
    BadAddress(String),
    #[error("{operator}: {reason}")]
    Request { operator: String, reason: String },
    #[error("{operator} answered {status}: {body}")]
    Status { operator: String, status: u16, body: String },
    #[error("no Kubernetes client (KUBECONFIG or in-cluster config): {0}")]
    NoCluster(kube::Error),
    #[error("listing operator pods in namespace {namespace}: {error}")]
    ListPods { namespace: String, error: kube::Error },
    #[error("no running weft-operator pod in namespace {0} (labels {OPERATOR_SELECTOR})")]
    NoOperator(String),
}

/// The operators to ask.
pub enum Operators {
    /// Base URLs, `http://HOST:PORT`.
    Direct(Vec<String>),
    /// Every running operator pod in `namespace`.
    Cluster { client: kube::Client, namespace: String },
}

impl Operators {
    /// Operators at `addresses` (`HOST:PORT` or `http://HOST:PORT`).
    pub fn direct(addresses: &[String]) -> Result<Self, SourceError> {
        let urls = addresses
            .iter()
            .map(|a| {
                let url = if a.contains("://") { a.trim_end_matches('/').to_string() } else { format!("http://{a}") };
                match url.parse::<http::Uri>() {
                    Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => Ok(url),
                    _ => Err(SourceError::BadAddress(a.clone())),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self::Direct(urls))
    }

    /// The operators of the cluster KUBECONFIG (or the pod's service account) points at.
    pub async fn cluster(namespace: String) -> Result<Self, SourceError> {
        let client = kube::Client::try_default().await.map_err(SourceError::NoCluster)?;
        Ok(Self::Cluster { client, namespace })
    }

    /// `path` (e.g. `/debug/proxies`) from every operator: each operator's name and its answer's body.
    pub async fn get_all(&self, path: &str) -> Result<Vec<(String, String)>, SourceError> {
        self.get_each(path).await?.into_iter().map(|(operator, answer)| answer.map(|body| (operator, body))).collect()
    }

    /// `path` from every operator, each operator's answer on its own (one that fails does not hide the others').
    pub async fn get_each(&self, path: &str) -> Result<Vec<(String, Result<String, SourceError>)>, SourceError> {
        match self {
            Self::Direct(urls) => {
                let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
                let mut answers = Vec::new();
                for url in urls {
                    let operator = url.trim_start_matches("http://").to_string();
                    let answer = get(&client, &operator, &format!("{url}{path}")).await;
                    answers.push((operator, answer));
                }
                Ok(answers)
            }
            Self::Cluster { client, namespace } => {
                let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
                let listed = pods
                    .list(&ListParams::default().labels(OPERATOR_SELECTOR))
                    .await
                    .map_err(|error| SourceError::ListPods { namespace: namespace.clone(), error })?;
                let running = listed
                    .items
                    .into_iter()
                    .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
                let mut answers = Vec::new();
                for pod in running {
                    let name = pod.metadata.name.unwrap_or_default();
                    let answer = through_pod_proxy(client, namespace, &name, path).await;
                    answers.push((name, answer));
                }
                if answers.is_empty() {
                    return Err(SourceError::NoOperator(namespace.clone()));
                }
                Ok(answers)
            }
        }
    }
}

/// `path` of operator pod `name`'s debug port, through the API server's pod proxy.
async fn through_pod_proxy(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    path: &str,
) -> Result<String, SourceError> {
    let failed = |reason: String| SourceError::Request { operator: name.to_string(), reason };
    let uri = format!("/api/v1/namespaces/{namespace}/pods/{name}:{DEBUG_PORT}/proxy{path}");
    let request = http::Request::get(uri).body(Vec::new()).map_err(|e| failed(e.to_string()))?;
    tokio::time::timeout(TIMEOUT, client.request_text(request))
        .await
        .map_err(|_| failed("timed out".into()))?
        .map_err(|e| failed(e.to_string()))
}

async fn get(client: &Client<HttpConnector, Empty<Bytes>>, operator: &str, url: &str) -> Result<String, SourceError> {
    let failed = |reason: String| SourceError::Request { operator: operator.to_string(), reason };
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| failed(e.to_string()))?;
    let response = tokio::time::timeout(TIMEOUT, client.get(uri))
        .await
        .map_err(|_| failed("timed out".into()))?
        .map_err(|e| failed(weft_process::error_chain(&e)))?;
    let status = response.status();
    let body = tokio::time::timeout(TIMEOUT, response.into_body().collect())
        .await
        .map_err(|_| failed("timed out".into()))?
        .map_err(|e| failed(e.to_string()))?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        return Err(SourceError::Status {
            operator: operator.to_string(),
            status: status.as_u16(),
            body: body.trim().to_string(),
        });
    }
    Ok(body)
}
