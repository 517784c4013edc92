//! The one mapping from service errors to gRPC statuses. Internal details are logged with a
//! request id and never sent to the client.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use uuid::Uuid;

use crate::domain::Violation;
use crate::store::StoreError;

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
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn invalid(violations: Vec<Violation>) -> ApiError {
        let message = match violations.as_slice() {
            [one] => format!("{}: {}", one.field, one.description),
            many => format!("{} invalid fields; see the BadRequest details", many.len()),
        };
        ApiError::InvalidArgument { message, violations }
    }

    pub fn invalid_one(violation: Violation) -> ApiError {
        ApiError::invalid(vec![violation])
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        match err {
            ApiError::InvalidArgument { message, violations } => {
                let mut details = ErrorDetails::new();
                for v in &violations {
                    details.add_bad_request_violation(v.field.clone(), format!("{} ({})", v.description, v.reason));
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::Unauthenticated => Status::unauthenticated("missing or invalid bearer token"),
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::Store(e) if e.is_unavailable() => {
                let request_id = Uuid::new_v4();
                tracing::warn!(%request_id, error = %e, "database unavailable");
                Status::unavailable(format!("the database is unavailable; retry later (request id {request_id})"))
            }
            ApiError::Store(e) => {
                let request_id = Uuid::new_v4();
                tracing::error!(%request_id, error = %e, "internal error");
                Status::internal(format!("internal error (request id {request_id})"))
            }
        }
    }
}

/// Store errors reach the client through the same mapping, so handlers can use `?`.
impl From<StoreError> for Status {
    fn from(err: StoreError) -> Status {
        ApiError::Store(err).into()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
