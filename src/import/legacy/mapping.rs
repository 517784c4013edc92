//! Legacy rows → the reports the app would have sent, checked as IngestService and
//! RecordManualEntry check them (docs/DECISIONS.md, "The legacy CoachFit import"):
//!
//! - An `Entry` row: the fields HealthKit syncs (`steps`, `weightLbs`) as HealthKit reports
//!   when `dataSources` names "healthkit", else as the client's manual entry; `heightInches`
//!   and `bodyFatPercentage` as HealthKit measurements (the only way the service takes
//!   them), at noon of the row's date; `calories`, `sleepQuality`, `perceivedStress`,
//!   `notes` as the client's manual entry, which also withdraws the manual fields the row
//!   has no value for (an earlier version of the row may have had one).
//! - A `SleepRecord` row: a sleep session on its date. A `Workout` row: a workout with the
//!   row's id, unless it is the same session as one created before it.
//!
//! Every report is observed at the row's `updatedAt`, and keyed by the row's id and
//! `updatedAt`: a second run sends the same reports (duplicates), a changed row new ones,
//! which are later and so win.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::report::{Cause, Skipped};
use super::rows::{utc, EntryRow, SleepRow, WorkoutRow};
use crate::api::convert::timestamp;
use crate::api::items::{self, CheckedItem};
use crate::domain::dates::local_noon;
use crate::domain::field::Field;
use crate::domain::validate::Context;
use crate::domain::Source;
use crate::proto::v1 as pb;

/// The author of every imported event.
pub const ACTOR: &str = "import:coachfit-legacy";

/// The legacy `Entry` columns the service has a field for, with that field.
pub const ENTRY_COLUMNS: [(Field, &str); 8] = [
    (Field::Steps, "steps"),
    (Field::WeightKg, "weightLbs"),
    (Field::HeightM, "heightInches"),
    (Field::BodyFatPercent, "bodyFatPercentage"),
    (Field::Calories, "calories"),
    (Field::SleepQuality, "sleepQuality"),
    (Field::PerceivedStress, "perceivedStress"),
    (Field::Notes, "notes"),
];

/// The manual fields a legacy row can hold: the ones its manual entry sets or withdraws.
const MANUAL_FIELDS: [Field; 6] =
    [Field::Steps, Field::WeightKg, Field::Calories, Field::SleepQuality, Field::PerceivedStress, Field::Notes];

/// A `sleepQuality` above this is a HealthKit sleep total in minutes, not a 1–10 score.
const MAX_SLEEP_QUALITY: i32 = 10;

pub const KG_PER_LB: f64 = 0.45359237;
pub const M_PER_INCH: f64 = 0.0254;

/// One report made from a legacy row.
pub struct Item {
    pub checked: CheckedItem,
    pub table: &'static str,
    pub id: String,
    /// The Entry columns whose values it carries.
    pub columns: Vec<&'static str>,
}

/// What a row (or a user's workouts) became.
#[derive(Default)]
pub struct Mapped {
    pub items: Vec<Item>,
    pub skipped: Vec<Skipped>,
}

impl Mapped {
    pub fn extend(&mut self, other: Mapped) {
        self.items.extend(other.items);
        self.skipped.extend(other.skipped);
    }

    fn skip(&mut self, table: &'static str, id: &str, column: Option<&'static str>, cause: Cause, detail: String) {
        self.skipped.push(Skipped { table, id: id.to_string(), column, cause, detail });
    }

    /// A count column as the API's unsigned count; a negative one is refused here.
    fn count(&mut self, table: &'static str, id: &str, column: &'static str, value: Option<i32>) -> Option<u32> {
        let value = value?;
        let count = u32::try_from(value).ok();
        if count.is_none() {
            self.skip(table, id, Some(column), Cause::Refused, format!("{value} is negative"));
        }
        count
    }

    fn push(&mut self, table: &'static str, id: &str, columns: Vec<&'static str>, checked: CheckedItem) {
        self.items.push(Item { checked, table, id: id.to_string(), columns });
    }
}

/// The column an Entry field came from.
pub fn column(field: Field) -> &'static str {
    ENTRY_COLUMNS.iter().find(|(f, _)| *f == field).map(|(_, column)| *column).expect("a legacy Entry field")
}

fn key(table: &str, id: &str, updated_at: DateTime<Utc>, part: &str) -> String {
    format!("coachfit-legacy:{table}:{id}:{}:{part}", updated_at.timestamp_micros())
}

/// `dataSources` names HealthKit (`["healthkit", "manual"]`; any spelling of the case).
fn from_healthkit(row: &EntryRow) -> bool {
    let Some(serde_json::Value::Array(sources)) = &row.data_sources else { return false };
    sources.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case("healthkit")))
}

/// A legacy Entry row's reports.
pub fn entry(ctx: Context, zone: Tz, row: &EntryRow) -> Mapped {
    const TABLE: &str = "Entry";
    let mut out = Mapped::default();
    let id = row.id.as_str();
    let updated_at = utc(row.updated_at);
    let healthkit = from_healthkit(row);
    let mut manual = pb::ManualValues::default();
    let mut manual_columns = Vec::new();

    let steps = out.count(TABLE, id, "steps", row.steps);
    match (steps, healthkit) {
        (Some(total_steps), true) => {
            let sample = pb::StepsSample {
                date: row.date.to_string(),
                total_steps,
                observed_at: Some(timestamp(updated_at)),
                source_devices: vec![],
                idempotency_key: key(TABLE, id, updated_at, "steps"),
            };
            out.push(TABLE, id, vec!["steps"], checked("steps", |path| items::steps_sample(ctx, path, &sample)));
        }
        (Some(n), false) => {
            manual.steps = Some(n);
            manual_columns.push("steps");
        }
        (None, _) => {}
    }

    // Measured at noon of the row's date in the zone: its day is the row's.
    let noon = local_noon(row.date, zone);
    let measurement = |out: &mut Mapped, column: &'static str, kind, value: f64, unit| {
        let metric = pb::BodyMetric {
            r#type: kind as i32,
            value,
            unit: unit as i32,
            measured_at: Some(timestamp(noon)),
            idempotency_key: key(TABLE, id, updated_at, column),
        };
        out.push(TABLE, id, vec![column], checked(column, |path| items::body_metric(ctx, path, &metric)));
    };
    use pb::{BodyMetricType as T, Unit as U};
    match (row.weight_lbs, healthkit) {
        (Some(lbs), true) => measurement(&mut out, "weightLbs", T::Weight, lbs, U::Lb),
        (Some(lbs), false) => {
            manual.weight_kg = Some(lbs * KG_PER_LB);
            manual_columns.push("weightLbs");
        }
        (None, _) => {}
    }
    if let Some(inches) = row.height_inches {
        measurement(&mut out, "heightInches", T::Height, inches, U::In);
    }
    if let Some(percent) = row.body_fat_percentage {
        measurement(&mut out, "bodyFatPercentage", T::BodyFatPercentage, percent, U::Percent);
    }

    if let Some(calories) = out.count(TABLE, id, "calories", row.calories) {
        manual.calories = Some(calories);
        manual_columns.push("calories");
    }
    match row.sleep_quality {
        Some(minutes) if minutes > MAX_SLEEP_QUALITY => {
            let detail = format!("{minutes} looks like minutes of sleep, not a 1–10 score: left out");
            out.skip(TABLE, id, Some("sleepQuality"), Cause::SleepTotalInSleepQuality, detail);
        }
        quality => {
            if let Some(quality) = out.count(TABLE, id, "sleepQuality", quality) {
                manual.sleep_quality = Some(quality);
                manual_columns.push("sleepQuality");
            }
        }
    }
    if let Some(stress) = out.count(TABLE, id, "perceivedStress", row.perceived_stress) {
        manual.perceived_stress = Some(stress);
        manual_columns.push("perceivedStress");
    }
    if let Some(notes) = &row.notes {
        manual.notes = Some(notes.clone());
        manual_columns.push("notes");
    }
    if row.has_custom_responses {
        let detail = "answers to the web app's own questions: the service has no field for them".to_string();
        out.skip(TABLE, id, Some("customResponses"), Cause::CustomResponses, detail);
    }

    // A row never changed since it was made has no earlier version to withdraw.
    if !manual_columns.is_empty() || row.updated_at > row.created_at {
        manual_entry(&mut out, ctx, row, manual, manual_columns);
    }
    out
}

/// The row's manual entry: its values, the other manual fields withdrawn. A value the
/// checks refuse is left out (and withdrawn) and the rest is stored.
fn manual_entry(out: &mut Mapped, ctx: Context, row: &EntryRow, mut values: pb::ManualValues, columns: Vec<&str>) {
    const TABLE: &str = "Entry";
    let updated_at = utc(row.updated_at);
    let mut request = pb::RecordManualEntryRequest {
        user_id: String::new(),
        date: row.date.to_string(),
        values: None,
        clear_fields: vec![],
        idempotency_key: key(TABLE, &row.id, updated_at, "manual"),
        recorded_at: Some(timestamp(updated_at)),
    };
    let mut columns: Vec<&'static str> =
        ENTRY_COLUMNS.iter().filter(|(_, c)| columns.contains(c)).map(|(_, c)| *c).collect();
    let result = loop {
        let set: Vec<Field> = columns.iter().map(|c| field_of(c)).collect();
        request.values = Some(values.clone());
        request.clear_fields =
            MANUAL_FIELDS.iter().filter(|f| !set.contains(f)).map(|f| f.as_str().to_string()).collect();
        let result = items::manual_entry(ctx.now, Source::Manual, &request);
        let Err(violations) = &result else { break result };
        let refused: Vec<Field> = violations
            .iter()
            .filter_map(|v| v.field.strip_prefix("values.").and_then(Field::parse))
            .filter(|f| set.contains(f))
            .collect();
        if refused.is_empty() {
            break result;
        }
        for violation in violations {
            if let Some(field) = violation.field.strip_prefix("values.").and_then(Field::parse) {
                out.skip(TABLE, &row.id, Some(column(field)), Cause::Refused, violation.description.clone());
            }
        }
        for field in &refused {
            clear_value(&mut values, *field);
        }
        columns.retain(|c| !refused.contains(&field_of(c)));
    };
    out.push(TABLE, &row.id, columns, CheckedItem { path: "check-in".into(), result });
}

fn field_of(column: &str) -> Field {
    ENTRY_COLUMNS.iter().find(|(_, c)| *c == column).map(|(f, _)| *f).expect("a legacy Entry column")
}

fn clear_value(values: &mut pb::ManualValues, field: Field) {
    match field {
        Field::Steps => values.steps = None,
        Field::WeightKg => values.weight_kg = None,
        Field::Calories => values.calories = None,
        Field::SleepQuality => values.sleep_quality = None,
        Field::PerceivedStress => values.perceived_stress = None,
        Field::Notes => values.notes = None,
        other => unreachable!("{} is not a legacy manual field", other.as_str()),
    }
}

/// One item checked under `path`.
fn checked(
    path: &str,
    check: impl FnOnce(&str) -> Result<crate::domain::event::NewEvent, Vec<crate::domain::Violation>>,
) -> CheckedItem {
    CheckedItem { path: path.to_string(), result: check(path) }
}

/// A legacy SleepRecord row's session.
pub fn sleep(ctx: Context, row: &SleepRow) -> Mapped {
    const TABLE: &str = "SleepRecord";
    let mut out = Mapped::default();
    let (Some(start), Some(end)) = (row.sleep_start, row.sleep_end) else {
        let detail = "no sleepStart or sleepEnd: the service keeps sleep as a session with its times".to_string();
        out.skip(TABLE, &row.id, None, Cause::SleepWithoutTimes, detail);
        return out;
    };
    let id = row.id.as_str();
    let mut minutes = |column, value| out.count(TABLE, id, column, value);
    let total = minutes("totalSleepMins", Some(row.total_sleep_mins));
    let session = pb::SleepSession {
        date: row.date.to_string(),
        total_sleep_minutes: total.unwrap_or_default(),
        in_bed_minutes: minutes("inBedMins", row.in_bed_mins),
        awake_minutes: minutes("awakeMins", row.awake_mins),
        core_minutes: minutes("asleepCoreMins", row.asleep_core_mins),
        deep_minutes: minutes("asleepDeepMins", row.asleep_deep_mins),
        rem_minutes: minutes("asleepREMMins", row.asleep_rem_mins),
        sleep_start: Some(timestamp(utc(start))),
        sleep_end: Some(timestamp(utc(end))),
        observed_at: Some(timestamp(utc(row.updated_at))),
        source_devices: strings(&row.source_devices),
        idempotency_key: key(TABLE, id, utc(row.updated_at), "session"),
    };
    if total.is_some() {
        out.push(TABLE, id, vec![], checked("", |path| items::sleep_session(ctx, path, &session)));
    }
    out
}

/// The strings of a JSON array (other JSON: none).
fn strings(value: &Option<serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => vec![],
    }
}

/// A user's legacy workouts: each a workout under its row's id, except one that repeats a
/// workout created before it (same type, overlapping times: the same session synced twice).
pub fn workouts(ctx: Context, rows: &[WorkoutRow]) -> Mapped {
    const TABLE: &str = "Workout";
    let mut out = Mapped::default();
    let mut by_creation: Vec<&WorkoutRow> = rows.iter().collect();
    by_creation.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut kept: Vec<&WorkoutRow> = Vec::new();
    for row in by_creation {
        let same = |k: &&&WorkoutRow| {
            k.workout_type == row.workout_type && k.start_time < row.end_time && row.start_time < k.end_time
        };
        if let Some(first) = kept.iter().find(same) {
            let detail = format!("the same {} as Workout {}, synced again", row.workout_type, first.id);
            out.skip(TABLE, &row.id, None, Cause::DuplicateWorkout, detail);
            continue;
        }
        kept.push(row);
        let id = row.id.as_str();
        let workout = pb::Workout {
            workout_id: row.id.clone(),
            workout_type: row.workout_type.clone(),
            start_time: Some(timestamp(utc(row.start_time))),
            end_time: Some(timestamp(utc(row.end_time))),
            duration_seconds: f64::from(row.duration_secs),
            active_energy_kcal: row.calories_active.map(f64::from),
            distance_meters: row.distance_meters,
            avg_heart_rate: out.count(TABLE, id, "avgHeartRate", row.avg_heart_rate),
            max_heart_rate: out.count(TABLE, id, "maxHeartRate", row.max_heart_rate),
            source_device: row.source_device.clone().unwrap_or_default(),
            source: pb::Source::Healthkit as i32,
            observed_at: Some(timestamp(utc(row.updated_at))),
        };
        out.push(TABLE, id, vec![], checked("", |path| items::workout(ctx, path, &workout)));
    }
    out
}
