//! `coachfit import apple-health`: a generated export of a year and more comes in as the
//! Health app would show it (steps the Watch and the iPhone both counted, once), into the
//! database or through a server as the app sends; running it again adds nothing.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use coachfit::proto::v1 as pb;

use crate::common::*;
use crate::each_backend;
use coachfit_testkit::health_export::{generate, ExpectedDay, Fixture, ZONE};

each_backend!(
    an_export_imported_twice_matches_what_health_shows_and_the_second_run_adds_nothing,
    an_export_sent_through_a_server_is_paced_by_its_rate_limit_and_arrives_whole,
);

/// Runs the import; its summary.
fn import(db_url: &str, args: &[&str]) -> serde_json::Value {
    let output = coachfit(db_url, &[&["import", "apple-health"], args].concat());
    assert!(output.status.success(), "import failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("a JSON summary")
}

/// Every entry of the user, by date.
async fn entries(server: &TestServer, from: NaiveDate, to: NaiveDate) -> BTreeMap<NaiveDate, pb::Entry> {
    let mut client = server.entries(&server.client.token);
    let (mut found, mut page_token) = (BTreeMap::new(), String::new());
    loop {
        let request = pb::ListEntriesRequest {
            user_id: String::new(),
            start_date: from.to_string(),
            end_date: to.to_string(),
            page_size: 366,
            page_token,
        };
        let page = client.list_entries(request).await.unwrap().into_inner();
        for entry in page.entries {
            found.insert(entry.date.parse().unwrap(), entry);
        }
        if page.next_page_token.is_empty() {
            return found;
        }
        page_token = page.next_page_token;
    }
}

fn close(got: Option<f64>, want: Option<f64>, tolerance: f64) -> bool {
    match (got, want) {
        (Some(got), Some(want)) => (got - want).abs() <= tolerance,
        (got, want) => got.is_none() && want.is_none(),
    }
}

/// Every day the fixture expects, as the service shows it; the differences, if any.
async fn differences(server: &TestServer, fixture: &Fixture) -> Vec<String> {
    let (first, last) = (*fixture.days.keys().next().unwrap(), *fixture.days.keys().last().unwrap());
    let stored = entries(server, first, last).await;
    let mut wrong = Vec::new();
    if stored.len() != fixture.days.len() {
        wrong.push(format!("{} days stored, {} expected", stored.len(), fixture.days.len()));
    }
    for (day, want) in &fixture.days {
        let Some(entry) = stored.get(day) else {
            wrong.push(format!("{day}: no entry"));
            continue;
        };
        let sleep = entry.sleep.clone().unwrap_or_default();
        let workouts = entry.workouts.clone().unwrap_or_default();
        let got = ExpectedDay {
            steps: entry.steps,
            sleep_minutes: entry.sleep_minutes,
            deep_minutes: sleep.deep_minutes,
            in_bed_minutes: sleep.in_bed_minutes,
            sleep_sessions: sleep.sessions,
            sleep_slack: 0,
            workouts: workouts.count,
            workout_kcal: workouts.active_kcal,
            workout_meters: workouts.distance_meters,
            weight_kg: entry.weight_kg,
            body_fat_percent: entry.body_fat_percent,
            lean_body_mass_kg: entry.lean_body_mass_kg,
            height_m: entry.height_m,
        };
        let slack = want.sleep_slack;
        let within_slack = |got: Option<u32>, want: Option<u32>| match (got, want) {
            (Some(got), Some(want)) => got.abs_diff(want) <= slack,
            (got, want) => got == want,
        };
        let same = got.steps == want.steps
            && within_slack(got.sleep_minutes, want.sleep_minutes)
            && within_slack(got.deep_minutes, want.deep_minutes)
            && got.in_bed_minutes == want.in_bed_minutes
            && got.sleep_sessions == want.sleep_sessions
            && got.workouts == want.workouts
            && (got.workout_kcal - want.workout_kcal).abs() < 0.01
            && (got.workout_meters - want.workout_meters).abs() < 0.01
            && close(got.weight_kg, want.weight_kg, 0.006)
            && close(got.body_fat_percent, want.body_fat_percent, 0.006)
            && close(got.lean_body_mass_kg, want.lean_body_mass_kg, 0.006)
            && close(got.height_m, want.height_m, 0.006);
        if !same {
            wrong.push(format!("{day}: got {got:?}, expected {want:?}"));
        }
    }
    wrong
}

async fn an_export_imported_twice_matches_what_health_shows_and_the_second_run_adds_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    // 400 days (both DST changes of 2024) and 400 heart-rate samples a day.
    let fixture = generate(dir.path(), 400, 400, 7);
    assert!(fixture.records > 200_000, "{} records", fixture.records);
    let file = fixture.path.to_str().unwrap();
    let args = [file, "--time-zone", ZONE, "--user-id", &server.client.id];

    let first = import(&server.db_url, &args);
    let items = fixture.step_days + fixture.sleep_sessions + fixture.workouts + fixture.body_metrics;
    assert_eq!(first["records_read"], fixture.records);
    assert_eq!(first["step_days"], fixture.step_days);
    assert_eq!(first["sleep_sessions"], fixture.sleep_sessions);
    assert_eq!(first["workouts"], fixture.workouts);
    assert_eq!(first["body_metrics"], fixture.body_metrics);
    assert_eq!((first["accepted"].as_u64(), first["rejected"].as_u64()), (Some(items), Some(0)), "{first}");
    let peak = first["peak_rss_mib"].as_f64().expect("the peak memory is printed");
    assert!(peak < 200.0, "{peak} MiB for a {} MB export", fixture.records * 200 / 1_000_000);

    let wrong = differences(&server, &fixture).await;
    assert!(wrong.is_empty(), "{} days differ:\n{}", wrong.len(), wrong[..wrong.len().min(10)].join("\n"));
    assert!(server.verify().await);

    let second = import(&server.db_url, &args);
    assert_eq!((second["accepted"].as_u64(), second["duplicates"].as_u64()), (Some(0), Some(items)), "{second}");
    assert!(differences(&server, &fixture).await.is_empty());

    // The phone, paired after the import, syncs one of the imported runs itself, under
    // HealthKit's own id: the run still counts once on its day.
    let day = fixture.days.iter().find(|(_, expected)| expected.workouts == 1).map(|(day, _)| *day).unwrap();
    let imported = server.entry(&day.to_string()).await.workouts.unwrap().sessions.remove(0);
    let synced = pb::Workout {
        workout_id: "7F3C2A9E-1B4D-4E8F-9A6B-2C5D8E1F0A37".into(),
        workout_type: imported.workout_type,
        start_time: imported.start_time,
        end_time: imported.end_time,
        duration_seconds: imported.duration_seconds,
        active_energy_kcal: imported.active_energy_kcal,
        distance_meters: imported.distance_meters,
        source_device: imported.source_device,
        observed_at: imported.end_time,
        ..Default::default()
    };
    let request =
        pb::IngestWorkoutsRequest { workouts: vec![synced], deleted_workout_ids: vec![], time_zone: ZONE.into() };
    let synced = server.ingest(&server.client.token).ingest_workouts(request).await.unwrap().into_inner();
    assert_eq!(statuses(&synced), [pb::ItemStatus::Accepted]);
    assert!(differences(&server, &fixture).await.is_empty(), "the run counted twice on {day}");
    assert!(server.verify().await);
}

async fn an_export_sent_through_a_server_is_paced_by_its_rate_limit_and_arrives_whole(backend: Backend) {
    // A device may send 20 items at once and 400 a second: every batch of the import waits
    // for the server's RetryInfo at least once.
    let limits = coachfit::server::Limits {
        device_burst_items: 20,
        device_items_per_second: 400,
        ..coachfit::server::Limits::default()
    };
    let server = TestServer::start_with_limits(backend, limits).await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = generate(dir.path(), 45, 5, 11);
    let file = fixture.path.to_str().unwrap();
    let uri = server.uri();
    let args = [file, "--time-zone", ZONE, "--server", &uri, "--device-token", &server.client.token];

    let first = import("sqlite://unused.db", &args);
    let items = fixture.step_days + fixture.sleep_sessions + fixture.workouts + fixture.body_metrics;
    assert_eq!((first["accepted"].as_u64(), first["rejected"].as_u64()), (Some(items), Some(0)), "{first}");
    let wrong = differences(&server, &fixture).await;
    assert!(wrong.is_empty(), "{} days differ:\n{}", wrong.len(), wrong[..wrong.len().min(10)].join("\n"));
    let second = import("sqlite://unused.db", &args);
    assert_eq!(second["duplicates"].as_u64(), Some(items), "{second}");
}
