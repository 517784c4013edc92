//! The authorization matrix of the README, as a table: every RPC × every kind of caller.

use coachfit::proto::v1 as pb;
use tonic::Code;

use crate::common::*;
use crate::each_backend;
use crate::pairing::{create_code, redeem};

each_backend!(every_rpc_answers_every_caller_as_the_matrix_says);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoToken,
    BadToken,
    RevokedToken,
    DeviceOfUser,
    DeviceOfAnotherUser,
    CoachOfUser,
    AnotherCoach,
    Admin,
}

const CALLERS: [Caller; 8] = [
    Caller::NoToken,
    Caller::BadToken,
    Caller::RevokedToken,
    Caller::DeviceOfUser,
    Caller::DeviceOfAnotherUser,
    Caller::CoachOfUser,
    Caller::AnotherCoach,
    Caller::Admin,
];

/// A fresh cast for each RPC, so that a revocation in one row cannot affect another.
struct World {
    user: Account,
    other_user: Account,
    coach: Account,
    other_coach: Account,
    revoked_token: String,
}

const DAY: &str = "2026-03-01";

impl World {
    async fn new(server: &TestServer) -> World {
        let coach = server.new_coach("Coach").await;
        let other_coach = server.new_coach("Other coach").await;
        let user = server.new_client(&coach.id).await;
        let other_user = server.new_client(&coach.id).await;
        server.ingest(&user.token).ingest_steps(steps_request(vec![steps(DAY, 1_000, 20)])).await.unwrap();
        let code = create_code(server, &coach.token, Some(user.id.clone())).await.code;
        let revoked_token = redeem(server, &code).await.unwrap().device_token;
        let revoke = pb::RevokeDeviceRequest { user_id: String::new(), device_id: None };
        server.pairing(&revoked_token).revoke_device(revoke).await.unwrap();
        World { user, other_user, coach, other_coach, revoked_token }
    }

    fn token(&self, server: &TestServer, caller: Caller) -> String {
        match caller {
            Caller::NoToken => String::new(),
            Caller::BadToken => "0".repeat(64),
            Caller::RevokedToken => self.revoked_token.clone(),
            Caller::DeviceOfUser => self.user.token.clone(),
            Caller::DeviceOfAnotherUser => self.other_user.token.clone(),
            Caller::CoachOfUser => self.coach.token.clone(),
            Caller::AnotherCoach => self.other_coach.token.clone(),
            Caller::Admin => server.admin_token.clone(),
        }
    }
}

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    result.map_or_else(|status| status.code(), |_| Code::Ok)
}

/// Calls `rpc` about the world's user as `token`.
async fn call(server: &TestServer, world: &World, rpc: &str, token: &str) -> Code {
    let user_id = world.user.id.clone();
    let (mut ingest, mut entries, mut pairing, mut admin) =
        (server.ingest(token), server.entries(token), server.pairing(token), server.admin(token));
    let at = ts(utc(DAY, 12));
    match rpc {
        "IngestSteps" => code(ingest.ingest_steps(steps_request(vec![steps(DAY, 2_000, 21)])).await),
        "IngestSleep" => {
            let session = pb::SleepSession {
                date: DAY.into(),
                total_sleep_minutes: 400,
                sleep_start: ts(utc(DAY, 0)),
                sleep_end: ts(utc(DAY, 7)),
                observed_at: ts(utc(DAY, 8)),
                ..Default::default()
            };
            code(
                ingest.ingest_sleep(pb::IngestSleepRequest { sessions: vec![session], time_zone: String::new() }).await,
            )
        }
        "IngestWorkouts" => {
            let request = pb::IngestWorkoutsRequest { deleted_workout_ids: vec!["w-1".into()], ..Default::default() };
            code(ingest.ingest_workouts(request).await)
        }
        "IngestBodyMetrics" => {
            let metric = pb::BodyMetric {
                r#type: pb::BodyMetricType::Weight.into(),
                value: 70.0,
                unit: pb::Unit::Kg.into(),
                measured_at: at,
                idempotency_key: String::new(),
            };
            code(
                ingest
                    .ingest_body_metrics(pb::IngestBodyMetricsRequest {
                        metrics: vec![metric],
                        time_zone: "UTC".into(),
                    })
                    .await,
            )
        }
        "RecordManualEntry" => {
            let values = pb::ManualValues { calories: Some(1_800), ..Default::default() };
            code(entries.record_manual_entry(manual(&user_id, DAY, values)).await)
        }
        "GetEntry" => code(entries.get_entry(pb::GetEntryRequest { user_id, date: DAY.into() }).await),
        "ListEntries" => {
            let request =
                pb::ListEntriesRequest { user_id, start_date: DAY.into(), end_date: DAY.into(), ..Default::default() };
            code(entries.list_entries(request).await)
        }
        "ExplainEntry" => code(entries.explain_entry(pb::ExplainEntryRequest { user_id, date: DAY.into() }).await),
        "StreamEntries" => {
            let request =
                pb::StreamEntriesRequest { user_ids: vec![user_id], after_position: Some(0), include_clients: false };
            code(entries.stream_entries(request).await)
        }
        "CreatePairingCode" => code(
            pairing
                .create_pairing_code(pb::CreatePairingCodeRequest { user_id: Some(user_id), ..Default::default() })
                .await,
        ),
        "RedeemPairingCode" => {
            let request = pb::RedeemPairingCodeRequest { code: "WRONG234".into(), device_name: "phone".into() };
            code(pairing.redeem_pairing_code(request).await)
        }
        "RevokeDevice" => code(pairing.revoke_device(pb::RevokeDeviceRequest { user_id, device_id: None }).await),
        "RecomputeDay" => code(admin.recompute_day(pb::RecomputeDayRequest { user_id, date: DAY.into() }).await),
        "RebuildProjections" => {
            code(admin.rebuild_projections(pb::RebuildProjectionsRequest { user_id: Some(user_id) }).await)
        }
        "CreateCoach" => code(admin.create_coach(pb::CreateCoachRequest { name: "New coach".into() }).await),
        "RotateCoachToken" => {
            code(admin.rotate_coach_token(pb::RotateCoachTokenRequest { coach_id: world.coach.id.clone() }).await)
        }
        "RevokeCoach" => code(admin.revoke_coach(pb::RevokeCoachRequest { coach_id: world.coach.id.clone() }).await),
        "ListClients" => {
            code(server.roster(token).list_clients(pb::ListClientsRequest { coach_id: world.coach.id.clone() }).await)
        }
        "RenameClient" => {
            let request = pb::RenameClientRequest { user_id, display_name: "Renamed".into() };
            code(server.roster(token).rename_client(request).await)
        }
        "GetSyncStatus" => code(server.roster(token).get_sync_status(pb::GetSyncStatusRequest {}).await),
        "GetPriorityRule" => code(admin.get_priority_rule(pb::GetPriorityRuleRequest {}).await),
        "SetPriorityRule" => {
            // The default order, written out: setting it changes no day.
            let rule = pb::PriorityRule {
                default_order: [pb::Source::Coach, pb::Source::Manual, pb::Source::Healthkit, pb::Source::Strava]
                    .map(i32::from)
                    .to_vec(),
                ..Default::default()
            };
            code(admin.set_priority_rule(pb::SetPriorityRuleRequest { rule: Some(rule) }).await)
        }
        "ExportUserData" => code(server.privacy(token).export_user_data(pb::ExportUserDataRequest { user_id }).await),
        "DeleteAccount" => code(server.privacy(token).delete_account(pb::DeleteAccountRequest {}).await),
        "EraseUser" => code(server.privacy(token).erase_user(pb::EraseUserRequest { user_id }).await),
        "ListAccessLog" => code(
            server.privacy(token).list_access_log(pb::ListAccessLogRequest { user_id, ..Default::default() }).await,
        ),
        other => panic!("no call for {other}"),
    }
}

async fn every_rpc_answers_every_caller_as_the_matrix_says(backend: Backend) {
    use Code::{NotFound as NF, Ok as OK, PermissionDenied as PD, Unauthenticated as UA};
    // Columns: no token, bad token, revoked token, device of the user, device of another user,
    // the user's coach, another coach, admin. (README, "Who may call what".)
    let matrix: [(&str, [Code; 8]); 26] = [
        ("IngestSteps", [UA, UA, UA, OK, OK, PD, PD, PD]),
        ("IngestSleep", [UA, UA, UA, OK, OK, PD, PD, PD]),
        ("IngestWorkouts", [UA, UA, UA, OK, OK, PD, PD, PD]),
        ("IngestBodyMetrics", [UA, UA, UA, OK, OK, PD, PD, PD]),
        ("RecordManualEntry", [UA, UA, UA, OK, PD, OK, PD, OK]),
        ("GetEntry", [UA, UA, UA, OK, PD, OK, PD, OK]),
        ("ListEntries", [UA, UA, UA, OK, PD, OK, PD, OK]),
        ("ExplainEntry", [UA, UA, UA, OK, PD, OK, PD, OK]),
        ("StreamEntries", [UA, UA, UA, OK, PD, OK, PD, OK]),
        ("CreatePairingCode", [UA, UA, UA, PD, PD, OK, PD, PD]),
        ("RedeemPairingCode", [NF, NF, NF, NF, NF, NF, NF, NF]),
        ("RevokeDevice", [UA, UA, UA, OK, PD, OK, PD, OK]),
        ("RecomputeDay", [UA, UA, UA, PD, PD, PD, PD, OK]),
        ("RebuildProjections", [UA, UA, UA, PD, PD, PD, PD, OK]),
        ("CreateCoach", [UA, UA, UA, PD, PD, PD, PD, OK]),
        // About the user's coach: the coach themselves may rotate their own token.
        ("RotateCoachToken", [UA, UA, UA, PD, PD, OK, PD, OK]),
        ("RevokeCoach", [UA, UA, UA, PD, PD, PD, PD, OK]),
        // The roster of the user's coach; a device asks about itself.
        ("ListClients", [UA, UA, UA, PD, PD, OK, PD, OK]),
        ("RenameClient", [UA, UA, UA, PD, PD, OK, PD, OK]),
        ("GetSyncStatus", [UA, UA, UA, OK, OK, PD, PD, PD]),
        // Any coach may read the rule every instance folds with; only an admin sets it.
        ("GetPriorityRule", [UA, UA, UA, PD, PD, OK, OK, OK]),
        ("SetPriorityRule", [UA, UA, UA, PD, PD, PD, PD, OK]),
        // A device deletes its own account (whichever user it is); an admin erases anyone.
        ("DeleteAccount", [UA, UA, UA, OK, OK, PD, PD, PD]),
        ("EraseUser", [UA, UA, UA, PD, PD, PD, PD, OK]),
        ("ExportUserData", [UA, UA, UA, OK, PD, OK, PD, OK]),
        // Who read the user's data: the user and an admin, not a coach.
        ("ListAccessLog", [UA, UA, UA, OK, PD, PD, PD, OK]),
    ];
    let server = TestServer::start(backend).await;
    let mut wrong = Vec::new();
    for (rpc, expected) in matrix {
        let world = World::new(&server).await;
        for (caller, expected) in CALLERS.into_iter().zip(expected) {
            let got = call(&server, &world, rpc, &world.token(&server, caller)).await;
            if got != expected {
                wrong.push(format!("{rpc} as {caller:?}: expected {expected:?}, got {got:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "the authorization matrix differs:\n{}", wrong.join("\n"));
}
