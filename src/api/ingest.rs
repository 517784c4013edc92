//! IngestService: batches from the mobile app. Each item is validated on its own; valid
//! items are stored even when others are rejected.

use chrono::Utc;
use tonic::{Request, Response, Status};

use super::auth::Principal;
use super::items::{self, CheckedItem};
use super::status::{ApiError, ApiResult};
use super::AppState;
use crate::domain::validate::{self, Context};
use crate::domain::{reason, Violation};
use crate::metrics::INGEST_ITEMS;
use crate::proto::v1 as pb;
use crate::proto::v1::ingest_service_server::IngestService;
use crate::store::{AppendOutcome, Store};

pub struct IngestApi<S> {
    state: AppState<S>,
}

impl<S> IngestApi<S> {
    pub fn new(state: AppState<S>) -> Self {
        IngestApi { state }
    }
}

impl<S: Store> IngestApi<S> {
    /// Authenticates the device and resolves the request's time zone.
    async fn begin<T>(
        &self,
        request: &Request<T>,
        rpc: &str,
        zone: &str,
        zone_needed: bool,
    ) -> ApiResult<(Principal, String, Context)> {
        let principal = self.state.auth.principal(request, rpc).await?;
        let user_id = match &principal {
            Principal::Device { user_id, .. } => user_id.clone(),
            _ => return Err(ApiError::PermissionDenied("ingestion needs a device token".into())),
        };
        let zone = validate::time_zone(zone, zone_needed).map_err(ApiError::invalid_one)?;
        Ok((principal, user_id, Context { now: Utc::now(), zone }))
    }

    /// Stores the valid items and reports on every item, in input order; `kind` labels the
    /// items in the metrics.
    async fn store(
        &self,
        principal: &Principal,
        user_id: &str,
        kind: &'static str,
        checked: Vec<CheckedItem>,
    ) -> ApiResult<pb::IngestResponse> {
        let valid = items::valid_events(&checked);
        // Only what reaches the writer counts against the device's rate.
        if let Principal::Device { device_id, .. } = principal {
            if let Err(wait) = self.state.device_rate.take(device_id, valid.len()) {
                crate::metrics::refused("device_rate");
                let message =
                    format!("this device is sending faster than it may; retry in {} ms", wait.as_millis().max(1));
                return Err(ApiError::ResourceExhausted { message, retry: Some(wait) });
            }
        }
        let outcomes = self.state.store.append(user_id, &principal.actor(), valid).await?;
        let response = item_results(checked, outcomes);
        for result in &response.results {
            let status = match pb::ItemStatus::try_from(result.status) {
                Ok(pb::ItemStatus::Accepted) => "accepted",
                Ok(pb::ItemStatus::Duplicate) => "duplicate",
                _ => "rejected",
            };
            let reason = result.violations.first().map(|v| v.reason.clone()).unwrap_or_default();
            metrics::counter!(INGEST_ITEMS, "kind" => kind, "status" => status, "reason" => reason).increment(1);
        }
        Ok(response)
    }
}

/// The answer to a batch: each item's result in input order, from its check and, for a
/// valid item, its outcome in `outcomes` (one per valid item, in order).
pub fn item_results(checked: Vec<CheckedItem>, outcomes: Vec<AppendOutcome>) -> pb::IngestResponse {
    let mut outcomes = outcomes.into_iter();
    let mut response = pb::IngestResponse::default();
    for (index, item) in checked.into_iter().enumerate() {
        let mut result = pb::ItemResult { index: index as u32, ..Default::default() };
        match item.result {
            Err(violations) => {
                result.status = pb::ItemStatus::Rejected.into();
                result.violations = violations.into_iter().map(field_violation).collect();
            }
            Ok(_) => match outcomes.next().expect("one outcome per stored item") {
                AppendOutcome::Accepted(id) => {
                    result.status = pb::ItemStatus::Accepted.into();
                    result.event_id = id.to_string();
                }
                AppendOutcome::Duplicate(id) => {
                    result.status = pb::ItemStatus::Duplicate.into();
                    result.event_id = id.to_string();
                }
                AppendOutcome::DayFull { limit } => {
                    result.status = pb::ItemStatus::Rejected.into();
                    result.violations.push(pb::FieldViolation {
                        field: item.path.clone(),
                        description: day_full(limit),
                        reason: reason::DAY_FULL.into(),
                    });
                }
                AppendOutcome::KeyReused => {
                    result.status = pb::ItemStatus::Rejected.into();
                    result.violations.push(pb::FieldViolation {
                        field: format!("{}.idempotency_key", item.path),
                        description: "this key was already used for a different report".into(),
                        reason: reason::IDEMPOTENCY_KEY_REUSED.into(),
                    });
                }
            },
        }
        match pb::ItemStatus::try_from(result.status) {
            Ok(pb::ItemStatus::Accepted) => response.accepted += 1,
            Ok(pb::ItemStatus::Duplicate) => response.duplicates += 1,
            _ => response.rejected += 1,
        }
        response.results.push(result);
    }
    response
}

fn field_violation(v: Violation) -> pb::FieldViolation {
    pb::FieldViolation { field: v.field, description: v.description, reason: v.reason.to_string() }
}

/// Why an item was refused because its day is full.
pub fn day_full(limit: usize) -> String {
    format!("its day already holds {limit} events, the most one day may hold")
}

fn check_size(field: &str, len: usize, min: usize, max: usize) -> ApiResult<()> {
    validate::batch_size(field, len, min, max).map_err(ApiError::invalid_one)
}

#[tonic::async_trait]
impl<S: Store> IngestService for IngestApi<S> {
    async fn ingest_steps(
        &self,
        request: Request<pb::IngestStepsRequest>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let (principal, user_id, ctx) =
            self.begin(&request, "IngestSteps", &request.get_ref().time_zone, false).await?;
        let r = request.get_ref();
        check_size("samples", r.samples.len(), 1, 400)?;
        let checked = items::steps_request(ctx, r);
        Ok(Response::new(self.store(&principal, &user_id, "steps", checked).await?))
    }

    async fn ingest_sleep(
        &self,
        request: Request<pb::IngestSleepRequest>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let r = request.get_ref();
        let zone_needed = r.sessions.iter().any(|s| s.date.is_empty());
        let (principal, user_id, ctx) = self.begin(&request, "IngestSleep", &r.time_zone, zone_needed).await?;
        check_size("sessions", r.sessions.len(), 1, 400)?;
        let checked = items::sleep_request(ctx, r);
        Ok(Response::new(self.store(&principal, &user_id, "sleep", checked).await?))
    }

    async fn ingest_workouts(
        &self,
        request: Request<pb::IngestWorkoutsRequest>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let r = request.get_ref();
        let (principal, user_id, ctx) =
            self.begin(&request, "IngestWorkouts", &r.time_zone, !r.workouts.is_empty()).await?;
        check_size("workouts", r.workouts.len(), 0, 100)?;
        check_size("deleted_workout_ids", r.deleted_workout_ids.len(), 0, 100)?;
        if r.workouts.is_empty() && r.deleted_workout_ids.is_empty() {
            return Err(ApiError::invalid_one(Violation::new(
                "workouts",
                reason::REQUIRED,
                "send at least one workout or deleted_workout_id",
            ))
            .into());
        }
        let checked = items::workouts_request(ctx, r);
        Ok(Response::new(self.store(&principal, &user_id, "workouts", checked).await?))
    }

    async fn ingest_body_metrics(
        &self,
        request: Request<pb::IngestBodyMetricsRequest>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let r = request.get_ref();
        let (principal, user_id, ctx) = self.begin(&request, "IngestBodyMetrics", &r.time_zone, true).await?;
        check_size("metrics", r.metrics.len(), 1, 50)?;
        let checked = items::body_metrics_request(ctx, r);
        Ok(Response::new(self.store(&principal, &user_id, "body_metrics", checked).await?))
    }
}
