//! How long the proxy takes to find a request's route as its route table grows from 10 to 10 000 routes (one
//! virtual host per Service, as the operator sends them, each with a header-matched canary route and a default),
//! for `make bench`: nanoseconds per lookup, with the proxy's own route table and matching code. Flat means the
//! lookup does not scan the table. Within one virtual host routes are still tried in order (first match wins, as in
//! Istio and Envoy), so a host's own route count is not part of this.

use std::hint::black_box;
use std::time::{Duration, Instant};

use http::HeaderMap;
use weft_proxy::config::routes::RequestInfo;
use weft_proxy::config::{
    HeaderMatch, Labels, PathMatch, RouteAction, RouteEntry, RouteTable, StringMatcher, VirtualHost, WeightedTarget,
};

/// Route counts measured.
pub const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
/// Each size is measured for about this long.
const PER_SIZE: Duration = Duration::from_millis(300);

fn service(index: usize) -> VirtualHost {
    let host = format!("svc-{index}.shop.svc.cluster.local");
    let to =
        |subset: &str| RouteAction::to_targets(vec![WeightedTarget::new(format!("outbound|80|{subset}|{host}"), 1)]);
    let canary = RouteEntry {
        headers: vec![HeaderMatch {
            name: "x-canary".into(),
            matcher: StringMatcher::Exact("1".into()),
            invert: false,
        }],
        ..RouteEntry::forward("canary", PathMatch::Prefix("/".into()), to("v2"))
    };
    let default = RouteEntry::forward("default", PathMatch::Prefix("/".into()), to("v1"));
    let domains = vec![host.clone(), format!("svc-{index}"), format!("svc-{index}:80")];
    VirtualHost { name: format!("{host}:80"), domains, routes: vec![canary, default] }
}

/// Nanoseconds per lookup in a table of `routes` routes, of hosts spread over the whole table.
pub fn nanos_per_lookup(routes: usize) -> f64 {
    let hosts = (routes / 2).max(1);
    let table = RouteTable::new("80", (0..hosts).map(service).collect(), false);
    let asked: Vec<String> = (0..64).map(|i| format!("svc-{}:80", (i * 7919) % hosts)).collect();
    let (headers, labels) = (HeaderMap::new(), Labels::new());
    let mut lookups = 0u64;
    let started = Instant::now();
    while started.elapsed() < PER_SIZE {
        for host in &asked {
            let info = RequestInfo {
                host,
                path: "/items",
                query: None,
                method: "GET",
                scheme: "http",
                headers: &headers,
                source_labels: &labels,
            };
            black_box(table.route(black_box(&info)));
        }
        lookups += asked.len() as u64;
    }
    started.elapsed().as_nanos() as f64 / lookups as f64
}
