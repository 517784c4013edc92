//! Domain values → protobuf messages.

use chrono::{DateTime, Utc};

use crate::domain::event::StoredEvent;
use crate::domain::field::Scalar;
use crate::domain::fold::{Day, Outranked, Provenance, Reason, SleepRecord, WorkoutSummary};
use crate::domain::priority::PriorityFile;
use crate::domain::Source;
use crate::proto::v1 as pb;
use crate::store::{Access, StoredEntry};

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }
}

pub fn source(s: Source) -> i32 {
    match s {
        Source::Coach => pb::Source::Coach,
        Source::Manual => pb::Source::Manual,
        Source::Healthkit => pb::Source::Healthkit,
        Source::Strava => pb::Source::Strava,
    }
    .into()
}

/// A priority rule as written (source names) as its message.
pub fn priority_rule(file: &PriorityFile) -> pb::PriorityRule {
    let order = |names: &[String]| names.iter().filter_map(|name| Source::parse(name)).map(source).collect();
    pb::PriorityRule {
        default_order: file.default.as_deref().map(order).unwrap_or_default(),
        fields: file
            .fields
            .iter()
            .map(|(field, names)| (field.clone(), pb::SourceOrder { sources: order(names) }))
            .collect(),
    }
}

/// Kilograms to the gram and metres to the millimetre: what a unit conversion leaves
/// (172.4 lb is 78.19932458800001 kg) is noise. Events and the fold keep the exact value.
pub(crate) fn thousandths(value: f64) -> f64 {
    (value * 1_000.0).round() / 1_000.0
}

/// A percent to a hundredth.
pub(crate) fn hundredths(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

pub fn entry(stored: &StoredEntry) -> pb::Entry {
    let Day {
        steps,
        weight_kg,
        height_m,
        body_fat_percent,
        lean_body_mass_kg,
        calories,
        protein_grams,
        carbs_grams,
        fat_grams,
        fiber_grams,
        sleep_minutes,
        sleep_quality,
        perceived_stress,
        notes,
        sleep,
        workouts,
        data_sources,
        provenance,
    } = &stored.body;
    pb::Entry {
        user_id: stored.user_id.clone(),
        date: stored.day.to_string(),
        steps: *steps,
        weight_kg: weight_kg.map(thousandths),
        height_m: height_m.map(thousandths),
        body_fat_percent: body_fat_percent.map(hundredths),
        lean_body_mass_kg: lean_body_mass_kg.map(thousandths),
        calories: *calories,
        protein_grams: *protein_grams,
        carbs_grams: *carbs_grams,
        fat_grams: *fat_grams,
        fiber_grams: *fiber_grams,
        sleep_minutes: *sleep_minutes,
        sleep_quality: *sleep_quality,
        perceived_stress: *perceived_stress,
        notes: notes.clone(),
        sleep: sleep.as_ref().map(sleep_record),
        workouts: Some(workout_summary(workouts)),
        data_sources: data_sources.iter().map(|s| source(*s)).collect(),
        provenance: provenance
            .iter()
            .map(|p| pb::FieldProvenance {
                field: p.field.as_str().to_string(),
                source: source(p.source),
                overridden: p.overridden,
            })
            .collect(),
        position: stored.position as u64,
        updated_at: Some(timestamp(stored.updated_at)),
    }
}

fn sleep_record(s: &SleepRecord) -> pb::SleepRecord {
    let r = &s.report;
    pb::SleepRecord {
        source: source(s.source),
        total_sleep_minutes: r.total_sleep_minutes,
        in_bed_minutes: r.in_bed_minutes,
        awake_minutes: r.awake_minutes,
        core_minutes: r.core_minutes,
        deep_minutes: r.deep_minutes,
        rem_minutes: r.rem_minutes,
        sleep_start: Some(timestamp(r.sleep_start)),
        sleep_end: Some(timestamp(r.sleep_end)),
        observed_at: Some(timestamp(s.observed_at)),
        source_devices: r.source_devices.clone(),
        event_id: s.event_id.to_string(),
        sessions: s.sessions,
    }
}

fn workout_summary(w: &WorkoutSummary) -> pb::WorkoutSummary {
    pb::WorkoutSummary {
        count: w.count,
        total_minutes: w.total_minutes,
        active_kcal: w.active_kcal,
        distance_meters: w.distance_meters,
        sessions: w
            .sessions
            .iter()
            .map(|c| {
                let r = &c.report;
                pb::WorkoutRecord {
                    workout_id: r.workout_id.clone(),
                    workout_type: r.workout_type.clone(),
                    source: source(c.source),
                    start_time: Some(timestamp(r.start_time)),
                    end_time: Some(timestamp(r.end_time)),
                    duration_seconds: r.duration_seconds,
                    active_energy_kcal: r.active_energy_kcal,
                    distance_meters: r.distance_meters,
                    avg_heart_rate: r.avg_heart_rate,
                    max_heart_rate: r.max_heart_rate,
                    source_device: r.source_device.clone(),
                }
            })
            .collect(),
    }
}

pub fn event_record(e: &StoredEvent) -> pb::EventRecord {
    pb::EventRecord {
        event_id: e.event_id.to_string(),
        seq: e.seq as u64,
        kind: e.payload.kind().as_str().to_string(),
        source: source(e.source),
        observed_at: Some(timestamp(e.observed_at)),
        recorded_at: Some(timestamp(e.recorded_at)),
        actor: e.actor.clone(),
        payload_json: serde_json::to_string(&e.payload).expect("payloads serialize"),
    }
}

/// A field's decision, with the values of `outranked` (the day's, any field) it beat.
pub fn decision(p: &Provenance, outranked: &[Outranked]) -> pb::FieldDecision {
    pb::FieldDecision {
        field: p.field.as_str().to_string(),
        source: source(p.source),
        winning_event_ids: p.event_ids.iter().map(|id| id.to_string()).collect(),
        reason: reason_text(&p.reason),
        overridden: p.overridden,
        outranked: outranked.iter().filter(|o| o.field == p.field).map(outranked_value).collect(),
    }
}

fn outranked_value(o: &Outranked) -> pb::OutrankedValue {
    use pb::outranked_value::Value;
    let value = match o.value.scalar() {
        Scalar::Count(n) => Value::Number(n.into()),
        Scalar::Amount(x) => Value::Number(x),
        Scalar::Text(text) => Value::Text(text),
    };
    pb::OutrankedValue { source: source(o.source), value: Some(value), event_id: o.event_id.to_string() }
}

/// A reason in words, for people reading `ExplainEntry`.
pub fn reason_text(reason: &Reason) -> String {
    match reason {
        Reason::LatestStepTotal { source, observed_at } => {
            format!("latest {} step total, observed {}", source.as_str(), observed_at.to_rfc3339())
        }
        Reason::LatestSleepSummary { source, observed_at } => {
            format!("latest {} sleep summary, observed {}", source.as_str(), observed_at.to_rfc3339())
        }
        Reason::LatestMeasurement { source, measured_at } => {
            format!("latest {} measurement, measured {}", source.as_str(), measured_at.to_rfc3339())
        }
        Reason::LatestManualEntry { actor, seq } => format!("latest manual entry by {actor} (event #{seq})"),
        Reason::SleepSessionsSummed { source, sessions } => {
            format!("{sessions} {} sleep sessions of the day summed", source.as_str())
        }
        Reason::HighestRankedSleepSession { source } => format!("{} sleep session ranks highest", source.as_str()),
        Reason::LatestWorkoutRevisions => {
            "latest revision of each workout not deleted; a session two sources or reporters sent counts once"
                .to_string()
        }
    }
}

pub fn access(access: &Access) -> pb::AccessRecord {
    pb::AccessRecord {
        read_at: Some(timestamp(access.at)),
        accessor: access.accessor.clone(),
        rpc: access.rpc.clone(),
        detail: access.detail.clone(),
        peer: access.peer.clone(),
    }
}
