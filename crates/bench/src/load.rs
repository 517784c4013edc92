//! Load from real gRPC clients over loopback: batch ingest, single-item ingest and coach
//! reads against health checks, and the StreamEntries fan-out (native gRPC, or gRPC-Web as browsers).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use hdrhistogram::Histogram;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use coachfit::api::bearer::Bearer;
use coachfit::proto::v1 as pb;
use coachfit::proto::v1::entry_service_client::EntryServiceClient;
use coachfit::proto::v1::ingest_service_client::IngestServiceClient;

pub async fn connect(uri: &str) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(uri.to_string())?.connect().await?)
}

fn ingest_client(channel: &Channel, token: &str) -> IngestServiceClient<InterceptedService<Channel, Bearer>> {
    IngestServiceClient::new(InterceptedService::new(channel.clone(), Bearer::new(token)))
}

/// The `n`-th day of a user's bench history (all in the past).
pub fn bench_day(n: usize) -> NaiveDate {
    NaiveDate::from_ymd_opt(2001, 1, 1).expect("valid date") + chrono::Duration::days(n as i64 % 9_000)
}

fn sample(day: NaiveDate, total_steps: u32, observed_at_us: i64) -> pb::StepsSample {
    let at = Utc.timestamp_micros(observed_at_us).single().expect("valid instant");
    pb::StepsSample {
        date: day.to_string(),
        total_steps,
        observed_at: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: at.timestamp_subsec_nanos() as i32,
        }),
        source_devices: vec!["bench".into()],
        idempotency_key: String::new(),
    }
}

fn observed_at_us(day: NaiveDate, sequence: u64) -> i64 {
    let midnight = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight")).timestamp_micros();
    midnight + 3_600_000_000 + sequence as i64
}

/// Full batches of 400 new step totals, one user per request, `clients` requests in flight.
/// Returns (events accepted, elapsed).
pub async fn batch_ingest(uri: &str, tokens: &[String], clients: usize) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let mut lanes = Vec::new();
    for lane in 0..clients {
        let channel = connect(uri).await?;
        let tokens: Vec<String> = tokens.iter().skip(lane).step_by(clients).cloned().collect();
        lanes.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            for token in tokens {
                let samples =
                    (0..400).map(|d| sample(bench_day(d), 1_000 + d as u32, observed_at_us(bench_day(d), 0))).collect();
                let request = pb::IngestStepsRequest { samples, time_zone: String::new() };
                accepted +=
                    u64::from(ingest_client(&channel, &token).ingest_steps(request).await?.into_inner().accepted);
            }
            anyhow::Ok(accepted)
        }));
    }
    let mut accepted = 0;
    for lane in lanes {
        accepted += lane.await??;
    }
    Ok((accepted, started.elapsed()))
}

/// Requests per second of `clients` closed loops running `call` for `duration`.
async fn closed_loop<F, Fut>(clients: usize, duration: Duration, call: F) -> anyhow::Result<f64>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let deadline = started + duration;
    let mut lanes = Vec::new();
    for lane in 0..clients {
        let call = call.clone();
        lanes.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                call(lane, done).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut done = 0;
    for lane in lanes {
        done += lane.await??;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// Single-item `IngestSteps` (each a new event and entry change), one user per client.
pub async fn single_ingest(uri: &str, tokens: &[String], duration: Duration) -> anyhow::Result<f64> {
    let channels = connections(uri, tokens.len()).await?;
    let clients: Vec<_> =
        tokens.iter().enumerate().map(|(i, t)| ingest_client(&channels[i % channels.len()], t)).collect();
    let clients = Arc::new(clients);
    closed_loop(tokens.len(), duration, move |lane, n| {
        let mut client = clients[lane].clone();
        async move {
            let day = bench_day(n as usize);
            let request = pb::IngestStepsRequest {
                samples: vec![sample(day, n as u32, observed_at_us(day, n + 1))],
                time_zone: String::new(),
            };
            client.ingest_steps(request).await?;
            Ok(())
        }
    })
    .await
}

/// A coach's `GetEntry` of a client's first bench day (each client's, in turn), the same
/// number of clients in closed loops: a read the access log records. Returns calls/s.
pub async fn coach_reads(uri: &str, coach_token: &str, users: &[String], duration: Duration) -> anyhow::Result<f64> {
    let channels = connections(uri, users.len()).await?;
    let clients: Vec<_> = (0..users.len())
        .map(|i| {
            EntryServiceClient::new(InterceptedService::new(
                channels[i % channels.len()].clone(),
                Bearer::new(coach_token),
            ))
        })
        .collect();
    let (clients, users) = (Arc::new(clients), Arc::new(users.to_vec()));
    closed_loop(users.len(), duration, move |lane, _| {
        let mut client = clients[lane].clone();
        let request = pb::GetEntryRequest { user_id: users[lane].clone(), date: bench_day(0).to_string() };
        async move {
            client.get_entry(request).await?;
            Ok(())
        }
    })
    .await
}

/// `grpc.health.v1.Health/Check` at the same concurrency: the cost of an RPC.
pub async fn health_checks(uri: &str, clients: usize, duration: Duration) -> anyhow::Result<f64> {
    use tonic_health::pb::health_client::HealthClient;
    let channels = connections(uri, clients).await?;
    let clients_list: Vec<_> = (0..clients).map(|i| HealthClient::new(channels[i % channels.len()].clone())).collect();
    let clients_list = Arc::new(clients_list);
    closed_loop(clients, duration, move |lane, _| {
        let mut client = clients_list[lane].clone();
        async move {
            client.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await?;
            Ok(())
        }
    })
    .await
}

/// One HTTP/2 connection per 16 clients, as separate app instances would have.
async fn connections(uri: &str, clients: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for _ in 0..clients.div_ceil(16) {
        channels.push(connect(uri).await?);
    }
    Ok(channels)
}

/// What the fan-out measured.
pub struct Fanout {
    pub subscribers: usize,
    /// Acknowledged writes, each an entry change every subscriber must get.
    pub changes: u64,
    /// Writes the server refused (UNAVAILABLE when overloaded).
    pub write_errors: u64,
    pub missing: u64,
    pub latency_ms: Histogram<u64>,
}

/// How the fan-out's subscribers reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Native gRPC: 100 subscribers share each HTTP/2 connection.
    Grpc,
    /// gRPC-Web over HTTP/1.1, as a browser's dashboard: a connection per subscriber.
    GrpcWeb,
}

/// What one fan-out runs.
pub struct FanoutPlan<'a> {
    pub writers: &'a [(String, String)],
    pub subscribers: usize,
    pub wire: Wire,
    /// Entry changes a second the writers offer, for `duration`.
    pub rate: u64,
    pub duration: Duration,
    /// The bench day the writers start at (each fan-out of a run writes days of its own).
    pub first_day: usize,
}

/// `subscribers` coach dashboards stream while the writers change `rate` entries a second
/// for `duration`. Latency runs from a write's acknowledgement to each delivery (zero when
/// the update arrives before the writer's ack).
pub async fn fanout(uri: &str, coach_token: &str, plan: FanoutPlan<'_>) -> anyhow::Result<Fanout> {
    let FanoutPlan { writers, subscribers, wire, rate, duration, first_day } = plan;
    let acks: Arc<RwLock<HashMap<String, Instant>>> = Arc::default();
    let expected = Arc::new(AtomicU64::new(u64::MAX));
    let ready = Arc::new(AtomicU64::new(0));

    let mut readers = Vec::new();
    let request = pb::StreamEntriesRequest { user_ids: vec![], after_position: None, include_clients: false };
    match wire {
        Wire::Grpc => {
            for chunk in 0..subscribers.div_ceil(100) {
                let channel = connect(uri).await?;
                for _ in 0..100.min(subscribers - chunk * 100) {
                    let mut client =
                        EntryServiceClient::new(InterceptedService::new(channel.clone(), Bearer::new(coach_token)));
                    let request = request.clone();
                    let stream = async move { client.stream_entries(request).await.map(|r| r.into_inner()) };
                    readers.push(tokio::spawn(subscriber(stream, acks.clone(), expected.clone(), ready.clone())));
                }
            }
        }
        Wire::GrpcWeb => {
            let http1 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
            let grpc_web = tower::ServiceBuilder::new().layer(tonic_web::GrpcWebClientLayer::new()).service(http1);
            let origin: tonic::transport::Uri = uri.parse()?;
            for _ in 0..subscribers {
                let service = InterceptedService::new(grpc_web.clone(), Bearer::new(coach_token));
                let mut client = EntryServiceClient::with_origin(service, origin.clone());
                let request = request.clone();
                let stream = async move { client.stream_entries(request).await.map(|r| r.into_inner()) };
                readers.push(tokio::spawn(subscriber(stream, acks.clone(), expected.clone(), ready.clone())));
            }
        }
    }
    while ready.load(Ordering::Relaxed) < subscribers as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let period = Duration::from_secs_f64(writers.len() as f64 / rate as f64);
    let channel = connect(uri).await?;
    let mut lanes = Vec::new();
    for (w, (user_id, token)) in writers.iter().enumerate() {
        let client = ingest_client(&channel, token);
        let (acks, user_id) = (acks.clone(), user_id.clone());
        lanes.push(tokio::spawn(async move {
            // Open loop: a change is sent every period whether or not earlier ones were
            // acknowledged, so the rate holds even when commits are slow.
            let mut ticker = tokio::time::interval(period);
            let deadline = Instant::now() + duration;
            let mut in_flight = Vec::new();
            while Instant::now() < deadline {
                ticker.tick().await;
                let day = bench_day(first_day + in_flight.len());
                let request = pb::IngestStepsRequest {
                    samples: vec![sample(day, in_flight.len() as u32, observed_at_us(day, w as u64))],
                    time_zone: String::new(),
                };
                let (mut client, acks, key) = (client.clone(), acks.clone(), format!("{user_id}:{day}"));
                in_flight.push(tokio::spawn(async move {
                    // An overloaded server answers UNAVAILABLE: counted, not fatal.
                    let acked = client.ingest_steps(request).await.is_ok();
                    if acked {
                        acks.write().expect("acks lock").insert(key, Instant::now());
                    }
                    acked
                }));
            }
            let (mut acked, mut failed) = (0u64, 0u64);
            for request in in_flight {
                match request.await? {
                    true => acked += 1,
                    false => failed += 1,
                }
            }
            anyhow::Ok((acked, failed))
        }));
    }
    let (mut changes, mut write_errors) = (0, 0);
    for lane in lanes {
        let (acked, failed) = lane.await??;
        changes += acked;
        write_errors += failed;
    }
    expected.store(changes, Ordering::Relaxed);

    let mut latency_ms = Histogram::<u64>::new(3)?;
    let mut missing = 0;
    for reader in readers {
        let (received, histogram) = reader.await??;
        missing += changes.saturating_sub(received);
        latency_ms.add(histogram)?;
    }
    Ok(Fanout { subscribers, changes, write_errors, missing, latency_ms })
}

/// How long a subscriber waits for the last changes before counting them missing.
const DRAIN_PATIENCE: Duration = Duration::from_secs(60);

/// Follows the stream `open` opens (over either wire) until every expected change came.
async fn subscriber(
    open: impl Future<Output = Result<tonic::Streaming<pb::StreamEntriesResponse>, tonic::Status>>,
    acks: Arc<RwLock<HashMap<String, Instant>>>,
    expected: Arc<AtomicU64>,
    ready: Arc<AtomicU64>,
) -> anyhow::Result<(u64, Histogram<u64>)> {
    use pb::stream_entries_response::Kind;
    let mut stream = open.await?;
    stream.message().await?; // the first heartbeat: subscribed
    ready.fetch_add(1, Ordering::Relaxed);
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut received = 0u64;
    let mut last_progress = Instant::now();
    while received < expected.load(Ordering::Relaxed) && last_progress.elapsed() < DRAIN_PATIENCE {
        let Ok(message) = tokio::time::timeout(Duration::from_secs(1), stream.message()).await else { continue };
        let Some(Kind::Update(update)) = message?.and_then(|m| m.kind) else { continue };
        let now = Instant::now();
        last_progress = now;
        received += 1;
        let entry = update.entry.unwrap_or_default();
        let key = format!("{}:{}", entry.user_id, entry.date);
        let acked = acks.read().expect("acks lock").get(&key).copied();
        let latency = acked.map_or(Duration::ZERO, |acked| now.saturating_duration_since(acked));
        histogram.record(latency.as_millis() as u64)?;
    }
    Ok((received, histogram))
}
