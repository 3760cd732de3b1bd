//! Tower's glue for the route's layers: each layer is its config (`Copy`, borrowed from the route) implementing
//! [`RouteStep`]; [`Step`] makes it a tower `Layer`, and wrapped around the rest of the stack it is a tower
//! `Service` ([`Wrapped`]).

use std::marker::PhantomData;
use std::task::{Context, Poll};

use http::{Request, Response};

use super::RouteFuture;
use crate::BoxError;
use crate::http::Body;

/// A route layer's config as a tower `Layer`.
#[derive(Clone, Copy)]
pub struct Step<'a, C>(pub C, pub PhantomData<&'a ()>);

impl<'a, C: RouteStep<'a>> Step<'a, C> {
    pub fn new(config: C) -> Self {
        Self(config, PhantomData)
    }
}

impl<'a, C: RouteStep<'a>, S> tower::Layer<S> for Step<'a, C> {
    type Service = Wrapped<'a, C, S>;

    fn layer(&self, inner: S) -> Wrapped<'a, C, S> {
        Wrapped { config: self.0, inner, borrows: PhantomData }
    }
}

/// A layer's config around the service it passes requests on to; `'a`: what the config borrows from the route.
#[derive(Clone)]
pub struct Wrapped<'a, C, S> {
    config: C,
    inner: S,
    borrows: PhantomData<&'a ()>,
}

/// What comes after a layer: the rest of the stack.
pub trait Next<'a>:
    tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError, Future: Send + 'a> + Clone + Send + 'a
{
}

impl<'a, S> Next<'a> for S where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = BoxError, Future: Send + 'a>
        + Clone
        + Send
        + 'a
{
}

/// One layer of the route stack: what it does with a request, given the rest of the stack.
pub trait RouteStep<'a>: Copy {
    fn call<S: Next<'a>>(self, next: S, request: Request<Body>) -> RouteFuture<'a>;
}

impl<'a, C: RouteStep<'a>, S: Next<'a>> tower::Service<Request<Body>> for Wrapped<'a, C, S> {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = RouteFuture<'a>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> RouteFuture<'a> {
        self.config.call(self.inner.clone(), request)
    }
}
