//! AdminService, and the read models staying equal to the fold of their events.

use coachfit::proto::v1 as pb;
use tonic::Code;

use crate::common::*;
use crate::each_backend;

each_backend!(
    rebuild_and_recompute_reproduce_the_same_entries,
    verify_finds_no_difference_after_a_random_history,
    a_rebuild_of_every_kind_of_event_leaves_every_entry_as_it_was,
);

async fn rebuild_and_recompute_reproduce_the_same_entries(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    ingest
        .ingest_steps(steps_request(vec![steps("2026-03-01", 1_000, 10), steps("2026-03-02", 2_000, 10)]))
        .await
        .unwrap();
    let correction =
        manual(&server.client.id, "2026-03-01", pb::ManualValues { steps: Some(5_000), ..Default::default() });
    server.entries(&server.coach.token).record_manual_entry(correction).await.unwrap();
    let before = (server.entry("2026-03-01").await, server.entry("2026-03-02").await);

    let mut admin = server.admin(&server.admin_token);
    let stats = admin
        .rebuild_projections(pb::RebuildProjectionsRequest { user_id: Some(server.client.id.clone()) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((stats.days_rebuilt, stats.events_replayed), (2, 3));
    assert_eq!((server.entry("2026-03-01").await, server.entry("2026-03-02").await), before);

    let recomputed = admin
        .recompute_day(pb::RecomputeDayRequest { user_id: server.client.id.clone(), date: "2026-03-01".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recomputed.entry.unwrap(), before.0);
    let missing = admin
        .recompute_day(pb::RecomputeDayRequest { user_id: server.client.id.clone(), date: "2026-01-01".into() })
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
}

/// A random history of step totals, coach corrections and withdrawals; each day's steps are
/// checked against a reference written plainly here (the latest HealthKit total, unless a
/// correction stands), then `verify` and a rebuild must agree.
async fn verify_finds_no_difference_after_a_random_history(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let mut entries = server.entries(&server.coach.token);
    let mut rng = StdRng::seed_from_u64(0x5eed);
    // Per day: the latest HealthKit total as (observed hour, total), and the standing correction.
    type Reference = (Option<(i64, u32)>, Option<u32>);
    let mut expected: std::collections::BTreeMap<String, Reference> = Default::default();
    for _ in 0..60 {
        let day = format!("2026-03-{:02}", 1 + rng.gen_range(0..4));
        let (healthkit, correction) = expected.entry(day.clone()).or_default();
        match rng.gen_range(0..4) {
            0 | 1 => {
                let mut samples = Vec::new();
                for _ in 0..1 + rng.gen_range(0..3) {
                    let (total, hour) = (rng.gen_range(0..20_000) as u32, rng.gen_range(0..24) as i64);
                    // The latest observation wins; of two at one instant, the later report.
                    if healthkit.is_none_or(|(latest, _)| hour >= latest) {
                        *healthkit = Some((hour, total));
                    }
                    samples.push(steps(&day, total, hour));
                }
                ingest.ingest_steps(steps_request(samples)).await.unwrap();
            }
            2 => {
                let total = rng.gen_range(0..20_000) as u32;
                *correction = Some(total);
                let values = pb::ManualValues { steps: Some(total), ..Default::default() };
                entries.record_manual_entry(manual(&server.client.id, &day, values)).await.unwrap();
            }
            _ => {
                *correction = None;
                let mut clear = manual(&server.client.id, &day, pb::ManualValues::default());
                clear.clear_fields = vec!["steps".into()];
                entries.record_manual_entry(clear).await.unwrap();
            }
        }
    }
    for (day, (healthkit, correction)) in &expected {
        let steps = correction.or(healthkit.map(|(_, total)| total));
        assert_eq!(server.entry(day).await.steps, steps, "{day}");
    }
    assert!(server.verify().await, "every stored read model equals the fold of its events");
    let rebuild = pb::RebuildProjectionsRequest { user_id: None };
    let stats = server.admin(&server.admin_token).rebuild_projections(rebuild).await.unwrap().into_inner();
    assert_eq!(stats.days_rebuilt, expected.len() as u64);
    assert!(server.verify().await);
}

/// Rebuild reads events its own way (a range of days at once; on SQLite one row per day), so
/// it must read back every kind of payload exactly: sleep stages, body metrics in other
/// units, workouts revised onto another day or deleted, manual corrections.
async fn a_rebuild_of_every_kind_of_event_leaves_every_entry_as_it_was(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    ingest
        .ingest_steps(steps_request(vec![steps("2026-03-01", 8_000, 20), steps("2026-03-02", 9_000, 21)]))
        .await
        .unwrap();
    let night = utc("2026-03-01", 22);
    let session = pb::SleepSession {
        date: String::new(),
        total_sleep_minutes: 420,
        in_bed_minutes: Some(450),
        awake_minutes: Some(30),
        core_minutes: Some(210),
        deep_minutes: Some(95),
        rem_minutes: Some(115),
        sleep_start: ts(night),
        sleep_end: ts(night + chrono::Duration::hours(8)),
        observed_at: ts(night + chrono::Duration::hours(9)),
        source_devices: vec!["Apple Watch".into()],
        idempotency_key: String::new(),
    };
    ingest.ingest_sleep(pb::IngestSleepRequest { sessions: vec![session], time_zone: "UTC".into() }).await.unwrap();
    let metric = |kind: pb::BodyMetricType, value: f64, unit: pb::Unit| pb::BodyMetric {
        r#type: kind.into(),
        value,
        unit: unit.into(),
        measured_at: ts(utc("2026-03-02", 7)),
        idempotency_key: String::new(),
    };
    let metrics = vec![
        metric(pb::BodyMetricType::Weight, 176.3, pb::Unit::Lb),
        metric(pb::BodyMetricType::BodyFatPercentage, 18.5, pb::Unit::Percent),
    ];
    ingest.ingest_body_metrics(pb::IngestBodyMetricsRequest { metrics, time_zone: "UTC".into() }).await.unwrap();
    let workout = |id: &str, date: &str, observed_hour: i64| pb::Workout {
        workout_id: id.into(),
        workout_type: "running".into(),
        start_time: ts(utc(date, 6)),
        end_time: ts(utc(date, 7)),
        duration_seconds: 3_600.0,
        active_energy_kcal: Some(512.5),
        distance_meters: Some(10_000.0),
        avg_heart_rate: Some(150),
        max_heart_rate: Some(175),
        source_device: "Apple Watch".into(),
        source: pb::Source::Unspecified.into(),
        observed_at: ts(utc(date, observed_hour)),
    };
    let workouts = |workouts, deleted: Vec<&str>| pb::IngestWorkoutsRequest {
        workouts,
        deleted_workout_ids: deleted.into_iter().map(String::from).collect(),
        time_zone: "UTC".into(),
    };
    ingest
        .ingest_workouts(workouts(vec![workout("run", "2026-03-01", 8), workout("ride", "2026-03-02", 8)], vec![]))
        .await
        .unwrap();
    // The run moves to the 2nd, and the ride is deleted.
    ingest.ingest_workouts(workouts(vec![workout("run", "2026-03-02", 9)], vec!["ride"])).await.unwrap();
    let correction =
        manual(&server.client.id, "2026-03-02", pb::ManualValues { steps: Some(10_500), ..Default::default() });
    server.entries(&server.coach.token).record_manual_entry(correction).await.unwrap();

    let all_entries = || async {
        let request = pb::ListEntriesRequest {
            user_id: server.client.id.clone(),
            start_date: "2026-02-28".into(),
            end_date: "2026-03-03".into(),
            page_size: 10,
            page_token: String::new(),
        };
        server.entries(&server.coach.token).list_entries(request).await.unwrap().into_inner().entries
    };
    let before = all_entries().await;
    assert_eq!(before.len(), 2, "{before:?}");
    let sessions = |entry: &pb::Entry| -> Vec<String> {
        entry.workouts.iter().flat_map(|w| w.sessions.iter().map(|s| s.workout_id.clone())).collect()
    };
    assert_eq!((sessions(&before[0]), sessions(&before[1])), (vec![], vec!["run".to_string()]));

    let rebuild = pb::RebuildProjectionsRequest { user_id: None };
    let stats = server.admin(&server.admin_token).rebuild_projections(rebuild).await.unwrap().into_inner();
    assert_eq!(stats.days_rebuilt, 2);
    assert_eq!(all_entries().await, before, "a rebuild changes no entry");
    assert!(server.verify().await);
}
