//! Events: the immutable facts CoachFit stores. Each request item becomes one `NewEvent`;
//! the store gives it an id and a global sequence number and returns it as a `StoredEvent`.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

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
}

/// A body measurement, already converted to SI units (kg, m, percent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BodyMetricReport {
    pub metric: Metric,
    pub value: f64,
    pub measured_at: DateTime<Utc>,
}

/// The fields a client or coach can set by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManualField {
    Steps,
    WeightKg,
    Calories,
    ProteinGrams,
    CarbsGrams,
    FatGrams,
    FiberGrams,
    SleepMinutes,
    SleepQuality,
    PerceivedStress,
    Notes,
}

impl ManualField {
    pub const ALL: [ManualField; 11] = [
        ManualField::Steps,
        ManualField::WeightKg,
        ManualField::Calories,
        ManualField::ProteinGrams,
        ManualField::CarbsGrams,
        ManualField::FatGrams,
        ManualField::FiberGrams,
        ManualField::SleepMinutes,
        ManualField::SleepQuality,
        ManualField::PerceivedStress,
        ManualField::Notes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ManualField::Steps => "steps",
            ManualField::WeightKg => "weight_kg",
            ManualField::Calories => "calories",
            ManualField::ProteinGrams => "protein_grams",
            ManualField::CarbsGrams => "carbs_grams",
            ManualField::FatGrams => "fat_grams",
            ManualField::FiberGrams => "fiber_grams",
            ManualField::SleepMinutes => "sleep_minutes",
            ManualField::SleepQuality => "sleep_quality",
            ManualField::PerceivedStress => "perceived_stress",
            ManualField::Notes => "notes",
        }
    }

    pub fn parse(name: &str) -> Option<ManualField> {
        ManualField::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// A manual value; numbers keep their natural type so the fold can compare them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ManualValue {
    Count(u32),
    Amount(f64),
    Text(String),
}

/// A manual check-in or coach correction: values set, and fields withdrawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualReport {
    pub set: Vec<(ManualField, ManualValue)>,
    pub clear: Vec<ManualField>,
}

impl ManualReport {
    /// What this report says about `field`: `Some(Some(v))` set, `Some(None)` cleared,
    /// `None` silent.
    pub fn touches(&self, field: ManualField) -> Option<Option<&ManualValue>> {
        if let Some((_, value)) = self.set.iter().find(|(f, _)| *f == field) {
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

/// When a report was observed, and who said so. A client's time is part of what the report
/// says (and of its content hash); the server's receipt time is not, so a re-sent manual
/// entry or deletion still matches the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    ByClient(DateTime<Utc>),
    OnReceipt(DateTime<Utc>),
}

impl NewEvent {
    /// Builds an event, deriving its content hash and (when the client sent no idempotency
    /// key) its dedupe key from the canonical payload.
    pub fn new(
        day: Option<NaiveDate>,
        source: Source,
        observed: Observed,
        payload: Payload,
        idempotency_key: Option<String>,
        key_reuse: KeyReuse,
    ) -> NewEvent {
        let (observed_at, hashed_time) = match observed {
            Observed::ByClient(at) => (at, Some(at)),
            Observed::OnReceipt(at) => (at, None),
        };
        let content_hash = content_hash(day, source, hashed_time, &payload);
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

/// SHA-256 of the canonical JSON of what the event says (serde keeps field order fixed).
fn content_hash(
    day: Option<NaiveDate>,
    source: Source,
    observed_at: Option<DateTime<Utc>>,
    payload: &Payload,
) -> String {
    let canonical = serde_json::to_vec(&(day, source, observed_at, payload)).expect("payloads serialize");
    hex::encode(Sha256::digest(canonical))
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
