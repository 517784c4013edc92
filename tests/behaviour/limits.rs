//! The limits on what one client may hold: HTTP/2 streams per connection, a deadline on
//! every call, streams per token, a drain deadline on shutdown, and file descriptors.

use std::process::Command;
use std::time::{Duration, Instant};

use coachfit::proto::v1 as pb;
use h2::client::SendRequest;
use pb::stream_entries_response::Kind;
use tokio::net::TcpStream;
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::*;
use crate::each_backend;

each_backend!(
    a_token_holds_at_most_its_streams_and_a_closed_stream_frees_a_slot,
    a_device_ingesting_faster_than_its_rate_is_told_when_to_retry_and_loses_nothing,
    a_full_day_refuses_new_events_but_still_answers_duplicates,
    a_stream_names_at_most_its_users,
);

const PATIENCE: Duration = Duration::from_secs(30);

async fn open_stream(
    server: &TestServer,
    token: &str,
) -> Result<tonic::Streaming<pb::StreamEntriesResponse>, tonic::Status> {
    let request = pb::StreamEntriesRequest { user_ids: vec![], after_position: None, include_clients: false };
    let mut stream = server.entries(token).stream_entries(request).await?.into_inner();
    assert!(matches!(stream.message().await?.and_then(|m| m.kind), Some(Kind::Heartbeat(_))));
    Ok(stream)
}

async fn a_token_holds_at_most_its_streams_and_a_closed_stream_frees_a_slot(backend: Backend) {
    let limits = Limits { streams_per_principal: 2, ..Limits::default() };
    let server = TestServer::start_with_limits(backend, limits).await;
    let first = open_stream(&server, &server.coach.token).await.unwrap();
    let _second = open_stream(&server, &server.coach.token).await.unwrap();
    let refused = open_stream(&server, &server.coach.token).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.get_details_retry_info().and_then(|r| r.retry_delay).is_some(), "says when to retry");
    // Another token has slots of its own.
    let _device = open_stream(&server, &server.client.token).await.unwrap();

    drop(first);
    let reopened = async {
        loop {
            match open_stream(&server, &server.coach.token).await {
                Ok(stream) => return stream,
                Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(PATIENCE, reopened).await.expect("a closed stream frees its slot");
}

async fn a_device_ingesting_faster_than_its_rate_is_told_when_to_retry_and_loses_nothing(backend: Backend) {
    let limits = Limits { device_burst_items: 10, device_items_per_second: 1, ..Limits::default() };
    let server = TestServer::start_with_limits(backend, limits).await;
    let mut ingest = server.ingest(&server.client.token);
    let days = |from: u32, n: u32| (from..from + n).map(|d| steps(&format!("2026-03-{d:02}"), 1_000 + d, 23)).collect();
    let first = ingest.ingest_steps(steps_request(days(1, 8))).await.unwrap().into_inner();
    assert_eq!(first.accepted, 8);

    // Items that fail validation never reach the writer and cost nothing.
    let invalid = vec![pb::StepsSample { total_steps: 999_999, ..steps("2026-03-20", 0, 23) }; 5];
    assert_eq!(ingest.ingest_steps(steps_request(invalid)).await.unwrap().into_inner().rejected, 5);

    let refused = ingest.ingest_steps(steps_request(days(9, 5))).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let wait = refused.get_details_retry_info().and_then(|r| r.retry_delay).expect("RetryInfo");
    assert!(wait > Duration::from_millis(2_500) && wait <= Duration::from_secs(3), "3 items short at 1/s: {wait:?}");
    let pushback = refused.metadata().get("grpc-retry-pushback-ms").expect("pushback for gRPC's own retries");
    assert_eq!(pushback.to_str().unwrap(), wait.as_millis().to_string());
    let missing = pb::GetEntryRequest { user_id: String::new(), date: "2026-03-09".into() };
    let missing = server.entries(&server.client.token).get_entry(missing).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "nothing of a refused request is stored");

    // Another device has its own bucket.
    let other = server.new_client(&server.coach.id).await;
    let theirs = server.ingest(&other.token).ingest_steps(steps_request(days(1, 10))).await.unwrap().into_inner();
    assert_eq!(theirs.accepted, 10);

    // Retried after the delay, the same request is stored whole.
    tokio::time::sleep(wait).await;
    assert_eq!(ingest.ingest_steps(steps_request(days(9, 5))).await.unwrap().into_inner().accepted, 5);
}

/// `n` step totals of one day, each observed a second after the last.
fn day_of_totals(date: &str, from: u32, n: u32) -> Vec<pb::StepsSample> {
    let start = utc(date, 0);
    (from..from + n)
        .map(|i| pb::StepsSample {
            observed_at: ts(start + chrono::Duration::seconds(i64::from(i))),
            ..steps(date, i, 0)
        })
        .collect()
}

async fn a_full_day_refuses_new_events_but_still_answers_duplicates(backend: Backend) {
    let full = 600;
    let server = TestServer::start_with_day_limit(backend, full as usize).await;
    let mut ingest = server.ingest(&server.client.token);
    let mut stored = 0;
    while stored + 400 <= full - 200 {
        let batch = day_of_totals("2026-03-02", stored, 400);
        assert_eq!(ingest.ingest_steps(steps_request(batch)).await.unwrap().into_inner().accepted, 400);
        stored += 400;
    }
    let room = full - stored;
    // `room` more fit on the day; the rest of the batch is refused, item by item, and
    // another day in the same batch is stored.
    let mut batch = day_of_totals("2026-03-02", stored, room + 50);
    batch.push(steps("2026-03-03", 777, 20));
    let response = ingest.ingest_steps(steps_request(batch)).await.unwrap().into_inner();
    assert_eq!((response.accepted, response.rejected), (room + 1, 50));
    let refused = &response.results[room as usize];
    assert_eq!(refused.violations[0].field, format!("samples[{room}]"));
    assert_eq!(refused.violations[0].reason, "DAY_FULL");
    assert!(refused.violations[0].description.contains(&full.to_string()), "names the limit");
    assert_eq!(server.entry("2026-03-03").await.steps, Some(777));
    assert_eq!(server.entry("2026-03-02").await.steps, Some(full - 1), "the last total stored is the latest");

    // A resend of a stored report is still a duplicate, not refused.
    let again = ingest.ingest_steps(steps_request(day_of_totals("2026-03-02", 0, 1))).await.unwrap().into_inner();
    assert_eq!(again.duplicates, 1);
    // A single manual entry on the full day: RESOURCE_EXHAUSTED, and not worth retrying.
    let values = pb::ManualValues { weight_kg: Some(70.0), ..Default::default() };
    let manual = server.entries(&server.client.token).record_manual_entry(manual("", "2026-03-02", values)).await;
    let manual = manual.unwrap_err();
    assert_eq!(manual.code(), Code::ResourceExhausted, "{manual:?}");
    assert!(manual.get_details_retry_info().is_none(), "no RetryInfo: the day stays full");
    assert!(server.verify().await);
}

async fn a_stream_names_at_most_its_users(backend: Backend) {
    let server = TestServer::start_with_limits(backend, Limits { max_stream_users: 2, ..Limits::default() }).await;
    let other = server.new_client(&server.coach.id).await;
    let users = |n: usize| [server.client.id.clone(), other.id.clone(), "third".into()][..n].to_vec();
    let request = |n| pb::StreamEntriesRequest { user_ids: users(n), after_position: None, include_clients: false };
    let mut coach = server.entries(&server.coach.token);
    let refused = coach.stream_entries(request(3)).await.map(drop).unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(bad_request_fields(&refused), ["user_ids"]);
    assert!(coach.stream_entries(request(2)).await.is_ok());
}

/// A raw HTTP/2 connection to the server, to do what no well-behaved gRPC client does.
async fn raw_connection(server: &TestServer) -> SendRequest<bytes::Bytes> {
    let tcp = TcpStream::connect(server.uri().trim_start_matches("http://")).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    send.ready().await.unwrap()
}

/// Starts a GetEntry whose message never finishes arriving: a 100-byte message announced,
/// 10 bytes sent, the stream left open.
fn half_sent_request(send: &mut SendRequest<bytes::Bytes>, token: &str) -> h2::client::ResponseFuture {
    let request = http::Request::post("/coachfit.v1.EntryService/GetEntry")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let (response, mut body) = send.send_request(request, false).unwrap();
    let mut partial = vec![0u8, 0, 0, 0, 100];
    partial.extend_from_slice(&[0x0a; 10]);
    body.send_data(partial.into(), false).unwrap();
    // The body's sender is dropped without ending the stream: nothing more ever comes.
    std::mem::forget(body);
    response
}

fn grpc_status(headers: &http::HeaderMap) -> Option<&str> {
    headers.get("grpc-status").and_then(|v| v.to_str().ok())
}

/// The server tells a connection how many calls it may have open, and a call whose request
/// never finishes is answered DEADLINE_EXCEEDED at the request timeout, releasing it.
#[tokio::test]
async fn the_stream_limit_is_advertised_and_a_half_sent_request_meets_the_deadline() {
    let limits = Limits { max_concurrent_streams: 8, request_timeout: Duration::from_millis(500), ..Limits::default() };
    let server = TestServer::start_with_limits(Backend::Sqlite, limits).await;
    let mut send = raw_connection(&server).await;
    let started = Instant::now();
    let response = half_sent_request(&mut send, &server.client.token);
    let response = tokio::time::timeout(PATIENCE, response).await.expect("an answer").unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500), "not before the timeout");
    assert_eq!(grpc_status(response.headers()), Some("4"), "DEADLINE_EXCEEDED: {:?}", response.headers());
    assert_eq!(send.current_max_send_streams(), 8, "SETTINGS_MAX_CONCURRENT_STREAMS");
}

/// A client that holds a call open forever cannot hold up a shutdown beyond the drain
/// timeout: its connection is closed, and the server exits.
#[tokio::test]
async fn a_shutdown_closes_connections_still_busy_after_the_drain_timeout() {
    let limits = Limits {
        request_timeout: Duration::from_secs(600),
        drain_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let mut server = TestServer::start_with_limits(Backend::Sqlite, limits).await;
    let mut send = raw_connection(&server).await;
    let response = half_sent_request(&mut send, &server.client.token);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    tokio::time::timeout(PATIENCE, server.stop()).await.expect("the server exits after the drain timeout");
    assert!(started.elapsed() >= Duration::from_secs(1), "the busy call had the drain timeout to finish");
    let ended = tokio::time::timeout(PATIENCE, response).await.expect("the call ends");
    assert!(ended.is_err() || grpc_status(ended.as_ref().unwrap().headers()).is_some(), "{ended:?}");
}

/// CPU seconds (user + system) the process has used, from /proc (clock ticks of 10 ms).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// With its file descriptors used up by idle connections, `serve` logs the failed accepts
/// and backs off instead of spinning, and takes clients again once descriptors free up.
#[tokio::test]
async fn out_of_file_descriptors_the_server_backs_off_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("fd.db").display());
    // The hard limit is the soft one, so `serve` cannot raise it.
    let mut command = Command::new("prlimit");
    command
        .args(["--nofile=64:64", env!("CARGO_BIN_EXE_coachfit"), "serve", "--listen", "127.0.0.1:0"])
        .env("COACHFIT_DATABASE_URL", &db_url)
        .env("RUST_LOG", "warn,coachfit=info");
    let child = ChildServer::start(command).unwrap();
    let addr = child.addr.clone();

    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(std::net::TcpStream::connect(&addr).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks(child.pid());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(child.pid()) - before;
    assert!(used < 50, "{used} ticks of CPU in 2 s while out of descriptors: the accept loop spins");
    let logged: Vec<String> = child.log.try_iter().collect();
    assert!(logged.iter().any(|l| l.contains("cannot accept connections")), "{logged:?}");

    drop(idle);
    let recovered = async {
        loop {
            let attempt = async {
                let channel =
                    tonic::transport::Channel::from_shared(format!("http://{addr}")).ok()?.connect().await.ok()?;
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.ok()
            };
            if tokio::time::timeout(Duration::from_secs(2), attempt).await.ok().flatten().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(PATIENCE, recovered).await.expect("serves again once descriptors are free");
}
