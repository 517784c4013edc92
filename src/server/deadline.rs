//! A deadline on every call's handler: a call not answered in time (a half-sent request, a
//! slow database) ends with `DEADLINE_EXCEEDED`, and what it held is released. A streaming
//! call's handler answers once its stream is set up, so open streams are not cut.
//! (tonic's own `Server::timeout` answers `CANCELLED`, which the retry contract does not
//! name; a client's shorter `grpc-timeout` still applies through tonic.)

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::Status;
use tower::{Layer, Service};

#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer(pub Duration);

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner, limit: self.0 }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S, Request> Service<Request> for Deadline<S>
where
    S: Service<Request, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (handler, limit) = (self.inner.call(request), self.limit);
        Box::pin(async move {
            match tokio::time::timeout(limit, handler).await {
                Ok(answered) => answered,
                Err(_) => {
                    let message = format!("no answer within the server's {} s request timeout", limit.as_secs_f64());
                    Ok(Status::deadline_exceeded(message).into_http())
                }
            }
        })
    }
}
