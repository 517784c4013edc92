//! IngestWorkouts: revisions, deletions, and one session reported by two sources.

use chrono::Duration;
use coachfit::proto::v1 as pb;

use crate::common::*;
use crate::each_backend;

each_backend!(
    a_revised_workout_replaces_its_earlier_version,
    a_deleted_workout_leaves_the_day_and_a_replayed_delete_is_a_duplicate,
    a_run_from_healthkit_and_strava_counts_once,
    a_workout_moved_to_another_day_leaves_the_first_day,
);

pub fn run(id: &str, date: &str, start_hour: i64, minutes: i64, observed_hour: i64) -> pb::Workout {
    let start = utc(date, start_hour);
    pb::Workout {
        workout_id: id.into(),
        workout_type: "running".into(),
        start_time: ts(start),
        end_time: ts(start + Duration::minutes(minutes)),
        duration_seconds: (minutes * 60) as f64,
        active_energy_kcal: Some(400.0),
        distance_meters: Some(5_000.0),
        avg_heart_rate: Some(150),
        max_heart_rate: Some(175),
        source_device: "Apple Watch".into(),
        source: pb::Source::Unspecified.into(),
        observed_at: ts(utc(date, observed_hour)),
    }
}

fn request(workouts: Vec<pb::Workout>, deleted: Vec<&str>) -> pb::IngestWorkoutsRequest {
    pb::IngestWorkoutsRequest {
        workouts,
        deleted_workout_ids: deleted.into_iter().map(String::from).collect(),
        time_zone: "UTC".into(),
    }
}

async fn a_revised_workout_replaces_its_earlier_version(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let first =
        ingest.ingest_workouts(request(vec![run("hk-1", "2026-03-02", 7, 30, 8)], vec![])).await.unwrap().into_inner();
    let revised =
        ingest.ingest_workouts(request(vec![run("hk-1", "2026-03-02", 7, 45, 9)], vec![])).await.unwrap().into_inner();
    let replayed =
        ingest.ingest_workouts(request(vec![run("hk-1", "2026-03-02", 7, 30, 8)], vec![])).await.unwrap().into_inner();

    assert_eq!(statuses(&revised), vec![pb::ItemStatus::Accepted], "a revision is a new event");
    assert_ne!(first.results[0].event_id, revised.results[0].event_id);
    assert_eq!(statuses(&replayed), vec![pb::ItemStatus::Duplicate]);
    let summary = server.entry("2026-03-02").await.workouts.unwrap();
    assert_eq!((summary.count, summary.total_minutes), (1, 45.0));
}

async fn a_deleted_workout_leaves_the_day_and_a_replayed_delete_is_a_duplicate(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let workouts = vec![run("hk-1", "2026-03-02", 7, 30, 8), run("hk-2", "2026-03-02", 17, 20, 18)];
    ingest.ingest_workouts(request(workouts, vec![])).await.unwrap();
    let deleted = ingest.ingest_workouts(request(vec![], vec!["hk-1"])).await.unwrap().into_inner();
    assert_eq!(statuses(&deleted), vec![pb::ItemStatus::Accepted]);

    let summary = server.entry("2026-03-02").await.workouts.unwrap();
    assert_eq!(summary.count, 1);
    assert_eq!(summary.sessions[0].workout_id, "hk-2");
    let again = ingest.ingest_workouts(request(vec![], vec!["hk-1"])).await.unwrap().into_inner();
    assert_eq!(statuses(&again), vec![pb::ItemStatus::Duplicate]);
    assert_eq!(again.results[0].event_id, deleted.results[0].event_id);
    // A replay of the original report, observed before the deletion, does not bring it back.
    ingest.ingest_workouts(request(vec![run("hk-1", "2026-03-02", 7, 30, 8)], vec![])).await.unwrap();
    assert_eq!(server.entry("2026-03-02").await.workouts.unwrap().count, 1);
}

async fn a_run_from_healthkit_and_strava_counts_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut strava = run("strava-77", "2026-03-03", 7, 50, 10);
    strava.source = pb::Source::Strava.into();
    strava.workout_type = "Running".into();
    let workouts = vec![strava, run("hk-9", "2026-03-03", 7, 55, 9)];
    let response =
        server.ingest(&server.client.token).ingest_workouts(request(workouts, vec![])).await.unwrap().into_inner();
    assert_eq!(response.accepted, 2);

    let entry = server.entry("2026-03-03").await;
    let summary = entry.workouts.clone().unwrap();
    assert_eq!(summary.count, 1);
    assert_eq!(summary.sessions[0].workout_id, "hk-9");
    assert_eq!(provenance(&entry, "workouts"), (pb::Source::Healthkit, true));
    assert_eq!(entry.data_sources, vec![i32::from(pb::Source::Healthkit), i32::from(pb::Source::Strava)]);
}

async fn a_workout_moved_to_another_day_leaves_the_first_day(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    ingest.ingest_workouts(request(vec![run("hk-5", "2026-03-04", 7, 30, 8)], vec![])).await.unwrap();
    // The user fixes the date on the watch: same workout, a day later.
    ingest.ingest_workouts(request(vec![run("hk-5", "2026-03-05", 7, 30, 30)], vec![])).await.unwrap();

    assert_eq!(server.entry("2026-03-04").await.workouts.unwrap().count, 0);
    assert_eq!(server.entry("2026-03-05").await.workouts.unwrap().count, 1);
}
