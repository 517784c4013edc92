//! What a careless or hostile client sends must not corrupt a day, halt a feed, or break
//! `verify`: numbers whose sums would overflow, inconsistent workouts, timestamps finer
//! than the store keeps or not valid at all, an unreadable stored entry, and control
//! characters (PostgreSQL's text cannot hold NUL; SQLite's can, so both refuse it).

use coachfit::proto::v1 as pb;
use pb::stream_entries_response::Kind;
use pb::ItemStatus::{Accepted, Rejected};

use crate::common::*;
use crate::each_backend;
use crate::workouts::run;

each_backend!(
    workouts_whose_numbers_would_overflow_or_contradict_are_rejected_with_field_paths,
    an_ios_timestamp_with_nanoseconds_is_kept_to_the_microsecond_and_verifies,
    an_unreadable_stored_entry_is_skipped_by_catch_up_and_live_streams,
    a_date_past_year_9999_is_refused_rather_than_compared_as_text,
    huge_bad_input_gets_invalid_argument_with_a_short_message,
    control_characters_in_identifiers_are_refused_alike_by_both_backends,
    messages_say_what_is_wrong_once,
);

/// A one-hour run on 2026-03-02 (5 km, heart rate 150/175).
fn workout(id: &str) -> pb::Workout {
    run(id, "2026-03-02", 7, 60, 9)
}

async fn workouts_whose_numbers_would_overflow_or_contradict_are_rejected_with_field_paths(backend: Backend) {
    let server = TestServer::start(backend).await;
    let far = pb::Workout { distance_meters: Some(1.7e308), ..workout("far") };
    let endless = pb::Workout { duration_seconds: 1e300, ..workout("endless") };
    let racing_heart = pb::Workout { avg_heart_rate: Some(180), max_heart_rate: Some(150), ..workout("heart") };
    let fine = workout("fine");
    let request = pb::IngestWorkoutsRequest {
        workouts: vec![far.clone(), pb::Workout { workout_id: "far-2".into(), ..far }, endless, racing_heart, fine],
        deleted_workout_ids: vec![],
        time_zone: "UTC".into(),
    };
    let response = server.ingest(&server.client.token).ingest_workouts(request).await.unwrap().into_inner();
    assert_eq!(statuses(&response), [Rejected, Rejected, Rejected, Rejected, Accepted]);
    let violation = |i: usize| {
        let v = &response.results[i].violations[0];
        (v.field.clone(), v.reason.clone())
    };
    assert_eq!(violation(0), ("workouts[0].distance_meters".to_string(), "OUT_OF_RANGE".to_string()));
    assert_eq!(violation(2), ("workouts[2].duration_seconds".to_string(), "INCONSISTENT".to_string()));
    assert_eq!(violation(3), ("workouts[3].avg_heart_rate".to_string(), "INCONSISTENT".to_string()));

    let entry = server.entry("2026-03-02").await;
    let summary = entry.workouts.unwrap();
    assert_eq!((summary.count, summary.distance_meters), (1, 5_000.0));
    assert!(server.verify().await);
}

async fn an_ios_timestamp_with_nanoseconds_is_kept_to_the_microsecond_and_verifies(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let at = utc("2026-03-02", 22);
    let sample = |nanos: i32| pb::StepsSample {
        observed_at: Some(prost_types::Timestamp { seconds: at.timestamp(), nanos }),
        ..steps("2026-03-02", 8_432, 22)
    };
    let stored = ingest.ingest_steps(steps_request(vec![sample(123_456_789)])).await.unwrap().into_inner();
    assert_eq!(statuses(&stored), [Accepted]);
    assert!(server.verify().await, "the stored day equals a fold of what was stored");
    let events = server.events("2026-03-02").await;
    assert_eq!(events[0].observed_at.unwrap().nanos, 123_456_000);

    // The same report at the same microsecond is the same report.
    let again = ingest.ingest_steps(steps_request(vec![sample(123_456_999)])).await.unwrap().into_inner();
    assert_eq!(statuses(&again), [pb::ItemStatus::Duplicate]);

    let invalid = ingest.ingest_steps(steps_request(vec![sample(1_000_000_000)])).await.unwrap().into_inner();
    assert_eq!(statuses(&invalid), [Rejected]);
    let violation = &invalid.results[0].violations[0];
    assert_eq!((violation.field.as_str(), violation.reason.as_str()), ("samples[0].observed_at", "INVALID_FORMAT"));
}

/// A day stored unreadable (an earlier release let a sum overflow into a null) is skipped,
/// logged, by a catch-up and by the live relay: the entries after it still reach everyone.
async fn an_unreadable_stored_entry_is_skipped_by_catch_up_and_live_streams(backend: Backend) {
    let server = TestServer::start(backend).await;
    let other = server.new_client(&server.coach.id).await;
    let admin = server.entries(&server.admin_token);
    let live_request = pb::StreamEntriesRequest { user_ids: vec![], after_position: None, include_clients: false };
    let mut live = admin.clone().stream_entries(live_request).await.unwrap().into_inner();
    assert!(matches!(live.message().await.unwrap().unwrap().kind, Some(Kind::Heartbeat(_))));

    // An unreadable entry at the feed's next position, as the broken release left it.
    server
        .execute_sql(&format!(
            "INSERT INTO entries (user_id, day, position, updated_at, body)
             VALUES ('{}', '2026-03-01', (SELECT position + 1 FROM feed_position), {}, '{{\"steps\": \"NaN\"}}')",
            server.client.id,
            server.epoch_sql(),
        ))
        .await;
    server.execute_sql("UPDATE feed_position SET position = position + 1").await;
    server.ingest(&other.token).ingest_steps(steps_request(vec![steps("2026-03-02", 4_321, 20)])).await.unwrap();

    // Live: the other user's update arrives (heartbeats may come first).
    let next_update = async {
        loop {
            if let Some(Kind::Update(update)) = live.message().await.unwrap().unwrap().kind {
                return update;
            }
        }
    };
    let update = tokio::time::timeout(std::time::Duration::from_secs(30), next_update)
        .await
        .expect("the update after the unreadable entry arrives");
    let request = pb::GetEntryRequest { user_id: String::new(), date: "2026-03-02".into() };
    let stored = server.entries(&other.token).get_entry(request).await.unwrap().into_inner().entry.unwrap();
    assert_eq!((update.position, update.entry.unwrap().user_id), (stored.position, other.id.clone()));

    // Catch-up from the start: every readable entry, then heartbeats, no error.
    let mut catch_up = admin
        .clone()
        .stream_entries(pb::StreamEntriesRequest { user_ids: vec![], after_position: Some(0), include_clients: false })
        .await
        .unwrap()
        .into_inner();
    match catch_up.message().await.unwrap().unwrap().kind {
        Some(Kind::Update(update)) => {
            assert_eq!((update.position, update.entry.unwrap().steps), (stored.position, Some(4_321)))
        }
        other => panic!("expected the readable update, got {other:?}"),
    }
    assert!(matches!(catch_up.message().await.unwrap().unwrap().kind, Some(Kind::Heartbeat(_))));
}

async fn a_date_past_year_9999_is_refused_rather_than_compared_as_text(backend: Backend) {
    let server = TestServer::start(backend).await;
    server
        .ingest(&server.client.token)
        .ingest_steps(steps_request(vec![steps("2026-03-02", 1_000, 20)]))
        .await
        .unwrap();
    let mut entries = server.entries(&server.client.token);
    let request = |end: &str| pb::ListEntriesRequest {
        user_id: String::new(),
        start_date: "2000-01-01".into(),
        end_date: end.into(),
        page_size: 0,
        page_token: String::new(),
    };
    let refused = entries.list_entries(request("+10000-01-01")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(bad_request_fields(&refused), ["end_date"]);
    let listed = entries.list_entries(request("9999-12-31")).await.unwrap().into_inner();
    assert_eq!(listed.entries.len(), 1);
}

/// A 10 KB time zone or 20 KB date is named in the error, not copied into it: the answer
/// stays INVALID_ARGUMENT instead of trailers too large for the client.
async fn huge_bad_input_gets_invalid_argument_with_a_short_message(backend: Backend) {
    let server = TestServer::start(backend).await;
    let request =
        pb::IngestStepsRequest { time_zone: "Z".repeat(10_000), ..steps_request(vec![steps("2026-03-02", 1, 20)]) };
    let zone = server.ingest(&server.client.token).ingest_steps(request).await.unwrap_err();
    let date = pb::GetEntryRequest { user_id: String::new(), date: "9".repeat(20_000) };
    let date = server.entries(&server.client.token).get_entry(date).await.unwrap_err();
    // Hundreds of bad fields in one request: the details name the first few, and the
    // answer is still INVALID_ARGUMENT (the hostile-input suite found it a protocol error).
    let values = pb::ManualValues { notes: Some("\0".into()), ..Default::default() };
    let many = pb::RecordManualEntryRequest {
        clear_fields: vec!["\0not a field".repeat(20); 500],
        ..manual("", "UTC", values)
    };
    let many = server.entries(&server.client.token).record_manual_entry(many).await.unwrap_err();
    assert!(bad_request_fields(&many).contains(&"clear_fields".to_string()), "{:?}", bad_request_fields(&many));
    assert!(bad_request_fields(&many).len() <= 20);
    assert!(many.details().len() < 4_000, "{} bytes of details", many.details().len());
    for status in [zone, date] {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().len() < 200, "{}", status.message());
        assert!(status.details().len() < 500, "{} bytes of details", status.details().len());
    }
}

/// Every identifier, id and name a client sends: a NUL (or another control character) is
/// INVALID_ARGUMENT with the field's path on both databases, and the batch's valid items
/// are still stored.
async fn control_characters_in_identifiers_are_refused_alike_by_both_backends(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let keyed = |key: &str, total| pb::StepsSample { idempotency_key: key.into(), ..steps("2026-03-02", total, 20) };
    let request = steps_request(vec![keyed("a\0b", 1_000), keyed("ok", 2_000)]);
    let response = ingest.ingest_steps(request).await.unwrap().into_inner();
    assert_eq!(statuses(&response), [Rejected, Accepted]);
    let violation = &response.results[0].violations[0];
    assert_eq!(
        (violation.field.as_str(), violation.reason.as_str()),
        ("samples[0].idempotency_key", "INVALID_CHARACTER")
    );

    let request = pb::IngestWorkoutsRequest {
        workouts: vec![
            workout("nul\0id"),
            workout("bell\u{7}"),
            pb::Workout { source_device: "\0".into(), ..workout("x") },
            workout("fine"),
        ],
        deleted_workout_ids: vec!["gone\0".into()],
        time_zone: "UTC".into(),
    };
    let response = ingest.ingest_workouts(request).await.unwrap().into_inner();
    assert_eq!(statuses(&response), [Rejected, Rejected, Rejected, Accepted, Rejected]);
    let fields: Vec<_> = response.results.iter().flat_map(|r| r.violations.iter().map(|v| v.field.clone())).collect();
    assert_eq!(
        fields,
        ["workouts[0].workout_id", "workouts[1].workout_id", "workouts[2].source_device", "deleted_workout_ids[0]"]
    );
    assert_eq!(server.entry("2026-03-02").await.workouts.unwrap().count, 1);

    // Notes are prose: a line break is fine, a NUL is not.
    let notes = |text: &str| pb::ManualValues { notes: Some(text.into()), ..Default::default() };
    let mut entries = server.entries(&server.client.token);
    entries.record_manual_entry(manual("", "2026-03-02", notes("slept badly\nsore legs"))).await.unwrap();
    let refused = entries.record_manual_entry(manual("", "2026-03-02", notes("a\0b"))).await.unwrap_err();
    assert_eq!(bad_request_fields(&refused), ["values.notes"]);

    // Ids in reads, names and devices: refused before they reach the database.
    let nul = "client\0".to_string();
    let coach_entries = server.entries(&server.coach.token);
    let get = pb::GetEntryRequest { user_id: nul.clone(), date: "2026-03-02".into() };
    let stream = pb::StreamEntriesRequest {
        user_ids: vec![server.client.id.clone(), nul.clone()],
        after_position: None,
        include_clients: false,
    };
    let admin = server.admin(&server.admin_token);
    let recompute = pb::RecomputeDayRequest { user_id: nul.clone(), date: "2026-03-02".into() };
    let rebuild = pb::RebuildProjectionsRequest { user_id: Some(nul.clone()) };
    let coach = pb::CreateCoachRequest { name: "Coach\0Carla".into() };
    let code = pb::CreatePairingCodeRequest { user_id: Some(nul.clone()), ..Default::default() };
    let redeem = pb::RedeemPairingCodeRequest { code: "ABCDEFGH".into(), device_name: "Ana\0s iPhone".into() };
    let revoke = pb::RevokeDeviceRequest { user_id: server.client.id.clone(), device_id: Some("d\0".into()) };
    let refusals = [
        ("user_id", coach_entries.clone().get_entry(get).await.unwrap_err()),
        ("user_ids[1]", coach_entries.clone().stream_entries(stream).await.map(|_| ()).unwrap_err()),
        ("user_id", admin.clone().recompute_day(recompute).await.unwrap_err()),
        ("user_id", admin.clone().rebuild_projections(rebuild).await.unwrap_err()),
        ("name", admin.clone().create_coach(coach).await.unwrap_err()),
        ("user_id", server.pairing(&server.coach.token).create_pairing_code(code).await.unwrap_err()),
        ("device_name", server.pairing("").redeem_pairing_code(redeem).await.unwrap_err()),
        ("device_id", server.pairing(&server.coach.token).revoke_device(revoke).await.unwrap_err()),
    ];
    for (field, status) in refusals {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(bad_request_fields(&status), [field]);
    }
    assert!(server.verify().await);
}

/// Messages a person reads: a day that does not exist is not blamed on its format, a field
/// is not named twice, an empty device name is called required.
async fn messages_say_what_is_wrong_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let no_such_day = pb::GetEntryRequest { user_id: String::new(), date: "2026-02-30".into() };
    let no_such_day = server.entries(&server.client.token).get_entry(no_such_day).await.unwrap_err();
    assert_eq!(no_such_day.message(), "date: 2026-02-30 is not a day of the calendar");

    let no_user = pb::GetEntryRequest { user_id: String::new(), date: "2026-03-02".into() };
    let no_user = server.entries(&server.coach.token).get_entry(no_user).await.unwrap_err();
    assert_eq!(no_user.message().matches("user_id").count(), 1, "{}", no_user.message());

    let unnamed = pb::RedeemPairingCodeRequest { code: "ABCDEFGH".into(), device_name: "  ".into() };
    let unnamed = server.pairing("").redeem_pairing_code(unnamed).await.unwrap_err();
    assert_eq!(unnamed.code(), tonic::Code::InvalidArgument);
    assert_eq!(unnamed.message(), "device_name: must not be empty");
}
