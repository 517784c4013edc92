//! A database an earlier release wrote (`tests/fixtures/before_versioned_hashes.sql`: event
//! hashes of the unversioned form, entries with reasons as sentences) keeps its promises
//! after the upgrade: every report the phone sends again is a duplicate of the event it
//! stored then, and every stored day verifies, reads and explains as before, at its
//! feed position.

use coachfit::proto::v1 as pb;
use pb::ItemStatus::Duplicate;

use crate::common::*;
use crate::each_backend;

each_backend!(reports_stored_before_the_upgrade_are_still_duplicates_and_days_keep_their_reasons);

/// The accounts in the fixture (the token as the earlier release printed it).
fn accounts() -> (Account, Account) {
    let coach = Account { id: "9c5a69f5-a1ca-471e-97a2-69ad06b5da4f".into(), token: String::new() };
    let client = Account {
        id: "d6a1bd3d-726d-4655-b7a8-54e3219b7b3f".into(),
        token: "5d9f78f1b93f5835e31b73b2f41117e56acf4f13901ca84e9518a5854ff6f077".into(),
    };
    (coach, client)
}

async fn reports_stored_before_the_upgrade_are_still_duplicates_and_days_keep_their_reasons(backend: Backend) {
    let (coach, client) = accounts();
    let data = include_str!("../fixtures/before_versioned_hashes.sql");
    let server = TestServer::start_on_earlier_database(backend, 2, data, coach, client).await;
    let token = server.client.token.clone();

    // The requests that wrote the fixture, as grpcurl sent them, and the events they stored.
    let mut ingest = server.ingest(&token);
    let totals = ingest
        .ingest_steps(steps_request(vec![
            pb::StepsSample {
                date: "2026-03-02".into(),
                total_steps: 8_432,
                observed_at: ts(utc("2026-03-02", 22)),
                source_devices: vec!["iPhone".into()],
                idempotency_key: String::new(),
            },
            pb::StepsSample {
                date: "2026-03-03".into(),
                total_steps: 5_000,
                observed_at: ts(utc("2026-03-03", 21)),
                source_devices: vec![],
                idempotency_key: "steps-key-1".into(),
            },
        ]))
        .await
        .unwrap()
        .into_inner();
    let sleep = pb::SleepSession {
        date: "2026-03-02".into(),
        total_sleep_minutes: 420,
        in_bed_minutes: Some(450),
        core_minutes: Some(200),
        deep_minutes: Some(100),
        rem_minutes: Some(120),
        sleep_start: ts(utc("2026-03-02", 4)),
        sleep_end: ts(utc("2026-03-02", 11) + chrono::Duration::minutes(30)),
        observed_at: ts(utc("2026-03-02", 12)),
        source_devices: vec!["Watch".into()],
        ..Default::default()
    };
    let sleep = ingest
        .ingest_sleep(pb::IngestSleepRequest { time_zone: "America/New_York".into(), sessions: vec![sleep] })
        .await
        .unwrap()
        .into_inner();
    let workout = pb::Workout {
        workout_id: "w1".into(),
        workout_type: "running".into(),
        start_time: ts(utc("2026-03-02", 13)),
        end_time: ts(utc("2026-03-02", 13) + chrono::Duration::minutes(30)),
        duration_seconds: 1_800.0,
        active_energy_kcal: Some(310.5),
        distance_meters: Some(5_000.0),
        avg_heart_rate: Some(150),
        source_device: "Watch".into(),
        observed_at: ts(utc("2026-03-02", 14)),
        ..Default::default()
    };
    let workouts = ingest
        .ingest_workouts(pb::IngestWorkoutsRequest {
            time_zone: "America/New_York".into(),
            workouts: vec![workout],
            deleted_workout_ids: vec!["w-never-seen".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let metrics = pb::IngestBodyMetricsRequest {
        time_zone: "America/New_York".into(),
        metrics: vec![pb::BodyMetric {
            r#type: pb::BodyMetricType::Weight.into(),
            value: 180.0,
            unit: pb::Unit::Lb.into(),
            measured_at: ts(utc("2026-03-02", 12)),
            idempotency_key: String::new(),
        }],
    };
    let metrics = ingest.ingest_body_metrics(metrics).await.unwrap().into_inner();
    let manual_request = pb::RecordManualEntryRequest {
        idempotency_key: "manual-1".into(),
        ..manual(
            "",
            "2026-03-02",
            pb::ManualValues { calories: Some(2_100), notes: Some("ok".into()), ..Default::default() },
        )
    };
    let manual = server.entries(&token).record_manual_entry(manual_request).await.unwrap().into_inner();

    let ids = |response: &pb::IngestResponse| -> Vec<String> {
        response.results.iter().map(|r| r.event_id.clone()).collect()
    };
    for response in [&totals, &sleep, &workouts, &metrics] {
        assert!(statuses(response).iter().all(|s| *s == Duplicate), "{response:?}");
    }
    assert_eq!(ids(&totals), ["01a22a6a-8f25-72ad-8f99-a1c0c2ebfdc0", "01a22a6a-8f25-72ad-8f99-a1c1c1a8cef4"]);
    assert_eq!(ids(&sleep), ["01a22a6a-9045-732e-be58-8dc74c3d45a3"]);
    assert_eq!(ids(&workouts), ["01a22a6a-910f-7473-9265-207106d48ac6", "01a22a6a-910f-7473-9265-2072ee5f068a"]);
    assert_eq!(ids(&metrics), ["01a22a6a-91fd-778f-95d6-4d37299d6dee"]);
    assert!(manual.duplicate);
    assert_eq!(manual.event_id, "01a22a6a-92c1-72b0-a867-a51d63025591");

    // Stored days verify and keep their positions through a rebuild, and explain in the
    // same words as before.
    assert!(server.verify().await, "every stored day matches its fold");
    let rebuild = pb::RebuildProjectionsRequest { user_id: None };
    server.admin(&server.admin_token).rebuild_projections(rebuild).await.unwrap();
    let entry = server.entry("2026-03-02").await;
    assert_eq!((entry.position, entry.steps, entry.calories), (6, Some(8_432), Some(2_100)));
    let request = pb::ExplainEntryRequest { user_id: String::new(), date: "2026-03-02".into() };
    let explained = server.entries(&token).explain_entry(request).await.unwrap().into_inner();
    let reason = |field: &str| explained.decisions.iter().find(|d| d.field == field).unwrap().reason.clone();
    assert_eq!(reason("steps"), "latest healthkit step total, observed 2026-03-02T22:00:00+00:00");
    assert_eq!(reason("calories"), "latest manual entry by device:9f287ee9-0393-46e4-aa3b-9213def79b6a (event #7)");
    assert_eq!(reason("sleep"), "healthkit sleep session ranks highest");
    assert_eq!(reason("weight_kg"), "latest healthkit measurement, measured 2026-03-02T12:00:00+00:00");

    // The roster's counts were filled in from the stored events (migration 0004); the
    // resends above were duplicates and count nothing.
    let synced = server.roster(&token).get_sync_status(pb::GetSyncStatusRequest {}).await.unwrap().into_inner();
    let counts: Vec<(String, u64)> = synced.kinds.iter().map(|k| (k.kind.clone(), k.events)).collect();
    let expected =
        [("body_metric", 1), ("manual", 1), ("sleep", 1), ("steps", 2), ("workout", 1), ("workout_deleted", 1)];
    assert_eq!(counts, expected.map(|(kind, n)| (kind.to_string(), n)));

    // The client took a roster position after the feed's head of then (migration 0007), so
    // a dashboard streaming from that head lists them.
    let request = pb::StreamEntriesRequest { user_ids: vec![], after_position: Some(6), include_clients: true };
    let mut stream = server.entries(&server.admin_token).stream_entries(request).await.unwrap().into_inner();
    match stream.message().await.unwrap().unwrap().kind {
        Some(pb::stream_entries_response::Kind::Client(update)) => {
            assert_eq!((update.position, update.client.unwrap().user_id), (7, server.client.id.clone()))
        }
        other => panic!("expected the client, got {other:?}"),
    }

    // New reports are still new.
    let new = ingest.ingest_steps(steps_request(vec![steps("2026-03-04", 7_000, 20)])).await.unwrap().into_inner();
    assert_eq!(statuses(&new), [pb::ItemStatus::Accepted]);
}
