//! Where imported batches go: straight into the store, checked and answered as
//! IngestService would (`--user-id`), or to a running server with the user's device token,
//! retried as the app retries (docs/CLIENTS.md).

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use chrono_tz::Tz;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

use crate::api::bearer::Bearer;
use crate::api::ingest::item_results;
use crate::api::items;
use crate::domain::validate::Context;
use crate::proto::v1 as pb;
use crate::proto::v1::ingest_service_client::IngestServiceClient;
use crate::store::Store;

/// One IngestService request.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    Steps(pb::IngestStepsRequest),
    Sleep(pb::IngestSleepRequest),
    Workouts(pb::IngestWorkoutsRequest),
    BodyMetrics(pb::IngestBodyMetricsRequest),
}

/// Takes batches and answers each as IngestService does.
pub trait Sink {
    fn send(&mut self, batch: Batch) -> impl Future<Output = anyhow::Result<pb::IngestResponse>>;
}

/// Into the store, as the user's own reports (author `actor`).
pub struct StoreSink<S> {
    pub store: S,
    pub user_id: String,
    pub actor: String,
    pub zone: Tz,
}

impl<S: Store> Sink for StoreSink<S> {
    async fn send(&mut self, batch: Batch) -> anyhow::Result<pb::IngestResponse> {
        let ctx = Context { now: Utc::now(), zone: Some(self.zone) };
        let checked = match &batch {
            Batch::Steps(r) => items::steps_request(ctx, r),
            Batch::Sleep(r) => items::sleep_request(ctx, r),
            Batch::Workouts(r) => items::workouts_request(ctx, r),
            Batch::BodyMetrics(r) => items::body_metrics_request(ctx, r),
        };
        let valid = items::valid_events(&checked);
        let outcomes = self.store.append(&self.user_id, &self.actor, valid).await?;
        Ok(item_results(checked, outcomes))
    }
}

/// Attempts of one batch the server could not take (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, or
/// no answer within 30 s),
/// waiting 2, 4, 8, 16 s between them (or longer, when the server says so).
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// Waits the server asks for (a device sending faster than it may), which do not count as
/// attempts: the import sends years at once, the rate limit paces it.
const MAX_PACED_WAITS: u32 = 10_000;

/// To a server, with a device token.
pub struct ServerSink {
    client: IngestServiceClient<InterceptedService<Channel, Bearer>>,
}

impl ServerSink {
    pub async fn connect(address: &str, device_token: &str) -> anyhow::Result<ServerSink> {
        let uri = if address.contains("://") { address.to_string() } else { format!("http://{address}") };
        let channel = Channel::from_shared(uri)?.timeout(Duration::from_secs(30)).connect().await?;
        Ok(ServerSink { client: IngestServiceClient::with_interceptor(channel, Bearer::new(device_token)) })
    }

    async fn call(&mut self, batch: &Batch) -> Result<pb::IngestResponse, tonic::Status> {
        let client = &mut self.client;
        let answer = match batch.clone() {
            Batch::Steps(r) => client.ingest_steps(r).await,
            Batch::Sleep(r) => client.ingest_sleep(r).await,
            Batch::Workouts(r) => client.ingest_workouts(r).await,
            Batch::BodyMetrics(r) => client.ingest_body_metrics(r).await,
        };
        answer.map(tonic::Response::into_inner)
    }
}

impl Sink for ServerSink {
    async fn send(&mut self, batch: Batch) -> anyhow::Result<pb::IngestResponse> {
        let (mut attempts, mut paced, mut backoff) = (0, 0, FIRST_BACKOFF);
        loop {
            let status = match self.call(&batch).await {
                Ok(response) => return Ok(response),
                Err(status) => status,
            };
            let asked = status.get_details_retry_info().and_then(|info| info.retry_delay);
            let wait = match (status.code(), asked) {
                (Code::ResourceExhausted, Some(delay)) if paced < MAX_PACED_WAITS => {
                    paced += 1;
                    delay
                }
                // `Cancelled`: this client's own 30 s timeout.
                (Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled, _) if attempts + 1 < ATTEMPTS => {
                    attempts += 1;
                    let wait = asked.unwrap_or_default().max(backoff);
                    backoff *= 2;
                    wait
                }
                _ => anyhow::bail!(
                    "the server refused a batch: {:?}: {} (the import can be run again: what was stored is a duplicate)",
                    status.code(),
                    status.message()
                ),
            };
            tracing::debug!(code = ?status.code(), wait_ms = wait.as_millis() as u64, "retrying a batch");
            tokio::time::sleep(wait).await;
        }
    }
}
