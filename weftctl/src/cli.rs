//! The command line and what each command does with it: read (files, the operators' debug API), then hand the
//! values to the pure modules and print their text. A failure is one line; `analyze` exits 1 when it finds errors.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use weft_operator::debug::ConfigView;
use weft_operator::debug::describe::PodDescription;
use weft_operator::debug::registry::ProxiesView;

use crate::analyze::{self, Level};
use crate::check;
use crate::cluster_objects;
use crate::describe;
use crate::proxy_config::{self, Section};
use crate::proxy_status;
use crate::route;
use crate::source::Operators;

#[derive(Debug, Parser)]
#[command(name = "weftctl", version, about = "See what the Weft mesh is doing")]
pub struct Cli {
    /// Operator debug address(es), HOST:PORT (standalone mode, a port-forward); without it, every operator pod
    /// of the cluster KUBECONFIG points at is asked through the API server.
    #[arg(long, env = "WEFT_OPERATOR", value_delimiter = ',', global = true, value_name = "ADDR")]
    pub operator: Vec<String>,
    /// The namespace Weft is installed in.
    #[arg(long, env = "WEFT_NAMESPACE", default_value = "weft-system", global = true, value_name = "NS")]
    pub weft_namespace: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per proxy and xDS type: SYNCED, STALE (sent, not ACKed yet) or NACKED.
    ProxyStatus {
        /// Only this proxy, POD.NAMESPACE.
        proxy: Option<String>,
    },
    /// The config the operator sends a proxy: clusters, endpoints, listeners or routes.
    ProxyConfig {
        section: Section,
        /// POD.NAMESPACE (or POD with -n).
        proxy: String,
        #[arg(short, long, default_value = "default", value_name = "NS")]
        namespace: String,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Which Services, rules and policies apply to a pod, and which rules its requests follow.
    Describe {
        kind: DescribeKind,
        /// POD.NAMESPACE (or POD with -n).
        name: String,
        #[arg(short, long, default_value = "default", value_name = "NS")]
        namespace: String,
    },
    /// Explains the route a proxy would pick for a request: virtual host, each route tried and why it did not
    /// match, and where the chosen one sends it.
    Route {
        /// POD.NAMESPACE (or POD with -n).
        proxy: String,
        /// The request's URL as the application sends it, e.g. http://reviews:9080/reviews/1.
        url: String,
        #[arg(short, long, default_value = "default", value_name = "NS")]
        namespace: String,
        /// A request header, `name: value` (repeatable).
        #[arg(short = 'H', long = "header", value_name = "HEADER")]
        headers: Vec<String>,
        #[arg(short = 'X', long = "request", default_value = "GET", value_name = "METHOD")]
        method: String,
    },
    /// Whether Weft is installed and working in the cluster KUBECONFIG points at (CRDs, operator, webhook and its
    /// CA bundle, injection, proxies in sync), with what to do about each failure; non-zero exit on failures.
    Check {
        /// Before installing: only whether the cluster can take Weft (API reachable, Kubernetes version).
        #[arg(long)]
        pre: bool,
    },
    /// Problems in Weft resource files (-f), in the cluster's objects (-n, -A; without -f the current
    /// namespace), or in files as if applied to the cluster (-f with -n or -A): each with its field path (and
    /// file and line); non-zero exit on errors.
    Analyze {
        /// YAML files or directories (their *.yaml and *.yml files).
        #[arg(short = 'f', long = "file", value_name = "PATH")]
        files: Vec<PathBuf>,
        /// Report the problems of this namespace's objects (read with every namespace's, for references).
        #[arg(short, long, value_name = "NS")]
        namespace: Option<String>,
        /// Report the problems of every namespace's objects.
        #[arg(short = 'A', long, conflicts_with = "namespace")]
        all_namespaces: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DescribeKind {
    Pod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    /// The resources in Envoy's JSON (as `istioctl proxy-config -o json`): a list.
    Json,
    /// The same as YAML.
    Yaml,
    /// Each resource decoded, as Rust's view of the protobuf message.
    Proto,
    /// The debug API's answer: each resource as base64 protobuf, with its type and name.
    Raw,
}

/// What a run ends with.
pub enum Outcome {
    Done,
    /// Ran, and found errors (exit 1).
    Failed,
}

pub async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::ProxyStatus { proxy } => {
            let operators = operators(&cli.operator, &cli.weft_namespace).await?;
            let mut views = Vec::new();
            for (operator, body) in operators.get_all("/debug/proxies").await? {
                let view: ProxiesView =
                    serde_json::from_str(&body).with_context(|| format!("{operator}: not a /debug/proxies answer"))?;
                views.push((operator, view));
            }
            print!("{}", proxy_status::render(&views, proxy.as_deref()));
            Ok(Outcome::Done)
        }
        Command::Describe { kind: DescribeKind::Pod, name, namespace } => {
            let operators = operators(&cli.operator, &cli.weft_namespace).await?;
            let pod = qualified(name, &namespace);
            let path = format!("/debug/describe?pod={}", encode_query(&pod));
            let (operator, body) =
                operators.get_all(&path).await?.into_iter().next().context("no operator answered")?;
            let description: PodDescription =
                serde_json::from_str(&body).with_context(|| format!("{operator}: not a /debug/describe answer"))?;
            print!("{}", describe::render(&description));
            Ok(Outcome::Done)
        }
        Command::Route { proxy, url, namespace, headers, method } => {
            let operators = operators(&cli.operator, &cli.weft_namespace).await?;
            let config = proxy_config_of(&operators, &qualified(proxy, &namespace)).await?;
            print!("{}", route::route(&config, &route::Asked { url, method, headers })?);
            Ok(Outcome::Done)
        }
        Command::ProxyConfig { section, proxy, namespace, output } => {
            let operators = operators(&cli.operator, &cli.weft_namespace).await?;
            let config = proxy_config_of(&operators, &qualified(proxy, &namespace)).await?;
            print_config(config, section, output)?;
            Ok(Outcome::Done)
        }
        Command::Analyze { files, namespace, all_namespaces } => {
            let scope = match (namespace, all_namespaces) {
                (_, true) => Some(Scope::All),
                (Some(namespace), false) => Some(Scope::Namespace(namespace)),
                (None, false) if files.is_empty() => Some(Scope::Current),
                (None, false) => None,
            };
            analyze(&files, scope, &cli.weft_namespace).await
        }
        Command::Check { pre } => check_cluster(&cli.weft_namespace, pre).await,
    }
}

fn print_config(config: ConfigView, section: Section, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Table => print!("{}", proxy_config::table(&config, section)?),
        Output::Proto => print!("{}", proxy_config::decoded(&config, section)?),
        Output::Json => println!("{}", serde_json::to_string_pretty(&proxy_config::envoy_json(&config, section)?)?),
        Output::Yaml => print!("{}", serde_saphyr::to_string(&proxy_config::envoy_json(&config, section)?)?),
        Output::Raw => {
            let resources = proxy_config::resources(&config, section).cloned().collect();
            println!("{}", serde_json::to_string_pretty(&ConfigView { resources, ..config })?);
        }
    }
    Ok(())
}

/// Prints every check's result; fails when one failed.
async fn check_cluster(namespace: &str, pre: bool) -> anyhow::Result<Outcome> {
    let facts = match kube::Client::try_default().await {
        Ok(client) => check::gather::gather(client, namespace, pre).await,
        Err(err) => check::Facts { server: Err(format!("no Kubernetes client: {err}")), ..check::Facts::default() },
    };
    let findings = check::evaluate(&facts, pre);
    print!("{}", check::render(&findings));
    let failed = findings.iter().any(|f| f.status == check::Status::Failed);
    Ok(if failed { Outcome::Failed } else { Outcome::Done })
}

/// Which of the cluster's objects `analyze` reports on.
enum Scope {
    Namespace(String),
    /// The namespace of KUBECONFIG's current context.
    Current,
    All,
}

/// Prints every finding of the files, the cluster (`scope`) or both; fails when one is an error.
async fn analyze(files: &[PathBuf], scope: Option<Scope>, weft_namespace: &str) -> anyhow::Result<Outcome> {
    let texts = read_files(files)?;
    let mut documents = analyze::documents(&texts);
    let mut only = None;
    if let Some(scope) = &scope {
        let client = kube::Client::try_default().await.context("no Kubernetes client (KUBECONFIG)")?;
        only = match scope {
            Scope::Namespace(namespace) => Some(namespace.clone()),
            Scope::Current => Some(client.default_namespace().to_string()),
            Scope::All => None,
        };
        if let Some(namespace) = &only {
            documents = analyze::in_namespace(documents, namespace);
        }
        let objects = cluster_objects::list(&client, weft_namespace).await?;
        documents = analyze::over_cluster(objects, documents);
    }
    let mut findings = analyze::analyze_documents(documents);
    if let Some(namespace) = &only {
        // The files' own problems always show; the cluster's, for the namespace asked.
        findings.retain(|f| !f.file.as_os_str().is_empty() || f.namespace.as_deref() == Some(namespace.as_str()));
    }
    for finding in &findings {
        println!("{finding}");
    }
    if findings.is_empty() {
        match (&scope, &only) {
            (None, _) => println!("No problems found in {} file(s).", texts.len()),
            (Some(_), Some(namespace)) => println!("No problems found in namespace {namespace}."),
            (Some(_), None) => println!("No problems found in any namespace."),
        }
    }
    let errors = findings.iter().any(|f| f.level == Level::Error);
    Ok(if errors { Outcome::Failed } else { Outcome::Done })
}

/// `POD.NAMESPACE` (or a node id) from what the user typed and `-n`.
fn qualified(proxy: String, namespace: &str) -> String {
    if proxy.contains('.') || proxy.contains('~') { proxy } else { format!("{proxy}.{namespace}") }
}

async fn operators(addresses: &[String], namespace: &str) -> anyhow::Result<Operators> {
    if addresses.is_empty() {
        Ok(Operators::cluster(namespace.to_string()).await?)
    } else {
        Ok(Operators::direct(addresses)?)
    }
}

/// The proxy's config from the operator it is connected to, else from any (what it would be sent).
async fn proxy_config_of(operators: &Operators, proxy: &str) -> anyhow::Result<ConfigView> {
    let path = format!("/debug/config?proxy={}", encode_query(proxy));
    let mut found = None;
    for (operator, body) in operators.get_all(&path).await? {
        let view: ConfigView =
            serde_json::from_str(&body).with_context(|| format!("{operator}: not a /debug/config answer"))?;
        if view.connected {
            return Ok(view);
        }
        found.get_or_insert(view);
    }
    found.context("no operator answered")
}

/// `text` as a query value: only the characters a node id or pod name can hold need escaping.
fn encode_query(text: &str) -> String {
    text.replace('%', "%25").replace('~', "%7E").replace('&', "%26").replace('+', "%2B").replace(' ', "%20")
}

/// The YAML files named, directories expanded to their `*.yaml`/`*.yml` files in name order.
fn read_files(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading directory {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_yaml(p))
                .collect();
            entries.sort();
            files.extend(entries);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            bail!("{}: no such file or directory", path.display());
        }
    }
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            Ok((file, text))
        })
        .collect()
}

fn is_yaml(path: &Path) -> bool {
    path.is_file() && matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}
