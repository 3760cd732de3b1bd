//! On-demand discovery with the real operator: a proxy holds its own namespace's Services; a request for a
//! Service of another namespace asks the operator for it (VHDS over delta xDS), waits for it, and succeeds; later
//! requests find it in the config; a host nobody serves is answered at once, not after the wait's timeout.
//! A proxy may choose its own scope (`--proxy-scope`, the pod annotation `weft.dev/proxy-scope`), and keeps what
//! it found when the operator restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use support::{Backend, Operator, Proxy, free_port, get, sample, service_in};

const ANSWERED: &str = "weft_proxy_on_demand_lookups_total{kind=\"host\",outcome=\"answered\"}";

async fn clusters(proxy: &Proxy) -> Vec<String> {
    let (status, body) = get(proxy.admin, "admin", "/config_dump", &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let dump: serde_json::Value = serde_json::from_str(&body).unwrap();
    dump["clusters"].as_object().unwrap().keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_of_another_namespace_is_discovered_by_the_first_request_to_it() {
    let backend = Backend::start().await;
    let xds = free_port();
    let _operator = Operator::start_with(xds, backend.address, &service_in("ledger", "bank", backend.address)).await;
    let proxy = Proxy::start(xds, &[]);
    proxy.wait_ready(StatusCode::OK).await;
    assert_eq!(clusters(&proxy).await, ["outbound|80||slow.default.svc.cluster.local"], "its namespace only");

    let (status, body) = get(proxy.outbound, "ledger.bank", "/", &[]).await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "slow backend\n"), "{}", proxy.output());
    assert_eq!(sample(&proxy.metrics().await, ANSWERED), 1.0);
    let (status, _) = get(proxy.outbound, "ledger.bank.svc.cluster.local:80", "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK, "another spelling of the host is asked for once too");
    assert_eq!(sample(&proxy.metrics().await, ANSWERED), 2.0);
    for _ in 0..3 {
        assert_eq!(get(proxy.outbound, "ledger.bank", "/", &[]).await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(sample(&proxy.metrics().await, ANSWERED), 2.0, "later requests are served from the config");
    assert_eq!(
        clusters(&proxy).await,
        ["outbound|80||ledger.bank.svc.cluster.local", "outbound|80||slow.default.svc.cluster.local"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_nobody_serves_is_answered_without_waiting_for_the_timeout() {
    let backend = Backend::start().await;
    let xds = free_port();
    let _operator = Operator::start(xds, backend.address).await;
    let proxy = Proxy::start(xds, &[]);
    proxy.wait_ready(StatusCode::OK).await;
    let (status, _) = get(proxy.outbound, "nowhere.bank", "/", &[]).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    let metrics = proxy.metrics().await;
    assert_eq!(sample(&metrics, ANSWERED), 1.0, "the operator said there is no such host:\n{metrics}");
    assert_eq!(sample(&metrics, "weft_proxy_on_demand_lookups_total{kind=\"host\",outcome=\"timeout\"}"), 0.0);
    assert_eq!(get(proxy.outbound, "nowhere.bank", "/", &[]).await.unwrap().0, StatusCode::NOT_FOUND);
    assert_eq!(sample(&proxy.metrics().await, ANSWERED), 1.0, "the answer is remembered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_may_choose_its_own_scope() {
    let backend = Backend::start().await;
    let xds = free_port();
    let _operator = Operator::start_with(xds, backend.address, &service_in("ledger", "bank", backend.address)).await;
    let mesh = Proxy::start(xds, &["--proxy-scope", "mesh"]);
    mesh.wait_ready(StatusCode::OK).await;
    assert_eq!(
        clusters(&mesh).await,
        ["outbound|80||ledger.bank.svc.cluster.local", "outbound|80||slow.default.svc.cluster.local"],
        "everything, before any request"
    );
    assert_eq!(get(mesh.outbound, "ledger.bank", "/", &[]).await.unwrap().0, StatusCode::OK);
    assert_eq!(sample(&mesh.metrics().await, ANSWERED), 0.0, "nothing to ask for");
    let lean = Proxy::start(xds, &["--proxy-scope", "on-demand"]);
    lean.wait_ready(StatusCode::OK).await;
    assert!(clusters(&lean).await.is_empty(), "no rules in its namespace: nothing until it calls");
    assert_eq!(get(lean.outbound, "slow", "/", &[]).await.unwrap().0, StatusCode::OK, "{}", lean.output());
    assert_eq!(sample(&lean.metrics().await, ANSWERED), 1.0, "even its own namespace's Service is asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_found_on_demand_are_kept_when_the_operator_restarts() {
    let backend = Backend::start().await;
    let xds = free_port();
    let ledger = service_in("ledger", "bank", backend.address);
    let operator = Operator::start_with(xds, backend.address, &ledger).await;
    let proxy = Proxy::start(xds, &[]);
    proxy.wait_ready(StatusCode::OK).await;
    assert_eq!(get(proxy.outbound, "ledger.bank", "/", &[]).await.unwrap().0, StatusCode::OK);
    drop(operator);
    let _operator = Operator::start_with(xds, backend.address, &ledger).await;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while proxy.output().matches("xDS stream open").count() < 2 {
        assert!(std::time::Instant::now() < until, "never reconnected:\n{}", proxy.output());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let wanted = ["outbound|80||ledger.bank.svc.cluster.local", "outbound|80||slow.default.svc.cluster.local"];
    while clusters(&proxy).await != wanted || proxy.metrics().await.contains("weft_proxy_xds_connected 0") {
        assert!(std::time::Instant::now() < until, "clusters after the restart: {:?}", clusters(&proxy).await);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(get(proxy.outbound, "ledger.bank", "/", &[]).await.unwrap().0, StatusCode::OK);
    assert_eq!(sample(&proxy.metrics().await, ANSWERED), 1.0, "subscribed again on reconnect, not asked again");
}
