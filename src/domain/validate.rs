//! Validation: a request item becomes a `NewEvent`, or a list of field violations.
//! Every violation carries the item's path (`samples[3].total_steps`).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::dates::{check_day, earliest_day, local_day, max_clock_skew, parse_day, parse_time_zone};
use super::event::{
    BodyMetricReport, KeyReuse, ManualField, ManualReport, ManualValue, Metric, NewEvent, Observed, Payload,
    SleepReport, StepsReport, WorkoutDeletion, WorkoutReport,
};
use super::{reason, Source, Violation};
use crate::proto::v1 as pb;

pub const MAX_STEPS: u32 = 200_000;
pub const MAX_KEY_LEN: usize = 200;
pub const MAX_DEVICES: usize = 20;
pub const MAX_NOTES_CHARS: usize = 2000;

/// What every item of one request is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub now: DateTime<Utc>,
    pub zone: Option<Tz>,
}

/// Checks the number of items in a batch.
pub fn batch_size(field: &str, len: usize, min: usize, max: usize) -> Result<(), Violation> {
    if len < min {
        return Err(Violation::new(field, reason::REQUIRED, format!("send at least {min} item(s)")));
    }
    if len > max {
        return Err(Violation::new(field, reason::TOO_MANY, format!("{len} items; at most {max} per request")));
    }
    Ok(())
}

/// Resolves the request's `time_zone`; `needed` says whether some item's day must be derived.
pub fn time_zone(name: &str, needed: bool) -> Result<Option<Tz>, Violation> {
    if name.is_empty() {
        return match needed {
            true => Err(Violation::new(
                "time_zone",
                reason::REQUIRED,
                "an IANA time zone (e.g. America/New_York) is required to find the local day",
            )),
            false => Ok(None),
        };
    }
    parse_time_zone(name).map(Some).ok_or_else(|| {
        Violation::new("time_zone", reason::UNKNOWN_TIME_ZONE, format!("'{name}' is not an IANA time zone"))
    })
}

/// Collects the violations of one item under a path prefix.
struct Checker {
    prefix: String,
    now: DateTime<Utc>,
    violations: Vec<Violation>,
}

impl Checker {
    fn new(prefix: impl Into<String>, now: DateTime<Utc>) -> Self {
        Checker { prefix: prefix.into(), now, violations: Vec::new() }
    }

    fn path(&self, field: &str) -> String {
        match self.prefix.is_empty() {
            true => field.to_string(),
            false => format!("{}.{field}", self.prefix),
        }
    }

    fn fail(&mut self, field: &str, reason: &'static str, description: impl Into<String>) {
        self.violations.push(Violation::new(self.path(field), reason, description));
    }

    fn keep<T>(&mut self, result: Result<T, Violation>) -> Option<T> {
        result.map_err(|v| self.violations.push(v)).ok()
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, Vec<Violation>> {
        match (self.violations.is_empty(), value) {
            (true, Some(value)) => Ok(value),
            _ => Err(self.violations),
        }
    }

    /// A required instant, not before 2000 and not ahead of the clock by more than the skew.
    fn instant(&mut self, field: &str, ts: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
        let Some(ts) = ts else {
            self.fail(field, reason::REQUIRED, "a timestamp is required");
            return None;
        };
        let Some(at) = u32::try_from(ts.nanos).ok().and_then(|n| DateTime::from_timestamp(ts.seconds, n)) else {
            self.fail(field, reason::INVALID_FORMAT, "not a valid timestamp");
            return None;
        };
        if at.date_naive() < earliest_day() {
            self.fail(field, reason::OUT_OF_RANGE, "before 2000-01-01");
            return None;
        }
        if at > self.now + max_clock_skew() {
            self.fail(field, reason::OUT_OF_RANGE, "in the future (check the device clock)");
            return None;
        }
        Some(at)
    }

    fn at_most_u32(&mut self, field: &str, value: u32, max: u32) -> u32 {
        if value > max {
            self.fail(field, reason::OUT_OF_RANGE, format!("{value} is above the maximum {max}"));
        }
        value
    }

    fn u32_between(&mut self, field: &str, value: Option<u32>, min: u32, max: u32) -> Option<u32> {
        let v = value?;
        if !(min..=max).contains(&v) {
            self.fail(field, reason::OUT_OF_RANGE, format!("{v} is outside {min}–{max}"));
        }
        Some(v)
    }

    /// A finite number in `[min, max]`, or above `min` when `min_exclusive`.
    fn number(&mut self, field: &str, value: Option<f64>, min: f64, min_exclusive: bool, max: f64) -> Option<f64> {
        let v = value?;
        if !v.is_finite() {
            self.fail(field, reason::NOT_FINITE, "must be a finite number");
        } else if v < min || (min_exclusive && v == min) || v > max {
            let low = if min_exclusive { "above" } else { "at least" };
            self.fail(field, reason::OUT_OF_RANGE, format!("{v} must be {low} {min} and at most {max}"));
        }
        Some(v)
    }

    fn text(&mut self, field: &str, value: &str, min_chars: usize, max_chars: usize) -> String {
        let chars = value.chars().count();
        if chars < min_chars {
            self.fail(field, reason::REQUIRED, "must not be empty");
        } else if chars > max_chars {
            self.fail(field, reason::TOO_LONG, format!("{chars} characters; at most {max_chars}"));
        }
        value.to_string()
    }

    fn idempotency_key(&mut self, value: &str) -> Option<String> {
        let key = self.text("idempotency_key", value, 0, MAX_KEY_LEN);
        (!key.is_empty()).then_some(key)
    }

    fn devices(&mut self, devices: &[String]) -> Vec<String> {
        if devices.len() > MAX_DEVICES {
            self.fail("source_devices", reason::TOO_MANY, format!("at most {MAX_DEVICES} devices"));
        }
        for (i, d) in devices.iter().enumerate() {
            self.text(&format!("source_devices[{i}]"), d, 0, MAX_KEY_LEN);
        }
        devices.to_vec()
    }

    fn day(&mut self, field: &str, text: &str) -> Option<NaiveDate> {
        let path = self.path(field);
        let now = self.now;
        self.keep(parse_day(&path, text, now))
    }

    fn derived_day(&mut self, field: &str, instant: Option<DateTime<Utc>>, zone: Option<Tz>) -> Option<NaiveDate> {
        let day = local_day(instant?, zone.expect("time_zone is required when a day is derived"));
        let path = self.path(field);
        let now = self.now;
        self.keep(check_day(&path, day, now)).map(|_| day)
    }
}

pub fn steps_sample(ctx: Context, index: usize, s: &pb::StepsSample) -> Result<NewEvent, Vec<Violation>> {
    let mut c = Checker::new(format!("samples[{index}]"), ctx.now);
    let day = c.day("date", &s.date);
    let total_steps = c.at_most_u32("total_steps", s.total_steps, MAX_STEPS);
    let observed_at = c.instant("observed_at", s.observed_at.as_ref());
    let source_devices = c.devices(&s.source_devices);
    let key = c.idempotency_key(&s.idempotency_key);
    let event = day.zip(observed_at).map(|(day, observed_at)| {
        let payload = Payload::Steps(StepsReport { total_steps, source_devices });
        NewEvent::new(Some(day), Source::Healthkit, Observed::ByClient(observed_at), payload, key, KeyReuse::Reject)
    });
    c.finish(event)
}

pub fn sleep_session(ctx: Context, index: usize, s: &pb::SleepSession) -> Result<NewEvent, Vec<Violation>> {
    let mut c = Checker::new(format!("sessions[{index}]"), ctx.now);
    let minutes = 24 * 60;
    let total_sleep_minutes = c.at_most_u32("total_sleep_minutes", s.total_sleep_minutes, minutes);
    let in_bed_minutes = c.u32_between("in_bed_minutes", s.in_bed_minutes, 0, minutes);
    let stages = [
        ("awake_minutes", s.awake_minutes),
        ("core_minutes", s.core_minutes),
        ("deep_minutes", s.deep_minutes),
        ("rem_minutes", s.rem_minutes),
    ];
    let stage_sum: u32 = stages.iter().filter_map(|(field, v)| c.u32_between(field, *v, 0, minutes)).sum();
    if let Some(in_bed) = in_bed_minutes {
        if stage_sum > in_bed {
            c.fail(
                "in_bed_minutes",
                reason::INCONSISTENT,
                format!("stages add up to {stage_sum} minutes, more than {in_bed} in bed"),
            );
        }
    }
    let start = c.instant("sleep_start", s.sleep_start.as_ref());
    let end = c.instant("sleep_end", s.sleep_end.as_ref());
    if let (Some(start), Some(end)) = (start, end) {
        if end <= start {
            c.fail("sleep_end", reason::INCONSISTENT, "must be after sleep_start");
        } else if end - start > Duration::hours(24) {
            c.fail("sleep_end", reason::OUT_OF_RANGE, "a sleep session lasts at most 24 hours");
        }
    }
    let observed_at = c.instant("observed_at", s.observed_at.as_ref());
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
            Some(NewEvent::new(
                Some(day),
                Source::Healthkit,
                Observed::ByClient(observed_at),
                payload,
                key,
                KeyReuse::Reject,
            ))
        }
        _ => None,
    };
    c.finish(event)
}

pub fn workout(ctx: Context, index: usize, w: &pb::Workout) -> Result<NewEvent, Vec<Violation>> {
    let mut c = Checker::new(format!("workouts[{index}]"), ctx.now);
    let workout_id = c.text("workout_id", &w.workout_id, 1, MAX_KEY_LEN);
    let workout_type = c.text("workout_type", &w.workout_type, 1, 100);
    let start = c.instant("start_time", w.start_time.as_ref());
    let end = c.instant("end_time", w.end_time.as_ref());
    if let (Some(start), Some(end)) = (start, end) {
        if end <= start {
            c.fail("end_time", reason::INCONSISTENT, "must be after start_time");
        }
    }
    let duration_seconds = c.number("duration_seconds", Some(w.duration_seconds), 0.0, true, f64::MAX);
    let active_energy_kcal = c.number("active_energy_kcal", w.active_energy_kcal, 0.0, false, 20_000.0);
    let distance_meters = c.number("distance_meters", w.distance_meters, 0.0, false, f64::MAX);
    let avg_heart_rate = c.u32_between("avg_heart_rate", w.avg_heart_rate, 30, 250);
    let max_heart_rate = c.u32_between("max_heart_rate", w.max_heart_rate, 30, 250);
    let source_device = c.text("source_device", &w.source_device, 0, MAX_KEY_LEN);
    let source = match pb::Source::try_from(w.source) {
        Ok(pb::Source::Unspecified | pb::Source::Healthkit) => Some(Source::Healthkit),
        Ok(pb::Source::Strava) => Some(Source::Strava),
        _ => {
            c.fail("source", reason::OUT_OF_RANGE, "a workout comes from SOURCE_HEALTHKIT or SOURCE_STRAVA");
            None
        }
    };
    let observed_at = c.instant("observed_at", w.observed_at.as_ref());
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
            Some(NewEvent::new(
                Some(day),
                source,
                Observed::ByClient(observed_at),
                payload,
                Some(workout_id),
                KeyReuse::Revise,
            ))
        }
        _ => None,
    };
    c.finish(event)
}

/// A deletion is observed when the server receives it; its day is the deleted workout's,
/// which only the store knows.
pub fn workout_deletion(ctx: Context, index: usize, workout_id: &str) -> Result<NewEvent, Vec<Violation>> {
    let mut c = Checker::new("", ctx.now);
    let field = format!("deleted_workout_ids[{index}]");
    let workout_id = c.text(&field, workout_id, 1, MAX_KEY_LEN);
    let payload = Payload::WorkoutDeleted(WorkoutDeletion { workout_id: workout_id.clone() });
    let event = NewEvent::new(
        None,
        Source::Healthkit,
        Observed::OnReceipt(ctx.now),
        payload,
        Some(workout_id),
        KeyReuse::Reject,
    );
    c.finish(Some(event))
}

pub fn body_metric(ctx: Context, index: usize, m: &pb::BodyMetric) -> Result<NewEvent, Vec<Violation>> {
    use pb::{BodyMetricType as T, Unit as U};
    let mut c = Checker::new(format!("metrics[{index}]"), ctx.now);
    let unit = U::try_from(m.unit).unwrap_or(U::Unspecified);
    // (metric, factor to SI, upper bound in SI)
    let kind = match (T::try_from(m.r#type).unwrap_or(T::Unspecified), unit) {
        (T::Weight, U::Kg) => Some((Metric::WeightKg, 1.0, 700.0)),
        (T::Weight, U::Lb) => Some((Metric::WeightKg, 0.45359237, 700.0)),
        (T::LeanBodyMass, U::Kg) => Some((Metric::LeanBodyMassKg, 1.0, 700.0)),
        (T::LeanBodyMass, U::Lb) => Some((Metric::LeanBodyMassKg, 0.45359237, 700.0)),
        (T::Height, U::M) => Some((Metric::HeightM, 1.0, 3.0)),
        (T::Height, U::Cm) => Some((Metric::HeightM, 0.01, 3.0)),
        (T::Height, U::In) => Some((Metric::HeightM, 0.0254, 3.0)),
        (T::BodyFatPercentage, U::Percent) => Some((Metric::BodyFatPercent, 1.0, 100.0)),
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
        }
        Some((metric, si))
    });
    let measured_at = c.instant("measured_at", m.measured_at.as_ref());
    let day = c.derived_day("measured_at", measured_at, ctx.zone);
    let key = c.idempotency_key(&m.idempotency_key);
    let event = match (value, measured_at, day) {
        (Some((metric, value)), Some(measured_at), Some(day)) => {
            let payload = Payload::BodyMetric(BodyMetricReport { metric, value, measured_at });
            Some(NewEvent::new(
                Some(day),
                Source::Healthkit,
                Observed::ByClient(measured_at),
                payload,
                key,
                KeyReuse::Reject,
            ))
        }
        _ => None,
    };
    c.finish(event)
}

/// A manual entry; its violations fail the whole request.
pub fn manual_entry(now: DateTime<Utc>, r: &pb::RecordManualEntryRequest) -> Result<NewEvent, Vec<Violation>> {
    let mut c = Checker::new("", now);
    let day = c.day("date", &r.date);
    let v = r.values.clone().unwrap_or_default();
    let mut set: Vec<(ManualField, ManualValue)> = Vec::new();
    let mut count = |c: &mut Checker, field: ManualField, value: Option<u32>, min: u32, max: u32| {
        if let Some(n) = c.u32_between(&format!("values.{}", field.as_str()), value, min, max) {
            set.push((field, ManualValue::Count(n)));
        }
    };
    count(&mut c, ManualField::Steps, v.steps, 0, MAX_STEPS);
    count(&mut c, ManualField::Calories, v.calories, 0, 50_000);
    count(&mut c, ManualField::SleepMinutes, v.sleep_minutes, 0, 24 * 60);
    count(&mut c, ManualField::SleepQuality, v.sleep_quality, 1, 10);
    count(&mut c, ManualField::PerceivedStress, v.perceived_stress, 1, 10);
    let amounts = [
        (ManualField::WeightKg, v.weight_kg, true, 700.0),
        (ManualField::ProteinGrams, v.protein_grams, false, 5_000.0),
        (ManualField::CarbsGrams, v.carbs_grams, false, 5_000.0),
        (ManualField::FatGrams, v.fat_grams, false, 5_000.0),
        (ManualField::FiberGrams, v.fiber_grams, false, 5_000.0),
    ];
    for (field, value, positive, max) in amounts {
        if let Some(x) = c.number(&format!("values.{}", field.as_str()), value, 0.0, positive, max) {
            set.push((field, ManualValue::Amount(x)));
        }
    }
    if let Some(notes) = &v.notes {
        let notes = c.text("values.notes", notes, 0, MAX_NOTES_CHARS);
        set.push((ManualField::Notes, ManualValue::Text(notes)));
    }
    set.sort_by_key(|(field, _)| field.as_str());

    let mut clear = Vec::new();
    for (i, name) in r.clear_fields.iter().enumerate() {
        let path = format!("clear_fields[{i}]");
        match ManualField::parse(name) {
            None => c.fail(&path, reason::UNKNOWN_FIELD, format!("'{name}' is not a manual field")),
            Some(field) if set.iter().any(|(f, _)| *f == field) => {
                c.fail(&path, reason::INCONSISTENT, format!("'{name}' is both set and cleared"))
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
    let event = day.map(|day| {
        let payload = Payload::Manual(ManualReport { set, clear });
        NewEvent::new(Some(day), Source::Manual, Observed::OnReceipt(now), payload, key, reuse)
    });
    c.finish(event)
}
