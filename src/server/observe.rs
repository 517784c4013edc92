//! What every call leaves behind: a request id on each log line of its handler (and in any
//! error message that names one: `api::request_id`), sent back as `x-request-id`; and its
//! count and latency by method and gRPC code (`crate::metrics`). A gRPC-Web call is counted
//! by the method it calls, as a gRPC call is.

use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::Instrument;
use uuid::Uuid;

use crate::api::request_id;
use crate::metrics::{RPC_DURATION, RPC_REQUESTS};

/// The id a client or proxy sent in `x-request-id`, if it is a short token; else a new one.
fn request_id<B>(request: &Request<B>) -> String {
    let sent = request.headers().get("x-request-id").and_then(|value| value.to_str().ok());
    match sent {
        Some(id) if (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            id.to_string()
        }
        _ => Uuid::new_v4().to_string(),
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The dashboard's page and assets are not calls: no span or metrics of their own.
        if super::web::is_page(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let (id, path, started) = (request_id(&request), request.uri().path().to_string(), Instant::now());
        let span = tracing::info_span!("rpc", %path, request_id = %id);
        let handler = request_id::scope(id.clone(), self.inner.call(request)).instrument(span);
        Box::pin(async move {
            let mut response = handler.await?;
            // A call that failed before its stream began answers with its status in the
            // headers; one that did not is counted as OK (a stream: as it opened).
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|value| value.to_str().ok()?.parse::<i32>().ok())
                .map_or(tonic::Code::Ok, tonic::Code::from_i32);
            // Only the services' own paths are labels: an unknown path is UNIMPLEMENTED, and
            // a client must not be able to mint label values.
            let method = if code == tonic::Code::Unimplemented { "unknown".to_string() } else { path };
            metrics::counter!(RPC_REQUESTS, "method" => method.clone(), "code" => format!("{code:?}")).increment(1);
            metrics::histogram!(RPC_DURATION, "method" => method).record(started.elapsed().as_secs_f64());
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert("x-request-id", value);
            }
            Ok(response)
        })
    }
}
