//! `weftctl route POD[.NS] URL [-H 'name: value']...`: the routing decision the pod's proxy would make for a
//! request, explained: the route configuration of the URL's port, the virtual host its host lands on, each
//! route tried in order with why it did not match, and what the chosen one does (weighted clusters, redirect,
//! direct response). The proxy's own conversion and matching code decides ([`weft_proxy::config`]), so the
//! explanation cannot drift from what requests get. Pure: the debug API's answer and the request in, text out.

use std::fmt::Write;

use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost as PbVirtualHost};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use prost::Message;
use weft_operator::debug::{ConfigView, ResourceView};
use weft_proxy::config::routes::explain::{Verdict, explain};
use weft_proxy::config::routes::{Action, RequestInfo};
use weft_proxy::config::{RouteTable, VirtualHost};
use weft_xds::{parse_on_demand_name, route_config_name};

/// The request to explain.
#[derive(Debug, Clone)]
pub struct Asked {
    pub url: String,
    pub method: String,
    /// `name: value` each.
    pub headers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("{0:?} is not a URL with a host, e.g. http://reviews:9080/reviews/1")]
    BadUrl(String),
    #[error("-H {0:?}: expected 'name: value'")]
    BadHeader(String),
    #[error("{kind} {name:?} from the operator does not decode: {reason}")]
    Decode { kind: String, name: String, reason: String },
}

/// The explanation of `asked` for the proxy `config` is the config of.
pub fn route(config: &ConfigView, asked: &Asked) -> Result<String, RouteError> {
    let uri: Uri = asked.url.parse().map_err(|_| RouteError::BadUrl(asked.url.clone()))?;
    let authority = uri.authority().ok_or_else(|| RouteError::BadUrl(asked.url.clone()))?.as_str().to_string();
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    let headers = header_map(&asked.headers)?;
    let name = route_config_name(port);
    let mut out = String::new();
    let Some(table) = table(config, &name)? else {
        let _ = writeln!(
            out,
            "no route configuration for port {port}: not a mesh port; captured traffic goes on to its original destination as TCP"
        );
        return Ok(out);
    };
    let request = RequestInfo {
        host: &authority,
        path: uri.path(),
        query: uri.query(),
        method: &asked.method,
        scheme: uri.scheme_str().unwrap_or("http"),
        headers: &headers,
        source_labels: &config.labels,
    };
    let explained = explain(&table, &request);
    let Some(host) = explained.virtual_host else {
        let _ = writeln!(out, "route configuration {name}: no virtual host has the domain {authority:?}");
        let _ =
            writeln!(out, "=> captured traffic goes on to its original destination; explicit traffic gets 404 (NR)");
        return Ok(out);
    };
    let _ = writeln!(out, "route configuration {name}, virtual host {} (domain {authority:?})", host.name);
    let total = host.routes.len();
    for (i, (route, verdict)) in explained.tried.iter().enumerate() {
        let outcome = match verdict {
            Verdict::Matched => "matched".to_string(),
            Verdict::NotMatched(why) => format!("not matched: {why}"),
        };
        let _ = writeln!(out, "  route {} of {total} {:?}: {outcome}", i + 1, route.name);
    }
    match explained.chosen() {
        None => {
            let _ = writeln!(out, "=> no route matches: 404 (NR)");
        }
        Some(route) => action(&mut out, &route.action),
    }
    Ok(out)
}

fn action(out: &mut String, action: &Action) {
    match action {
        Action::Forward(forward) => {
            let total: u64 = forward.targets.iter().map(|t| u64::from(t.weight)).sum();
            for (i, target) in forward.targets.iter().enumerate() {
                let share = if total == 0 { 0.0 } else { 100.0 * f64::from(target.weight) / total as f64 };
                let arrow = if i == 0 { "=>" } else { "  " };
                let _ = writeln!(out, "{arrow} {} (weight {}, {share:.0}%)", target.cluster, target.weight);
            }
            if let Some(timeout) = forward.timeout {
                let _ = writeln!(out, "   timeout {timeout:?}");
            }
            if let Some(retry) = &forward.retry {
                let _ = writeln!(out, "   retries: {retry:?}");
            }
            for mirror in &forward.mirrors {
                let _ = writeln!(out, "   mirrored to {}", mirror.cluster);
            }
        }
        Action::Redirect(redirect) => {
            let _ = writeln!(out, "=> redirect: {redirect:?}");
        }
        Action::Respond(response) => {
            let _ = writeln!(out, "=> direct response {}", response.status);
        }
    }
}

/// The route table named `name` with the virtual hosts sent on demand for it added.
fn table(config: &ConfigView, name: &str) -> Result<Option<RouteTable>, RouteError> {
    let Some(resource) = config.resources.iter().find(|r| r.kind == "RDS" && r.name == name) else { return Ok(None) };
    let decoded: RouteConfiguration = decode(resource)?;
    let mut table = RouteTable::try_from(&decoded).map_err(|e| decode_error(resource, e.to_string()))?;
    for resource in config.resources.iter().filter(|r| r.kind == "VHDS") {
        if parse_on_demand_name(&resource.name).is_some_and(|(config, _)| config == name) {
            let host: PbVirtualHost = decode(resource)?;
            table.add_virtual_host(VirtualHost::try_from(&host).map_err(|e| decode_error(resource, e.to_string()))?);
        }
    }
    Ok(Some(table))
}

fn decode<T: Message + Default>(resource: &ResourceView) -> Result<T, RouteError> {
    let bytes = resource.bytes().map_err(|e| decode_error(resource, e.to_string()))?;
    T::decode(bytes.as_slice()).map_err(|e| decode_error(resource, e.to_string()))
}

fn decode_error(resource: &ResourceView, reason: String) -> RouteError {
    RouteError::Decode { kind: resource.kind.clone(), name: resource.name.clone(), reason }
}

fn header_map(headers: &[String]) -> Result<HeaderMap, RouteError> {
    let mut map = HeaderMap::new();
    for text in headers {
        let bad = || RouteError::BadHeader(text.clone());
        let (name, value) = text.split_once(':').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        map.append(name, value);
    }
    Ok(map)
}
