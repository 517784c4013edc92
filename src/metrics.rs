//! Prometheus metrics (`serve --metrics-listen`). Every figure is recorded where it happens
//! through the `metrics` facade, which costs next to nothing while no exporter is installed
//! (metrics off, the default). The names are here, with what each tells (docs/OPERATIONS.md
//! says what to alert on).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::net::TcpListener;

/// Calls answered, by `method` (`/coachfit.v1.IngestService/IngestSteps`; `unknown` for a
/// path no service has) and `code` (`Ok`, `InvalidArgument`, …; a stream: the code it
/// opened with).
pub const RPC_REQUESTS: &str = "coachfit_rpc_requests_total";
/// Time to answer a call (a stream: to open it), by `method`.
pub const RPC_DURATION: &str = "coachfit_rpc_duration_seconds";
/// Ingested items, by `kind` (steps, sleep, workouts, body_metrics), `status` (accepted,
/// duplicate, rejected) and, for a rejected one, `reason` (OUT_OF_RANGE, DAY_FULL, …).
pub const INGEST_ITEMS: &str = "coachfit_ingest_items_total";
/// Requests written per group commit (one transaction).
pub const GROUP_COMMIT_REQUESTS: &str = "coachfit_group_commit_requests";
/// Appends waiting for a writer lane on this instance.
pub const WRITE_QUEUE_DEPTH: &str = "coachfit_write_queue_depth";
/// The last feed position this instance has published to its streams.
pub const FEED_POSITION: &str = "coachfit_feed_published_position";
/// PostgreSQL: feed positions committed but not yet published by this instance's relay.
pub const RELAY_LAG: &str = "coachfit_feed_relay_lag_positions";
/// `StreamEntries` open on this instance.
pub const OPEN_STREAMS: &str = "coachfit_open_streams";
/// Database connections by `pool` and `state` (busy, idle).
pub const POOL_CONNECTIONS: &str = "coachfit_db_pool_connections";
/// Requests refused to protect the service, by `reason`: `device_rate` (a device sends too
/// fast), `pairing_lockout`, `streams_per_token`, `write_queue_full` (shed).
pub const REFUSED: &str = "coachfit_refused_total";

/// Access-log records not stored after every retry (docs/PRIVACY.md): should stay 0.
pub const ACCESS_LOG_LOST: &str = "coachfit_access_log_lost_total";

/// Latency buckets, in seconds: from a cached read to the request timeout.
const SECONDS_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0];
/// Group sizes: a lane takes at most 64 requests.
const GROUP_BUCKETS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
/// How often histograms are compacted (the exporter's upkeep).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the exporter as the process's recorder and serves `GET /metrics` on `listen`;
/// returns the address it listens on.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(GROUP_COMMIT_REQUESTS.into()), &GROUP_BUCKETS)?
        .install_recorder()
        .context("installing the metrics recorder")?;
    describe();
    let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen} for metrics"))?;
    let local = listener.local_addr()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_EVERY).await;
            upkeep.run_upkeep();
        }
    });
    let render = move || {
        let handle = handle.clone();
        async move { handle.render() }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(render));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    });
    Ok(local)
}

fn describe() {
    describe_counter!(RPC_REQUESTS, "Calls answered, by method and gRPC code");
    describe_histogram!(RPC_DURATION, Unit::Seconds, "Time to answer a call (a stream: to open it)");
    describe_counter!(INGEST_ITEMS, "Ingested items by kind, status and rejection reason");
    describe_histogram!(GROUP_COMMIT_REQUESTS, Unit::Count, "Requests written per group commit");
    describe_gauge!(WRITE_QUEUE_DEPTH, Unit::Count, "Appends waiting for a writer lane");
    describe_gauge!(FEED_POSITION, "The last feed position published to this instance's streams");
    describe_gauge!(RELAY_LAG, Unit::Count, "Feed positions committed but not yet published here");
    describe_gauge!(OPEN_STREAMS, Unit::Count, "StreamEntries open on this instance");
    describe_gauge!(POOL_CONNECTIONS, Unit::Count, "Database connections by pool and state");
    describe_counter!(REFUSED, "Requests refused to protect the service, by reason");
    describe_counter!(ACCESS_LOG_LOST, "Access-log records not stored after every retry");
}

/// Counts a refusal.
pub fn refused(reason: &'static str) {
    metrics::counter!(REFUSED, "reason" => reason).increment(1);
}
