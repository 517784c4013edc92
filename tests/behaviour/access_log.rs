//! The access log: every read of a client's health data by a coach or an admin is recorded
//! (who, what, when, from where), the client reads their own log, an admin reads anyone's,
//! and nobody else reads it.

use tokio_stream::StreamExt;
use tonic::Code;

use coachfit::proto::v1 as pb;
use pb::stream_entries_response::Kind;

use crate::common::*;
use crate::each_backend;

each_backend!(
    every_read_by_a_coach_or_an_admin_is_in_the_clients_log_and_their_own_reads_are_not,
    only_the_client_and_an_admin_read_a_log,
    reads_answered_before_a_shutdown_are_in_the_log_after_it,
);

const DAY: &str = "2026-03-10";

/// A record as the test expects it: (accessor, rpc, detail).
fn expected(accessor: &str, rpc: &str, detail: &str) -> (String, String, String) {
    (accessor.to_string(), rpc.to_string(), detail.to_string())
}

/// Every record of the user's log, page by page, newest first.
async fn whole_log(server: &TestServer, token: &str, user_id: &str, page_size: u32) -> Vec<pb::AccessRecord> {
    let mut privacy = server.privacy(token);
    let (mut records, mut page_token) = (Vec::new(), String::new());
    loop {
        let request = pb::ListAccessLogRequest { user_id: user_id.to_string(), page_size, page_token };
        let page = privacy.list_access_log(request).await.expect("ListAccessLog").into_inner();
        assert!(page.records.len() <= page_size as usize);
        records.extend(page.records);
        if page.next_page_token.is_empty() {
            return records;
        }
        page_token = page.next_page_token;
    }
}

fn summary(records: &[pb::AccessRecord]) -> Vec<(String, String, String)> {
    records.iter().map(|r| (r.accessor.clone(), r.rpc.clone(), r.detail.clone())).collect()
}

async fn every_read_by_a_coach_or_an_admin_is_in_the_clients_log_and_their_own_reads_are_not(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (client, coach) = (&server.client, &server.coach);
    let other = server.new_client(&coach.id).await;
    for account in [client, &other] {
        server.ingest(&account.token).ingest_steps(steps_request(vec![steps(DAY, 7_000, 20)])).await.unwrap();
    }
    let started = chrono::Utc::now();

    // The client's own reads are not recorded.
    let mut own = server.entries(&client.token);
    own.get_entry(pb::GetEntryRequest { user_id: String::new(), date: DAY.into() }).await.unwrap();
    own.explain_entry(pb::ExplainEntryRequest { user_id: client.id.clone(), date: DAY.into() }).await.unwrap();

    // The coach reads the client every way there is; an admin once; the coach reads the
    // other client once.
    let mut entries = server.entries(&coach.token);
    entries.get_entry(pb::GetEntryRequest { user_id: client.id.clone(), date: DAY.into() }).await.unwrap();
    let range = pb::ListEntriesRequest {
        user_id: client.id.clone(),
        start_date: "2026-03-01".into(),
        end_date: "2026-03-31".into(),
        ..Default::default()
    };
    entries.list_entries(range).await.unwrap();
    entries.explain_entry(pb::ExplainEntryRequest { user_id: client.id.clone(), date: DAY.into() }).await.unwrap();
    let export = pb::ExportUserDataRequest { user_id: client.id.clone() };
    let mut exported = server.privacy(&coach.token).export_user_data(export).await.unwrap().into_inner();
    while exported.next().await.is_some() {}
    let follow = pb::StreamEntriesRequest { after_position: Some(0), ..Default::default() };
    let mut stream = entries.stream_entries(follow).await.unwrap().into_inner();
    // Catching up, the coach's stream delivers both clients' days: one record each.
    let mut delivered = 0;
    while delivered < 2 {
        if let Some(Kind::Update(_)) = stream.next().await.expect("open").expect("a message").kind {
            delivered += 1;
        }
    }
    drop(stream);
    let admin_read = pb::GetEntryRequest { user_id: client.id.clone(), date: "2026-03-11".into() };
    let missing = server.entries(&server.admin_token).get_entry(admin_read).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound, "a day without an entry is still a read");
    let other_read = pb::GetEntryRequest { user_id: other.id.clone(), date: DAY.into() };
    server.entries(&coach.token).get_entry(other_read).await.unwrap();
    // A correction answers with the whole day; so does an admin's recompute.
    let values = pb::ManualValues { steps: Some(7_500), ..Default::default() };
    entries.record_manual_entry(manual(&client.id, DAY, values)).await.unwrap();
    let recompute = pb::RecomputeDayRequest { user_id: client.id.clone(), date: DAY.into() };
    server.admin(&server.admin_token).recompute_day(recompute).await.unwrap();
    // An operator's export with the CLI, which stores its record itself: after what the
    // server queued is stored (a log read flushes it), so the order below is certain.
    whole_log(&server, &client.token, "", 100).await;
    let exported = coachfit(&server.db_url, &["export", "--user-id", &client.id, "--format", "csv"]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));

    let coach_actor = format!("coach:{}", coach.id);
    let log = whole_log(&server, &client.token, "", 2).await;
    assert_eq!(
        summary(&log),
        vec![
            expected("cli", "coachfit export", "csv"),
            expected("admin", "RecomputeDay", DAY),
            expected(&coach_actor, "RecordManualEntry", DAY),
            expected("admin", "GetEntry", "2026-03-11"),
            expected(&coach_actor, "StreamEntries", ""),
            expected(&coach_actor, "ExportUserData", ""),
            expected(&coach_actor, "ExplainEntry", DAY),
            expected(&coach_actor, "ListEntries", "2026-03-01..2026-03-31"),
            expected(&coach_actor, "GetEntry", DAY),
        ],
        "newest first, the client's own reads left out"
    );
    let now = chrono::Utc::now();
    assert_eq!(log[0].peer, "", "the CLI has no address");
    for record in &log[1..] {
        assert_eq!(record.peer, "127.0.0.1", "{record:?}");
        let at = record.read_at.expect("read_at");
        let at = chrono::DateTime::from_timestamp(at.seconds, at.nanos as u32).unwrap();
        assert!(started <= at && at <= now, "{at} not within the test");
    }
    assert_eq!(whole_log(&server, &server.admin_token, &client.id, 100).await, log, "an admin reads the same log");
    let others = whole_log(&server, &other.token, "", 100).await;
    assert_eq!(
        summary(&others),
        vec![expected(&coach_actor, "GetEntry", DAY), expected(&coach_actor, "StreamEntries", "")],
        "the other client's log holds only the reads of their data"
    );
}

async fn only_the_client_and_an_admin_read_a_log(backend: Backend) {
    let server = TestServer::start(backend).await;
    let other = server.new_client(&server.coach.id).await;
    let ask = |token: &str, user_id: &str| {
        let mut privacy = server.privacy(token);
        let request = pb::ListAccessLogRequest { user_id: user_id.to_string(), ..Default::default() };
        async move { privacy.list_access_log(request).await.map(|r| r.into_inner().records) }
    };
    let another_users = ask(&server.client.token, &other.id).await;
    assert_eq!(another_users.unwrap_err().code(), Code::PermissionDenied, "a device reads only its own log");
    let coach = ask(&server.coach.token, &server.client.id).await;
    assert_eq!(coach.unwrap_err().code(), Code::PermissionDenied, "not even a client's coach reads it");
    let nobody = ask(&server.admin_token, "no-such-user").await;
    assert_eq!(nobody.unwrap_err().code(), Code::NotFound);
    assert_eq!(ask("not-a-token", &server.client.id).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(ask(&server.client.token, "").await.expect("their own log"), vec![]);

    let request = pb::ListAccessLogRequest { page_token: "ten".into(), ..Default::default() };
    let bad_token = server.privacy(&server.client.token).list_access_log(request).await.unwrap_err();
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    assert_eq!(bad_request_fields(&bad_token), vec!["page_token"]);
}

async fn reads_answered_before_a_shutdown_are_in_the_log_after_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    // `coachfit serve` as a process of its own on the same database: it exits on SIGTERM.
    let mut child = serve_child(&server.db_url, "127.0.0.1:0");
    let channel = tonic::transport::Channel::from_shared(child.uri()).unwrap().connect().await.unwrap();
    let entries = pb::entry_service_client::EntryServiceClient::with_interceptor(
        channel,
        coachfit::api::bearer::Bearer::new(&server.coach.token),
    );
    let days: Vec<String> = (1..=30).map(|day| format!("2026-04-{day:02}")).collect();
    let reads = days.iter().map(|day| {
        let mut entries = entries.clone();
        let read = pb::GetEntryRequest { user_id: server.client.id.clone(), date: day.clone() };
        async move { entries.get_entry(read).await.unwrap_err().code() }
    });
    let answers = futures::future::join_all(reads).await;
    assert!(answers.iter().all(|code| *code == Code::NotFound), "{answers:?}");
    child.terminate().unwrap();
    assert!(child.wait().unwrap().success(), "a clean exit");

    let log = whole_log(&server, &server.client.token, "", 1000).await;
    let mut read: Vec<String> = log.iter().map(|r| r.detail.clone()).collect();
    read.sort();
    assert_eq!(read, days, "every read answered before the exit");
}
