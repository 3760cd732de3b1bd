//! The `weft-webhook` binary: bad flags and files end it with one line before any port is bound; good ones serve
//! HTTPS until SIGTERM; `--native-sidecars auto` with no reachable API server falls back to classic sidecars.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Output;

use support::binary::{Files, free_port, start, terminate, webhook};

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

#[tokio::test]
async fn auto_reads_git_version_when_major_and_minor_are_empty() {
    let files = Files::new();
    let api =
        fake_api_server(&files, r#"{"major":"","minor":"","gitVersion":"v1.30.2-eks-1","platform":"linux/amd64"}"#)
            .await;
    let kubeconfig = files.path("kubeconfig");
    std::fs::write(&kubeconfig, unreachable_kubeconfig(api)).unwrap();
    let (child, _) = start(&files, &[], &[("KUBECONFIG", kubeconfig.as_str())]).await;
    let (status, log) = terminate(child);
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("mode=native") && log.contains("v1.30.2-eks-1"), "{log}");
}

/// An HTTPS server that answers `GET /version` with `version` (the test's certificate; kubeconfig skips checks).
async fn fake_api_server(files: &Files, version: &'static str) -> SocketAddr {
    use hyper::service::service_fn;
    let leaf = files.pki.leaf();
    let key = rustls::pki_types::PrivateKeyDer::try_from(der_of_pem(&leaf.key_pem)).unwrap();
    let mut config =
        rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(vec![leaf.der.clone()], key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                    let body = if request.uri().path() == "/version" { version } else { "{}" };
                    let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                    response.headers_mut().insert("content-type", "application/json".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(response)
                });
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    addr
}

/// The DER of a PKCS#8 PEM private key (rcgen writes exactly one such block).
fn der_of_pem(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
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
