//! Round robin over a changing endpoint list (tower has P2C balancers but no round robin).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use tower::Service;

use super::endpoint::Endpoint;
use crate::http::Body;

/// Endpoints in a fixed order, taken in turn. Cheap to clone; clones share the list and the turn.
#[derive(Clone, Default)]
pub struct RoundRobin {
    endpoints: Arc<RwLock<Vec<Endpoint>>>,
    turn: Arc<AtomicUsize>,
}

impl RoundRobin {
    pub fn insert(&self, endpoint: Endpoint) {
        if let Ok(mut list) = self.endpoints.write() {
            list.retain(|e| e.address() != endpoint.address());
            list.push(endpoint);
        }
    }

    pub fn remove(&self, address: std::net::SocketAddr) {
        if let Ok(mut list) = self.endpoints.write() {
            list.retain(|e| e.address() != address);
        }
    }

    fn next(&self) -> Option<Endpoint> {
        let list = self.endpoints.read().ok()?;
        if list.is_empty() {
            return None;
        }
        Some(list[self.turn.fetch_add(1, Ordering::Relaxed) % list.len()].clone())
    }
}

impl Service<Request<Body>> for RoundRobin {
    type Response = Response<Incoming>;
    type Error = crate::BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let endpoint = self.next();
        Box::pin(async move {
            match endpoint {
                Some(mut endpoint) => endpoint.call(request).await.map_err(Into::into),
                None => Err(super::NoEndpoints.into()),
            }
        })
    }
}
