//! The real `weft-webhook` binary as a child process: its certificate files, starting it, stopping it.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;

use super::{Pki, write_leaf};

pub fn webhook(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft-webhook"));
    command.env_clear().args(args);
    command
}

/// A serving certificate and key in a temporary directory, and the CA that issued them.
pub struct Files {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
}

impl Files {
    pub fn new() -> Self {
        let pki = Pki::new();
        let dir = tempfile::tempdir().unwrap();
        write_leaf(&pki.leaf(), &dir.path().join("tls.crt"), &dir.path().join("tls.key"));
        Self { dir, pki }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
}

pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The running binary; killed when dropped, so a failing test leaves nothing behind.
pub struct Webhook(pub Child);

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and waits (with a deadline) until `/healthz` answers over TLS.
pub async fn start(files: &Files, extra: &[&str], env: &[(&str, &str)]) -> (Webhook, SocketAddr) {
    let addr = free_port();
    let (cert, key, listen) = (files.path("tls.crt"), files.path("tls.key"), addr.to_string());
    let args = ["--listen", &listen, "--tls-cert", &cert, "--tls-key", &key, "--proxy-image", "weft-proxy:t"];
    let mut command = webhook(&[&args[..], extra].concat());
    command.envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Webhook(command.spawn().unwrap());
    weft_webhook::install_crypto_provider();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("weft-webhook exited early with {status}");
        }
        assert!(Instant::now() < deadline, "weft-webhook did not listen within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll pace
    }
    let (status, body) = super::request(addr, &files.pki.ca(), "GET", "/healthz", Bytes::new(), false).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, b"ok\n".as_ref()));
    (child, addr)
}

/// Sends SIGTERM to our own child.
pub fn send_sigterm(child: &Webhook) {
    let child = &child.0;
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
}

/// Sends SIGTERM to our own child and returns its exit status and log.
pub fn terminate(mut child: Webhook) -> (std::process::ExitStatus, String) {
    send_sigterm(&child);
    let status = child.0.wait().unwrap();
    (status, output(&mut child))
}

/// Everything a finished child printed.
pub fn output(child: &mut Webhook) -> String {
    let child = &mut child.0;
    let mut log = String::new();
    child.stdout.take().unwrap().read_to_string(&mut log).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    log
}

/// A line of `/proc/PID/status` in KiB, e.g. `VmHWM` (peak RSS) or `VmRSS`.
pub fn memory_kib(child: &Webhook, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
