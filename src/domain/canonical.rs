//! The content hash of an event: SHA-256 over a frozen, versioned form of what it says.
//!
//! Deduplication rests on it: a phone that re-sends a report after a deploy must get the
//! same hash, or the report is stored twice. So the form is written out here field by
//! field, by name, and never follows struct layout or serde: a payload may gain a field
//! without changing any hash. Changing this form means a new `VERSION`, and the store
//! re-hashing its events (`store::rehash`); the tests below pin known hashes.
//!
//! Form v1 is one line per field, `name:value`, after a header line naming the version:
//! text is `s<bytes>:<text>`, whole numbers `i<n>`, other numbers `f<IEEE-754 bits in
//! hex>` (with -0 as 0), instants `t<microseconds since 1970>`, an absent value `-`, and a
//! list `l<len>` followed by its items as `name[i]`.

use std::fmt::Display;

use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};

use super::event::Payload;
use super::field::Scalar;
use super::Source;

/// The version of the form, stored as the hash's prefix (`v1:…`).
pub const VERSION: &str = "v1";

/// `v1:` and the hex SHA-256 of the canonical form of an event. The observation time is
/// part of it only when the client gave it (`Payload::observed_by_client`).
pub fn content_hash(day: Option<NaiveDate>, source: Source, observed_at: DateTime<Utc>, payload: &Payload) -> String {
    let form = canonical_form(day, source, observed_at, payload);
    format!("{VERSION}:{}", hex::encode(Sha256::digest(form)))
}

/// Whether a stored hash was made by this version of the form.
pub fn is_current(hash: &str) -> bool {
    hash.strip_prefix(VERSION).is_some_and(|rest| rest.starts_with(':'))
}

fn canonical_form(day: Option<NaiveDate>, source: Source, observed_at: DateTime<Utc>, payload: &Payload) -> Vec<u8> {
    let mut f = Form(format!("coachfit.event.{VERSION}\n").into_bytes());
    f.text("kind", payload.kind().as_str());
    f.optional("day", day, |f, name, day| f.text(name, &day.to_string()));
    f.text("source", source.as_str());
    f.optional("observed_at", payload.observed_by_client().then_some(observed_at), Form::instant);
    match payload {
        Payload::Steps(s) => {
            f.whole("total_steps", s.total_steps);
            f.texts("source_devices", &s.source_devices);
        }
        Payload::Sleep(s) => {
            f.whole("total_sleep_minutes", s.total_sleep_minutes);
            f.optional("in_bed_minutes", s.in_bed_minutes, Form::whole);
            f.optional("awake_minutes", s.awake_minutes, Form::whole);
            f.optional("core_minutes", s.core_minutes, Form::whole);
            f.optional("deep_minutes", s.deep_minutes, Form::whole);
            f.optional("rem_minutes", s.rem_minutes, Form::whole);
            f.instant("sleep_start", s.sleep_start);
            f.instant("sleep_end", s.sleep_end);
            f.texts("source_devices", &s.source_devices);
        }
        Payload::Workout(w) => {
            f.text("workout_id", &w.workout_id);
            f.text("workout_type", &w.workout_type);
            f.instant("start_time", w.start_time);
            f.instant("end_time", w.end_time);
            f.number("duration_seconds", w.duration_seconds);
            f.optional("active_energy_kcal", w.active_energy_kcal, Form::number);
            f.optional("distance_meters", w.distance_meters, Form::number);
            f.optional("avg_heart_rate", w.avg_heart_rate, Form::whole);
            f.optional("max_heart_rate", w.max_heart_rate, Form::whole);
            f.text("source_device", &w.source_device);
        }
        Payload::WorkoutDeleted(d) => f.text("workout_id", &d.workout_id),
        Payload::BodyMetric(m) => {
            f.text("metric", m.metric.as_str());
            f.number("value", m.value);
            f.instant("measured_at", m.measured_at);
        }
        Payload::Manual(m) => {
            f.line("set", format_args!("l{}", m.set.len()));
            for (i, value) in m.set.iter().enumerate() {
                f.text(&format!("set[{i}].field"), value.field().as_str());
                let name = format!("set[{i}].value");
                match value.scalar() {
                    Scalar::Count(n) => f.whole(&name, n),
                    Scalar::Amount(x) => f.number(&name, x),
                    Scalar::Text(text) => f.text(&name, &text),
                }
            }
            f.line("clear", format_args!("l{}", m.clear.len()));
            for (i, field) in m.clear.iter().enumerate() {
                f.text(&format!("clear[{i}]"), field.as_str());
            }
        }
    }
    f.0
}

/// The canonical form being written.
struct Form(Vec<u8>);

impl Form {
    fn line(&mut self, name: &str, value: std::fmt::Arguments) {
        use std::io::Write;
        writeln!(self.0, "{name}:{value}").expect("writing to a vector cannot fail");
    }

    fn text(&mut self, name: &str, text: &str) {
        self.line(name, format_args!("s{}:{text}", text.len()));
    }

    fn whole(&mut self, name: &str, n: impl Display) {
        self.line(name, format_args!("i{n}"));
    }

    fn number(&mut self, name: &str, x: f64) {
        let x = if x == 0.0 { 0.0 } else { x };
        self.line(name, format_args!("f{:016x}", x.to_bits()));
    }

    fn instant(&mut self, name: &str, at: DateTime<Utc>) {
        self.line(name, format_args!("t{}", at.timestamp_micros()));
    }

    fn texts(&mut self, name: &str, texts: &[String]) {
        self.line(name, format_args!("l{}", texts.len()));
        for (i, text) in texts.iter().enumerate() {
            self.text(&format!("{name}[{i}]"), text);
        }
    }

    fn optional<T>(&mut self, name: &str, value: Option<T>, write: impl FnOnce(&mut Self, &str, T)) {
        match value {
            Some(value) => write(self, name, value),
            None => self.line(name, format_args!("-")),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::event::{
        BodyMetricReport, ManualReport, Metric, SleepReport, StepsReport, WorkoutDeletion, WorkoutReport,
    };
    use crate::domain::field::{Field, FieldValue};

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 22, 0, 0).unwrap()
    }

    fn day() -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(2026, 3, 2)
    }

    fn steps() -> Payload {
        Payload::Steps(StepsReport { total_steps: 8_432, source_devices: vec!["iPhone".into()] })
    }

    /// The form of one event, written out by hand.
    #[test]
    fn the_form_of_a_step_total_is_one_line_per_field() {
        let form = canonical_form(day(), Source::Healthkit, at(), &steps());
        let expected = "coachfit.event.v1\n\
                        kind:s5:steps\n\
                        day:s10:2026-03-02\n\
                        source:s9:healthkit\n\
                        observed_at:t1772488800000000\n\
                        total_steps:i8432\n\
                        source_devices:l1\n\
                        source_devices[0]:s6:iPhone\n";
        assert_eq!(String::from_utf8(form).unwrap(), expected);
    }

    /// Hashes of one event of every kind, as stored by the first release of form v1. If
    /// this test fails, stored events would stop deduplicating: keep the form, or make a
    /// new version and re-hash.
    #[test]
    fn known_hashes_never_change() {
        let manual = Payload::Manual(ManualReport {
            set: vec![FieldValue::Notes("slept badly".into()), FieldValue::Steps(12_000), FieldValue::WeightKg(81.5)],
            clear: vec![Field::Calories],
        });
        let cases = [
            (Source::Healthkit, steps(), "v1:0a8fc3ceb2b54de249980f6d77362f41cb9335805171ae535b19a226b3e7a8f4"),
            (
                Source::Healthkit,
                Payload::Sleep(SleepReport {
                    total_sleep_minutes: 420,
                    in_bed_minutes: Some(450),
                    awake_minutes: None,
                    core_minutes: Some(200),
                    deep_minutes: Some(100),
                    rem_minutes: Some(120),
                    sleep_start: at() - chrono::Duration::hours(8),
                    sleep_end: at(),
                    source_devices: vec![],
                }),
                "v1:ad40e3bd508914d032c9bb754fc307cd4358649e1376fdc9131b9c99a15f342d",
            ),
            (
                Source::Strava,
                Payload::Workout(WorkoutReport {
                    workout_id: "w1".into(),
                    workout_type: "running".into(),
                    start_time: at(),
                    end_time: at() + chrono::Duration::minutes(30),
                    duration_seconds: 1_800.0,
                    active_energy_kcal: Some(310.5),
                    distance_meters: None,
                    avg_heart_rate: Some(150),
                    max_heart_rate: None,
                    source_device: "Watch".into(),
                }),
                "v1:8f497aff88cce3e5a2d3c9e57efcaaea708dadfac61c1ce8155293dcc165707b",
            ),
            (
                Source::Healthkit,
                Payload::WorkoutDeleted(WorkoutDeletion { workout_id: "w1".into() }),
                "v1:0e8bc40a33aced5d8803f39a4ed7035e4e621978ba1ec955dfafd8cbf65539ac",
            ),
            (
                Source::Healthkit,
                Payload::BodyMetric(BodyMetricReport { metric: Metric::WeightKg, value: 81.4, measured_at: at() }),
                "v1:b650efcac77c632ddc43a4de878f7ce3b19bf10bd895fd34be65fa08ad6d1c77",
            ),
            (Source::Manual, manual, "v1:ee0d7b9dc54cca6a91b2906d9511995377292be2b7cc6f9f0412e323f4f71681"),
        ];
        let hashes: Vec<String> =
            cases.iter().map(|(source, payload, _)| content_hash(day(), *source, at(), payload)).collect();
        let pinned: Vec<&str> = cases.iter().map(|(_, _, hash)| *hash).collect();
        assert_eq!(hashes, pinned);
    }

    #[test]
    fn the_time_counts_only_when_the_client_gave_it() {
        let later = at() + chrono::Duration::hours(1);
        assert_ne!(
            content_hash(day(), Source::Healthkit, at(), &steps()),
            content_hash(day(), Source::Healthkit, later, &steps())
        );
        let deletion = Payload::WorkoutDeleted(WorkoutDeletion { workout_id: "w1".into() });
        assert_eq!(
            content_hash(None, Source::Healthkit, at(), &deletion),
            content_hash(None, Source::Healthkit, later, &deletion)
        );
    }

    #[test]
    fn negative_zero_hashes_as_zero_and_versions_are_recognised() {
        let metric =
            |value| Payload::BodyMetric(BodyMetricReport { metric: Metric::BodyFatPercent, value, measured_at: at() });
        assert_eq!(
            content_hash(day(), Source::Healthkit, at(), &metric(0.0)),
            content_hash(day(), Source::Healthkit, at(), &metric(-0.0))
        );
        assert!(is_current(&content_hash(day(), Source::Healthkit, at(), &steps())));
        assert!(!is_current("2b8c2bd5a0a88d5fd51e5b3ff0e45a57ec1e9d1c4d0c92e0e0e0e0e0e0e0e0e0"));
        assert!(!is_current("v10:ab"));
    }
}
