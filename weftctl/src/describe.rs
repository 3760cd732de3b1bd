//! `weftctl describe pod POD[.NS]`: which Services, rules and policies apply to a pod, and which rules its own
//! requests follow, from the operator's `/debug/describe`. Pure: the description in, text out.

use std::fmt::Write;

use weft_operator::debug::describe::{HostRules, PodDescription};

pub fn render(pod: &PodDescription) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Pod: {}.{}", pod.pod, pod.namespace);
    let labels: Vec<String> = pod.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "   Labels: {}", if labels.is_empty() { "-".to_string() } else { labels.join(", ") });
    let _ = writeln!(out, "   Service account: {}", pod.service_account.as_deref().unwrap_or("default"));
    if let Some(locality) = &pod.locality {
        let _ = writeln!(out, "   Locality: {locality}");
    }
    if pod.services.is_empty() {
        let _ = writeln!(out, "Services: none selects this pod");
    }
    for service in &pod.services {
        let ports: Vec<String> = service.ports.iter().map(u16::to_string).collect();
        let _ = writeln!(out, "Service: {} (ports {})", service.host, ports.join(", "));
        rules(&mut out, &service.rules);
        if service.rules.destination_rule.is_some() {
            let subsets = if service.subsets.is_empty() { "none".to_string() } else { service.subsets.join(", ") };
            let _ = writeln!(out, "   Subsets this pod is in: {subsets}");
        }
    }
    let inbound = &pod.inbound;
    let ports: Vec<String> = inbound.port_mtls.iter().map(|(port, mode)| format!("port {port} {mode}")).collect();
    let exceptions = if ports.is_empty() { String::new() } else { format!(" ({})", ports.join(", ")) };
    let _ = writeln!(out, "Inbound: mutual TLS {}{exceptions}", inbound.mtls);
    let list = |items: &[String]| if items.is_empty() { "-".to_string() } else { items.join(", ") };
    let _ = writeln!(out, "   PeerAuthentication: {}", list(&inbound.peer_authentications));
    let _ = writeln!(out, "   AuthorizationPolicy: {}", list(&inbound.authorization_policies));
    let _ = writeln!(out, "   HTTPLocalRateLimitPolicy: {}", list(&inbound.rate_limits));
    if pod.outbound.is_empty() {
        let _ = writeln!(out, "Outbound: no rule applies to this pod's requests; every Service is reached plainly");
    } else {
        let _ = writeln!(out, "Outbound: rules that apply to this pod's requests (other Services are reached plainly)");
        for host in &pod.outbound {
            let _ = writeln!(out, "   {}", host.host);
            let mut nested = String::new();
            rules(&mut nested, host);
            for line in nested.lines() {
                let _ = writeln!(out, "   {line}");
            }
        }
    }
    out
}

fn rules(out: &mut String, rules: &HostRules) {
    if let Some(vs) = &rules.virtual_service {
        let _ = writeln!(out, "   VirtualService: {vs}");
    }
    if let Some(dr) = &rules.destination_rule {
        let _ = writeln!(out, "   DestinationRule: {dr}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use weft_operator::debug::describe::{InboundDescription, ServiceDescription};

    #[test]
    fn a_description_reads_top_down() {
        let rules = |host: &str| HostRules {
            host: host.into(),
            virtual_service: Some("shop/reviews".into()),
            destination_rule: Some("shop/reviews".into()),
        };
        let pod = PodDescription {
            pod: "reviews-2".into(),
            namespace: "shop".into(),
            labels: BTreeMap::from([("app".into(), "reviews".into())]),
            service_account: Some("reviews".into()),
            locality: None,
            services: vec![ServiceDescription {
                host: "reviews.shop.svc.cluster.local".into(),
                ports: vec![9080],
                rules: rules("reviews.shop.svc.cluster.local"),
                subsets: vec!["v2".into()],
            }],
            inbound: InboundDescription {
                mtls: "STRICT".into(),
                port_mtls: BTreeMap::from([(9090, "PERMISSIVE".into())]),
                peer_authentications: vec!["shop/strict (namespace)".into()],
                authorization_policies: vec![],
                rate_limits: vec![],
            },
            outbound: vec![rules("reviews.shop.svc.cluster.local")],
        };
        let text = render(&pod);
        let expected = "\
Pod: reviews-2.shop
   Labels: app=reviews
   Service account: reviews
Service: reviews.shop.svc.cluster.local (ports 9080)
   VirtualService: shop/reviews
   DestinationRule: shop/reviews
   Subsets this pod is in: v2
Inbound: mutual TLS STRICT (port 9090 PERMISSIVE)
   PeerAuthentication: shop/strict (namespace)
   AuthorizationPolicy: -
   HTTPLocalRateLimitPolicy: -
Outbound: rules that apply to this pod's requests (other Services are reached plainly)
   reviews.shop.svc.cluster.local
      VirtualService: shop/reviews
      DestinationRule: shop/reviews
";
        assert_eq!(text, expected);
    }
}
