//! The real `weft-operator` binary in standalone mode, on loopback ports, with its log kept for assertions.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

pub struct Operator {
    child: Child,
    log: PathBuf,
    pub config: PathBuf,
    /// The plaintext xDS port, when it serves one.
    pub xds: Option<SocketAddr>,
    /// The TLS port (certificates and xDS), when it has a CA.
    pub secure: Option<SocketAddr>,
    pub metrics: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts on a config directory holding `files` (name, content) and waits until it serves xDS.
    pub async fn start(files: &[(&str, &[u8])]) -> Self {
        Self::start_with(files, Security::Plaintext).await
    }

    /// Starts with `security`, and waits until it serves xDS (over TLS when it has a CA).
    pub async fn start_with(files: &[(&str, &[u8])], security: Security) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir(&config).unwrap();
        for (name, content) in files {
            std::fs::write(config.join(name), content).unwrap();
        }
        for sub in ["ca", "tokens"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let log = dir.path().join("operator.log");
        let ready_line = match security {
            Security::Plaintext => "serving xDS (ADS)",
            Security::MutualTls { .. } => "serving certificates and xDS (ADS) over TLS",
        };
        // Another test may take a free port before the operator binds it: start again on other ports then.
        for _ in 0..5 {
            let (xds, metrics, secure) = (free_port(), free_port(), free_port());
            let mut command = Command::new(env!("CARGO_BIN_EXE_weft-operator"));
            command.args(["--config-dir", config.to_str().unwrap(), "--metrics-listen", &metrics.to_string()]);
            let plaintext = match security {
                Security::Plaintext | Security::MutualTls { plaintext: true } => Some(xds),
                Security::MutualTls { plaintext: false } => None,
            };
            if let Some(xds) = plaintext {
                command.args(["--xds-listen", &xds.to_string()]);
            }
            let secure = matches!(security, Security::MutualTls { .. }).then_some(secure);
            if let Some(secure) = secure {
                let path = |sub: &str| dir.path().join(sub).to_str().unwrap().to_string();
                command.args(["--ca-dir", &path("ca"), "--workload-tokens", &path("tokens")]);
                command.args(["--secure-listen", &secure.to_string()]);
            }
            let out = std::fs::File::create(&log).unwrap();
            let mut child = command.env("NO_COLOR", "1").stdout(Stdio::null()).stderr(out).spawn().unwrap();
            if logged(&log, ready_line, || matches!(child.try_wait(), Ok(Some(_)))).await {
                return Self { child, log, config, xds: plaintext, secure, metrics, _dir: dir };
            }
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(said.contains("Address already in use"), "operator exited before serving xDS:\n{said}");
        }
        panic!("operator found no free ports in 5 tries");
    }

    /// The loopback ports the operator process listens on (from `/proc`: its sockets among the listening ones).
    pub fn listening_ports(&self) -> Vec<u16> {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).unwrap();
        let inodes: Vec<String> = fds
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .filter_map(|target| Some(target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_string()))
            .collect();
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let mut ports: Vec<u16> = table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let listening =
                    fields.get(3) == Some(&"0A") && inodes.iter().any(|i| Some(&i.as_str()) == fields.get(9));
                let port = fields.get(1)?.rsplit(':').next()?;
                listening.then(|| u16::from_str_radix(port, 16).ok()).flatten()
            })
            .collect();
        ports.sort_unstable();
        ports
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_for_log(&self, needle: &str) {
        assert!(logged(&self.log, needle, || false).await, "operator exited before logging {needle:?}");
    }

    /// `GET path` on the metrics listener: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics, path).await
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.1
    }
}

/// Waits until the operator's `log` holds `needle` (`true`) or it has `exited` (`false`); fails the test after 15 s.
async fn logged(log: &std::path::Path, needle: &str, mut exited: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let said = std::fs::read_to_string(log).unwrap_or_default();
        if said.contains(needle) {
            return true;
        }
        if exited() {
            return false;
        }
        assert!(Instant::now() < until, "operator never logged {needle:?}:\n{said}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How an operator serves its proxies.
#[derive(Debug, Clone, Copy)]
pub enum Security {
    /// No CA: plaintext xDS only.
    Plaintext,
    /// A CA (and workload token files): certificates and xDS over TLS, plaintext xDS only when asked for.
    MutualTls { plaintext: bool },
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// `GET path` on a new HTTP/1.1 connection to `address`: status and body.
pub async fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = http::Request::get(path).header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}
