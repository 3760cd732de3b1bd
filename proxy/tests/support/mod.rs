//! Shared pieces of the proxy's integration tests on loopback: an in-process standalone operator, an in-process
//! backend that misbehaves on request (slow, silent, stalling its body) and tells which host it saw, the real
//! `weft-proxy` binary as a child process, and a small HTTP client that opens a new connection per request.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod mesh_tls;
pub mod scripted;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use weft_operator::xds::{AdsServer, AdsService};

pub const SERVICE: &str = "slow";
pub const CLUSTER: &str = "outbound|80||slow.default.svc.cluster.local";
pub const STARTUP: Duration = Duration::from_secs(15);

pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The standalone operator, in this process, serving one Service (`slow`, port 80) backed by `backend`.
pub struct Operator {
    pub xds: SocketAddr,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Operator {
    pub async fn start(xds: SocketAddr, backend: SocketAddr) -> Self {
        Self::start_with(xds, backend, "").await
    }

    /// Also serving `rules` (YAML documents, e.g. a VirtualService for `slow`).
    pub async fn start_with(xds: SocketAddr, backend: SocketAddr, rules: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("weft-proxy-test-").tempdir().unwrap();
        std::fs::write(dir.path().join("slow.yaml"), service_yaml(backend)).unwrap();
        if !rules.is_empty() {
            std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
        }
        let listeners = weft_operator::app::Listeners {
            xds: Some(TcpListener::bind(xds).await.unwrap()),
            health: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            proxy_scope: Default::default(),
            root_namespace: weft_operator::index::ROOT_NAMESPACE.into(),
            secure: None,
        };
        let path = dir.path().to_path_buf();
        let task = tokio::spawn(async move {
            let _ = weft_operator::app::serve_standalone(path, listeners, std::future::pending()).await;
        });
        Self { xds, _dir: dir, task }
    }

    /// Writes (or rewrites) `file` in the operator's directory: the operator picks the change up.
    pub fn write(&self, file: &str, yaml: &str) {
        std::fs::write(self._dir.path().join(file), yaml).unwrap();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn service_yaml(backend: SocketAddr) -> String {
    service_in("slow", "default", backend)
}

/// A Service `name` (port 80) in `namespace` whose one pod is `backend`.
pub fn service_in(name: &str, namespace: &str, backend: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n\
         ---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}-1, namespace: {namespace}, labels: {{app: {name}}}}}\n\
         spec: {{containers: [{{name: app, image: {name}, ports: [{{name: http, containerPort: {}}}]}}]}}\n\
         status: {{podIP: {}}}\n",
        backend.port(),
        backend.ip()
    )
}

/// A backend answering 200 (after `x-echo-delay-ms` milliseconds); reports each request's arrival. It tells the
/// host it saw in `x-seen-host` (`:authority` or every `Host` header, comma-separated). `x-never-answer` makes it
/// silent; `x-stall-body` sends the head and part of the body, then nothing; `x-slow-body-ms` sends the head at
/// once and the body that much later. It reads the whole request body before answering; with `x-answer-early`
/// it answers at once and reads the body afterwards.
pub struct Backend {
    pub address: SocketAddr,
    pub arrivals: mpsc::UnboundedReceiver<()>,
}

impl Backend {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (tx, arrivals) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let _ = tx.send(());
                        async move {
                            // Like an application, read the whole request before answering, or (asked to) answer
                            // first and read it while the answer goes out.
                            let (parts, body) = request.into_parts();
                            if parts.headers.contains_key("x-answer-early") {
                                tokio::spawn(body.collect());
                            } else {
                                let _ = body.collect().await;
                            }
                            Ok::<_, Infallible>(answer(&Request::from_parts(parts, ())).await)
                        }
                    });
                    let _ =
                        auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { address, arrivals }
    }
}

type TestBody = BoxBody<Bytes, Infallible>;

async fn answer<B>(request: &Request<B>) -> Response<TestBody> {
    let number = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if let Some(ms) = number("x-echo-delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if request.headers().contains_key("x-never-answer") {
        std::future::pending::<()>().await;
    }
    let echoed = request.headers().get("x-echo-header").and_then(|name| name.to_str().ok()).map(|name| {
        let value = request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("(none)");
        Full::new(Bytes::from(value.to_string())).boxed()
    });
    let body = if let Some(echoed) = echoed {
        echoed
    } else if request.headers().contains_key("x-stall-body") {
        late_body(None)
    } else if let Some(ms) = number("x-slow-body-ms") {
        late_body(Some(Duration::from_millis(ms)))
    } else {
        Full::new(Bytes::from_static(b"slow backend\n")).boxed()
    };
    let mut response = Response::new(body);
    let seen = match request.uri().authority() {
        Some(authority) => authority.to_string(),
        None => {
            let hosts: Vec<&str> =
                request.headers().get_all(http::header::HOST).iter().filter_map(|v| v.to_str().ok()).collect();
            hosts.join(",")
        }
    };
    response.headers_mut().insert("x-seen-host", seen.parse().unwrap());
    response
}

/// A body whose first part comes at once and the rest after `rest_after` (never, when `None`).
fn late_body(rest_after: Option<Duration>) -> TestBody {
    let (tx, rx) = mpsc::channel::<Result<hyper::body::Frame<Bytes>, Infallible>>(2);
    tokio::spawn(async move {
        let _ = tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(b"first part\n")))).await;
        match rest_after {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                let _ = tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(b"the rest\n")))).await;
            }
            None => {
                tx.closed().await;
            }
        }
    });
    StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed()
}

/// The `weft-proxy` binary under test, killed when dropped.
pub struct Proxy {
    pub child: Child,
    pub outbound: SocketAddr,
    pub health: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Explicit mode with a health listener, pointed at `xds`. Ports are picked free and then handed to the
    /// child, so another test may take one in between: the child is started again on new ports when it could not
    /// bind, and returned once its listeners are bound (or it ended for another reason).
    pub fn start(xds: SocketAddr, extra: &[&str]) -> Self {
        Self::start_as("client", xds, extra)
    }

    /// [`Proxy::start`] for the pod `pod_name` (namespace `default`).
    pub fn start_as(pod_name: &str, xds: SocketAddr, extra: &[&str]) -> Self {
        for _ in 0..5 {
            let mut proxy = Self::spawn(pod_name, xds, extra);
            if !proxy.lost_a_port() {
                return proxy;
            }
            let _ = proxy.child.kill();
            let _ = proxy.child.wait();
        }
        panic!("weft-proxy could not bind free ports in 5 attempts");
    }

    fn spawn(pod_name: &str, xds: SocketAddr, extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new().prefix("weft-proxy-log-").tempdir().unwrap();
        let log = dir.path().join("proxy.log");
        let (outbound, health, admin) = (free_port(), free_port(), free_port());
        let out = std::fs::File::create(&log).unwrap();
        // The operator's plaintext port, unless the test names an address of its own.
        let xds_address = match extra.contains(&"--xds-address") {
            true => Vec::new(),
            false => vec!["--xds-address".to_string(), format!("http://{xds}")],
        };
        let child = Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
            .args(xds_address)
            .args(["--pod-name", pod_name, "--pod-namespace", "default"])
            .args(["--outbound-listen", &outbound.to_string(), "--admin-listen", &admin.to_string()])
            .args(["--health-listen", &health.to_string()])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self { child, outbound, health, admin, log, _dir: dir }
    }

    /// Waits until the listeners are bound (the admin listener is bound last, so its accepting connections says
    /// all are); whether the child ended because a port was taken.
    fn lost_a_port(&mut self) -> bool {
        let until = Instant::now() + STARTUP;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.output().contains("Address already in use");
            }
            if std::net::TcpStream::connect_timeout(&self.admin, Duration::from_millis(200)).is_ok() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/healthz/ready` until it answers `want`.
    pub async fn wait_ready(&self, want: StatusCode) -> String {
        let until = Instant::now() + STARTUP;
        loop {
            if let Ok((status, body)) = get(self.health, "proxy", "/healthz/ready", &[]).await
                && status == want
            {
                return body;
            }
            assert!(Instant::now() < until, "/healthz/ready never answered {want}; proxy log:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = get(self.health, "proxy", "/metrics", &[]).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        body
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "proxy still running after {limit:?}; log:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal_term(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One GET on a new connection; the status and body.
pub async fn get(
    to: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, String), weft_proxy::BoxError> {
    let stream = TcpStream::connect(to).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = Request::get(path).header(http::header::HOST, host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender.send_request(request.body(Empty::<Bytes>::new())?).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Polls `check` until it holds, for up to ten seconds (a config edit reaches the proxies in well under one).
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let until = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the sample `name{labels}` in Prometheus text, 0 when absent.
pub fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A control plane that speaks only state-of-the-world ADS (as Weft's operator did before delta xDS): the
/// operator's own pipeline and ADS server, with delta answered `UNIMPLEMENTED`.
pub struct SotwOnlyOperator {
    _dir: tempfile::TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SotwOnlyOperator {
    pub async fn start(xds: SocketAddr, backend: SocketAddr) -> Self {
        let dir = tempfile::Builder::new().prefix("weft-proxy-test-").tempdir().unwrap();
        std::fs::write(dir.path().join("slow.yaml"), service_yaml(backend)).unwrap();
        let metrics = std::sync::Arc::new(weft_operator::metrics::Metrics::new());
        let (events_tx, events_rx) = mpsc::channel(64);
        let (snapshots_tx, snapshots_rx) = tokio::sync::watch::channel(None);
        let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
        let ads =
            SotwOnly(AdsServer::new(snapshots_rx, Default::default(), metrics.clone(), closing_rx).into_service());
        let listener = TcpListener::bind(xds).await.unwrap();
        let path = dir.path().to_path_buf();
        let tasks = vec![
            tokio::spawn(async move {
                let _ = weft_operator::source::file::watch_dir(path, events_tx, Default::default()).await;
            }),
            tokio::spawn(weft_operator::app::run_index(
                Default::default(),
                events_rx,
                snapshots_tx,
                Default::default(),
                metrics,
            )),
            tokio::spawn(async move {
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                let _ = tonic::transport::Server::builder().add_service(ads).serve_with_incoming(incoming).await;
                drop(closing_tx);
            }),
        ];
        Self { _dir: dir, tasks }
    }
}

impl Drop for SotwOnlyOperator {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// The operator's ADS service without its incremental method, as an operator from before it had one.
#[derive(Clone)]
struct SotwOnly(AdsService);

impl tonic::server::NamedService for SotwOnly {
    const NAME: &'static str = <AdsService as tonic::server::NamedService>::NAME;
}

impl tower::Service<http::Request<tonic::body::Body>> for SotwOnly {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = <AdsService as tower::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path().ends_with("/DeltaAggregatedResources") {
            return std::future::ready(Ok(tonic::Status::unimplemented("state of the world only").into_http()));
        }
        self.0.call(request)
    }
}
