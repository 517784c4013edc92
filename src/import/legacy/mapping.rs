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
//! Every report is observed at the row's `updatedAt`, and keyed by the row's id, its
//! `updatedAt` and a digest of the report: a second run sends the same reports
//! (duplicates), a changed row new ones, which are later and so win. A field the service
//! already has on that day from another author (the client's phone or hand, a coach) is
//! theirs: the import neither sets nor withdraws it.

use std::collections::BTreeMap;

#[cfg(test)]
use chrono::NaiveDateTime;
use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use super::report::{Cause, Skipped};
use super::rows::{utc, EntryRow, SleepRow, WorkoutRow};
use crate::api::convert::timestamp;
use crate::api::items::{self, CheckedItem};
use crate::domain::dates::local_instant;
use crate::domain::event::{NewEvent, KG_PER_LB};
use crate::domain::field::Field;
use crate::domain::validate::Context;
use crate::domain::{Source, Violation};
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

/// What the service has of one day from authors other than the import: per field, who.
pub type Held = BTreeMap<Field, String>;

/// One report made from a legacy row.
pub struct Item {
    pub checked: CheckedItem,
    pub table: &'static str,
    pub id: String,
    /// The columns whose values it carries (listed if it is refused).
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

    /// Lists the violations of the columns left out of a report to save the rest.
    fn skip_refused(&mut self, table: &'static str, id: &str, columns: &[&'static str], violations: &[Violation]) {
        let detail = describe(violations);
        for column in columns {
            self.skip(table, id, Some(column), Cause::Refused, detail.clone());
        }
    }
}

fn describe(violations: &[Violation]) -> String {
    let described: Vec<String> = violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect();
    described.join("; ")
}

/// The column an Entry field came from.
pub fn column(field: Field) -> &'static str {
    ENTRY_COLUMNS.iter().find(|(f, _)| *f == field).map(|(_, column)| *column).expect("a legacy Entry field")
}

fn field_of(column: &str) -> Field {
    ENTRY_COLUMNS.iter().find(|(_, c)| *c == column).map(|(f, _)| *f).expect("a legacy Entry column")
}

/// The idempotency key of a report of a row's version: its row, `updatedAt`, part, and a
/// digest of the report itself (sent with an empty key), so a row changed without a new
/// `updatedAt` still sends a new key rather than reusing one.
fn key(table: &str, id: &str, updated_at: DateTime<Utc>, part: &str, report: &impl prost::Message) -> String {
    let digest = Sha256::digest(report.encode_to_vec());
    format!("coachfit-legacy:{table}:{id}:{}:{part}:{}", updated_at.timestamp_micros(), hex::encode(&digest[..8]))
}

/// What `dataSources` says: whether it names HealthKit (any case), and whether it is what
/// the app wrote (missing, or a list of "manual" and "healthkit").
fn data_sources(row: &EntryRow) -> (bool, bool) {
    let named = |s: &serde_json::Value, name: &str| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(name));
    match &row.data_sources {
        None | Some(serde_json::Value::Null) => (false, true),
        Some(serde_json::Value::Array(sources)) => (
            sources.iter().any(|s| named(s, "healthkit")),
            sources.iter().all(|s| named(s, "healthkit") || named(s, "manual")),
        ),
        Some(_) => (false, false),
    }
}

/// A legacy Entry row's reports; `held`: the day's fields other authors have.
pub fn entry(ctx: Context, zone: Tz, row: &EntryRow, held: &Held) -> Mapped {
    const TABLE: &str = "Entry";
    let mut out = Mapped::default();
    let id = row.id.as_str();
    let updated_at = utc(row.updated_at);
    let (healthkit, understood) = data_sources(row);
    if !understood {
        let shown = row.data_sources.as_ref().map(|v| v.to_string()).unwrap_or_default();
        let detail =
            format!("{shown} is not a list of \"manual\" and \"healthkit\": the row's values are taken as typed");
        out.skip(TABLE, id, Some("dataSources"), Cause::UnknownDataSources, detail);
    }
    // Whether the import may speak for `field`; a value it may not is listed.
    let free = |out: &mut Mapped, field: Field, has_value: bool| match held.get(&field) {
        None => true,
        Some(actor) => {
            if has_value {
                let detail = format!("the service has it from {actor}, which the import leaves alone");
                out.skip(TABLE, id, Some(column(field)), Cause::Outranked, detail);
            }
            false
        }
    };
    let mut manual = pb::ManualValues::default();
    let mut manual_columns = Vec::new();

    let steps = out.count(TABLE, id, "steps", row.steps);
    if free(&mut out, Field::Steps, steps.is_some()) {
        match (steps, healthkit) {
            (Some(total_steps), true) => {
                let mut sample = pb::StepsSample {
                    date: row.date.to_string(),
                    total_steps,
                    observed_at: Some(timestamp(updated_at)),
                    source_devices: vec![],
                    idempotency_key: String::new(),
                };
                sample.idempotency_key = key(TABLE, id, updated_at, "steps", &sample);
                out.push(TABLE, id, vec!["steps"], checked("steps", |path| items::steps_sample(ctx, path, &sample)));
            }
            (Some(n), false) => {
                manual.steps = Some(n);
                manual_columns.push("steps");
            }
            (None, _) => {}
        }
    }

    // Measured at noon of the row's date in the zone (its day is the row's), or when the
    // row was last written if that was earlier that day (a measurement is never ahead).
    let (midnight, noon) = (local_instant(row.date, NaiveTime::MIN, zone), local_instant(row.date, noon(), zone));
    let measured_at = updated_at.clamp(midnight, noon);
    let measurement = |out: &mut Mapped, column: &'static str, kind, value: f64, unit| {
        let mut metric = pb::BodyMetric {
            r#type: kind as i32,
            value,
            unit: unit as i32,
            measured_at: Some(timestamp(measured_at)),
            idempotency_key: String::new(),
        };
        metric.idempotency_key = key(TABLE, id, updated_at, column, &metric);
        out.push(TABLE, id, vec![column], checked(column, |path| items::body_metric(ctx, path, &metric)));
    };
    use pb::{BodyMetricType as T, Unit as U};
    if free(&mut out, Field::WeightKg, row.weight_lbs.is_some()) {
        match (row.weight_lbs, healthkit) {
            (Some(lbs), true) => measurement(&mut out, "weightLbs", T::Weight, lbs, U::Lb),
            (Some(lbs), false) => {
                manual.weight_kg = Some(lbs * KG_PER_LB);
                manual_columns.push("weightLbs");
            }
            (None, _) => {}
        }
    }
    if let Some(inches) = row.height_inches.filter(|_| free(&mut out, Field::HeightM, true)) {
        measurement(&mut out, "heightInches", T::Height, inches, U::In);
    }
    if let Some(percent) = row.body_fat_percentage.filter(|_| free(&mut out, Field::BodyFatPercent, true)) {
        measurement(&mut out, "bodyFatPercentage", T::BodyFatPercentage, percent, U::Percent);
    }

    let calories = out.count(TABLE, id, "calories", row.calories);
    if let Some(calories) = calories.filter(|_| free(&mut out, Field::Calories, true)) {
        manual.calories = Some(calories);
        manual_columns.push("calories");
    }
    let quality = match row.sleep_quality {
        Some(minutes) if minutes > MAX_SLEEP_QUALITY => {
            let detail = format!("{minutes} looks like minutes of sleep, not a 1–10 score: left out");
            out.skip(TABLE, id, Some("sleepQuality"), Cause::SleepTotalInSleepQuality, detail);
            None
        }
        quality => out.count(TABLE, id, "sleepQuality", quality),
    };
    if let Some(quality) = quality.filter(|_| free(&mut out, Field::SleepQuality, true)) {
        manual.sleep_quality = Some(quality);
        manual_columns.push("sleepQuality");
    }
    let stress = out.count(TABLE, id, "perceivedStress", row.perceived_stress);
    if let Some(stress) = stress.filter(|_| free(&mut out, Field::PerceivedStress, true)) {
        manual.perceived_stress = Some(stress);
        manual_columns.push("perceivedStress");
    }
    if let Some(notes) = row.notes.as_ref().filter(|_| free(&mut out, Field::Notes, true)) {
        manual.notes = Some(notes.clone());
        manual_columns.push("notes");
    }
    if row.has_custom_responses {
        let detail = "answers to the web app's own questions: the service has no field for them".to_string();
        out.skip(TABLE, id, Some("customResponses"), Cause::CustomResponses, detail);
    }

    // A row never changed since it was made has no earlier version to withdraw.
    if !manual_columns.is_empty() || row.updated_at > row.created_at {
        let withdrawn: Vec<Field> = MANUAL_FIELDS.into_iter().filter(|f| !held.contains_key(f)).collect();
        manual_entry(&mut out, ctx, row, manual, manual_columns, &withdrawn);
    }
    out
}

fn noon() -> NaiveTime {
    NaiveTime::from_hms_opt(12, 0, 0).expect("noon")
}

/// The row's manual entry: its values, and the fields of `withdrawable` it has no value
/// for withdrawn. A value the checks refuse is left out (and withdrawn) and the rest is
/// stored.
fn manual_entry(
    out: &mut Mapped,
    ctx: Context,
    row: &EntryRow,
    mut values: pb::ManualValues,
    mut columns: Vec<&'static str>,
    withdrawable: &[Field],
) {
    const TABLE: &str = "Entry";
    let updated_at = utc(row.updated_at);
    loop {
        let set: Vec<Field> = columns.iter().map(|c| field_of(c)).collect();
        let mut request = pb::RecordManualEntryRequest {
            user_id: String::new(),
            date: row.date.to_string(),
            values: Some(values.clone()),
            clear_fields: withdrawable.iter().filter(|f| !set.contains(f)).map(|f| f.as_str().to_string()).collect(),
            idempotency_key: String::new(),
            recorded_at: Some(timestamp(updated_at)),
        };
        request.idempotency_key = key(TABLE, &row.id, updated_at, "manual", &request);
        let result = items::manual_entry(ctx.now, Source::Manual, &request);
        let refused: Vec<&'static str> = match &result {
            Err(violations) => columns
                .iter()
                .copied()
                .filter(|c| violations.iter().any(|v| v.field == format!("values.{}", field_of(c).as_str())))
                .collect(),
            Ok(_) => vec![],
        };
        if refused.is_empty() {
            out.push(TABLE, &row.id, columns, CheckedItem { path: "check-in".into(), result });
            return;
        }
        let Err(violations) = &result else { unreachable!("refused columns come from violations") };
        for column in &refused {
            let field = format!("values.{}", field_of(column).as_str());
            let theirs: Vec<Violation> = violations.iter().filter(|v| v.field == field).cloned().collect();
            out.skip_refused(TABLE, &row.id, &[column], &theirs);
            clear_value(&mut values, field_of(column));
        }
        columns.retain(|c| !refused.contains(c));
    }
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
fn checked(path: &str, check: impl FnOnce(&str) -> Result<NewEvent, Vec<Violation>>) -> CheckedItem {
    CheckedItem { path: path.to_string(), result: check(path) }
}

/// A legacy SleepRecord row's session; stages that do not fit are left out and the
/// night's total kept.
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
    let Some(total) = minutes("totalSleepMins", Some(row.total_sleep_mins)) else { return out };
    let stages = [
        ("inBedMins", minutes("inBedMins", row.in_bed_mins)),
        ("awakeMins", minutes("awakeMins", row.awake_mins)),
        ("asleepCoreMins", minutes("asleepCoreMins", row.asleep_core_mins)),
        ("asleepDeepMins", minutes("asleepDeepMins", row.asleep_deep_mins)),
        ("asleepREMMins", minutes("asleepREMMins", row.asleep_rem_mins)),
    ];
    let updated_at = utc(row.updated_at);
    let check = |stages: [(&str, Option<u32>); 5]| {
        let mut session = pb::SleepSession {
            date: row.date.to_string(),
            total_sleep_minutes: total,
            in_bed_minutes: stages[0].1,
            awake_minutes: stages[1].1,
            core_minutes: stages[2].1,
            deep_minutes: stages[3].1,
            rem_minutes: stages[4].1,
            sleep_start: Some(timestamp(utc(start))),
            sleep_end: Some(timestamp(utc(end))),
            observed_at: Some(timestamp(updated_at)),
            source_devices: strings(&row.source_devices),
            idempotency_key: String::new(),
        };
        session.idempotency_key = key(TABLE, id, updated_at, "session", &session);
        items::sleep_session(ctx, "", &session)
    };
    let result = match check(stages) {
        Err(violations) if stages.iter().any(|(_, v)| v.is_some()) => match check(stages.map(|(c, _)| (c, None))) {
            Ok(event) => {
                let dropped: Vec<&'static str> = stages.iter().filter(|(_, v)| v.is_some()).map(|(c, _)| *c).collect();
                out.skip_refused(TABLE, id, &dropped, &violations);
                Ok(event)
            }
            Err(_) => Err(violations),
        },
        result => result,
    };
    out.push(TABLE, id, vec![], CheckedItem { path: String::new(), result });
    out
}

/// The strings of a JSON array (other JSON: none).
fn strings(value: &Option<serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => vec![],
    }
}

/// The workouts to bring in: all but one that repeats a workout of the same type created
/// before it with overlapping times (the same session synced twice), listed instead.
pub fn kept_workouts<'a>(rows: &'a [WorkoutRow], out: &mut Mapped) -> Vec<&'a WorkoutRow> {
    let mut by_creation: Vec<&WorkoutRow> = rows.iter().collect();
    by_creation.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut kept: Vec<&WorkoutRow> = Vec::new();
    for row in by_creation {
        let same = |k: &&&WorkoutRow| {
            k.workout_type == row.workout_type && k.start_time < row.end_time && row.start_time < k.end_time
        };
        match kept.iter().find(same) {
            Some(first) => {
                let detail = format!("the same {} as Workout {}, synced again", row.workout_type, first.id);
                out.skip("Workout", &row.id, None, Cause::DuplicateWorkout, detail);
            }
            None => kept.push(row),
        }
    }
    kept
}

/// Leaves one optional value out of a workout.
type LeaveOut = fn(&mut pb::Workout);

/// The optional values of a workout the checks may refuse alone: the field, its column,
/// and how to leave it out.
const WORKOUT_EXTRAS: [(&str, &str, LeaveOut); 4] = [
    ("active_energy_kcal", "caloriesActive", |w| w.active_energy_kcal = None),
    ("distance_meters", "distanceMeters", |w| w.distance_meters = None),
    ("avg_heart_rate", "avgHeartRate", |w| w.avg_heart_rate = None),
    ("max_heart_rate", "maxHeartRate", |w| w.max_heart_rate = None),
];

/// A legacy Workout row as a workout under its id; optional values the checks refuse are
/// left out and the workout kept.
pub fn workout(ctx: Context, row: &WorkoutRow) -> Mapped {
    const TABLE: &str = "Workout";
    let mut out = Mapped::default();
    let id = row.id.as_str();
    let mut workout = pb::Workout {
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
    let mut result = items::workout(ctx, "", &workout);
    if let Err(violations) = &result {
        let mut refused = false;
        for (field, column, leave_out) in WORKOUT_EXTRAS {
            let theirs: Vec<Violation> = violations.iter().filter(|v| v.field == field).cloned().collect();
            if !theirs.is_empty() {
                out.skip_refused(TABLE, id, &[column], &theirs);
                leave_out(&mut workout);
                refused = true;
            }
        }
        if refused {
            result = items::workout(ctx, "", &workout);
        }
    }
    out.push(TABLE, id, vec![], CheckedItem { path: String::new(), result });
    out
}

/// The deletion of a workout an earlier run imported whose row is gone.
pub fn workout_gone(ctx: Context, workout_id: &str) -> Item {
    let result = items::workout_deletion(ctx, "deleted_workout_ids[0]", workout_id);
    let checked = CheckedItem { path: String::new(), result };
    Item { checked, table: "Workout", id: workout_id.to_string(), columns: vec![] }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;

    fn row(date: NaiveDate, updated_at: NaiveDateTime, data_sources: serde_json::Value) -> EntryRow {
        EntryRow {
            id: "e1".into(),
            date,
            weight_lbs: Some(170.0),
            steps: Some(8_000),
            calories: None,
            height_inches: None,
            sleep_quality: None,
            perceived_stress: None,
            notes: None,
            has_custom_responses: false,
            data_sources: Some(data_sources),
            body_fat_percentage: None,
            created_at: updated_at,
            updated_at,
        }
    }

    fn measured_at(mapped: &Mapped) -> DateTime<Utc> {
        let weight = mapped.items.iter().find(|item| item.columns == ["weightLbs"]).expect("a weight");
        match &weight.checked.result {
            Ok(event) => event.observed_at,
            Err(violations) => panic!("refused: {}", describe(violations)),
        }
    }

    #[test]
    fn a_measurement_is_at_local_noon_of_its_date_or_earlier_when_the_row_was_written_that_morning() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 7, 1, 6, 0, 0).unwrap();
        let ctx = Context { now, zone: Some(zone) };
        let healthkit = serde_json::json!(["healthkit"]);
        let past = NaiveDate::from_ymd_opt(2026, 6, 20).unwrap();
        let late = NaiveDate::from_ymd_opt(2026, 6, 22).unwrap().and_hms_opt(9, 0, 0).unwrap();
        let mapped = entry(ctx, zone, &row(past, late, healthkit.clone()), &Held::new());
        // 12:00 in Berlin in summer is 10:00 UTC.
        assert_eq!(measured_at(&mapped), Utc.with_ymd_and_hms(2026, 6, 20, 10, 0, 0).unwrap());
        // Today's row, written at 07:30 Berlin time: noon is still ahead, and would be refused.
        let today = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
        let morning = today.and_hms_opt(5, 30, 0).unwrap();
        let mapped = entry(ctx, zone, &row(today, morning, healthkit), &Held::new());
        assert_eq!(measured_at(&mapped), morning.and_utc());
    }

    #[test]
    fn data_sources_that_are_not_the_apps_list_are_listed_and_the_row_taken_as_typed() {
        let ctx = Context { now: Utc::now(), zone: Some(Tz::UTC) };
        let date = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let at = date.and_hms_opt(20, 0, 0).unwrap();
        let cases = [
            (serde_json::json!(["manual", "HealthKit"]), true, false),
            (serde_json::json!([]), false, false),
            (serde_json::json!(null), false, false),
            (serde_json::json!("[\"healthkit\"]"), false, true),
            (serde_json::json!(["healthkit", "garmin"]), true, true),
        ];
        for (sources, healthkit, listed) in cases {
            let mapped = entry(ctx, Tz::UTC, &row(date, at, sources.clone()), &Held::new());
            let steps_reported = mapped.items.iter().any(|item| item.columns == ["steps"]);
            assert_eq!(steps_reported, healthkit, "{sources}");
            let noticed = mapped.skipped.iter().any(|s| s.cause == Cause::UnknownDataSources);
            assert_eq!(noticed, listed, "{sources}");
        }
    }
}
