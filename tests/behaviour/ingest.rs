//! IngestSteps, IngestSleep and IngestBodyMetrics: idempotency, stale reports, day
//! attribution and validation.

use coachfit::proto::v1 as pb;
use tonic::Code;

use crate::common::*;
use crate::each_backend;

each_backend!(
    a_resent_step_total_is_a_duplicate_with_the_same_event_id,
    an_older_step_total_arriving_later_changes_nothing,
    a_reused_idempotency_key_with_new_content_is_rejected,
    sleep_without_a_date_belongs_to_the_local_day_it_ends_across_dst,
    a_later_sleep_summary_replaces_the_earlier_one,
    body_metrics_are_stored_in_si_units_on_their_local_day,
    a_batch_keeps_its_valid_items_and_names_the_bad_field,
    whole_request_problems_are_invalid_argument_with_field_paths,
    nan_and_out_of_range_values_are_rejected_per_item,
    body_fat_as_a_fraction_is_a_percent_and_a_percent_below_one_is_refused,
    sleep_longer_than_its_session_is_refused,
);

async fn a_resent_step_total_is_a_duplicate_with_the_same_event_id(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let first = ingest.ingest_steps(steps_request(vec![steps("2026-03-02", 4_200, 15)])).await.unwrap().into_inner();
    let again = ingest.ingest_steps(steps_request(vec![steps("2026-03-02", 4_200, 15)])).await.unwrap().into_inner();

    assert_eq!(statuses(&first), vec![pb::ItemStatus::Accepted]);
    assert_eq!(statuses(&again), vec![pb::ItemStatus::Duplicate]);
    assert_eq!((again.accepted, again.duplicates, again.rejected), (0, 1, 0));
    assert_eq!(first.results[0].event_id, again.results[0].event_id);
    assert_eq!(server.events("2026-03-02").await.len(), 1, "a duplicate adds no event");
}

async fn an_older_step_total_arriving_later_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    ingest.ingest_steps(steps_request(vec![steps("2026-03-02", 9_800, 21)])).await.unwrap();
    let before = server.entry("2026-03-02").await;

    // The offline queue replays the 10:00 total hours later.
    let late = ingest.ingest_steps(steps_request(vec![steps("2026-03-02", 2_100, 10)])).await.unwrap().into_inner();
    assert_eq!(statuses(&late), vec![pb::ItemStatus::Accepted], "the report is kept as an event");

    let after = server.entry("2026-03-02").await;
    assert_eq!(after.steps, Some(9_800));
    assert_eq!(after.position, before.position, "an unchanged entry is not a change");
}

async fn a_reused_idempotency_key_with_new_content_is_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let mut sample = steps("2026-03-03", 1_000, 9);
    sample.idempotency_key = "steps-2026-03-03-a".into();
    ingest.ingest_steps(steps_request(vec![sample.clone()])).await.unwrap();
    sample.total_steps = 1_500;
    let reused = ingest.ingest_steps(steps_request(vec![sample])).await.unwrap().into_inner();

    assert_eq!(statuses(&reused), vec![pb::ItemStatus::Rejected]);
    let violation = &reused.results[0].violations[0];
    assert_eq!(violation.field, "samples[0].idempotency_key");
    assert_eq!(violation.reason, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(server.entry("2026-03-03").await.steps, Some(1_000));
}

fn sleep(start: chrono::DateTime<chrono::Utc>, hours: i64, total_minutes: u32) -> pb::SleepSession {
    pb::SleepSession {
        date: String::new(),
        total_sleep_minutes: total_minutes,
        in_bed_minutes: Some(total_minutes + 20),
        awake_minutes: Some(20),
        core_minutes: Some(total_minutes / 2),
        deep_minutes: Some(total_minutes / 4),
        rem_minutes: Some(total_minutes / 4),
        sleep_start: ts(start),
        sleep_end: ts(start + chrono::Duration::hours(hours)),
        observed_at: ts(start + chrono::Duration::hours(hours + 1)),
        source_devices: vec!["Apple Watch".into()],
        idempotency_key: String::new(),
    }
}

async fn sleep_without_a_date_belongs_to_the_local_day_it_ends_across_dst(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    // New York springs forward on 2026-03-08. This night ends at 04:30 UTC on the 9th: 00:30 EDT
    // on the 9th with the real offset, but 23:30 on the 8th with a fixed UTC-5.
    let session = sleep(utc("2026-03-08", 20) + chrono::Duration::minutes(30), 8, 420);
    let request = pb::IngestSleepRequest { sessions: vec![session], time_zone: "America/New_York".into() };
    let response = ingest.ingest_sleep(request).await.unwrap().into_inner();
    assert_eq!(statuses(&response), vec![pb::ItemStatus::Accepted]);

    let entry = server.entry("2026-03-09").await;
    assert_eq!(entry.sleep_minutes, Some(420));
    assert_eq!(entry.sleep.as_ref().map(|s| s.total_sleep_minutes), Some(420));
    let missing = server
        .entries(&server.client.token)
        .get_entry(pb::GetEntryRequest { user_id: String::new(), date: "2026-03-08".into() })
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
}

async fn a_later_sleep_summary_replaces_the_earlier_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let mut first = sleep(utc("2026-03-04", 4), 8, 400);
    first.date = "2026-03-04".into();
    let mut updated = first.clone();
    updated.total_sleep_minutes = 430;
    updated.observed_at = ts(utc("2026-03-04", 14));
    let request = pb::IngestSleepRequest { sessions: vec![updated, first], time_zone: String::new() };
    ingest.ingest_sleep(request).await.unwrap();

    let entry = server.entry("2026-03-04").await;
    assert_eq!(entry.sleep_minutes, Some(430), "replaced, not added");
}

async fn body_metrics_are_stored_in_si_units_on_their_local_day(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let metric = |kind: pb::BodyMetricType, value: f64, unit: pb::Unit, hour: i64| pb::BodyMetric {
        r#type: kind.into(),
        value,
        unit: unit.into(),
        measured_at: ts(utc("2026-03-05", hour)),
        idempotency_key: String::new(),
    };
    let request = pb::IngestBodyMetricsRequest {
        metrics: vec![
            // 02:00 UTC is still the 4th in New York.
            metric(pb::BodyMetricType::Weight, 180.0, pb::Unit::Lb, 2),
            metric(pb::BodyMetricType::Weight, 176.0, pb::Unit::Lb, 14),
            metric(pb::BodyMetricType::Height, 180.0, pb::Unit::Cm, 14),
            metric(pb::BodyMetricType::BodyFatPercentage, 18.5, pb::Unit::Percent, 14),
        ],
        time_zone: "America/New_York".into(),
    };
    let response = ingest.ingest_body_metrics(request).await.unwrap().into_inner();
    assert_eq!(response.accepted, 4);

    let day = server.entry("2026-03-05").await;
    // Shown to the gram: 176 lb is 79.83225712 kg, 180 lb 81.6466266 kg.
    assert_eq!(day.weight_kg, Some(79.832));
    assert_eq!(day.height_m, Some(1.8));
    assert_eq!(day.body_fat_percent, Some(18.5));
    let previous = server.entry("2026-03-04").await;
    assert_eq!(previous.weight_kg, Some(81.647));
}

async fn a_batch_keeps_its_valid_items_and_names_the_bad_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let samples = vec![
        steps("2026-03-01", 5_000, 20),
        steps("2026-03-02", 250_000, 20),
        steps("2026-03-03", 7_000, 20),
        steps("1999-12-31", 7_000, 20),
        pb::StepsSample { date: "2026-13-01".into(), ..steps("2026-03-04", 7_000, 20) },
    ];
    let response = ingest.ingest_steps(steps_request(samples)).await.unwrap().into_inner();

    use pb::ItemStatus::*;
    assert_eq!(statuses(&response), vec![Accepted, Rejected, Accepted, Rejected, Rejected]);
    assert_eq!((response.accepted, response.rejected), (2, 3));
    assert_eq!(response.results[1].violations[0].field, "samples[1].total_steps");
    assert_eq!(response.results[1].violations[0].reason, "OUT_OF_RANGE");
    assert_eq!(response.results[3].violations[0].field, "samples[3].date");
    assert_eq!(response.results[4].violations[0].reason, "INVALID_FORMAT");
    assert!(response.results[1].event_id.is_empty());
    assert_eq!(server.entry("2026-03-01").await.steps, Some(5_000));
    assert_eq!(server.entry("2026-03-03").await.steps, Some(7_000));
}

async fn whole_request_problems_are_invalid_argument_with_field_paths(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);

    let empty = ingest.ingest_steps(steps_request(vec![])).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert_eq!(bad_request_fields(&empty), vec!["samples"]);

    let too_many = ingest.ingest_steps(steps_request(vec![steps("2026-03-01", 1, 20); 401])).await.unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert!(too_many.message().contains("at most 400"), "{}", too_many.message());

    let mut request = steps_request(vec![steps("2026-03-01", 1, 20)]);
    request.time_zone = "Mars/Olympus_Mons".into();
    let unknown_zone = ingest.ingest_steps(request).await.unwrap_err();
    assert_eq!(unknown_zone.code(), Code::InvalidArgument);
    assert_eq!(bad_request_fields(&unknown_zone), vec!["time_zone"]);
    assert!(unknown_zone.message().contains("Mars/Olympus_Mons"));

    let mut undated = sleep(utc("2026-03-04", 4), 7, 400);
    undated.date = String::new();
    let no_zone = ingest
        .ingest_sleep(pb::IngestSleepRequest { sessions: vec![undated], time_zone: String::new() })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&no_zone), vec!["time_zone"]);

    let nothing = ingest.ingest_workouts(pb::IngestWorkoutsRequest::default()).await.unwrap_err();
    assert_eq!(nothing.code(), Code::InvalidArgument);
}

async fn nan_and_out_of_range_values_are_rejected_per_item(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let metric = |value: f64| pb::BodyMetric {
        r#type: pb::BodyMetricType::Weight.into(),
        value,
        unit: pb::Unit::Kg.into(),
        measured_at: ts(utc("2026-03-05", 14)),
        idempotency_key: String::new(),
    };
    let mut wrong_unit = metric(80.0);
    wrong_unit.unit = pb::Unit::Cm.into();
    let mut future = metric(80.0);
    future.measured_at = ts(chrono::Utc::now() + chrono::Duration::days(3));
    let request = pb::IngestBodyMetricsRequest {
        metrics: vec![metric(f64::NAN), metric(-3.0), wrong_unit, future, metric(80.0)],
        time_zone: "Europe/Berlin".into(),
    };
    let response = ingest.ingest_body_metrics(request).await.unwrap().into_inner();

    use pb::ItemStatus::*;
    assert_eq!(statuses(&response), vec![Rejected, Rejected, Rejected, Rejected, Accepted]);
    let first = |i: usize| response.results[i].violations[0].clone();
    assert_eq!((first(0).field.as_str(), first(0).reason.as_str()), ("metrics[0].value", "NOT_FINITE"));
    assert_eq!((first(1).field.as_str(), first(1).reason.as_str()), ("metrics[1].value", "OUT_OF_RANGE"));
    assert_eq!(first(2).field, "metrics[2].unit");
    assert_eq!(first(3).field, "metrics[3].measured_at");

    let mut sleep_bad = sleep(utc("2026-03-04", 4), 7, 400);
    sleep_bad.date = "2026-03-04".into();
    sleep_bad.sleep_end = sleep_bad.sleep_start;
    sleep_bad.in_bed_minutes = Some(10);
    let response = ingest
        .ingest_sleep(pb::IngestSleepRequest { sessions: vec![sleep_bad], time_zone: String::new() })
        .await
        .unwrap()
        .into_inner();
    let fields: Vec<_> = response.results[0].violations.iter().map(|v| v.field.as_str()).collect();
    assert!(fields.contains(&"sessions[0].sleep_end"), "{fields:?}");
    assert!(fields.contains(&"sessions[0].in_bed_minutes"), "{fields:?}");
}

/// HealthKit reports body fat as a fraction of one: sent with UNIT_FRACTION it is stored as
/// a percent; sent as a percent below 1 it is refused with a message naming the fraction
/// unit. Inches and lean body mass convert too.
async fn body_fat_as_a_fraction_is_a_percent_and_a_percent_below_one_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let metric = |kind: pb::BodyMetricType, value: f64, unit: pb::Unit| pb::BodyMetric {
        r#type: kind.into(),
        value,
        unit: unit.into(),
        measured_at: ts(utc("2026-03-05", 14)),
        idempotency_key: String::new(),
    };
    let request = pb::IngestBodyMetricsRequest {
        metrics: vec![
            metric(pb::BodyMetricType::BodyFatPercentage, 0.185, pb::Unit::Fraction),
            metric(pb::BodyMetricType::BodyFatPercentage, 0.185, pb::Unit::Percent),
            metric(pb::BodyMetricType::Height, 70.0, pb::Unit::In),
            metric(pb::BodyMetricType::LeanBodyMass, 130.0, pb::Unit::Lb),
            metric(pb::BodyMetricType::BodyFatPercentage, 1.5, pb::Unit::Fraction),
        ],
        time_zone: "America/New_York".into(),
    };
    let response = ingest.ingest_body_metrics(request).await.unwrap().into_inner();
    use pb::ItemStatus::{Accepted, Rejected};
    assert_eq!(statuses(&response), [Accepted, Rejected, Accepted, Accepted, Rejected]);
    let refused = &response.results[1].violations[0];
    assert_eq!((refused.field.as_str(), refused.reason.as_str()), ("metrics[1].value", "OUT_OF_RANGE"));
    assert!(refused.description.contains("UNIT_FRACTION"), "{}", refused.description);

    let day = server.entry("2026-03-05").await;
    // 0.185 × 100 is 18.499999999999996 in floating point; 70 in is 1.778 m; 130 lb is
    // 58.9670081 kg, shown to the gram.
    assert_eq!(day.body_fat_percent, Some(18.5));
    assert_eq!(day.height_m, Some(1.778));
    assert_eq!(day.lean_body_mass_kg, Some(58.967));
}

/// Minutes of sleep, in bed or in stages that do not fit in the session's window are
/// refused with the field's path; a session whose minutes fit is stored.
async fn sleep_longer_than_its_session_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let start = utc("2026-03-04", 4);
    let one_hour = |total: u32| pb::SleepSession { date: "2026-03-04".into(), ..sleep(start, 1, total) };
    let no_stages = pb::SleepSession {
        in_bed_minutes: None,
        awake_minutes: Some(50),
        core_minutes: Some(30),
        deep_minutes: None,
        rem_minutes: None,
        ..one_hour(40)
    };
    // Stages whose sum overflows 32 bits (the hostile-input suite found the server
    // panicking on it) are refused like any other out-of-range stage.
    let overflowing = pb::SleepSession { deep_minutes: Some(u32::MAX), rem_minutes: Some(u32::MAX), ..one_hour(40) };
    let request = pb::IngestSleepRequest {
        sessions: vec![one_hour(1_400), no_stages, one_hour(40), overflowing],
        time_zone: "UTC".into(),
    };
    let response = server.ingest(&server.client.token).ingest_sleep(request).await.unwrap().into_inner();
    use pb::ItemStatus::{Accepted, Rejected};
    assert_eq!(statuses(&response), [Rejected, Rejected, Accepted, Rejected]);
    let fields = |i: usize| -> Vec<String> { response.results[i].violations.iter().map(|v| v.field.clone()).collect() };
    assert!(fields(0).contains(&"sessions[0].total_sleep_minutes".to_string()), "{:?}", fields(0));
    assert_eq!(fields(1), ["sessions[1].sleep_end"], "80 minutes of stages in a 60-minute window");
    assert_eq!(server.entry("2026-03-04").await.sleep_minutes, Some(40));
}
