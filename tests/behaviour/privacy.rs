//! A person's data: erasure (a device deleting its account, an admin erasing a user) leaves
//! nothing of the user behind (their access log included), takes nothing from anyone
//! else, and reaches every dashboard.

use std::collections::BTreeMap;

use tokio_stream::StreamExt;
use tonic::Code;

use coachfit::proto::v1 as pb;
use pb::stream_entries_response::Kind;

use crate::common::*;
use crate::each_backend;

each_backend!(
    erasure_under_concurrent_ingest_leaves_nothing_of_the_user_and_takes_nothing_from_others,
    a_device_deletes_its_own_account_and_only_its_own,
    a_dashboard_drops_an_erased_client_live_and_on_resume,
    an_erased_users_tokens_are_refused_at_once_on_another_instance,
    an_export_of_five_years_holds_every_event_once_and_every_entry,
);

/// Where an erased user may still be named: their removal from the feed (docs/PRIVACY.md).
const KEPT: &[&str] = &["removals"];

fn day(n: usize) -> String {
    (chrono::NaiveDate::from_ymd_opt(2021, 1, 1).unwrap() + chrono::Duration::days(n as i64)).to_string()
}

async fn erasure_under_concurrent_ingest_leaves_nothing_of_the_user_and_takes_nothing_from_others(backend: Backend) {
    let server = TestServer::start(backend).await;
    let erased = server.client.clone();
    let other = server.new_client(&server.coach.id).await;
    let keeps_sending = |token: String| {
        let mut ingest = server.ingest(&token);
        async move {
            // Each day acknowledged, with its total, until the server refuses the token.
            let mut acknowledged = BTreeMap::new();
            for n in 0..60 {
                let sample = steps(&day(n), 1_000 + n as u32, 12);
                match ingest.ingest_steps(steps_request(vec![sample])).await {
                    Ok(_) => acknowledged.insert(day(n), 1_000 + n as u32),
                    Err(status) => {
                        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                        break;
                    }
                };
            }
            acknowledged
        }
    };
    let erase = async {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let request = pb::EraseUserRequest { user_id: erased.id.clone() };
        server.privacy(&server.admin_token).erase_user(request).await.expect("EraseUser").into_inner()
    };
    // Their coach keeps reading them: each read is in their access log until it goes with them.
    let coach_reads = async {
        let mut entries = server.entries(&server.coach.token);
        let mut reads = 0;
        loop {
            let read = pb::GetEntryRequest { user_id: erased.id.clone(), date: day(0) };
            match entries.get_entry(read).await {
                Ok(_) => reads += 1,
                Err(status) if status.code() == Code::NotFound => reads += 1,
                Err(status) => {
                    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
                    return reads;
                }
            }
        }
    };
    let (theirs, others, answer, reads) =
        tokio::join!(keeps_sending(erased.token.clone()), keeps_sending(other.token.clone()), erase, coach_reads);
    assert!(answer.erased && answer.position > 0, "{answer:?}");
    assert!(theirs.len() < 60, "the erasure came while the user was still sending");
    assert!(reads > 0, "the coach read them before the erasure");

    assert_eq!(server.columns_containing(&erased.id, KEPT).await, Vec::<String>::new(), "rows of the erased user");
    assert_eq!(others.len(), 60, "the other client was never refused");
    let listed = server
        .entries(&other.token)
        .list_entries(pb::ListEntriesRequest {
            start_date: day(0),
            end_date: day(59),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let stored: BTreeMap<String, u32> = listed.into_iter().map(|e| (e.date, e.steps.unwrap())).collect();
    assert_eq!(stored, others, "every day the other client was told was stored");
    assert!(server.verify().await, "verify passes after an erasure");

    let mut privacy = server.privacy(&server.admin_token);
    let again = privacy.erase_user(pb::EraseUserRequest { user_id: erased.id.clone() }).await;
    let again = again.expect("erasing twice is not an error").into_inner();
    assert_eq!((again.erased, again.position), (false, 0));
    let a_coach = privacy.erase_user(pb::EraseUserRequest { user_id: server.coach.id.clone() }).await.unwrap();
    assert!(!a_coach.into_inner().erased, "a coach is not a user");
    let still = server.roster(&server.coach.token).list_clients(pb::ListClientsRequest::default()).await;
    assert!(still.is_ok(), "a coach's id erases nothing of the coach: {still:?}");
    // The same report again is new, not a "duplicate" of something erased: but the user is gone.
    let refused = server.ingest(&erased.token).ingest_steps(steps_request(vec![steps(&day(0), 1_000, 12)])).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
}

async fn a_device_deletes_its_own_account_and_only_its_own(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.ingest(&server.client.token).ingest_steps(steps_request(vec![steps(&day(0), 4_321, 12)])).await.unwrap();
    let coach_tries = server.privacy(&server.coach.token).delete_account(pb::DeleteAccountRequest {}).await;
    assert_eq!(coach_tries.unwrap_err().code(), Code::PermissionDenied);
    let mut as_device = server.privacy(&server.client.token);
    let device_tries = as_device.erase_user(pb::EraseUserRequest { user_id: server.client.id.clone() }).await;
    assert_eq!(device_tries.unwrap_err().code(), Code::PermissionDenied, "EraseUser is for admins");

    let deleted = server.privacy(&server.client.token).delete_account(pb::DeleteAccountRequest {}).await;
    assert!(deleted.expect("DeleteAccount").into_inner().erased_at.is_some());
    assert_eq!(server.columns_containing(&server.client.id, KEPT).await, Vec::<String>::new());
    let retried = server.privacy(&server.client.token).delete_account(pb::DeleteAccountRequest {}).await;
    assert_eq!(retried.unwrap_err().code(), Code::Unauthenticated, "the token went with the account");
    let roster = server.roster(&server.coach.token).list_clients(pb::ListClientsRequest::default()).await.unwrap();
    assert!(roster.into_inner().clients.is_empty(), "the coach's roster no longer lists them");
}

/// The next message of a stream that is not a heartbeat.
async fn next_change(stream: &mut tonic::Streaming<pb::StreamEntriesResponse>) -> Kind {
    loop {
        match stream.next().await.expect("the stream stays open").expect("a message").kind.expect("a kind") {
            Kind::Heartbeat(_) => continue,
            change => return change,
        }
    }
}

async fn a_dashboard_drops_an_erased_client_live_and_on_resume(backend: Backend) {
    let server = TestServer::start(backend).await;
    let other = server.new_client(&server.coach.id).await;
    let follow = |after: u64| {
        let mut entries = server.entries(&server.coach.token);
        async move {
            let request = pb::StreamEntriesRequest { after_position: Some(after), ..Default::default() };
            entries.stream_entries(request).await.expect("StreamEntries").into_inner()
        }
    };
    let mut live = follow(0).await;
    for (who, total) in [(&server.client, 1_111), (&other, 2_222)] {
        server.ingest(&who.token).ingest_steps(steps_request(vec![steps(&day(0), total, 12)])).await.unwrap();
    }
    for _ in 0..2 {
        assert!(matches!(next_change(&mut live).await, Kind::Update(_)));
    }

    let request = pb::EraseUserRequest { user_id: server.client.id.clone() };
    let erased = server.privacy(&server.admin_token).erase_user(request).await.unwrap().into_inner();
    let Kind::Removed(removed) = next_change(&mut live).await else { panic!("a removal") };
    assert_eq!((removed.user_id.as_str(), removed.position), (server.client.id.as_str(), erased.position));
    assert!(removed.removed_at.is_some());

    // A dashboard that resumes from before it all: the other client's day, then the removal,
    // and nothing of the erased client's.
    let mut resumed = follow(0).await;
    let Kind::Update(update) = next_change(&mut resumed).await else { panic!("an update") };
    let entry = update.entry.unwrap();
    assert_eq!((entry.user_id.as_str(), entry.steps), (other.id.as_str(), Some(2_222)));
    let Kind::Removed(removed) = next_change(&mut resumed).await else { panic!("the removal") };
    assert_eq!(removed.user_id, server.client.id);
    // And another coach's stream hears nothing of it.
    let stranger = server.new_coach("Coach Dana").await;
    let mut theirs = server
        .entries(&stranger.token)
        .stream_entries(pb::StreamEntriesRequest { after_position: Some(0), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let first = theirs.next().await.unwrap().unwrap().kind.unwrap();
    assert!(matches!(first, Kind::Heartbeat(_)), "{first:?}");
}

async fn an_erased_users_tokens_are_refused_at_once_on_another_instance(backend: Backend) {
    let first = TestServer::start(backend).await;
    let second = first.another_instance().await;
    let ingest = |server: &TestServer| {
        let mut ingest = server.ingest(&server.client.token);
        async move { ingest.ingest_steps(steps_request(vec![steps(&day(3), 3_000, 12)])).await.map(|_| ()) }
    };
    ingest(&second).await.expect("the token works before");
    let request = pb::EraseUserRequest { user_id: first.client.id.clone() };
    first.privacy(&first.admin_token).erase_user(request).await.unwrap();
    assert_eq!(ingest(&second).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(ingest(&first).await.unwrap_err().code(), Code::Unauthenticated);
}

async fn an_export_of_five_years_holds_every_event_once_and_every_entry(backend: Backend) {
    let server = TestServer::start(backend).await;
    let user = &server.client;
    // Five years of daily step totals (more than one page of events and of entries), a
    // night, a weigh-in, and a coach's correction; the ids the server acknowledged.
    let days: Vec<String> = (0..5 * 365 + 1).map(day).collect();
    let mut acknowledged = Vec::new();
    for chunk in days.chunks(400) {
        let samples = chunk.iter().enumerate().map(|(i, d)| steps(d, 5_000 + i as u32, 20)).collect();
        let answer = server.ingest(&user.token).ingest_steps(steps_request(samples)).await.unwrap().into_inner();
        assert_eq!(answer.accepted as usize, chunk.len(), "{:?}", answer.results.first());
        acknowledged.extend(answer.results.into_iter().map(|r| r.event_id));
    }
    let metric = pb::BodyMetric {
        r#type: pb::BodyMetricType::Weight as i32,
        value: 70.5,
        unit: pb::Unit::Kg as i32,
        measured_at: ts(utc(&day(3), 7)),
        idempotency_key: "weigh-in".into(),
    };
    let weighed = server
        .ingest(&user.token)
        .ingest_body_metrics(pb::IngestBodyMetricsRequest { metrics: vec![metric], time_zone: "UTC".into() })
        .await
        .unwrap()
        .into_inner();
    acknowledged.extend(weighed.results.into_iter().map(|r| r.event_id));
    let note = "=HYPERLINK(\"http://x\"), \"quoted\"\nsecond line";
    let values = pb::ManualValues { steps: Some(9_999), notes: Some(note.into()), ..Default::default() };
    let correction = manual(&user.id, &day(3), values);
    let corrected = server.entries(&server.coach.token).record_manual_entry(correction).await.unwrap();
    acknowledged.push(corrected.into_inner().event_id);

    let request = pb::ExportUserDataRequest { user_id: user.id.clone() };
    let mut export = server.privacy(&server.coach.token).export_user_data(request).await.unwrap().into_inner();
    use pb::export_user_data_response::Record;
    let mut records = Vec::new();
    while let Some(message) = export.next().await {
        records.push(message.expect("an export record").record.expect("a record"));
    }
    let Record::Header(header) = &records[0] else { panic!("a header first: {:?}", records[0]) };
    assert_eq!(
        (header.format.as_str(), header.version, header.user_id.as_str()),
        ("coachfit-export", 1, user.id.as_str())
    );
    let seqs: Vec<u64> = records
        .iter()
        .filter_map(|r| match r {
            Record::Event(event) => Some(event.seq),
            _ => None,
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "events in the order they were stored");
    let exported: Vec<String> = records
        .iter()
        .filter_map(|r| match r {
            Record::Event(event) => Some(event.event_id.clone()),
            _ => None,
        })
        .collect();
    let mut sorted = exported.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), exported.len(), "every event once");
    acknowledged.sort();
    assert_eq!(sorted.len(), acknowledged.len());
    assert!(sorted == acknowledged, "every acknowledged event, and nothing else");

    let entries: Vec<pb::Entry> = records
        .into_iter()
        .filter_map(|r| match r {
            Record::Entry(entry) => Some(entry),
            _ => None,
        })
        .collect();
    assert_eq!(entries.len(), days.len());
    let listed = list_all(&server, &user.id).await;
    assert_eq!(entries, listed, "the export's entries are ListEntries'");

    // The CLI's CSV: one row per day, as ListEntries has them.
    let csv_out = coachfit(&server.db_url, &["export", "--user-id", &user.id, "--format", "csv"]);
    assert!(csv_out.status.success(), "{}", String::from_utf8_lossy(&csv_out.stderr));
    let mut reader = csv::Reader::from_reader(csv_out.stdout.as_slice());
    let columns = reader.headers().unwrap().clone();
    let column = |name: &str| columns.iter().position(|c| c == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), listed.len());
    for (row, entry) in rows.iter().zip(&listed) {
        assert_eq!(row[column("date")], entry.date);
        assert_eq!(row[column("steps")], entry.steps.map(|s| s.to_string()).unwrap_or_default());
        assert_eq!(row[column("weight_kg")], entry.weight_kg.map(|w| w.to_string()).unwrap_or_default());
    }
    assert_eq!(rows[3][column("steps")], *"9999", "the coach's correction shows");
    assert_eq!(rows[3][column("notes")], format!("'{note}"), "a note that looks like a formula stays text");

    // The CLI's JSON Lines: a header naming the format, then each event and entry once.
    let jsonl = coachfit(&server.db_url, &["export", "--user-id", &user.id]);
    assert!(jsonl.status.success(), "{}", String::from_utf8_lossy(&jsonl.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(jsonl.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((lines[0]["format"].as_str(), lines[0]["version"].as_u64()), (Some("coachfit-export"), Some(1)));
    let of_type = |t: &str| lines.iter().filter(|l| l["type"] == t).count();
    assert_eq!((of_type("event"), of_type("entry")), (acknowledged.len(), days.len()));
}

/// Every entry of the user, by ListEntries, page by page.
async fn list_all(server: &TestServer, user_id: &str) -> Vec<pb::Entry> {
    let (mut all, mut page_token) = (Vec::new(), String::new());
    loop {
        let request = pb::ListEntriesRequest {
            user_id: user_id.into(),
            start_date: "2000-01-01".into(),
            end_date: "2100-01-01".into(),
            page_size: 366,
            page_token,
        };
        let page = server.entries(&server.coach.token).list_entries(request).await.unwrap().into_inner();
        all.extend(page.entries);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}
