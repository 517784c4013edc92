//! The coach's roster (who their clients are, which phones they paired, whether each still
//! syncs) and a device's own view of what the server stored from it. Every expectation is
//! counted from what the test sent.

use chrono::{Duration, SubsecRound, Utc};
use coachfit::proto::v1 as pb;
use tonic::Code;

use crate::common::*;
use crate::each_backend;
use crate::pairing::redeem;
use pb::stream_entries_response::Kind;

each_backend!(
    a_coach_sees_each_client_their_devices_and_whether_they_sync,
    a_device_learns_what_the_server_stored_from_it,
    a_coach_stream_learns_when_a_client_pairs_syncs_and_changes_and_resumes_by_position,
    the_last_sync_of_a_burst_reaches_the_stream_after_the_interval,
);

/// Steps observed at `at`, on the day of `at`.
fn steps_at(at: chrono::DateTime<Utc>, total_steps: u32) -> pb::StepsSample {
    pb::StepsSample {
        date: at.date_naive().to_string(),
        total_steps,
        observed_at: ts(at),
        source_devices: vec![],
        idempotency_key: String::new(),
    }
}

fn kinds(statuses: &[pb::KindStatus]) -> Vec<(&str, u64)> {
    statuses.iter().map(|k| (k.kind.as_str(), k.events)).collect()
}

async fn a_coach_sees_each_client_their_devices_and_whether_they_sync(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Whole seconds: the store keeps microseconds.
    let now = Utc::now().trunc_subsecs(0);
    let ten_days_ago = now - Duration::days(10);
    let (fresh, old) = (now - Duration::hours(1), ten_days_ago);

    // The suite's client syncs today, and once sent a night ten days ago; their coach
    // corrects a day.
    let mut ingest = server.ingest(&server.client.token);
    ingest.ingest_steps(steps_request(vec![steps_at(fresh, 4_000)])).await.unwrap();
    ingest.ingest_steps(steps_request(vec![steps_at(fresh, 4_000)])).await.unwrap();
    let night = pb::SleepSession {
        date: old.date_naive().to_string(),
        total_sleep_minutes: 400,
        sleep_start: ts(old - Duration::hours(8)),
        sleep_end: ts(old - Duration::hours(1)),
        observed_at: ts(old),
        ..Default::default()
    };
    ingest.ingest_sleep(pb::IngestSleepRequest { sessions: vec![night], time_zone: "UTC".into() }).await.unwrap();
    let correction =
        manual(&server.client.id, "2026-03-01", pb::ManualValues { calories: Some(1), ..Default::default() });
    server.entries(&server.coach.token).record_manual_entry(correction).await.unwrap();

    // Ben pairs with a code that names him, and has sent only a day ten days ago.
    let mut pairing = server.pairing(&server.coach.token);
    let request = pb::CreatePairingCodeRequest { user_id: None, display_name: "Ben".into() };
    let ben_code = pairing.create_pairing_code(request).await.unwrap().into_inner();
    let ben = redeem(&server, &ben_code.code).await.unwrap();
    server.ingest(&ben.device_token).ingest_steps(steps_request(vec![steps_at(old, 9_000)])).await.unwrap();
    // A code never redeemed puts nobody on the roster.
    pairing.create_pairing_code(pb::CreatePairingCodeRequest::default()).await.unwrap();

    // A coach's correction is not the client tracking: Ben stays stale.
    let for_ben = manual(&ben.user_id, "2026-03-01", pb::ManualValues { calories: Some(1), ..Default::default() });
    server.entries(&server.coach.token).record_manual_entry(for_ben).await.unwrap();

    let mut coach = server.roster(&server.coach.token);
    let rename = pb::RenameClientRequest { user_id: server.client.id.clone(), display_name: " Ana ".into() };
    coach.rename_client(rename).await.unwrap();

    let roster = coach.list_clients(pb::ListClientsRequest::default()).await.unwrap().into_inner();
    assert_eq!(roster.stale_after_days, 3);
    let mut clients = roster.clients;
    clients.sort_by(|a, b| a.display_name.cmp(&b.display_name));
    let names: Vec<&str> = clients.iter().map(|c| c.display_name.as_str()).collect();
    assert_eq!(names, ["Ana", "Ben"]);

    let ana = &clients[0];
    assert_eq!(ana.user_id, server.client.id);
    assert!(!ana.stale, "observed an hour ago");
    assert_eq!(kinds(&ana.kinds), [("manual", 1), ("sleep", 1), ("steps", 1)], "the resend counts once");
    assert_eq!(ana.last_day, "2026-03-01".max(fresh.date_naive().to_string().as_str()));
    assert_eq!(ana.devices.len(), 1);
    let phone = &ana.devices[0];
    assert_eq!((phone.name.as_str(), phone.revoked), ("phone", false));
    assert_eq!(kinds(&phone.kinds), [("sleep", 1), ("steps", 1)], "the coach's correction is not the phone's");
    let steps = phone.kinds.iter().find(|k| k.kind == "steps").unwrap();
    assert_eq!(steps.newest_observed_at, ts(fresh));
    assert!(phone.last_synced_at.is_some());

    let ben_status = &clients[1];
    assert_eq!(ben_status.user_id, ben.user_id);
    assert!(ben_status.stale, "nothing observed for ten days");
    assert_eq!(ben_status.last_day, old.date_naive().to_string());
    assert_eq!(ben_status.devices[0].device_id, ben.device_id);
    assert_eq!(kinds(&ben_status.devices[0].kinds), [("steps", 1)]);

    // A revoked phone stays on the roster, marked.
    let revoke = pb::RevokeDeviceRequest { user_id: ben.user_id.clone(), device_id: Some(ben.device_id.clone()) };
    pairing.revoke_device(revoke).await.unwrap();
    let request = pb::ListClientsRequest { coach_id: server.coach.id.clone() };
    let by_admin = server.roster(&server.admin_token).list_clients(request).await.unwrap().into_inner();
    let ben_now = by_admin.clients.iter().find(|c| c.user_id == ben.user_id).unwrap();
    assert!(ben_now.devices[0].revoked);

    // Who may name whom.
    let admin_without_coach = server.roster(&server.admin_token).list_clients(pb::ListClientsRequest::default()).await;
    assert_eq!(admin_without_coach.unwrap_err().code(), Code::InvalidArgument);
    let rival = server.new_coach("Rival").await;
    let rename = pb::RenameClientRequest { user_id: server.client.id.clone(), display_name: "Mine".into() };
    let refused = server.roster(&rival.token).rename_client(rename).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let rename = pb::RenameClientRequest { user_id: server.client.id.clone(), display_name: "  ".into() };
    let empty = coach.rename_client(rename).await.unwrap_err();
    assert_eq!((empty.code(), bad_request_fields(&empty)), (Code::InvalidArgument, vec!["display_name".to_string()]));
    let rival_roster = server.roster(&rival.token).list_clients(pb::ListClientsRequest::default()).await.unwrap();
    assert!(rival_roster.into_inner().clients.is_empty());
}

async fn a_device_learns_what_the_server_stored_from_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut roster = server.roster(&server.client.token);
    let nothing = roster.get_sync_status(pb::GetSyncStatusRequest {}).await.unwrap().into_inner();
    assert!(nothing.kinds.is_empty() && nothing.last_synced_at.is_none());

    let mut ingest = server.ingest(&server.client.token);
    let sent = vec![steps("2026-03-01", 8_000, 22), steps("2026-03-02", 9_000, 21)];
    ingest.ingest_steps(steps_request(sent.clone())).await.unwrap();
    ingest.ingest_steps(steps_request(sent)).await.unwrap();
    let metric = pb::BodyMetric {
        r#type: pb::BodyMetricType::Weight.into(),
        value: 71.5,
        unit: pb::Unit::Kg.into(),
        measured_at: ts(utc("2026-03-02", 7)),
        idempotency_key: String::new(),
    };
    ingest
        .ingest_body_metrics(pb::IngestBodyMetricsRequest { metrics: vec![metric], time_zone: "UTC".into() })
        .await
        .unwrap();

    // A second phone of the same client has its own count.
    let code = crate::pairing::create_code(&server, &server.coach.token, Some(server.client.id.clone())).await;
    let second = redeem(&server, &code.code).await.unwrap();
    server.ingest(&second.device_token).ingest_steps(steps_request(vec![steps("2026-03-03", 1, 20)])).await.unwrap();

    let status = roster.get_sync_status(pb::GetSyncStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(kinds(&status.kinds), [("body_metric", 1), ("steps", 2)]);
    let steps = status.kinds.iter().find(|k| k.kind == "steps").unwrap();
    assert_eq!((steps.newest_observed_at, steps.last_day.as_str()), (ts(utc("2026-03-02", 21)), "2026-03-02"));
    assert!(status.last_synced_at.is_some());
    let theirs = server.roster(&second.device_token).get_sync_status(pb::GetSyncStatusRequest {}).await.unwrap();
    assert_eq!(kinds(&theirs.into_inner().kinds), [("steps", 1)]);

    let coach = server.roster(&server.coach.token).get_sync_status(pb::GetSyncStatusRequest {}).await.unwrap_err();
    assert_eq!(coach.code(), Code::PermissionDenied);
}

/// The next update or client change of a stream (heartbeats skipped).
async fn next_change(stream: &mut tonic::Streaming<pb::StreamEntriesResponse>) -> Kind {
    let next = async {
        loop {
            match stream.message().await.unwrap().expect("stream open").kind.expect("a kind") {
                Kind::Heartbeat(_) => continue,
                change => return change,
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), next).await.expect("a change in time (guards a hang)")
}

fn client_update(kind: Kind) -> (u64, pb::ClientStatus) {
    match kind {
        Kind::Client(update) => (update.position, update.client.expect("a client")),
        other => panic!("expected a client update, got {other:?}"),
    }
}

fn entry_update(kind: Kind) -> (u64, pb::Entry) {
    match kind {
        Kind::Update(update) => (update.position, update.entry.expect("an entry")),
        other => panic!("expected an entry update, got {other:?}"),
    }
}

/// Everything a stream from `after` sends until its first heartbeat (the catch-up).
async fn catch_up(server: &TestServer, token: &str, after: u64, include_clients: bool) -> Vec<Kind> {
    let request = pb::StreamEntriesRequest { user_ids: vec![], after_position: Some(after), include_clients };
    let mut stream = server.entries(token).stream_entries(request).await.unwrap().into_inner();
    let mut sent = Vec::new();
    loop {
        match stream.message().await.unwrap().expect("stream open").kind.expect("a kind") {
            Kind::Heartbeat(_) => return sent,
            change => sent.push(change),
        }
    }
}

/// A dashboard lists the roster, then follows the stream from the roster's position with
/// `include_clients`: a client pairing, syncing, being renamed and losing a device each
/// reach it, in position order with the entries; a resume from the same position sends
/// each client once, as it is now; a stream without `include_clients` sends entries only;
/// another coach sees none of it.
async fn a_coach_stream_learns_when_a_client_pairs_syncs_and_changes_and_resumes_by_position(backend: Backend) {
    let server = TestServer::start(backend).await;
    let listed = server.roster(&server.coach.token).list_clients(pb::ListClientsRequest::default()).await.unwrap();
    let from = listed.into_inner().position;
    let request = pb::StreamEntriesRequest { user_ids: vec![], after_position: Some(from), include_clients: true };
    let mut stream = server.entries(&server.coach.token).stream_entries(request).await.unwrap().into_inner();

    let mut pairing = server.pairing(&server.coach.token);
    let request = pb::CreatePairingCodeRequest { user_id: None, display_name: "Cleo".into() };
    let code = pairing.create_pairing_code(request).await.unwrap().into_inner();
    let cleo = redeem(&server, &code.code).await.unwrap();
    let (paired_at, paired) = client_update(next_change(&mut stream).await);
    assert!(paired_at > from);
    assert_eq!((paired.user_id.as_str(), paired.display_name.as_str()), (cleo.user_id.as_str(), "Cleo"));
    assert_eq!(
        paired.devices.iter().map(|d| (d.device_id.as_str(), d.revoked)).collect::<Vec<_>>(),
        [(cleo.device_id.as_str(), false)]
    );
    assert!(paired.kinds.is_empty() && !paired.stale);

    // A sync: the client's roster change, then the day it changed.
    let observed = Utc::now().trunc_subsecs(0) - Duration::hours(2);
    let mut phone = server.ingest(&cleo.device_token);
    phone.ingest_steps(steps_request(vec![steps_at(observed, 6_000)])).await.unwrap();
    let (synced_at, synced) = client_update(next_change(&mut stream).await);
    assert!(synced_at > paired_at);
    assert_eq!(kinds(&synced.devices[0].kinds), [("steps", 1)]);
    assert!(synced.devices[0].last_synced_at.is_some());
    assert_eq!(synced.stale_at, ts(observed + Duration::days(3)), "three days after the newest observation");
    let (day_at, day) = entry_update(next_change(&mut stream).await);
    assert!(day_at > synced_at);
    assert_eq!((day.user_id.as_str(), day.steps), (cleo.user_id.as_str(), Some(6_000)));

    // Another sync within the minute moves the day, not the roster.
    phone.ingest_steps(steps_request(vec![steps_at(observed + Duration::minutes(5), 6_500)])).await.unwrap();
    let (again_at, again) = entry_update(next_change(&mut stream).await);
    assert!(again_at > day_at);
    assert_eq!(again.steps, Some(6_500));

    let rename = pb::RenameClientRequest { user_id: cleo.user_id.clone(), display_name: "Cleo R.".into() };
    server.roster(&server.coach.token).rename_client(rename).await.unwrap();
    let (renamed_at, renamed) = client_update(next_change(&mut stream).await);
    assert!(renamed_at > again_at);
    assert_eq!(renamed.display_name, "Cleo R.");
    let revoke = pb::RevokeDeviceRequest { user_id: cleo.user_id.clone(), device_id: Some(cleo.device_id.clone()) };
    pairing.revoke_device(revoke).await.unwrap();
    let (revoked_at, revoked) = client_update(next_change(&mut stream).await);
    assert!(revoked_at > renamed_at);
    assert!(revoked.devices[0].revoked);

    // A resume from the roster's position: Cleo once, as she is now, and her day, by position.
    let resumed = catch_up(&server, &server.coach.token, from, true).await;
    let positions: Vec<u64> = resumed
        .iter()
        .map(|kind| match kind {
            Kind::Update(update) => update.position,
            Kind::Client(update) => update.position,
            Kind::Heartbeat(_) | Kind::Removed(_) => unreachable!(),
        })
        .collect();
    assert_eq!(positions, [again_at, revoked_at]);
    let (_, now) = client_update(resumed[1].clone());
    assert_eq!((now.display_name.as_str(), now.devices[0].revoked), ("Cleo R.", true));
    assert_eq!(kinds(&now.kinds), [("steps", 2)], "the second sync is in the client as read now");

    // Without `include_clients`, the same resume sends the day only.
    let entries_only = catch_up(&server, &server.coach.token, from, false).await;
    assert_eq!(entries_only.len(), 1);
    assert_eq!(entry_update(entries_only[0].clone()).0, again_at);

    // From the start, every client of the coach is listed; another coach sees none of them.
    let everything = catch_up(&server, &server.coach.token, 0, true).await;
    let mut clients: Vec<String> = everything
        .into_iter()
        .filter_map(|kind| match kind {
            Kind::Client(update) => update.client.map(|c| c.user_id),
            _ => None,
        })
        .collect();
    clients.sort();
    let mut expected = vec![server.client.id.clone(), cleo.user_id.clone()];
    expected.sort();
    assert_eq!(clients, expected);
    let rival = server.new_coach("Rival").await;
    assert!(catch_up(&server, &rival.token, 0, true).await.is_empty());

    // A device's stream carries entries, not its coach's view of the client.
    let request = pb::StreamEntriesRequest { user_ids: vec![], after_position: Some(0), include_clients: true };
    let refused = server.entries(&server.client.token).stream_entries(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

/// A sync too soon after the last notice takes no position at once; once the interval has
/// passed it gets a trailing one, so a dashboard never keeps the first sync of a burst as
/// the client's latest.
async fn the_last_sync_of_a_burst_reaches_the_stream_after_the_interval(backend: Backend) {
    let server = TestServer::start_with_sync_notices_every(backend, std::time::Duration::from_secs(2)).await;
    let request = pb::StreamEntriesRequest { user_ids: vec![], after_position: None, include_clients: true };
    let mut stream = server.entries(&server.coach.token).stream_entries(request).await.unwrap().into_inner();
    let observed = Utc::now().trunc_subsecs(0) - Duration::hours(3);
    let mut phone = server.ingest(&server.client.token);
    phone.ingest_steps(steps_request(vec![steps_at(observed, 1_000)])).await.unwrap();
    let (_, first) = client_update(next_change(&mut stream).await);
    assert_eq!(kinds(&first.kinds), [("steps", 1)]);
    entry_update(next_change(&mut stream).await);

    // A later observation, at once: the day moves now, the roster after the interval.
    let later = observed + Duration::hours(2);
    phone.ingest_steps(steps_request(vec![steps_at(later, 2_000)])).await.unwrap();
    let (_, day) = entry_update(next_change(&mut stream).await);
    assert_eq!(day.steps, Some(2_000));
    let (_, trailing) = client_update(next_change(&mut stream).await);
    assert_eq!(kinds(&trailing.kinds), [("steps", 2)]);
    assert_eq!(trailing.stale_at, ts(later + Duration::days(3)), "the newest observation is the later one");
}
