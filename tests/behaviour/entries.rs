//! Manual entries and reading days: per-field priority, corrections, listing, explaining.

use coachfit::proto::v1 as pb;
use tonic::Code;

use crate::common::*;
use crate::each_backend;

each_backend!(
    a_coach_correction_beats_healthkit_until_it_is_cleared,
    a_late_check_in_does_not_override_the_coachs_correction,
    an_entry_recorded_ahead_of_the_clock_is_refused,
    a_manual_weight_does_not_freeze_healthkit_steps,
    a_manual_entry_resent_with_its_key_is_a_duplicate,
    invalid_manual_entries_are_rejected_whole,
    list_entries_pages_through_a_date_range,
    explain_entry_names_the_winning_event_per_field,
    restarting_the_server_keeps_everything,
);

async fn a_coach_correction_beats_healthkit_until_it_is_cleared(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let mut coach = server.entries(&server.coach.token);
    let day = "2026-03-06";
    ingest.ingest_steps(steps_request(vec![steps(day, 8_432, 12)])).await.unwrap();

    let correction = manual(&server.client.id, day, pb::ManualValues { steps: Some(10_000), ..Default::default() });
    let recorded = coach.record_manual_entry(correction).await.unwrap().into_inner();
    assert!(!recorded.duplicate);
    let entry = recorded.entry.unwrap();
    assert_eq!(entry.steps, Some(10_000));
    assert_eq!(provenance(&entry, "steps"), (pb::Source::Coach, true));

    // A later HealthKit sync does not undo the correction.
    ingest.ingest_steps(steps_request(vec![steps(day, 9_100, 22)])).await.unwrap();
    let entry = server.entry(day).await;
    assert_eq!(entry.steps, Some(10_000));
    assert_eq!(entry.data_sources, vec![i32::from(pb::Source::Coach), i32::from(pb::Source::Healthkit)]);

    let mut clear = manual(&server.client.id, day, pb::ManualValues::default());
    clear.clear_fields = vec!["steps".into()];
    let entry = coach.record_manual_entry(clear).await.unwrap().into_inner().entry.unwrap();
    assert_eq!(entry.steps, Some(9_100));
    assert_eq!(provenance(&entry, "steps"), (pb::Source::Healthkit, false));
    assert_eq!(entry.data_sources, vec![i32::from(pb::Source::Healthkit)], "the coach's only value was withdrawn");
}

/// The phone's offline queue delivers at 12:00 a check-in its owner made at 08:00, after the
/// coach corrected the day at 10:00: the correction stands against every entry of the
/// client's, whenever made or delivered, until a coach clears it; the client's own entries
/// order by when they were made.
async fn a_late_check_in_does_not_override_the_coachs_correction(backend: Backend) {
    let server = TestServer::start(backend).await;
    let day = "2026-03-06";
    let (mut client, mut coach) = (server.entries(&server.client.token), server.entries(&server.coach.token));
    let steps_at = |user_id: &str, total: u32, hour: i64| {
        let mut request = manual(user_id, day, pb::ManualValues { steps: Some(total), ..Default::default() });
        request.recorded_at = ts(utc(day, hour));
        request
    };
    coach.record_manual_entry(steps_at(&server.client.id, 7_000, 10)).await.unwrap();

    let late = client.record_manual_entry(steps_at("", 12_000, 8)).await.unwrap().into_inner().entry.unwrap();
    assert_eq!(late.steps, Some(7_000));
    assert_eq!(provenance(&late, "steps"), (pb::Source::Coach, true), "the client's value shows as overridden");
    assert_eq!(late.data_sources, vec![i32::from(pb::Source::Coach), i32::from(pb::Source::Manual)]);

    let mut withdrawn = manual("", day, pb::ManualValues::default());
    (withdrawn.clear_fields, withdrawn.recorded_at) = (vec!["steps".into()], ts(utc(day, 9)));
    let entry = client.record_manual_entry(withdrawn).await.unwrap().into_inner().entry.unwrap();
    assert_eq!(entry.steps, Some(7_000), "a client cannot clear the coach's correction");
    client.record_manual_entry(steps_at("", 13_000, 11)).await.unwrap();
    assert_eq!(server.entry(day).await.steps, Some(7_000));

    let mut cleared = manual(&server.client.id, day, pb::ManualValues::default());
    cleared.clear_fields = vec!["steps".into()];
    let entry = coach.record_manual_entry(cleared).await.unwrap().into_inner().entry.unwrap();
    assert_eq!(entry.steps, Some(13_000), "the client's latest-made value, not the latest delivered");
    assert_eq!(provenance(&entry, "steps"), (pb::Source::Manual, false));
    assert!(server.verify().await);
}

async fn an_entry_recorded_ahead_of_the_clock_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut request = manual("", "2026-03-06", pb::ManualValues { calories: Some(2_000), ..Default::default() });
    request.recorded_at = ts(chrono::Utc::now() + chrono::Duration::minutes(10));
    let refused = server.entries(&server.client.token).record_manual_entry(request.clone()).await.unwrap_err();
    assert_eq!(
        (refused.code(), bad_request_fields(&refused)),
        (Code::InvalidArgument, vec!["recorded_at".to_string()])
    );
    let day = pb::GetEntryRequest { user_id: String::new(), date: "2026-03-06".into() };
    let nothing = server.entries(&server.client.token).get_entry(day).await.unwrap_err();
    assert_eq!(nothing.code(), Code::NotFound, "nothing stored");

    request.recorded_at = ts(chrono::Utc::now() + chrono::Duration::minutes(2));
    server.entries(&server.client.token).record_manual_entry(request).await.expect("within 5 minutes of the clock");
}

async fn a_manual_weight_does_not_freeze_healthkit_steps(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let day = "2026-03-07";
    let weight = manual("", day, pb::ManualValues { weight_kg: Some(72.4), ..Default::default() });
    server.entries(&server.client.token).record_manual_entry(weight).await.unwrap();
    ingest.ingest_steps(steps_request(vec![steps(day, 3_000, 12)])).await.unwrap();
    ingest.ingest_steps(steps_request(vec![steps(day, 11_000, 23)])).await.unwrap();

    let entry = server.entry(day).await;
    assert_eq!(entry.steps, Some(11_000));
    assert_eq!(provenance(&entry, "steps"), (pb::Source::Healthkit, false));
    assert_eq!(entry.weight_kg, Some(72.4));
    assert_eq!(provenance(&entry, "weight_kg"), (pb::Source::Manual, false));
}

async fn a_manual_entry_resent_with_its_key_is_a_duplicate(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut entries = server.entries(&server.client.token);
    let mut request = manual("", "2026-03-07", pb::ManualValues { calories: Some(2_100), ..Default::default() });
    request.idempotency_key = "checkin-42".into();
    let first = entries.record_manual_entry(request.clone()).await.unwrap().into_inner();
    let again = entries.record_manual_entry(request.clone()).await.unwrap().into_inner();
    assert!(again.duplicate);
    assert_eq!(first.event_id, again.event_id);
    assert_eq!(server.events("2026-03-07").await.len(), 1);

    request.values = Some(pb::ManualValues { calories: Some(1_900), ..Default::default() });
    let reused = entries.record_manual_entry(request).await.unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument);
    assert_eq!(bad_request_fields(&reused), vec!["idempotency_key"]);
}

async fn invalid_manual_entries_are_rejected_whole(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut entries = server.entries(&server.client.token);
    let values = pb::ManualValues {
        sleep_quality: Some(11),
        weight_kg: Some(f64::INFINITY),
        notes: Some("x".repeat(2_001)),
        steps: Some(4_000),
        ..Default::default()
    };
    let mut request = manual("", "2026-03-07", values);
    request.clear_fields = vec!["mood".into()];
    let status = entries.record_manual_entry(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut fields = bad_request_fields(&status);
    fields.sort();
    assert_eq!(fields, vec!["clear_fields[0]", "values.notes", "values.sleep_quality", "values.weight_kg"]);
    let nothing_stored =
        entries.get_entry(pb::GetEntryRequest { user_id: String::new(), date: "2026-03-07".into() }).await;
    assert_eq!(nothing_stored.unwrap_err().code(), Code::NotFound, "nothing is half-written");

    let empty = entries.record_manual_entry(manual("", "2026-03-07", pb::ManualValues::default())).await.unwrap_err();
    assert_eq!(bad_request_fields(&empty), vec!["values"]);
}

async fn list_entries_pages_through_a_date_range(backend: Backend) {
    let server = TestServer::start(backend).await;
    let samples = (1..=9).map(|d| steps(&format!("2026-02-{d:02}"), 1_000 * d, 20)).collect();
    server.ingest(&server.client.token).ingest_steps(steps_request(samples)).await.unwrap();
    let mut entries = server.entries(&server.coach.token);

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListEntriesRequest {
            user_id: server.client.id.clone(),
            start_date: "2026-02-02".into(),
            end_date: "2026-02-08".into(),
            page_size: 3,
            page_token: page_token.clone(),
        };
        let page = entries.list_entries(request).await.unwrap().into_inner();
        assert!(page.entries.len() <= 3);
        seen.extend(page.entries.iter().map(|e| (e.date.clone(), e.steps)));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let expected: Vec<_> = (2..=8).map(|d| (format!("2026-02-{d:02}"), Some(1_000 * d))).collect();
    assert_eq!(seen, expected);
}

async fn explain_entry_names_the_winning_event_per_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let day = "2026-03-06";
    let hk = server
        .ingest(&server.client.token)
        .ingest_steps(steps_request(vec![steps(day, 8_432, 12)]))
        .await
        .unwrap()
        .into_inner();
    let correction = manual(&server.client.id, day, pb::ManualValues { steps: Some(10_000), ..Default::default() });
    let manual_id =
        server.entries(&server.coach.token).record_manual_entry(correction).await.unwrap().into_inner().event_id;

    let request = pb::ExplainEntryRequest { user_id: server.client.id.clone(), date: day.into() };
    let explained = server.entries(&server.coach.token).explain_entry(request).await.unwrap().into_inner();
    let ids: Vec<_> = explained.events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids, vec![hk.results[0].event_id.clone(), manual_id.clone()]);
    assert_eq!(explained.events[1].actor, format!("coach:{}", server.coach.id));
    let steps = explained.decisions.iter().find(|d| d.field == "steps").unwrap();
    assert_eq!(steps.winning_event_ids, vec![manual_id]);
    assert!(steps.overridden);
    assert_eq!(
        steps.reason,
        format!("latest manual entry by coach:{} (event #{})", server.coach.id, explained.events[1].seq)
    );
    let beaten = pb::OutrankedValue {
        source: pb::Source::Healthkit as i32,
        value: Some(pb::outranked_value::Value::Number(8_432.0)),
        event_id: hk.results[0].event_id.clone(),
    };
    assert_eq!(steps.outranked, vec![beaten], "the HealthKit total the correction overrode");
}

async fn restarting_the_server_keeps_everything(backend: Backend) {
    let server = TestServer::start(backend).await;
    let day = "2026-03-06";
    server.ingest(&server.client.token).ingest_steps(steps_request(vec![steps(day, 6_543, 12)])).await.unwrap();
    let before = server.entry(day).await;

    let server = server.restart().await;
    assert_eq!(server.entry(day).await, before);
    let again = server
        .ingest(&server.client.token)
        .ingest_steps(steps_request(vec![steps(day, 6_543, 12)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&again), vec![pb::ItemStatus::Duplicate], "dedupe survives a restart");
}
