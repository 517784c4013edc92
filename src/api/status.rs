//! The one mapping from service errors to gRPC statuses. Internal details are logged with a
//! request id and never sent to the client. Every answer a client may retry says so with
//! `RetryInfo` (the app's retry contract is in the README).

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::Violation;
use crate::feed::FeedError;
use crate::store::StoreError;

/// Violations a BadRequest carries at most.
pub const MAX_REPORTED_VIOLATIONS: usize = 20;

/// How long a client waits before retrying a call the database could not serve.
pub const RETRY_UNAVAILABLE: Duration = Duration::from_secs(1);
/// How long a client waits before retrying a write the server shed under load.
pub const RETRY_OVERLOADED: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidArgument { message: String, violations: Vec<Violation> },
    #[error("missing or invalid bearer token")]
    Unauthenticated,
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    OutOfRange(String),
    /// A limit was reached: the caller may retry after `retry`, or, without one, not at all
    /// (the same call would meet the same limit).
    #[error("{message}")]
    ResourceExhausted { message: String, retry: Option<Duration> },
    /// The server cannot take the call now (overloaded, shutting down); retry after `retry`,
    /// here or on another instance.
    #[error("{message}")]
    Unavailable { message: String, retry: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn invalid(violations: Vec<Violation>) -> ApiError {
        let message = match violations.as_slice() {
            [one] => format!("{}: {}", one.field, one.description),
            many if many.len() > MAX_REPORTED_VIOLATIONS => {
                format!(
                    "{} invalid fields; the first {MAX_REPORTED_VIOLATIONS} are in the BadRequest details",
                    many.len()
                )
            }
            many => format!("{} invalid fields; see the BadRequest details", many.len()),
        };
        ApiError::InvalidArgument { message, violations }
    }

    pub fn invalid_one(violation: Violation) -> ApiError {
        ApiError::invalid(vec![violation])
    }
}

impl From<FeedError> for ApiError {
    fn from(err: FeedError) -> ApiError {
        match err {
            FeedError::Store(e) => ApiError::Store(e),
            e @ FeedError::AheadOfFeed { .. } => ApiError::OutOfRange(e.to_string()),
            FeedError::ShuttingDown => ApiError::Unavailable {
                message: "the server is shutting down; reconnect and resume from your last position".into(),
                retry: Duration::ZERO,
            },
        }
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        match err {
            ApiError::InvalidArgument { message, violations } => {
                // The details travel in a header: a few hundred violations would exceed
                // a client's metadata limit and turn the answer into a protocol error.
                let mut details = ErrorDetails::new();
                for v in violations.iter().take(MAX_REPORTED_VIOLATIONS) {
                    details.add_bad_request_violation(v.field.clone(), format!("{} ({})", v.description, v.reason));
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::Unauthenticated => Status::unauthenticated("missing or invalid bearer token"),
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::OutOfRange(message) => Status::out_of_range(message),
            ApiError::ResourceExhausted { message, retry: Some(retry) } => {
                retryable(Code::ResourceExhausted, message, retry)
            }
            ApiError::ResourceExhausted { message, retry: None } => Status::resource_exhausted(message),
            ApiError::Unavailable { message, retry } => retryable(Code::Unavailable, message, retry),
            ApiError::Store(e) => store_status(&e),
        }
    }
}

fn store_status(err: &StoreError) -> Status {
    // The call's id, which the rest of its log lines (the `rpc` span) carry too.
    let request_id = super::request_id::current();
    match err {
        StoreError::Unavailable(_) | StoreError::Closed => {
            tracing::warn!(%request_id, error = %err, "database unavailable");
            let message = format!("the database is unavailable; retry later (request id {request_id})");
            retryable(Code::Unavailable, message, RETRY_UNAVAILABLE)
        }
        StoreError::Overloaded => {
            crate::metrics::refused("write_queue_full");
            tracing::warn!(%request_id, "write shed: the write queue is full");
            let message = format!("the server is busy; retry shortly (request id {request_id})");
            retryable(Code::Unavailable, message, RETRY_OVERLOADED)
        }
        StoreError::Database(_) | StoreError::Corrupt(_) | StoreError::Migrate(_) => {
            tracing::error!(%request_id, error = %err, "internal error");
            Status::internal(format!("internal error (request id {request_id})"))
        }
        StoreError::Shared(shared) => store_status(shared),
        // The same answer the next call with the erased user's token gets.
        StoreError::UserErased => Status::unauthenticated("this account has been deleted"),
    }
}

/// A status that says when to try again: `RetryInfo` for clients that read the details, and
/// `grpc-retry-pushback-ms` for gRPC's built-in retries (docs/service-config.json).
fn retryable(code: Code, message: String, retry: Duration) -> Status {
    let mut status = Status::with_error_details(code, message, ErrorDetails::with_retry_info(Some(retry)));
    let pushback = retry.as_millis().to_string().parse().expect("digits are a valid header value");
    status.metadata_mut().insert("grpc-retry-pushback-ms", pushback);
    status
}

/// Store errors reach the client through the same mapping, so handlers can use `?`.
impl From<StoreError> for Status {
    fn from(err: StoreError) -> Status {
        ApiError::Store(err).into()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
