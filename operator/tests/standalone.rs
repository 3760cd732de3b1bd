//! Standalone mode as a user runs it, through the real binary: what it tells about rules that cannot take effect,
//! and that a file it cannot read does not keep it from serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::operator_process::{Operator, Security};

const SERVICE: &[u8] =
    b"apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: shop}\nspec: {ports: [{port: 80}]}\n";
const VS_FOR_UNKNOWN_HOST: &[u8] = b"apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\n\
metadata: {name: ratings, namespace: shop}\nspec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings}\n";

#[tokio::test]
async fn a_rule_for_an_unknown_host_is_warned_about_once_naming_the_field() {
    let operator = Operator::start(&[("svc.yaml", SERVICE), ("ratings-vs.yaml", VS_FOR_UNKNOWN_HOST)]).await;
    let warning = "spec.hosts[0]: no Service ratings.shop.svc.cluster.local";
    operator.wait_for_log(warning).await;
    operator.wait_for_log("spec.http[0].route[0].destination.host: no Service ratings.shop.svc.cluster.local").await;
    // An unrelated edit builds a new snapshot; the problem is not reported again.
    let edited = String::from_utf8(SERVICE.to_vec()).unwrap().replace("port: 80", "port: 81");
    std::fs::write(operator.config.join("svc.yaml"), edited).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while operator.log().matches("new snapshot").count() < 2 {
        assert!(Instant::now() < until, "the edit built no snapshot:\n{}", operator.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(operator.log().matches(warning).count(), 1, "{}", operator.log());
}

#[tokio::test]
async fn a_file_of_random_bytes_at_startup_is_named_and_the_operator_becomes_ready() {
    let noise: Vec<u8> = (0..2048u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let operator = Operator::start(&[("noise.yaml", &noise), ("svc.yaml", SERVICE)]).await;
    operator.wait_for_log("noise.yaml: not UTF-8 text").await;
    let until = Instant::now() + Duration::from_secs(10);
    while operator.get("/readyz").await.0 != 200 {
        assert!(Instant::now() < until, "never ready:\n{}", operator.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(operator.log().contains("services=1"), "{}", operator.log());
}

/// Plaintext xDS takes a proxy's node id at its word: with mutual TLS on it is served only when asked for.
#[tokio::test]
async fn with_a_ca_plaintext_xds_is_served_only_when_asked_for() {
    for plaintext in [false, true] {
        let operator = Operator::start_with(&[("svc.yaml", SERVICE)], Security::MutualTls { plaintext }).await;
        let port = |address: Option<std::net::SocketAddr>| address.map(|a| a.port());
        let mut expected: Vec<u16> =
            [Some(operator.metrics.port()), port(operator.secure), port(operator.xds)].into_iter().flatten().collect();
        expected.sort_unstable();
        assert_eq!(operator.listening_ports(), expected, "plaintext asked: {plaintext}\n{}", operator.log());
        assert_eq!(operator.log().contains("serving xDS (ADS)"), plaintext, "{}", operator.log());
    }
    // Without a CA the operator serves plaintext xDS (where it is told here; the default address is
    // `app::plaintext_xds_address`'s, tested there).
    let operator = Operator::start(&[("svc.yaml", SERVICE)]).await;
    assert!(operator.listening_ports().contains(&operator.xds.unwrap().port()));
}
