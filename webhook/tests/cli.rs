//! The `weft-webhook` binary: bad flags and files end it with one line before any port is bound; good ones serve
//! HTTPS until SIGTERM; `--native-sidecars auto` with no reachable API server falls back to classic sidecars.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use support::{Pki, write_leaf};

fn webhook(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft-webhook"));
    command.env_clear().args(args);
    command
}

fn run(args: &[&str]) -> Output {
    webhook(args).output().unwrap()
}

/// Asserts the process failed with `code` and printed exactly one line, which contains `expected`.
fn assert_one_line_failure(output: &Output, code: i32, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "expected one line, got: {stderr}");
    assert!(
        stderr.starts_with("weft-webhook: ") && stderr.contains(expected),
        "{stderr:?} should mention {expected:?}"
    );
}

struct Files {
    dir: tempfile::TempDir,
    pki: Pki,
}

impl Files {
    fn new() -> Self {
        let pki = Pki::new();
        let dir = tempfile::tempdir().unwrap();
        write_leaf(&pki.leaf(), &dir.path().join("tls.crt"), &dir.path().join("tls.key"));
        Self { dir, pki }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    let files = Files::new();
    let (cert, key) = (files.path("tls.crt"), files.path("tls.key"));
    let base = ["--tls-cert", &cert, "--tls-key", &key, "--proxy-image", "weft-proxy:t"];
    let with = |extra: &[&str]| run(&[&base[..], extra].concat());
    assert_one_line_failure(&with(&["--native-sidecars", "maybe"]), 2, "invalid value 'maybe'");
    assert_one_line_failure(&with(&["--proxy-cpu", "lots"]), 2, "not a Kubernetes quantity");
    assert_one_line_failure(&with(&["--listen", "nowhere"]), 2, "--listen");
    assert_one_line_failure(&with(&["--tls-reload-interval", "0s"]), 2, "more than zero");
    assert_one_line_failure(&run(&["--tls-cert", &cert]), 2, "required");
}

#[test]
fn bad_config_fails_before_the_port_is_bound() {
    let files = Files::new();
    // Hold the port: had the webhook bound before checking, it would report the bind error instead.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let (cert, key) = (files.path("tls.crt"), files.path("tls.key"));
    let missing = files.path("missing.crt");
    let base = ["--listen", &listen, "--proxy-image", "weft-proxy:t", "--native-sidecars", "false"];
    let with = |extra: &[&str]| run(&[&base[..], extra].concat());
    assert_one_line_failure(&with(&["--tls-cert", &missing, "--tls-key", &key]), 1, "missing.crt");
    assert_one_line_failure(&with(&["--tls-cert", &key, "--tls-key", &key]), 1, "TLS certificate");
    let memory = ["--tls-cert", &cert, "--tls-key", &key, "--proxy-memory", "1Gi"];
    assert_one_line_failure(&with(&memory), 1, "--proxy-memory 1Gi is more than --proxy-memory-limit 512Mi");
    assert_one_line_failure(&with(&["--tls-cert", &cert, "--tls-key", &key, "--xds-address", "op:1"]), 1, "op:1");
    assert_one_line_failure(&with(&["--tls-cert", &cert, "--tls-key", &key]), 1, "binding");
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Starts the binary and waits (with a deadline) until `/healthz` answers over TLS.
async fn start(files: &Files, extra: &[&str], env: &[(&str, &str)]) -> (Child, SocketAddr) {
    let addr = free_port();
    let (cert, key, listen) = (files.path("tls.crt"), files.path("tls.key"), addr.to_string());
    let args = ["--listen", &listen, "--tls-cert", &cert, "--tls-key", &key, "--proxy-image", "weft-proxy:t"];
    let mut command = webhook(&[&args[..], extra].concat());
    command.envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    weft_webhook::install_crypto_provider();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("weft-webhook exited early with {status}");
        }
        assert!(Instant::now() < deadline, "weft-webhook did not listen within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll pace
    }
    let (status, body) = support::request(addr, &files.pki.ca(), "GET", "/healthz", Bytes::new(), false).await;
    assert_eq!((status, body.as_ref()), (StatusCode::OK, b"ok\n".as_ref()));
    (child, addr)
}

/// Sends SIGTERM to our own child and returns its exit status and log.
fn terminate(mut child: Child) -> (std::process::ExitStatus, String) {
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    let mut log = String::new();
    child.stdout.take().unwrap().read_to_string(&mut log).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    (status, log)
}

#[tokio::test]
async fn serves_until_sigterm() {
    let files = Files::new();
    let (child, _) = start(&files, &["--native-sidecars", "true"], &[]).await;
    let (status, log) = terminate(child);
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("mode=native"), "{log}");
}

#[tokio::test]
async fn auto_falls_back_to_classic_when_the_api_server_is_unreachable() {
    let files = Files::new();
    let closed = free_port();
    let kubeconfig = files.path("kubeconfig");
    std::fs::write(&kubeconfig, unreachable_kubeconfig(closed)).unwrap();
    let (child, _) = start(&files, &[], &[("KUBECONFIG", kubeconfig.as_str())]).await;
    let (status, log) = terminate(child);
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("using classic sidecars"), "{log}");
    assert!(log.contains("mode=classic"), "{log}");
}

fn unreachable_kubeconfig(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{addr}\n    \
         insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  \
         context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
    )
}

#[test]
fn help_names_every_flag() {
    let output = run(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in ["--listen", "--tls-cert", "--tls-key", "--proxy-image", "--xds-address", "--native-sidecars"] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(Path::new(env!("CARGO_BIN_EXE_weft-webhook")).exists());
}
