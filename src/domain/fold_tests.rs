//! The fold, told as examples a coach would recognise, and its properties.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use uuid::Uuid;

use super::*;
use crate::domain::event::{BodyMetricReport, ManualReport, SleepReport, StepsReport, WorkoutDeletion};
use crate::domain::field::FieldValue;

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 10).unwrap()
}

fn at(hour: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 0, 0, 0).unwrap() + Duration::hours(hour)
}

fn event(seq: i64, source: Source, observed_hour: i64, payload: Payload) -> StoredEvent {
    StoredEvent {
        seq,
        event_id: Uuid::from_u128(seq as u128),
        day: Some(day()),
        source,
        observed_at: at(observed_hour),
        recorded_at: at(observed_hour),
        actor: "device:test".into(),
        payload,
    }
}

fn healthkit_steps(seq: i64, observed_hour: i64, total_steps: u32) -> StoredEvent {
    let report = StepsReport { total_steps, source_devices: vec!["iPhone".into()] };
    event(seq, Source::Healthkit, observed_hour, Payload::Steps(report))
}

fn manual(seq: i64, set: Vec<FieldValue>, clear: Vec<Field>) -> StoredEvent {
    event(seq, Source::Manual, 12, Payload::Manual(ManualReport { set, clear }))
}

fn weight(seq: i64, measured_hour: i64, kg: f64) -> StoredEvent {
    let report = BodyMetricReport { metric: Metric::WeightKg, value: kg, measured_at: at(measured_hour) };
    event(seq, Source::Healthkit, measured_hour, Payload::BodyMetric(report))
}

fn workout(
    seq: i64,
    source: Source,
    id: &str,
    kind: &str,
    start_hour: i64,
    minutes: i64,
    observed_hour: i64,
) -> StoredEvent {
    let start = at(start_hour);
    let report = WorkoutReport {
        workout_id: id.into(),
        workout_type: kind.into(),
        start_time: start,
        end_time: start + Duration::minutes(minutes),
        duration_seconds: (minutes * 60) as f64,
        active_energy_kcal: Some(300.0),
        distance_meters: None,
        avg_heart_rate: None,
        max_heart_rate: None,
        source_device: "Watch".into(),
    };
    event(seq, source, observed_hour, Payload::Workout(report))
}

fn deletion(seq: i64, id: &str, observed_hour: i64) -> StoredEvent {
    let payload = Payload::WorkoutDeleted(WorkoutDeletion { workout_id: id.into() });
    event(seq, Source::Healthkit, observed_hour, payload)
}

/// A sleep session of `source` from `start_hour` for `hours`, all of it asleep, in stages.
fn sleep(seq: i64, source: Source, start_hour: i64, hours: i64, observed_hour: i64) -> StoredEvent {
    let minutes = (hours * 60) as u32;
    let report = SleepReport {
        total_sleep_minutes: minutes,
        in_bed_minutes: Some(minutes),
        awake_minutes: None,
        core_minutes: Some(minutes / 2),
        deep_minutes: Some(minutes / 4),
        rem_minutes: Some(minutes / 4),
        sleep_start: at(start_hour),
        sleep_end: at(start_hour + hours),
        source_devices: vec![format!("device {seq}")],
    };
    event(seq, source, observed_hour, Payload::Sleep(report))
}

fn provenance(d: &Day, field: Field) -> &Provenance {
    d.provenance.iter().find(|p| p.field == field).expect("field has provenance")
}

fn rule() -> PriorityRule {
    PriorityRule::default()
}

#[test]
fn the_latest_healthkit_total_is_the_days_steps() {
    let d = fold(day(), &[healthkit_steps(1, 9, 3_000), healthkit_steps(2, 18, 9_500)], &rule());
    assert_eq!(d.steps, Some(9_500));
    assert_eq!(d.data_sources, vec![Source::Healthkit]);
}

#[test]
fn a_stale_total_arriving_late_does_not_win() {
    // The offline queue replays the 09:00 total after the 18:00 one went through.
    let d = fold(day(), &[healthkit_steps(1, 18, 9_500), healthkit_steps(2, 9, 3_000)], &rule());
    assert_eq!(d.steps, Some(9_500));
}

#[test]
fn manual_steps_beat_healthkit_and_clearing_them_brings_healthkit_back() {
    let set = manual(2, vec![FieldValue::Steps(12_000)], vec![]);
    let d = fold(day(), &[healthkit_steps(1, 9, 8_432), set.clone()], &rule());
    assert_eq!(d.steps, Some(12_000));
    let p = provenance(&d, Field::Steps);
    assert_eq!((p.source, p.overridden), (Source::Manual, true));

    let later_sync = healthkit_steps(3, 20, 9_000);
    let d = fold(day(), &[healthkit_steps(1, 9, 8_432), set.clone(), later_sync.clone()], &rule());
    assert_eq!(d.steps, Some(12_000), "a later HealthKit sync does not undo the correction");

    let cleared = manual(4, vec![], vec![Field::Steps]);
    let d = fold(day(), &[healthkit_steps(1, 9, 8_432), set, later_sync, cleared], &rule());
    assert_eq!(d.steps, Some(9_000));
    assert_eq!(provenance(&d, Field::Steps).source, Source::Healthkit);
    assert_eq!(d.data_sources, vec![Source::Healthkit], "manual withdrew its only value");
}

fn manual_at(seq: i64, source: Source, recorded_hour: i64, set: Vec<FieldValue>, clear: Vec<Field>) -> StoredEvent {
    event(seq, source, recorded_hour, Payload::Manual(ManualReport { set, clear }))
}

#[test]
fn a_correction_names_the_values_it_outranked_highest_ranked_first() {
    // HealthKit said 8,432 then 9,120 (the latest counts); the client wrote 9,500; the coach 11,000.
    let events = [
        healthkit_steps(1, 9, 8_432),
        healthkit_steps(2, 20, 9_120),
        manual_at(3, Source::Manual, 21, vec![FieldValue::Steps(9_500), FieldValue::WeightKg(70.0)], vec![]),
        manual_at(4, Source::Coach, 22, vec![FieldValue::Steps(11_000), FieldValue::WeightKg(70.0)], vec![]),
        weight(5, 7, 70.0),
    ];
    let beaten = outranked(&events, &rule());
    let as_seen: Vec<_> = beaten.iter().map(|o| (o.field, o.source, o.value.clone(), o.event_id)).collect();
    assert_eq!(
        as_seen,
        vec![
            (Field::Steps, Source::Manual, FieldValue::Steps(9_500), Uuid::from_u128(3)),
            (Field::Steps, Source::Healthkit, FieldValue::Steps(9_120), Uuid::from_u128(2)),
        ],
        "weight: every source said 70 kg, so nothing was outranked"
    );
    let no_correction = outranked(&events[..2], &rule());
    assert_eq!(no_correction, vec![], "one source outranks nothing");
}

#[test]
fn a_coach_correction_stands_over_the_clients_entries_until_a_coach_clears_it() {
    // The client's 08:00 check-in, queued offline, arrives after the coach's 10:00 correction.
    let correction = manual_at(1, Source::Coach, 10, vec![FieldValue::Steps(7_000)], vec![]);
    let late_check_in = manual_at(2, Source::Manual, 8, vec![FieldValue::Steps(12_000)], vec![]);
    let clients_later = manual_at(3, Source::Manual, 14, vec![FieldValue::Steps(13_000)], vec![]);
    let d = fold(day(), &[correction.clone(), late_check_in, clients_later.clone()], &rule());
    assert_eq!(d.steps, Some(7_000));
    let p = provenance(&d, Field::Steps);
    assert_eq!((p.source, p.overridden), (Source::Coach, true));
    assert_eq!(d.data_sources, vec![Source::Coach, Source::Manual]);

    let client_clears = manual_at(4, Source::Manual, 15, vec![], vec![Field::Steps]);
    let d = fold(day(), &[correction.clone(), clients_later.clone(), client_clears], &rule());
    assert_eq!(d.steps, Some(7_000), "the client withdrawing their own value leaves the correction");

    let coach_clears = manual_at(5, Source::Coach, 16, vec![], vec![Field::Steps]);
    let d = fold(day(), &[correction, clients_later, coach_clears], &rule());
    assert_eq!((d.steps, provenance(&d, Field::Steps).source), (Some(13_000), Source::Manual));
}

#[test]
fn an_entry_made_earlier_but_delivered_later_does_not_undo_a_later_one() {
    let made_at_11 = manual_at(1, Source::Manual, 11, vec![FieldValue::WeightKg(80.2)], vec![]);
    let made_at_9 = manual_at(2, Source::Manual, 9, vec![FieldValue::WeightKg(81.0)], vec![]);
    assert_eq!(fold(day(), &[made_at_11, made_at_9], &rule()).weight_kg, Some(80.2));
    // Made at the same instant, the one delivered later (larger seq) is the later entry.
    let first = manual_at(1, Source::Manual, 9, vec![FieldValue::WeightKg(80.2)], vec![]);
    let second = manual_at(2, Source::Manual, 9, vec![FieldValue::WeightKg(81.0)], vec![]);
    assert_eq!(fold(day(), &[first, second], &rule()).weight_kg, Some(81.0));
}

#[test]
fn a_manual_value_equal_to_healthkit_is_not_an_override() {
    let set = manual(2, vec![FieldValue::Steps(8_432)], vec![]);
    let d = fold(day(), &[healthkit_steps(1, 9, 8_432), set], &rule());
    assert!(!provenance(&d, Field::Steps).overridden);
}

#[test]
fn manual_weight_does_not_freeze_healthkit_steps() {
    let w = manual(2, vec![FieldValue::WeightKg(81.5)], vec![]);
    let d = fold(day(), &[w, healthkit_steps(3, 20, 10_000), weight(4, 7, 82.0)], &rule());
    assert_eq!(d.steps, Some(10_000));
    assert_eq!(provenance(&d, Field::Steps).source, Source::Healthkit);
    assert_eq!(d.weight_kg, Some(81.5));
    assert!(provenance(&d, Field::WeightKg).overridden);
}

#[test]
fn the_latest_measurement_wins_even_when_reported_first() {
    let d = fold(day(), &[weight(1, 20, 80.0), weight(2, 7, 81.0)], &rule());
    assert_eq!(d.weight_kg, Some(80.0));
}

#[test]
fn the_newest_manual_entry_per_field_wins() {
    let first = manual(1, vec![FieldValue::Calories(2_000), FieldValue::Notes("ok".into())], vec![]);
    let second = manual(2, vec![FieldValue::Calories(2_400)], vec![]);
    let d = fold(day(), &[second, first], &rule());
    assert_eq!(d.calories, Some(2_400));
    assert_eq!(d.notes.as_deref(), Some("ok"));
}

#[test]
fn a_priority_file_can_put_healthkit_first_for_steps() {
    let rule = PriorityRule::from_json(r#"{"fields": {"steps": ["healthkit", "manual"]}}"#).unwrap();
    let set = manual(2, vec![FieldValue::Steps(12_000)], vec![]);
    let d = fold(day(), &[healthkit_steps(1, 9, 8_432), set], &rule);
    assert_eq!(d.steps, Some(8_432));
}

#[test]
fn a_workout_counts_once_per_id_with_its_latest_revision() {
    let first = workout(1, Source::Healthkit, "w1", "running", 7, 30, 8);
    let revised = workout(2, Source::Healthkit, "w1", "running", 7, 45, 9);
    let d = fold(day(), &[revised, first], &rule());
    assert_eq!(d.workouts.count, 1);
    assert_eq!(d.workouts.total_minutes, 45.0);
}

#[test]
fn a_later_deletion_removes_a_workout_and_an_earlier_one_does_not() {
    let w = workout(1, Source::Healthkit, "w1", "running", 7, 30, 8);
    assert_eq!(fold(day(), &[w.clone(), deletion(2, "w1", 10)], &rule()).workouts.count, 0);
    let re_added = workout(3, Source::Healthkit, "w1", "running", 7, 30, 11);
    assert_eq!(fold(day(), &[w, deletion(2, "w1", 10), re_added], &rule()).workouts.count, 1);
}

/// docs/DESIGN.md §5: a deletion removes the revisions observed before it or at the same instant.
#[test]
fn a_deletion_at_the_same_instant_as_the_revision_removes_it() {
    let w = workout(1, Source::Healthkit, "w1", "running", 7, 30, 9);
    assert_eq!(fold(day(), &[w.clone(), deletion(2, "w1", 9)], &rule()).workouts.count, 0);
    assert_eq!(fold(day(), &[deletion(1, "w1", 9), w], &rule()).workouts.count, 0, "whatever the order of arrival");
}

#[test]
fn a_nap_adds_to_the_night_and_a_revised_night_replaces_it() {
    let night = sleep(1, Source::Healthkit, -2, 8, 7);
    let nap = sleep(2, Source::Healthkit, 14, 1, 15);
    let d = fold(day(), &[night.clone(), nap.clone()], &rule());
    let record = d.sleep.as_ref().unwrap();
    assert_eq!((record.sessions, record.report.total_sleep_minutes, d.sleep_minutes), (2, 540, Some(540)));
    assert_eq!((record.report.sleep_start, record.report.sleep_end), (at(-2), at(6)), "the night's window");
    assert_eq!((record.event_id, record.report.deep_minutes), (night.event_id, Some(120 + 15)));
    let reason = &provenance(&d, Field::SleepMinutes).reason;
    assert_eq!(*reason, Reason::SleepSessionsSummed { source: Source::Healthkit, sessions: 2 });

    // The watch refines the night later (it overlaps the first report): it replaces it.
    let revised = sleep(3, Source::Healthkit, -1, 6, 9);
    for events in [[night.clone(), nap.clone(), revised.clone()], [revised.clone(), nap.clone(), night.clone()]] {
        let d = fold(day(), &events, &rule());
        let record = d.sleep.unwrap();
        assert_eq!((record.sessions, record.report.total_sleep_minutes), (2, 360 + 60));
        assert_eq!(record.event_id, revised.event_id);
    }
}

#[test]
fn a_day_of_one_sleep_session_is_stored_as_it_always_was() {
    let d = fold(day(), &[sleep(1, Source::Healthkit, -2, 8, 7)], &rule());
    let stored = serde_json::to_string(&d).unwrap();
    assert!(!stored.contains("sessions"), "{stored}");
    assert_eq!(serde_json::from_str::<Day>(&stored).unwrap().sleep.unwrap().sessions, 1);
    assert_eq!(
        provenance(&d, Field::SleepMinutes).reason,
        Reason::LatestSleepSummary { source: Source::Healthkit, observed_at: at(7) }
    );
}

/// Every field's reason names its winner's inputs.
#[test]
fn reasons_record_what_decided_each_field() {
    let set = manual(3, vec![FieldValue::Calories(2_000)], vec![]);
    let hk_sleep = event(
        4,
        Source::Healthkit,
        8,
        Payload::Sleep(SleepReport {
            total_sleep_minutes: 400,
            in_bed_minutes: None,
            awake_minutes: None,
            core_minutes: None,
            deep_minutes: None,
            rem_minutes: None,
            sleep_start: at(0),
            sleep_end: at(7),
            source_devices: vec![],
        }),
    );
    let events = [
        healthkit_steps(1, 9, 8_432),
        weight(2, 7, 81.0),
        set,
        hk_sleep,
        workout(5, Source::Strava, "s1", "ride", 10, 60, 12),
    ];
    let d = fold(day(), &events, &rule());
    let reasons: Vec<(Field, Reason)> = d.provenance.iter().map(|p| (p.field, p.reason.clone())).collect();
    let hk = Source::Healthkit;
    assert_eq!(
        reasons,
        [
            (Field::Calories, Reason::LatestManualEntry { actor: "device:test".into(), seq: 3 }),
            (Field::Sleep, Reason::HighestRankedSleepSession { source: hk }),
            (Field::SleepMinutes, Reason::LatestSleepSummary { source: hk, observed_at: at(8) }),
            (Field::Steps, Reason::LatestStepTotal { source: hk, observed_at: at(9) }),
            (Field::WeightKg, Reason::LatestMeasurement { source: hk, measured_at: at(7) }),
            (Field::Workouts, Reason::LatestWorkoutRevisions),
        ]
    );
}

#[test]
fn a_session_reported_by_healthkit_and_strava_counts_once_from_healthkit() {
    let hk = workout(1, Source::Healthkit, "hk-1", "running", 7, 60, 9);
    let strava = workout(2, Source::Strava, "strava-9", "Running", 7, 50, 9);
    let other = workout(3, Source::Strava, "strava-10", "cycling", 17, 40, 19);
    let d = fold(day(), &[strava, hk, other], &rule());
    assert_eq!(d.workouts.count, 2);
    assert_eq!(d.workouts.sessions[0].source, Source::Healthkit);
    let p = provenance(&d, Field::Workouts);
    assert_eq!((p.source, p.overridden), (Source::Healthkit, true));
}

#[test]
fn a_session_two_reporters_sent_counts_once_one_to_one_and_one_reporter_s_two_sessions_both_count() {
    let imported = StoredEvent {
        actor: "import:apple-health".into(),
        ..workout(1, Source::Healthkit, "apple-health-3f2a", "running", 7, 60, 9)
    };
    let synced = workout(2, Source::Healthkit, "7F3C2A9E", "running", 7, 55, 10);
    let d = fold(day(), &[imported.clone(), synced.clone()], &rule());
    // The later report of the two stands.
    assert_eq!((d.workouts.count, d.workouts.total_minutes), (1, 55.0));
    assert_eq!(d.workouts.sessions[0].report.workout_id, "7F3C2A9E");
    // Not overridden: no other source had a say.
    assert!(!provenance(&d, Field::Workouts).overridden);

    // One reporter's two overlapping runs (two apps recording) are its own to report, sent
    // by another device of the client too.
    let second =
        StoredEvent { actor: "device:ipad".into(), ..workout(3, Source::Healthkit, "8A1B", "running", 7, 50, 10) };
    let d = fold(day(), &[synced.clone(), second], &rule());
    assert_eq!((d.workouts.count, d.workouts.total_minutes), (2, 105.0));
    // The import's two overlapping runs, and the phone's later report of one of them: it
    // takes the place of one only (the import's later, of 50 minutes).
    let imported_too = StoredEvent {
        actor: "import:apple-health".into(),
        ..workout(4, Source::Healthkit, "apple-health-9c1d", "running", 7, 50, 9)
    };
    let d = fold(day(), &[imported, imported_too, synced], &rule());
    assert_eq!((d.workouts.count, d.workouts.total_minutes), (2, 115.0));
}

#[test]
fn a_workout_moved_to_another_day_leaves_this_one() {
    let mut moved = workout(2, Source::Healthkit, "w1", "running", 7, 30, 12);
    moved.day = Some(day().succ_opt().unwrap());
    let d = fold(day(), &[workout(1, Source::Healthkit, "w1", "running", 7, 30, 8), moved], &rule());
    assert_eq!(d.workouts.count, 0);
}

#[test]
fn a_stored_day_leaves_out_absent_values_and_a_day_stored_with_nulls_still_reads() {
    let d = fold(day(), &[healthkit_steps(1, 9, 8_432)], &rule());
    let stored = serde_json::to_string(&d).unwrap();
    assert!(!stored.contains("null") && !stored.contains("workouts"), "{stored}");
    let with_nulls = stored.replacen('{', r#"{"weight_kg":null,"sleep":null,"notes":null,"#, 1);
    assert_eq!(serde_json::from_str::<Day>(&with_nulls).unwrap(), d);
}

// --- properties -------------------------------------------------------------------------

fn any_event() -> impl Strategy<Value = (Source, i64, u8, u32)> {
    (prop_oneof![Just(Source::Healthkit), Just(Source::Manual), Just(Source::Strava)], 0i64..24, 0u8..7, 0u32..20_000)
}

/// Builds a varied day of events from small numbers; seqs are unique.
fn build(specs: &[(Source, i64, u8, u32)]) -> Vec<StoredEvent> {
    specs
        .iter()
        .enumerate()
        .map(|(i, (source, hour, kind, n))| {
            let seq = i as i64 + 1;
            let id = format!("w{}", n % 3);
            match (kind, source) {
                (0, _) => healthkit_steps(seq, *hour, *n),
                (1, _) => manual(seq, vec![FieldValue::Steps(*n)], vec![]),
                (2, _) => manual(seq, vec![], vec![Field::Steps]),
                (3, _) => weight(seq, *hour, 50.0 + f64::from(n % 50)),
                (4, Source::Manual) => deletion(seq, &id, *hour),
                (6, source) => sleep(seq, *source, *hour % 20, 1 + i64::from(n % 4), *hour + i64::from(n % 3)),
                (_, source) => workout(seq, *source, &id, "running", *hour % 20, 30 + i64::from(n % 60), *hour),
            }
        })
        .collect()
}

/// A manual entry of a coach (`true`) or the client, of one of three fields, setting it or
/// (`None`) clearing it.
type ManualSpec = (bool, usize, Option<u32>);

/// `specs` as events, the `i`th made at minute `i`, delivered (given their `seq`s) in `delivery` order.
fn delivered(specs: &[ManualSpec], delivery: &[usize]) -> Vec<StoredEvent> {
    let fields = [Field::Steps, Field::Calories, Field::SleepQuality];
    delivery
        .iter()
        .enumerate()
        .map(|(seq, &i)| {
            let (by_coach, field, value) = specs[i];
            let source = if by_coach { Source::Coach } else { Source::Manual };
            let (set, clear) = match (fields[field], value) {
                (_, None) => (vec![], vec![fields[field]]),
                (Field::Steps, Some(v)) => (vec![FieldValue::Steps(v)], vec![]),
                (Field::Calories, Some(v)) => (vec![FieldValue::Calories(v)], vec![]),
                (_, Some(v)) => (vec![FieldValue::SleepQuality(v)], vec![]),
            };
            let mut event = manual_at(seq as i64 + 1, source, 0, set, clear);
            event.observed_at = at(0) + Duration::minutes(i as i64);
            event.event_id = Uuid::from_u128(1_000 + i as u128);
            event
        })
        .collect()
}

/// What a day shows for the three fields: the values, and each field's source and events.
type Shown = (Option<u32>, Option<u32>, Option<u32>, Vec<(Field, Source, Vec<Uuid>)>);

fn shown(d: &Day) -> Shown {
    let sources = d.provenance.iter().map(|p| (p.field, p.source, p.event_ids.clone())).collect();
    (d.steps, d.calories, d.sleep_quality, sources)
}

proptest! {
    #[test]
    fn any_order_of_the_same_events_gives_the_same_day(specs in prop::collection::vec(any_event(), 1..25), seed in any::<u64>()) {
        let events = build(&specs);
        let mut shuffled = events.clone();
        shuffled.shuffle(&mut StdRng::seed_from_u64(seed));
        prop_assert_eq!(fold(day(), &events, &rule()), fold(day(), &shuffled, &rule()));
    }

    #[test]
    fn any_delivery_order_of_the_same_manual_entries_shows_the_same_values(
        specs in prop::collection::vec((any::<bool>(), 0usize..3, prop::option::of(1u32..10)), 1..12),
        seed in any::<u64>(),
    ) {
        let made: Vec<usize> = (0..specs.len()).collect();
        let mut delivery = made.clone();
        delivery.shuffle(&mut StdRng::seed_from_u64(seed));
        let in_order = fold(day(), &delivered(&specs, &made), &rule());
        prop_assert_eq!(shown(&in_order), shown(&fold(day(), &delivered(&specs, &delivery), &rule())));
        // Each field: the coach's latest entry if it sets the field, else the client's latest.
        let latest = |coach: bool, field: usize| specs.iter().rev().find(|s| s.0 == coach && s.1 == field).and_then(|s| s.2);
        let expected = |field: usize| latest(true, field).or(latest(false, field));
        prop_assert_eq!((in_order.steps, in_order.calories, in_order.sleep_quality), (expected(0), expected(1), expected(2)));
    }

    #[test]
    fn re_applying_an_event_changes_nothing(specs in prop::collection::vec(any_event(), 1..25), pick in any::<prop::sample::Index>()) {
        let events = build(&specs);
        let mut again = events.clone();
        again.push(events[pick.index(events.len())].clone());
        prop_assert_eq!(fold(day(), &events, &rule()), fold(day(), &again, &rule()));
    }

    #[test]
    fn a_day_reads_back_as_stored(specs in prop::collection::vec(any_event(), 0..25)) {
        let d = fold(day(), &build(&specs), &rule());
        let stored = serde_json::to_string(&d).unwrap();
        prop_assert_eq!(serde_json::from_str::<Day>(&stored).unwrap(), d);
    }

    #[test]
    fn an_older_healthkit_total_never_wins(
        specs in prop::collection::vec(any_event(), 0..25),
        first in (0i64..24, 0u32..20_000),
        total in 0u32..200_000,
    ) {
        // At least one step total, so there is always one for the stale report to lose to.
        let mut events = build(&specs);
        events.push(healthkit_steps(500, first.0, first.1));
        let before = fold(day(), &events, &rule());
        let newest = events.iter().filter(|e| matches!(e.payload, Payload::Steps(_))).map(|e| e.observed_at).max();
        // A report observed before every other step total, arriving last.
        let stale_hour = newest.map(|t| (t - at(0)).num_hours() - 1).expect("a step total");
        let mut with_stale = events.clone();
        with_stale.push(healthkit_steps(1_000, stale_hour, total));
        let after = fold(day(), &with_stale, &rule());
        prop_assert_eq!(before.steps, after.steps);
    }
}
