//! DestinationRule `tls` for a host outside the mesh's identities: the application speaks plaintext to its
//! sidecar and the sidecar originates TLS (`SIMPLE`), presenting a client certificate too (`MUTUAL`), with the
//! server checked against `caCertificates` and `subjectAltNames` (or the SNI); the certificates from files or
//! from a Secret (`credentialName`). Real handshakes on loopback with a private CA made for the test; ALPN follows
//! the request's protocol.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http::StatusCode;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer, KeyIdMethod, KeyPair,
    RevocationReason, RevokedCertParams, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::{Operator, Proxy, eventually, free_port, get};

/// A CA, a server certificate for `api.example.com` (serial [`SERVER_SERIAL`]) and a client certificate, as PEM
/// files in `dir`; the CA, to sign more.
fn pki(dir: &Path) -> Issuer<'static, KeyPair> {
    let issuer = certificate_authority(dir, "ca.pem");
    for (name, sans) in [("server", vec!["api.example.com".to_string()]), ("client", vec!["client.example.com".into()])]
    {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.serial_number = Some(SerialNumber::from_slice(if name == "server" { SERVER_SERIAL } else { &[9, 9] }));
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
    issuer
}

const SERVER_SERIAL: &[u8] = &[1, 2, 3];

/// A new self-signed CA named after `file`, its certificate written to `dir/file`. (Revocation lists are found
/// by their issuer's name: each CA here has its own.)
fn certificate_authority(dir: &Path, file: &str) -> Issuer<'static, KeyPair> {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, format!("test CA {file}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join(file), ca_cert.pem()).unwrap();
    Issuer::new(ca, ca_key)
}

/// A revocation list of `issuer` revoking `serials`, valid from a day ago for `days_left` more days, as `dir/file`.
fn revocation_list(dir: &Path, file: &str, issuer: &Issuer<'static, KeyPair>, serials: &[&[u8]], days_left: i64) {
    let now = time::OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::days(2),
        next_update: now + time::Duration::days(days_left),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: now - time::Duration::days(1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    std::fs::write(dir.join(file), params.signed_by(issuer).unwrap().pem().unwrap()).unwrap();
}

/// An HTTPS server with the server certificate (offering h2 and http/1.1), requiring a client certificate when
/// `mutual`; it answers with the SNI, ALPN and whether a client certificate came.
async fn tls_server(dir: &Path, mutual: bool) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let builder = if mutual {
        let mut roots = rustls::RootCertStore::empty();
        for root in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
            roots.add(root.unwrap()).unwrap();
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let session = tls.get_ref().1;
                let seen = format!(
                    "sni={} alpn={} client_cert={}",
                    session.server_name().unwrap_or("-"),
                    session.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or("-".into()),
                    session.peer_certificates().is_some_and(|c| !c.is_empty()),
                );
                let service = service_fn(move |_request: http::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(seen),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    address
}

fn rule(tls: &str) -> String {
    format!(
        "apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {{name: slow, namespace: default}}\n\
         spec: {{host: slow, trafficPolicy: {{tls: {tls}}}}}\n"
    )
}

/// The answer to one GET through a fresh operator and sidecar serving `rule` in front of `server`.
async fn through_sidecar(server: SocketAddr, tls: &str) -> (StatusCode, String, Proxy) {
    let operator = Operator::start_with(free_port(), server, &rule(tls)).await;
    let proxy = Proxy::start(operator.xds, &[]);
    proxy.wait_ready(StatusCode::OK).await;
    let (status, body) = get(proxy.outbound, "slow", "/", &[]).await.unwrap();
    drop(operator);
    (status, body, proxy)
}

#[tokio::test]
async fn simple_originates_tls_checked_against_the_given_roots_and_names() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let server = tls_server(dir.path(), false).await;
    let ca = dir.path().join("ca.pem").display().to_string();

    let (status, seen, proxy) =
        through_sidecar(server, &format!("{{mode: SIMPLE, sni: api.example.com, caCertificates: {ca}}}")).await;
    assert_eq!(status, StatusCode::OK, "proxy log:\n{}", proxy.output());
    assert_eq!(seen, "sni=api.example.com alpn=http/1.1 client_cert=false");

    // subjectAltNames replace the name check: a name the certificate carries passes, another does not.
    let named =
        format!("{{mode: SIMPLE, sni: api.example.com, caCertificates: {ca}, subjectAltNames: [api.example.com]}}");
    assert_eq!(through_sidecar(server, &named).await.0, StatusCode::OK);
    let other =
        format!("{{mode: SIMPLE, sni: api.example.com, caCertificates: {ca}, subjectAltNames: [db.example.com]}}");
    assert_eq!(through_sidecar(server, &other).await.0, StatusCode::SERVICE_UNAVAILABLE);
    // The SNI the certificate does not name, or roots it does not chain to: refused.
    let wrong_sni = format!("{{mode: SIMPLE, sni: web.example.com, caCertificates: {ca}}}");
    assert_eq!(through_sidecar(server, &wrong_sni).await.0, StatusCode::SERVICE_UNAVAILABLE);
    let system_roots = "{mode: SIMPLE, sni: api.example.com}";
    assert_eq!(
        through_sidecar(server, system_roots).await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "a private CA is not Mozilla's"
    );
    let (status, _, _) =
        through_sidecar(server, "{mode: SIMPLE, sni: api.example.com, insecureSkipVerify: true}").await;
    assert_eq!(status, StatusCode::OK, "insecureSkipVerify accepts any certificate");
}

/// `caCrl`, as Envoy checks a `crl`: the server's certificate must not be revoked, and a current list of its
/// issuer must cover it; with `subjectAltNames` (Weft's own name check) and without (the SNI).
#[tokio::test]
async fn ca_crl_refuses_a_revoked_certificate_and_one_no_current_list_covers() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let issuer = pki(dir.path());
    revocation_list(dir.path(), "clean.crl", &issuer, &[&[7, 7]], 1);
    revocation_list(dir.path(), "revoked.crl", &issuer, &[&[7, 7], SERVER_SERIAL], 1);
    revocation_list(dir.path(), "expired.crl", &issuer, &[], -1);
    let other = certificate_authority(dir.path(), "other-ca.pem");
    revocation_list(dir.path(), "other.crl", &other, &[SERVER_SERIAL], 1);
    // Several lists in one file: each applies to its own issuer only (the other CA's naming the same serial
    // revokes nothing here).
    let both =
        [&dir.path().join("clean.crl"), &dir.path().join("other.crl")].map(|f| std::fs::read_to_string(f).unwrap());
    std::fs::write(dir.path().join("both.crl"), both.concat()).unwrap();
    let server = tls_server(dir.path(), false).await;
    let file = |name: &str| dir.path().join(name).display().to_string();
    for names in ["", ", subjectAltNames: [api.example.com]"] {
        let with = |crl: &str| {
            format!(
                "{{mode: SIMPLE, sni: api.example.com, caCertificates: {}, caCrl: {}{names}}}",
                file("ca.pem"),
                file(crl)
            )
        };
        for crl in ["clean.crl", "both.crl"] {
            let (status, _, proxy) = through_sidecar(server, &with(crl)).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{crl}{names}: no list of its issuer names it; log:\n{}",
                proxy.output()
            );
        }
        for (crl, why) in [
            ("revoked.crl", "revoked"),
            ("expired.crl", "the issuer's list is out of date"),
            ("other.crl", "no list of its issuer"),
        ] {
            assert_eq!(through_sidecar(server, &with(crl)).await.0, StatusCode::SERVICE_UNAVAILABLE, "{why}{names}");
        }
    }

    // The file is replaced in place (as the kubelet updates a mounted ConfigMap): the same proxy reads the new
    // list for its next connection, without new config.
    std::fs::copy(dir.path().join("clean.crl"), dir.path().join("current.crl")).unwrap();
    let tls = format!(
        "{{mode: SIMPLE, sni: api.example.com, caCertificates: {}, caCrl: {}}}, connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}",
        file("ca.pem"),
        file("current.crl")
    );
    let operator = Operator::start_with(free_port(), server, &rule(&tls)).await;
    let proxy = Proxy::start(operator.xds, &[]);
    proxy.wait_ready(StatusCode::OK).await;
    assert_eq!(get(proxy.outbound, "slow", "/", &[]).await.unwrap().0, StatusCode::OK, "log:\n{}", proxy.output());
    std::fs::copy(dir.path().join("revoked.crl"), dir.path().join("current.crl")).unwrap();
    eventually("the replaced list is read", || async {
        matches!(get(proxy.outbound, "slow", "/", &[]).await, Ok((StatusCode::SERVICE_UNAVAILABLE, _)))
    })
    .await;
}

/// With an intermediate CA, every certificate of the chain below the root needs a current list of its issuer:
/// the root's list (for the intermediate) as well as the intermediate's (for the server), as Envoy checks.
#[tokio::test]
async fn ca_crl_covers_the_whole_chain() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let root = certificate_authority(dir.path(), "ca.pem");
    let intermediate_key = KeyPair::generate().unwrap();
    let mut intermediate = CertificateParams::new(Vec::<String>::new()).unwrap();
    intermediate.distinguished_name.push(DnType::CommonName, "test intermediate CA");
    intermediate.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    intermediate.serial_number = Some(SerialNumber::from_slice(&[4, 4]));
    let intermediate_pem = intermediate.clone().signed_by(&intermediate_key, &root).unwrap().pem();
    let intermediate = Issuer::new(intermediate, intermediate_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["api.example.com".to_string()]).unwrap();
    leaf.serial_number = Some(SerialNumber::from_slice(SERVER_SERIAL));
    let leaf = leaf.signed_by(&key, &intermediate).unwrap();
    // The server sends its certificate and the intermediate's.
    std::fs::write(dir.path().join("server.pem"), format!("{}{intermediate_pem}", leaf.pem())).unwrap();
    std::fs::write(dir.path().join("server-key.pem"), key.serialize_pem()).unwrap();
    revocation_list(dir.path(), "root.crl", &root, &[], 1);
    revocation_list(dir.path(), "root-revoking.crl", &root, &[&[4, 4]], 1);
    revocation_list(dir.path(), "intermediate.crl", &intermediate, &[], 1);
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    std::fs::write(dir.path().join("both.crl"), read("root.crl") + &read("intermediate.crl")).unwrap();
    let revoked = read("root-revoking.crl") + &read("intermediate.crl");
    std::fs::write(dir.path().join("intermediate-revoked.crl"), revoked).unwrap();
    let server = tls_server(dir.path(), false).await;
    let file = |name: &str| dir.path().join(name).display().to_string();
    let with = |crl: &str| {
        format!("{{mode: SIMPLE, sni: api.example.com, caCertificates: {}, caCrl: {}}}", file("ca.pem"), file(crl))
    };
    let (status, _, proxy) = through_sidecar(server, &with("both.crl")).await;
    assert_eq!(status, StatusCode::OK, "both issuers' lists, nothing revoked; log:\n{}", proxy.output());
    for (crl, why) in [
        ("intermediate.crl", "no list of the root for the intermediate"),
        ("intermediate-revoked.crl", "the intermediate revoked by the root"),
    ] {
        assert_eq!(through_sidecar(server, &with(crl)).await.0, StatusCode::SERVICE_UNAVAILABLE, "{why}");
    }
}

#[tokio::test]
async fn mutual_presents_the_client_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let server = tls_server(dir.path(), true).await;
    let file = |name: &str| dir.path().join(name).display().to_string();
    let ca = file("ca.pem");

    let simple = format!("{{mode: SIMPLE, sni: api.example.com, caCertificates: {ca}}}");
    assert_eq!(
        through_sidecar(server, &simple).await.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "the server wants a client certificate"
    );
    let mutual = format!(
        "{{mode: MUTUAL, sni: api.example.com, caCertificates: {ca}, clientCertificate: {}, privateKey: {}}}",
        file("client.pem"),
        file("client-key.pem")
    );
    let (status, seen, proxy) = through_sidecar(server, &mutual).await;
    assert_eq!(status, StatusCode::OK, "proxy log:\n{}", proxy.output());
    assert_eq!(seen, "sni=api.example.com alpn=http/1.1 client_cert=true");
}

/// A Secret `client-tls` (namespace `default`) with these PEM files of `dir` under Istio's keys for a
/// `kubernetes.io/tls` Secret.
fn secret(dir: &Path, keys: &[(&str, &str)]) -> String {
    let entries: Vec<String> = keys
        .iter()
        .map(|(key, file)| {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            format!("{key:?}: {}", serde_json::to_string(&text).unwrap())
        })
        .collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: client-tls, namespace: default}}\ntype: kubernetes.io/tls\n\
         stringData: {{{}}}\n",
        entries.join(", ")
    )
}

#[tokio::test]
async fn credential_name_takes_the_certificates_from_a_secret_and_follows_its_changes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let server = tls_server(dir.path(), true).await;
    // The rule selects the proxy's pod (`client`): Istio reads credentialName at sidecars only so. One request per
    // upstream connection: a changed Secret is for new connections (open ones keep going, as with Envoy's SDS),
    // so each request shows what is in force.
    let rules = "apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: default, labels: {app: client}}\n---\n\
        apiVersion: networking.weft.dev/v1alpha1\nkind: DestinationRule\nmetadata: {name: slow, namespace: default}\n\
        spec: {host: slow, workloadSelector: {matchLabels: {app: client}}, trafficPolicy: \
        {connectionPool: {http: {maxRequestsPerConnection: 1}}, tls: {mode: MUTUAL, sni: api.example.com, credentialName: client-tls}}}\n";
    let operator = Operator::start_with(free_port(), server, rules).await;
    // The Secret has the roots but not yet the client's key: nothing is presented, the server refuses.
    operator.write("secret.yaml", &secret(dir.path(), &[("tls.crt", "client.pem"), ("ca.crt", "ca.pem")]));
    let proxy = Proxy::start(operator.xds, &[]);
    proxy.wait_ready(StatusCode::OK).await;
    let (status, _) = get(proxy.outbound, "slow", "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "proxy log:\n{}", proxy.output());

    // The key arrives in the Secret: the same proxy now presents the certificate, without a restart.
    let whole = [("tls.crt", "client.pem"), ("tls.key", "client-key.pem"), ("ca.crt", "ca.pem")];
    operator.write("secret.yaml", &secret(dir.path(), &whole));
    eventually("the Secret's client certificate is presented", || async {
        matches!(get(proxy.outbound, "slow", "/", &[]).await, Ok((StatusCode::OK, seen)) if seen == "sni=api.example.com alpn=http/1.1 client_cert=true")
    })
    .await;

    // Roots the server's certificate does not chain to (the client's own certificate as a CA): refused.
    operator.write(
        "secret.yaml",
        &secret(dir.path(), &[("tls.crt", "client.pem"), ("tls.key", "client-key.pem"), ("ca.crt", "client.pem")]),
    );
    eventually("the Secret's new roots are in force", || async {
        matches!(get(proxy.outbound, "slow", "/", &[]).await, Ok((StatusCode::SERVICE_UNAVAILABLE, _)))
    })
    .await;
    let (_, dump) = get(proxy.admin, "localhost", "/config_dump", &[]).await.unwrap();
    assert!(!dump.contains("PRIVATE KEY"), "the config dump shows no key:\n{dump}");
    assert!(dump.contains("[inline, "), "but says where the certificates come from:\n{dump}");
}
