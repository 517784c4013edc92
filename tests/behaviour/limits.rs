//! The limits on what one client may hold: HTTP/2 streams per connection, a deadline on
//! every call, streams per token, a drain deadline on shutdown, and file descriptors.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coachfit::proto::v1 as pb;
use h2::client::SendRequest;
use pb::stream_entries_response::Kind;
use tokio::net::TcpStream;
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::*;
use crate::each_backend;

each_backend!(a_token_holds_at_most_its_streams_and_a_closed_stream_frees_a_slot,);

const PATIENCE: Duration = Duration::from_secs(30);

async fn open_stream(
    server: &TestServer,
    token: &str,
) -> Result<tonic::Streaming<pb::StreamEntriesResponse>, tonic::Status> {
    let request = pb::StreamEntriesRequest { user_ids: vec![], after_position: None };
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
    let mut child = KillOnDrop(
        Command::new("prlimit")
            .args(["--nofile=64:64", env!("CARGO_BIN_EXE_coachfit"), "serve", "--listen", "127.0.0.1:0"])
            .env("COACHFIT_DATABASE_URL", &db_url)
            .env("RUST_LOG", "warn,coachfit=info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn coachfit serve under prlimit"),
    );
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server log line").unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let (log_tx, log_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(|line| drop(log_tx.send(line))));

    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(std::net::TcpStream::connect(&addr).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks(child.0.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(child.0.id()) - before;
    assert!(used < 50, "{used} ticks of CPU in 2 s while out of descriptors: the accept loop spins");
    let logged: Vec<String> = log_rx.try_iter().collect();
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

/// A child process that is killed when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
