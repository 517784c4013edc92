//! Events: the immutable facts CoachFit stores. Each request item becomes one `NewEvent`;
//! the store gives it an id and a global sequence number and returns it as a `StoredEvent`.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::canonical;
use super::field::{Field, FieldValue};
use super::Source;

/// What kind of fact an event records; also its column value in the events table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Steps,
    Sleep,
    Workout,
    WorkoutDeleted,
    BodyMetric,
    Manual,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Steps,
        EventKind::Sleep,
        EventKind::Workout,
        EventKind::WorkoutDeleted,
        EventKind::BodyMetric,
        EventKind::Manual,
    ];

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Steps => "steps",
            EventKind::Sleep => "sleep",
            EventKind::Workout => "workout",
            EventKind::WorkoutDeleted => "workout_deleted",
            EventKind::BodyMetric => "body_metric",
            EventKind::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepsReport {
    pub total_steps: u32,
    pub source_devices: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SleepReport {
    pub total_sleep_minutes: u32,
    pub in_bed_minutes: Option<u32>,
    pub awake_minutes: Option<u32>,
    pub core_minutes: Option<u32>,
    pub deep_minutes: Option<u32>,
    pub rem_minutes: Option<u32>,
    pub sleep_start: DateTime<Utc>,
    pub sleep_end: DateTime<Utc>,
    pub source_devices: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkoutReport {
    pub workout_id: String,
    pub workout_type: String,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub duration_seconds: f64,
    pub active_energy_kcal: Option<f64>,
    pub distance_meters: Option<f64>,
    pub avg_heart_rate: Option<u32>,
    pub max_heart_rate: Option<u32>,
    pub source_device: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkoutDeletion {
    pub workout_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    WeightKg,
    HeightM,
    BodyFatPercent,
    LeanBodyMassKg,
}

impl Metric {
    pub const ALL: [Metric; 4] = [Metric::WeightKg, Metric::HeightM, Metric::BodyFatPercent, Metric::LeanBodyMassKg];

    pub fn as_str(self) -> &'static str {
        self.field().as_str()
    }
}

/// Kilograms in a pound, and metres in an inch (both exact by definition).
pub const KG_PER_LB: f64 = 0.45359237;
pub const M_PER_INCH: f64 = 0.0254;

/// A body measurement, already converted to SI units (kg, m, percent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BodyMetricReport {
    pub metric: Metric,
    pub value: f64,
    pub measured_at: DateTime<Utc>,
}

impl Metric {
    /// The Entry field a measurement of this metric offers a value for.
    pub fn field(self) -> Field {
        self.value(0.0).field()
    }

    /// A measurement of this metric (in SI units) as its field's value.
    pub fn value(self, si: f64) -> FieldValue {
        match self {
            Metric::WeightKg => FieldValue::WeightKg(si),
            Metric::HeightM => FieldValue::HeightM(si),
            Metric::BodyFatPercent => FieldValue::BodyFatPercent(si),
            Metric::LeanBodyMassKg => FieldValue::LeanBodyMassKg(si),
        }
    }
}

/// A manual check-in or coach correction: values set, and fields withdrawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualReport {
    pub set: Vec<FieldValue>,
    pub clear: Vec<Field>,
}

impl ManualReport {
    /// What this report says about `field`: `Some(Some(v))` set, `Some(None)` cleared,
    /// `None` silent.
    pub fn touches(&self, field: Field) -> Option<Option<&FieldValue>> {
        if let Some(value) = self.set.iter().find(|v| v.field() == field) {
            return Some(Some(value));
        }
        self.clear.contains(&field).then_some(None)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    Steps(StepsReport),
    Sleep(SleepReport),
    Workout(WorkoutReport),
    WorkoutDeleted(WorkoutDeletion),
    BodyMetric(BodyMetricReport),
    Manual(ManualReport),
}

impl Payload {
    pub fn kind(&self) -> EventKind {
        match self {
            Payload::Steps(_) => EventKind::Steps,
            Payload::Sleep(_) => EventKind::Sleep,
            Payload::Workout(_) => EventKind::Workout,
            Payload::WorkoutDeleted(_) => EventKind::WorkoutDeleted,
            Payload::BodyMetric(_) => EventKind::BodyMetric,
            Payload::Manual(_) => EventKind::Manual,
        }
    }

    /// Reads a payload stored as JSON whose kind is known (the events table keeps it in a
    /// column of its own): straight into the kind's type, which skips the buffering of the
    /// whole object that finding the `kind` tag inside it takes (a tenth of a rebuild's
    /// own time).
    pub fn from_json(kind: EventKind, json: &str) -> serde_json::Result<Payload> {
        Ok(match kind {
            EventKind::Steps => Payload::Steps(serde_json::from_str(json)?),
            EventKind::Sleep => Payload::Sleep(serde_json::from_str(json)?),
            EventKind::Workout => Payload::Workout(serde_json::from_str(json)?),
            EventKind::WorkoutDeleted => Payload::WorkoutDeleted(serde_json::from_str(json)?),
            EventKind::BodyMetric => Payload::BodyMetric(serde_json::from_str(json)?),
            EventKind::Manual => Payload::Manual(serde_json::from_str(json)?),
        })
    }

    /// Whether the client says when this was observed (and so the time is part of what
    /// the report says). Manual entries and workout deletions are observed on receipt,
    /// so a re-sent one still matches the original.
    pub fn observed_by_client(&self) -> bool {
        match self {
            Payload::Steps(_) | Payload::Sleep(_) | Payload::Workout(_) | Payload::BodyMetric(_) => true,
            Payload::WorkoutDeleted(_) | Payload::Manual(_) => false,
        }
    }

    /// The workout this event is about, for workouts and their deletions.
    pub fn workout_id(&self) -> Option<&str> {
        match self {
            Payload::Workout(w) => Some(&w.workout_id),
            Payload::WorkoutDeleted(d) => Some(&d.workout_id),
            _ => None,
        }
    }
}

/// How a repeated dedupe key is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyReuse {
    /// The same key with other content is a client error (`IDEMPOTENCY_KEY_REUSED`).
    Reject,
    /// The same key with other content is a new revision (workouts, keyed by `workout_id`).
    Revise,
    /// Every report is a new fact; nothing is deduplicated (manual entries sent without a key).
    Never,
}

/// A validated event, ready to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The local day it belongs to; `None` only for the deletion of a workout never seen.
    pub day: Option<NaiveDate>,
    pub source: Source,
    pub observed_at: DateTime<Utc>,
    pub payload: Payload,
    pub dedupe_key: String,
    pub content_hash: String,
    pub key_reuse: KeyReuse,
}

impl NewEvent {
    /// Builds an event, deriving its content hash and (when the client sent no idempotency
    /// key) its dedupe key from what it says (`canonical`).
    pub fn new(
        day: Option<NaiveDate>,
        source: Source,
        observed_at: DateTime<Utc>,
        payload: Payload,
        idempotency_key: Option<String>,
        key_reuse: KeyReuse,
    ) -> NewEvent {
        let content_hash = canonical::content_hash(day, source, observed_at, &payload);
        let dedupe_key = idempotency_key.unwrap_or_else(|| content_hash.clone());
        NewEvent { day, source, observed_at, payload, dedupe_key, content_hash, key_reuse }
    }

    pub fn kind(&self) -> EventKind {
        self.payload.kind()
    }

    /// The key stored with the event: its own id when it is never deduplicated, so that
    /// identical reports each stay a fact of their own.
    pub fn stored_key(&self, event_id: Uuid) -> String {
        match self.key_reuse {
            KeyReuse::Never => event_id.to_string(),
            KeyReuse::Reject | KeyReuse::Revise => self.dedupe_key.clone(),
        }
    }
}

/// An event as stored: the fold's input.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event_id: Uuid,
    pub day: Option<NaiveDate>,
    pub source: Source,
    pub observed_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub payload: Payload,
}

impl StoredEvent {
    /// The order in which observations of one source supersede each other.
    pub fn recency(&self) -> (DateTime<Utc>, i64) {
        (self.observed_at, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// A payload of every kind, as stored (tagged JSON), reads back the same by its kind,
    /// including one whose optional fields are absent.
    #[test]
    fn a_stored_payload_of_every_kind_reads_back_by_its_kind() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 7, 0, 0).unwrap();
        let payloads = [
            Payload::Steps(StepsReport { total_steps: 8_432, source_devices: vec!["iPhone".into()] }),
            Payload::Sleep(SleepReport {
                total_sleep_minutes: 420,
                in_bed_minutes: Some(450),
                awake_minutes: None,
                core_minutes: Some(200),
                deep_minutes: Some(100),
                rem_minutes: Some(120),
                sleep_start: at - chrono::Duration::hours(8),
                sleep_end: at,
                source_devices: vec![],
            }),
            Payload::Workout(WorkoutReport {
                workout_id: "w1".into(),
                workout_type: "running".into(),
                start_time: at,
                end_time: at + chrono::Duration::minutes(30),
                duration_seconds: 1_800.0,
                active_energy_kcal: Some(310.5),
                distance_meters: None,
                avg_heart_rate: Some(150),
                max_heart_rate: None,
                source_device: "Watch".into(),
            }),
            Payload::WorkoutDeleted(WorkoutDeletion { workout_id: "w1".into() }),
            Payload::BodyMetric(BodyMetricReport { metric: Metric::WeightKg, value: 81.4, measured_at: at }),
            Payload::Manual(ManualReport {
                set: vec![FieldValue::Notes("slept badly".into())],
                clear: vec![Field::Steps],
            }),
        ];
        for payload in payloads {
            let kind = EventKind::parse(payload.kind().as_str()).unwrap();
            let stored = serde_json::to_string(&payload).unwrap();
            assert_eq!(Payload::from_json(kind, &stored).unwrap(), payload, "{stored}");
        }
        assert_eq!(EventKind::parse("heart_rate"), None);
    }
}
