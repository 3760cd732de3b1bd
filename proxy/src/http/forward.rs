//! One request through the proxy: route, pick a weighted target per request, balance, forward, answer.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::Body;
use super::headers::{authority, port_of, strip_hop_by_hop};
use super::local_reply::LocalReply;
use crate::balance::{NoEndpoints, ResponseFuture};
use crate::config::routes::RequestInfo;
use crate::dataplane::Runtime;

/// Forwards `request` using `runtime`; `default_port` is the port meant when the authority names none.
pub async fn handle(request: Request<Incoming>, runtime: Arc<Runtime>, default_port: u16) -> Response<Body> {
    let (call, timeout) = match dispatch(request, &runtime, default_port) {
        Ok(dispatched) => dispatched,
        Err(reply) => return reply.into_response(),
    };
    drop(runtime);
    let result = match timeout {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => return LocalReply::Timeout.into_response(),
        },
        None => call.await,
    };
    match result {
        Ok(response) => finish(response),
        Err(err) if err.is::<NoEndpoints>() => LocalReply::NoHealthyUpstream.into_response(),
        Err(err) => {
            tracing::debug!(error = %err, "upstream request failed");
            LocalReply::ConnectFailure.into_response()
        }
    }
}

/// Routes the request and starts it towards the chosen cluster; everything up to the first await.
fn dispatch(
    request: Request<Incoming>,
    runtime: &Runtime,
    default_port: u16,
) -> Result<(ResponseFuture, Option<Duration>), LocalReply> {
    let authority = authority(&request).ok_or(LocalReply::MissingHost)?;
    let port = port_of(&authority).unwrap_or(default_port);
    let table = runtime.config.route_table_for_port(port).ok_or(LocalReply::NoRoute)?;
    let info = RequestInfo {
        host: &authority,
        path: request.uri().path(),
        method: request.method().as_str(),
        headers: request.headers(),
    };
    let route = table.route(&info).ok_or(LocalReply::NoRoute)?;
    let cluster = route.action.pick(rand::random()).ok_or(LocalReply::NoCluster)?;
    let balancer = runtime.clusters.get(cluster).ok_or(LocalReply::NoCluster)?;
    Ok((balancer.call(prepare(request, &authority)), route.action.timeout))
}

/// The request as sent upstream: absolute URI keeping the client's authority, no hop-by-hop headers.
fn prepare(request: Request<Incoming>, authority: &str) -> Request<Body> {
    let (mut parts, body) = request.into_parts();
    if parts.version != Version::HTTP_2 || parts.uri.authority().is_none() {
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        if let Ok(uri) = Uri::try_from(format!("http://{authority}{path}")) {
            parts.uri = uri;
        }
    }
    strip_hop_by_hop(&mut parts.headers);
    Request::from_parts(parts, body.map_err(Into::into).boxed())
}

fn finish(response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.map_err(Into::into).boxed())
}
