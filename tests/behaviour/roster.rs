//! The coach's roster (who their clients are, which phones they paired, whether each still
//! syncs) and a device's own view of what the server stored from it. Every expectation is
//! counted from what the test sent.

use chrono::{Duration, SubsecRound, Utc};
use coachfit::proto::v1 as pb;
use tonic::Code;

use crate::common::*;
use crate::each_backend;
use crate::pairing::redeem;

each_backend!(
    a_coach_sees_each_client_their_devices_and_whether_they_sync,
    a_device_learns_what_the_server_stored_from_it,
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
