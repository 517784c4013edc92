//! Request messages → events. Each item is checked on its own by a `Checker` under its
//! path in the request (`samples[3]`), which every violation of the item starts with.

use chrono::{DateTime, Duration, Utc};

use crate::domain::event::{
    BodyMetricReport, KeyReuse, ManualReport, Metric, NewEvent, Payload, SleepReport, StepsReport, WorkoutDeletion,
    WorkoutReport, KG_PER_LB, M_PER_INCH,
};
use crate::domain::field::{Field, FieldValue};
use crate::domain::validate::{batch_size, Checker, Context, MAX_KEY_LEN, MAX_NOTES_CHARS, MAX_STEPS};
use crate::domain::{quoted, reason, Source, Violation};
use crate::proto::v1 as pb;

/// One item of a batch, checked: where it is in the request, and its event or violations.
pub struct CheckedItem {
    pub path: String,
    pub result: Result<NewEvent, Vec<Violation>>,
}

/// The events of the items that passed their checks, in order.
pub fn valid_events(checked: &[CheckedItem]) -> Vec<NewEvent> {
    checked.iter().filter_map(|c| c.result.as_ref().ok().cloned()).collect()
}

/// Checks every item of the request's list `list` (`samples`), each under its path.
pub fn check_all<T>(
    list: &str,
    items: &[T],
    ctx: Context,
    check: impl Fn(Context, &str, &T) -> Result<NewEvent, Vec<Violation>>,
) -> Vec<CheckedItem> {
    let paths = (0..items.len()).map(|index| format!("{list}[{index}]"));
    paths
        .zip(items)
        .map(|(path, item)| {
            let result = check(ctx, &path, item);
            CheckedItem { path, result }
        })
        .collect()
}

pub fn steps_request(ctx: Context, r: &pb::IngestStepsRequest) -> Vec<CheckedItem> {
    check_all("samples", &r.samples, ctx, steps_sample)
}

pub fn sleep_request(ctx: Context, r: &pb::IngestSleepRequest) -> Vec<CheckedItem> {
    check_all("sessions", &r.sessions, ctx, sleep_session)
}

/// The workouts, then the deletions.
pub fn workouts_request(ctx: Context, r: &pb::IngestWorkoutsRequest) -> Vec<CheckedItem> {
    let mut checked = check_all("workouts", &r.workouts, ctx, workout);
    checked.extend(check_all("deleted_workout_ids", &r.deleted_workout_ids, ctx, |ctx, path, id| {
        workout_deletion(ctx, path, id)
    }));
    checked
}

pub fn body_metrics_request(ctx: Context, r: &pb::IngestBodyMetricsRequest) -> Vec<CheckedItem> {
    check_all("metrics", &r.metrics, ctx, body_metric)
}

/// The longest distance one workout may report (1,000 km): with every item bounded, a
/// day's sums stay finite however many workouts it has.
const MAX_WORKOUT_METERS: f64 = 1_000_000.0;

/// A protobuf timestamp as `(seconds, nanos)`.
fn instant(ts: &Option<prost_types::Timestamp>) -> Option<(i64, i32)> {
    ts.as_ref().map(|t| (t.seconds, t.nanos))
}

pub fn steps_sample(ctx: Context, path: &str, s: &pb::StepsSample) -> Result<NewEvent, Vec<Violation>> {
    let mut c = Checker::new(path, ctx.now);
    let day = c.day("date", &s.date);
    let total_steps = c.at_most_u32("total_steps", s.total_steps, MAX_STEPS);
    let observed_at = c.instant("observed_at", instant(&s.observed_at));
    let source_devices = c.devices(&s.source_devices);
    let key = c.idempotency_key(&s.idempotency_key);
    let event = day.zip(observed_at).map(|(day, observed_at)| {
        let payload = Payload::Steps(StepsReport { total_steps, source_devices });
        NewEvent::new(Some(day), Source::Healthkit, observed_at, payload, key, KeyReuse::Reject)
    });
    c.finish(event)
}

pub fn sleep_session(ctx: Context, path: &str, s: &pb::SleepSession) -> Result<NewEvent, Vec<Violation>> {
    let mut c = Checker::new(path, ctx.now);
    let minutes = 24 * 60;
    let total_sleep_minutes = c.at_most_u32("total_sleep_minutes", s.total_sleep_minutes, minutes);
    let in_bed_minutes = c.u32_between("in_bed_minutes", s.in_bed_minutes, 0, minutes);
    let stages = [
        ("awake_minutes", s.awake_minutes),
        ("core_minutes", s.core_minutes),
        ("deep_minutes", s.deep_minutes),
        ("rem_minutes", s.rem_minutes),
    ];
    // Summed wide: out-of-range stages are reported, and must not overflow the sum meanwhile.
    let stage_sum: u64 =
        stages.iter().filter_map(|(field, v)| c.u32_between(field, *v, 0, minutes)).map(u64::from).sum();
    if let Some(in_bed) = in_bed_minutes {
        if stage_sum > u64::from(in_bed) {
            c.fail(
                "in_bed_minutes",
                reason::INCONSISTENT,
                format!("stages add up to {stage_sum} minutes, more than {in_bed} in bed"),
            );
        }
    }
    let start = c.instant("sleep_start", instant(&s.sleep_start));
    let end = c.instant("sleep_end", instant(&s.sleep_end));
    if let (Some(start), Some(end)) = (start, end) {
        if end <= start {
            c.fail("sleep_end", reason::INCONSISTENT, "must be after sleep_start");
        } else if end - start > Duration::hours(24) {
            c.fail("sleep_end", reason::OUT_OF_RANGE, "a sleep session lasts at most 24 hours");
        } else {
            // Whole minutes of the window, rounded up: a session's minutes fit in it.
            let window = u64::try_from(((end - start).num_seconds() + 59) / 60).unwrap_or(u64::MAX);
            // Stages that overflow it are blamed on the window (the in-bed check names them).
            let spans = [
                ("total_sleep_minutes", Some(u64::from(total_sleep_minutes))),
                ("in_bed_minutes", in_bed_minutes.map(u64::from)),
                ("sleep_end", Some(stage_sum)),
            ];
            for (field, minutes) in spans {
                match minutes {
                    Some(minutes) if minutes > window => c.fail(
                        field,
                        reason::INCONSISTENT,
                        format!("{minutes} minutes do not fit in the session's {window} minutes"),
                    ),
                    _ => {}
                }
            }
        }
    }
    let observed_at = c.instant("observed_at", instant(&s.observed_at));
    let day = match s.date.is_empty() {
        false => c.day("date", &s.date),
        true => c.derived_day("sleep_end", end, ctx.zone),
    };
    let source_devices = c.devices(&s.source_devices);
    let key = c.idempotency_key(&s.idempotency_key);
    let event = match (day, start, end, observed_at) {
        (Some(day), Some(sleep_start), Some(sleep_end), Some(observed_at)) => {
            let payload = Payload::Sleep(SleepReport {
                total_sleep_minutes,
                in_bed_minutes,
                awake_minutes: s.awake_minutes,
                core_minutes: s.core_minutes,
                deep_minutes: s.deep_minutes,
                rem_minutes: s.rem_minutes,
                sleep_start,
                sleep_end,
                source_devices,
            });
            Some(NewEvent::new(Some(day), Source::Healthkit, observed_at, payload, key, KeyReuse::Reject))
        }
        _ => None,
    };
    c.finish(event)
}

pub fn workout(ctx: Context, path: &str, w: &pb::Workout) -> Result<NewEvent, Vec<Violation>> {
    let mut c = Checker::new(path, ctx.now);
    let workout_id = c.text("workout_id", &w.workout_id, 1, MAX_KEY_LEN);
    let workout_type = c.text("workout_type", &w.workout_type, 1, 100);
    let start = c.instant("start_time", instant(&w.start_time));
    let end = c.instant("end_time", instant(&w.end_time));
    if let (Some(start), Some(end)) = (start, end) {
        if end <= start {
            c.fail("end_time", reason::INCONSISTENT, "must be after start_time");
        }
    }
    let duration_seconds = c.number("duration_seconds", Some(w.duration_seconds), 0.0, true, f64::MAX);
    let active_energy_kcal = c.number("active_energy_kcal", w.active_energy_kcal, 0.0, false, 20_000.0);
    let distance_meters = c.number("distance_meters", w.distance_meters, 0.0, false, MAX_WORKOUT_METERS);
    if let (Some(start), Some(end), Some(duration)) = (start, end, duration_seconds) {
        // HealthKit's duration leaves out pauses, so it fits in the session's window.
        let window = (end - start).num_microseconds().map_or(f64::MAX, |us| us as f64 / 1e6);
        if duration > window + 1.0 {
            c.fail("duration_seconds", reason::INCONSISTENT, "longer than end_time - start_time");
        }
    }
    let avg_heart_rate = c.u32_between("avg_heart_rate", w.avg_heart_rate, 30, 250);
    let max_heart_rate = c.u32_between("max_heart_rate", w.max_heart_rate, 30, 250);
    if let (Some(avg), Some(max)) = (avg_heart_rate, max_heart_rate) {
        if avg > max {
            c.fail("avg_heart_rate", reason::INCONSISTENT, "above max_heart_rate");
        }
    }
    let source_device = c.text("source_device", &w.source_device, 0, MAX_KEY_LEN);
    let source = match pb::Source::try_from(w.source) {
        Ok(pb::Source::Unspecified | pb::Source::Healthkit) => Some(Source::Healthkit),
        Ok(pb::Source::Strava) => Some(Source::Strava),
        _ => {
            c.fail("source", reason::OUT_OF_RANGE, "a workout comes from SOURCE_HEALTHKIT or SOURCE_STRAVA");
            None
        }
    };
    let observed_at = c.instant("observed_at", instant(&w.observed_at));
    let day = c.derived_day("start_time", start, ctx.zone);
    let event = match (day, start, end, observed_at, source, duration_seconds) {
        (Some(day), Some(start_time), Some(end_time), Some(observed_at), Some(source), Some(duration_seconds)) => {
            let payload = Payload::Workout(WorkoutReport {
                workout_id: workout_id.clone(),
                workout_type,
                start_time,
                end_time,
                duration_seconds,
                active_energy_kcal,
                distance_meters,
                avg_heart_rate,
                max_heart_rate,
                source_device,
            });
            Some(NewEvent::new(Some(day), source, observed_at, payload, Some(workout_id), KeyReuse::Revise))
        }
        _ => None,
    };
    c.finish(event)
}

/// A deletion is observed when the server receives it; its day is the deleted workout's,
/// which only the store knows.
pub fn workout_deletion(ctx: Context, path: &str, workout_id: &str) -> Result<NewEvent, Vec<Violation>> {
    let mut c = Checker::new("", ctx.now);
    let workout_id = c.text(path, workout_id, 1, MAX_KEY_LEN);
    let payload = Payload::WorkoutDeleted(WorkoutDeletion { workout_id: workout_id.clone() });
    let event = NewEvent::new(None, Source::Healthkit, ctx.now, payload, Some(workout_id), KeyReuse::Reject);
    c.finish(Some(event))
}

pub fn body_metric(ctx: Context, path: &str, m: &pb::BodyMetric) -> Result<NewEvent, Vec<Violation>> {
    use pb::{BodyMetricType as T, Unit as U};
    let mut c = Checker::new(path, ctx.now);
    let unit = U::try_from(m.unit).unwrap_or(U::Unspecified);
    // (metric, factor to SI, upper bound in SI)
    let kind = match (T::try_from(m.r#type).unwrap_or(T::Unspecified), unit) {
        (T::Weight, U::Kg) => Some((Metric::WeightKg, 1.0, 700.0)),
        (T::Weight, U::Lb) => Some((Metric::WeightKg, KG_PER_LB, 700.0)),
        (T::LeanBodyMass, U::Kg) => Some((Metric::LeanBodyMassKg, 1.0, 700.0)),
        (T::LeanBodyMass, U::Lb) => Some((Metric::LeanBodyMassKg, KG_PER_LB, 700.0)),
        (T::Height, U::M) => Some((Metric::HeightM, 1.0, 3.0)),
        (T::Height, U::Cm) => Some((Metric::HeightM, 0.01, 3.0)),
        (T::Height, U::In) => Some((Metric::HeightM, M_PER_INCH, 3.0)),
        (T::BodyFatPercentage, U::Percent) => Some((Metric::BodyFatPercent, 1.0, 100.0)),
        (T::BodyFatPercentage, U::Fraction) => Some((Metric::BodyFatPercent, 100.0, 100.0)),
        (T::Unspecified, _) => {
            c.fail("type", reason::REQUIRED, "a BODY_METRIC_TYPE is required");
            None
        }
        (t, u) => {
            c.fail("unit", reason::INCONSISTENT, format!("{} is not a unit for {}", u.as_str_name(), t.as_str_name()));
            None
        }
    };
    let value = kind.and_then(|(metric, factor, max)| {
        if !m.value.is_finite() {
            c.fail("value", reason::NOT_FINITE, "must be a finite number");
            return None;
        }
        let si = m.value * factor;
        let in_range = match metric {
            Metric::BodyFatPercent => (0.0..=max).contains(&si),
            _ => si > 0.0 && si <= max,
        };
        if !in_range {
            c.fail("value", reason::OUT_OF_RANGE, format!("{} is out of range for {}", m.value, unit.as_str_name()));
        } else if unit == U::Percent && si < MIN_BODY_FAT_PERCENT {
            // No one lives below 1 % body fat; 0.185 is HealthKit's fraction for 18.5 %.
            let hint = "below 1 %: for a fraction of one (HealthKit's 0.185 for 18.5 %) send UNIT_FRACTION";
            c.fail("value", reason::OUT_OF_RANGE, format!("{} % is {hint}", m.value));
        }
        Some((metric, si))
    });
    let measured_at = c.instant("measured_at", instant(&m.measured_at));
    let day = c.derived_day("measured_at", measured_at, ctx.zone);
    let key = c.idempotency_key(&m.idempotency_key);
    let event = match (value, measured_at, day) {
        (Some((metric, value)), Some(measured_at), Some(day)) => {
            let payload = Payload::BodyMetric(BodyMetricReport { metric, value, measured_at });
            Some(NewEvent::new(Some(day), Source::Healthkit, measured_at, payload, key, KeyReuse::Reject))
        }
        _ => None,
    };
    c.finish(event)
}

/// The least body fat a percent may say; a smaller number is a fraction sent as a percent.
const MIN_BODY_FAT_PERCENT: f64 = 1.0;

/// Makes a field's value from a number (`FieldValue::Steps`).
type ValueOf<T> = fn(T) -> FieldValue;

/// A manual entry; its violations fail the whole request.
/// A manual entry of `source`: the client's own (`Manual`) or a coach's correction (`Coach`).
pub fn manual_entry(
    now: DateTime<Utc>,
    source: Source,
    r: &pb::RecordManualEntryRequest,
) -> Result<NewEvent, Vec<Violation>> {
    let mut c = Checker::new("", now);
    let day = c.day("date", &r.date);
    let recorded_at = c.recorded_at("recorded_at", instant(&r.recorded_at));
    let v = r.values.clone().unwrap_or_default();
    let mut set: Vec<FieldValue> = Vec::new();
    // (the field's value, what was sent, bounds)
    let counts: [(ValueOf<u32>, Option<u32>, u32, u32); 5] = [
        (FieldValue::Steps, v.steps, 0, MAX_STEPS),
        (FieldValue::Calories, v.calories, 0, 50_000),
        (FieldValue::SleepMinutes, v.sleep_minutes, 0, 24 * 60),
        (FieldValue::SleepQuality, v.sleep_quality, 1, 10),
        (FieldValue::PerceivedStress, v.perceived_stress, 1, 10),
    ];
    for (value_of, value, min, max) in counts {
        let field = value_of(0).field();
        if let Some(n) = c.u32_between(&format!("values.{}", field.as_str()), value, min, max) {
            set.push(value_of(n));
        }
    }
    // (the field's value, what was sent, whether it must be above 0, maximum)
    let amounts: [(ValueOf<f64>, Option<f64>, bool, f64); 5] = [
        (FieldValue::WeightKg, v.weight_kg, true, 700.0),
        (FieldValue::ProteinGrams, v.protein_grams, false, 5_000.0),
        (FieldValue::CarbsGrams, v.carbs_grams, false, 5_000.0),
        (FieldValue::FatGrams, v.fat_grams, false, 5_000.0),
        (FieldValue::FiberGrams, v.fiber_grams, false, 5_000.0),
    ];
    for (value_of, value, positive, max) in amounts {
        let field = value_of(0.0).field();
        if let Some(x) = c.number(&format!("values.{}", field.as_str()), value, 0.0, positive, max) {
            set.push(value_of(x));
        }
    }
    if let Some(notes) = &v.notes {
        let notes = c.prose("values.notes", notes, MAX_NOTES_CHARS);
        set.push(FieldValue::Notes(notes));
    }
    set.sort_by_key(|value| value.field().as_str());

    let mut clear = Vec::new();
    c.keep(batch_size("clear_fields", r.clear_fields.len(), 0, Field::MANUAL.len()));
    for (i, name) in r.clear_fields.iter().enumerate().take(Field::MANUAL.len()) {
        let path = format!("clear_fields[{i}]");
        match Field::parse_manual(name) {
            None => c.fail(&path, reason::UNKNOWN_FIELD, format!("{} is not a manual field", quoted(name))),
            Some(field) if set.iter().any(|value| value.field() == field) => {
                c.fail(&path, reason::INCONSISTENT, format!("{} is both set and cleared", quoted(name)))
            }
            Some(field) if !clear.contains(&field) => clear.push(field),
            Some(_) => {}
        }
    }
    clear.sort_by_key(|f| f.as_str());
    if set.is_empty() && clear.is_empty() && r.clear_fields.is_empty() {
        c.fail("values", reason::REQUIRED, "set at least one value or name a field in clear_fields");
    }
    let key = c.idempotency_key(&r.idempotency_key);
    let reuse = if key.is_some() { KeyReuse::Reject } else { KeyReuse::Never };
    let event = day.zip(recorded_at).map(|(day, recorded_at)| {
        let payload = Payload::Manual(ManualReport { set, clear });
        NewEvent::new(Some(day), source, recorded_at, payload, key, reuse)
    });
    c.finish(event)
}
