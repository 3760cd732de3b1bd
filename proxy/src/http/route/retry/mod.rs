//! The retry layer: sends the request again when an attempt's outcome is one the route's policy retries
//! ([`decide`]), after a jittered backoff, to an endpoint not tried yet (when the policy says so and one is left),
//! within the cluster's retry budget, while the body can be replayed. Each attempt has the per-try timeout; the
//! route timeout (outside this layer) covers them all.

mod decide;

use http::Request;
use tower::{Service, ServiceExt};

use super::replay::Replay;
use super::{Next, RouteFuture, RouteStep, copy_request};
use crate::BoxError;
use crate::config::policy::RetryPolicy;
use crate::http::Body;
use crate::metrics::{Metrics, RouteEvent};
use crate::upstream::{ClusterBalancer, ConnectError, NoEndpoints, Overflow};
use decide::{Outcome, backoff, is_retriable};

/// The per-try timeout passed before the response head.
#[derive(Debug, thiserror::Error)]
#[error("upstream per-try timeout")]
pub struct PerTryTimeout;

#[derive(Clone, Copy)]
pub struct RetryLayer<'a> {
    policy: &'a RetryPolicy,
    balancer: &'a ClusterBalancer,
    cluster: &'a str,
    metrics: &'a Metrics,
}

impl<'a> RetryLayer<'a> {
    pub fn new(policy: &'a RetryPolicy, balancer: &'a ClusterBalancer, cluster: &'a str, metrics: &'a Metrics) -> Self {
        Self { policy, balancer, cluster, metrics }
    }
}

impl<'a> RouteStep<'a> for RetryLayer<'a> {
    fn call<S: Next<'a>>(self, next: S, request: Request<Body>) -> RouteFuture<'a> {
        Box::pin(attempts(self, next, request))
    }
}

async fn attempts<'a, S>(
    config: RetryLayer<'a>,
    inner: S,
    request: Request<Body>,
) -> Result<http::Response<Body>, BoxError>
where
    S: Service<Request<Body>, Response = http::Response<Body>, Error = BoxError> + Clone + Send + 'a,
    S::Future: Send + 'a,
{
    let RetryLayer { policy, balancer, cluster, metrics } = config;
    let (head, body) = request.into_parts();
    let replay = head.extensions.get::<Replay>().cloned().unwrap_or_else(|| Replay::new(body));
    let mut retries = 0;
    let mut _permit = None;
    loop {
        let request = copy_request(&head, replay.leader());
        // Boxed: rustc cannot yet prove this function's future `Send` when it holds `S::Future`.
        let call: RouteFuture<'a> = Box::pin(inner.clone().oneshot(request));
        let result = attempt(call, policy).await;
        if retries >= policy.retries || !is_retriable(policy, outcome(&result)) {
            return result;
        }
        if !replay.is_replayable() {
            metrics.route_event(cluster, RouteEvent::RetryBodyTooLarge);
            return result;
        }
        let Some(permit) = balancer.retry_budget().try_retry() else {
            metrics.route_event(cluster, RouteEvent::RetryOverflow);
            return result;
        };
        drop(result);
        retries += 1;
        tokio::time::sleep(backoff(policy, retries, rand::random())).await;
        metrics.route_event(cluster, RouteEvent::Retry);
        // Held until this retry's own outcome is known.
        _permit = Some(permit);
    }
}

async fn attempt(call: RouteFuture<'_>, policy: &RetryPolicy) -> Result<http::Response<Body>, BoxError> {
    match policy.per_try_timeout {
        Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| Err(PerTryTimeout.into())),
        None => call.await,
    }
}

/// How an attempt ended, for the retry decision.
fn outcome(result: &Result<http::Response<Body>, BoxError>) -> Outcome {
    match result {
        Ok(response) => Outcome::answered(response.status(), response.headers()),
        Err(err) if err.is::<NoEndpoints>() || err.is::<Overflow>() => Outcome::NotSent,
        Err(err) if err.is::<PerTryTimeout>() => Outcome::Timeout,
        Err(err) => failure_kind(err.as_ref()),
    }
}

/// A connection that could not be made, an HTTP/2 stream refused, or anything else after sending (a reset).
fn failure_kind(err: &(dyn std::error::Error + 'static)) -> Outcome {
    let mut source = Some(err);
    while let Some(current) = source {
        if current.is::<ConnectError>() {
            return Outcome::ConnectFailure;
        }
        if let Some(h2) = current.downcast_ref::<h2::Error>()
            && h2.reason() == Some(h2::Reason::REFUSED_STREAM)
        {
            return Outcome::RefusedStream;
        }
        source = current.source();
    }
    Outcome::Reset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_that_could_not_be_made_is_a_connect_failure_however_wrapped() {
        let refused = || ConnectError {
            address: "127.0.0.1:9".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        let direct: BoxError = refused().into();
        assert_eq!(failure_kind(direct.as_ref()), Outcome::ConnectFailure);
        #[derive(Debug, thiserror::Error)]
        #[error("a layer in between")]
        struct Layer(#[source] ConnectError);
        assert_eq!(failure_kind(&Layer(refused())), Outcome::ConnectFailure);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(failure_kind(&reset), Outcome::Reset, "after the connection was made: a reset");
    }
}
