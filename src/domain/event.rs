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
                set: vec![(ManualField::Notes, ManualValue::Text("slept badly".into()))],
                clear: vec![ManualField::Steps],
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
