//! `serve --metrics-listen`: the figures on `/metrics` move with the calls the test makes
//! (counts by method and code, items by status, histogram counts and buckets, the feed's
//! position, open streams, the pools), and every call carries a request id.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use coachfit::proto::v1 as pb;
use pb::stream_entries_response::Kind;
use tonic::transport::Channel;

use crate::common::*;

const ADMIN_TOKEN: &str = "metrics-test-admin-token-0123456789";
const INGEST_STEPS: &str = r#"method="/coachfit.v1.IngestService/IngestSteps""#;

/// `coachfit serve` with metrics on, and the address they are served at.
fn serve_with_metrics(dir: &Path) -> (ChildServer, String, String) {
    let db_url = format!("sqlite://{}", dir.join("metrics.db").display());
    let args = ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
    let server = serve_child_with(&db_url, &args, &[("COACHFIT_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let at = (0..100)
        .find_map(|_| {
            let line = server.log.recv_timeout(Duration::from_millis(100)).ok()?;
            Some(line.split("metrics_at=").nth(1)?.split_whitespace().next()?.to_string())
        })
        .expect("serve logs where its metrics are");
    (server, at, db_url)
}

/// The `/metrics` text.
fn scrape(at: &str) -> String {
    let mut connection = TcpStream::connect(at).unwrap();
    write!(connection, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    connection.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The sum of the samples of `name` whose labels include each of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let wanted = metric == name && labels.iter().all(|label| rest.contains(label));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

fn json(output: std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn the_metrics_move_with_the_calls_made() {
    let dir = tempfile::tempdir().unwrap();
    let (server, at, db_url) = serve_with_metrics(dir.path());
    let coach = json(coachfit(&db_url, &["admin", "create-coach", "--name", "Coach"]));
    let coach_id = coach["coach_id"].as_str().unwrap();
    let client = json(coachfit(&db_url, &["admin", "create-client", "--coach-id", coach_id]));
    let (device_token, coach_token) =
        (client["device_token"].as_str().unwrap(), coach["coach_token"].as_str().unwrap());
    let channel = Channel::from_shared(server.uri()).unwrap().connect().await.unwrap();
    let before = scrape(&at);
    assert!(before.contains(r#"coachfit_db_pool_connections{pool="readers""#), "{before}");

    // Two good days and a bad one, sent twice: 2 accepted, then 2 duplicates; 1 rejected each time.
    let mut ingest =
        pb::ingest_service_client::IngestServiceClient::with_interceptor(channel.clone(), Bearer::new(device_token));
    let mut bad = steps("2026-03-03", 3_000, 20);
    bad.date = "2026-13-01".into();
    let batch = steps_request(vec![steps("2026-03-01", 1_000, 20), steps("2026-03-02", 2_000, 20), bad]);
    for _ in 0..2 {
        let mut request = tonic::Request::new(batch.clone());
        request.metadata_mut().insert("x-request-id", "trace-1234".parse().unwrap());
        let answered = ingest.ingest_steps(request).await.unwrap();
        assert_eq!(answered.metadata().get("x-request-id").unwrap(), "trace-1234", "a sent request id comes back");
    }
    // A call without a token.
    let mut entries = pb::entry_service_client::EntryServiceClient::new(channel.clone());
    let request = pb::GetEntryRequest { user_id: String::new(), date: "2026-03-01".into() };
    let refused = entries.get_entry(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(refused.metadata().get("x-request-id").is_some(), "every answer carries a request id");
    // A coach's dashboard stays open.
    let mut coach =
        pb::entry_service_client::EntryServiceClient::with_interceptor(channel.clone(), Bearer::new(coach_token));
    let mut stream = coach.stream_entries(pb::StreamEntriesRequest::default()).await.unwrap().into_inner();
    assert!(matches!(stream.message().await.unwrap().unwrap().kind, Some(Kind::Heartbeat(_))));
    let mut roster =
        pb::roster_service_client::RosterServiceClient::with_interceptor(channel, Bearer::new(coach_token));
    let head = roster.list_clients(pb::ListClientsRequest::default()).await.unwrap();
    let head = head.into_inner().position as f64;

    let after = scrape(&at);
    let moved = |name: &str, labels: &[&str]| sample(&after, name, labels) - sample(&before, name, labels);
    assert_eq!(moved("coachfit_rpc_requests_total", &[INGEST_STEPS, r#"code="Ok""#]), 2.0);
    let get_entry = r#"method="/coachfit.v1.EntryService/GetEntry""#;
    assert_eq!(moved("coachfit_rpc_requests_total", &[get_entry, r#"code="Unauthenticated""#]), 1.0);
    assert_eq!(moved("coachfit_rpc_duration_seconds_count", &[INGEST_STEPS]), 2.0);
    assert_eq!(moved("coachfit_rpc_duration_seconds_bucket", &[INGEST_STEPS, r#"le="+Inf""#]), 2.0);
    let steps_items = |status: &str| moved("coachfit_ingest_items_total", &[r#"kind="steps""#, status]);
    assert_eq!(steps_items(r#"status="accepted""#), 2.0);
    assert_eq!(steps_items(r#"status="duplicate""#), 2.0);
    assert_eq!(steps_items(r#"status="rejected""#), 2.0);
    assert_eq!(moved("coachfit_ingest_items_total", &[r#"status="rejected""#, r#"reason="INVALID_FORMAT""#]), 2.0);
    assert_eq!(moved("coachfit_group_commit_requests_count", &[]), 2.0, "each ingest went through the writer");
    assert_eq!(sample(&after, "coachfit_feed_published_position", &[]), head, "published up to the feed's head");
    assert_eq!(sample(&after, "coachfit_open_streams", &[]), 1.0);
}
