//! The demo's sample data: what two clients' phones and a coach would have sent over a few
//! weeks, as the app sends it. Deterministic for a seed, so every demo looks alike.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::proto::v1 as pb;

/// The clients' time zone.
pub const ZONE: Tz = chrono_tz::America::New_York;
pub const ZONE_NAME: &str = "America/New_York";

/// One client's habits: how much they walk, sleep and run, and how they weigh themselves.
pub struct Habits {
    pub seed: u64,
    pub steps: u32,
    pub sleep_minutes: u32,
    pub weight_kg: f64,
    /// Whether their scale reports pounds.
    pub pounds: bool,
    /// Whether they also record runs with Strava (the same run comes in twice).
    pub strava: bool,
}

fn at(day: NaiveDate, hour: u32, minute: u32) -> DateTime<Utc> {
    let local = day.and_time(NaiveTime::from_hms_opt(hour, minute, 0).expect("valid time"));
    ZONE.from_local_datetime(&local).earliest().expect("a local time that exists").with_timezone(&Utc)
}

pub fn timestamp(at: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 })
}

/// The days before `today`, oldest first.
pub fn past_days(today: NaiveDate, count: i64) -> Vec<NaiveDate> {
    (1..=count).rev().map(|back| today - Duration::days(back)).collect()
}

/// Each past day's step total as the phone reports it: an evening total, then the final one.
pub fn steps(habits: &Habits, days: &[NaiveDate]) -> Vec<pb::StepsSample> {
    let mut rng = StdRng::seed_from_u64(habits.seed);
    days.iter()
        .flat_map(|&day| {
            let total = habits.steps * rng.gen_range(60..140) / 100;
            [(18, total * 3 / 4), (23, total)].map(|(hour, total_steps)| pb::StepsSample {
                date: day.to_string(),
                total_steps,
                observed_at: timestamp(at(day, hour, 30)),
                source_devices: vec!["iPhone".into()],
                idempotency_key: format!("steps-{day}-{hour}"),
            })
        })
        .collect()
}

/// A step total for today so far, `total` steps.
pub fn steps_now(today: NaiveDate, total: u32, now: DateTime<Utc>) -> pb::StepsSample {
    pb::StepsSample {
        date: today.to_string(),
        total_steps: total,
        observed_at: timestamp(now),
        source_devices: vec!["iPhone".into()],
        idempotency_key: String::new(),
    }
}

/// Each night's sleep, on the day it ends, with stages.
pub fn sleep(habits: &Habits, days: &[NaiveDate]) -> Vec<pb::SleepSession> {
    let mut rng = StdRng::seed_from_u64(habits.seed + 1);
    days.iter()
        .map(|&day| {
            let asleep = habits.sleep_minutes * rng.gen_range(80..115) / 100;
            let awake = rng.gen_range(10..40);
            let (deep, rem) = (asleep * rng.gen_range(13..20) / 100, asleep * rng.gen_range(20..26) / 100);
            let end = at(day, 6, rng.gen_range(0..59)) + Duration::minutes(i64::from(rng.gen_range(0..60)));
            let start = end - Duration::minutes(i64::from(asleep + awake));
            pb::SleepSession {
                date: String::new(),
                total_sleep_minutes: asleep,
                in_bed_minutes: Some(asleep + awake),
                awake_minutes: Some(awake),
                core_minutes: Some(asleep - deep - rem),
                deep_minutes: Some(deep),
                rem_minutes: Some(rem),
                sleep_start: timestamp(start),
                sleep_end: timestamp(end),
                observed_at: timestamp(end + Duration::minutes(20)),
                source_devices: vec!["Apple Watch".into()],
                idempotency_key: format!("sleep-{day}"),
            }
        })
        .collect()
}

/// An evening run every other day (also from Strava when the client uses it: the service
/// counts it once) and a ride on Sundays from Strava alone.
pub fn workouts(habits: &Habits, days: &[NaiveDate]) -> Vec<pb::Workout> {
    use chrono::Datelike;
    let mut rng = StdRng::seed_from_u64(habits.seed + 2);
    let mut workouts = Vec::new();
    for (i, &day) in days.iter().enumerate() {
        if i % 2 == 0 {
            let minutes = rng.gen_range(25..55);
            let start = at(day, 17, rng.gen_range(30..59));
            let run = workout(format!("hk-run-{day}"), "running", start, minutes, pb::Source::Healthkit);
            let distance = (f64::from(minutes) * rng.gen_range(150.0..190.0)).round();
            let run = pb::Workout {
                distance_meters: Some(distance),
                avg_heart_rate: Some(rng.gen_range(135..160)),
                max_heart_rate: Some(rng.gen_range(165..185)),
                ..run
            };
            if habits.strava {
                let strava_id = format!("strava-{}", 9_000_000 + i);
                let from_strava = workout(strava_id, "running", start, minutes, pb::Source::Strava);
                workouts.push(pb::Workout { distance_meters: Some((distance * 1.01).round()), ..from_strava });
            }
            workouts.push(run);
        }
        if day.weekday() == chrono::Weekday::Sun && habits.strava {
            let ride = workout(format!("strava-ride-{day}"), "cycling", at(day, 10, 0), 90, pb::Source::Strava);
            workouts.push(pb::Workout { distance_meters: Some(38_000.0), ..ride });
        }
    }
    workouts
}

fn workout(id: String, kind: &str, start: DateTime<Utc>, minutes: u32, source: pb::Source) -> pb::Workout {
    let end = start + Duration::minutes(i64::from(minutes));
    pb::Workout {
        workout_id: id,
        workout_type: kind.into(),
        start_time: timestamp(start),
        end_time: timestamp(end),
        duration_seconds: f64::from(minutes * 60),
        active_energy_kcal: Some(f64::from(minutes) * 11.0),
        source_device: "Apple Watch".into(),
        source: source.into(),
        observed_at: timestamp(end + Duration::minutes(5)),
        ..Default::default()
    }
}

/// A weigh-in every third morning, drifting down slowly.
pub fn weights(habits: &Habits, days: &[NaiveDate]) -> Vec<pb::BodyMetric> {
    let mut rng = StdRng::seed_from_u64(habits.seed + 3);
    days.iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 0)
        .map(|(i, &day)| {
            let kg = habits.weight_kg - i as f64 * 0.05 + rng.gen_range(-0.3..0.3);
            let (value, unit) = match habits.pounds {
                true => ((kg / 0.453_592_37 * 10.0).round() / 10.0, pb::Unit::Lb),
                false => ((kg * 10.0).round() / 10.0, pb::Unit::Kg),
            };
            pb::BodyMetric {
                r#type: pb::BodyMetricType::Weight.into(),
                value,
                unit: unit.into(),
                measured_at: timestamp(at(day, 7, 45)),
                idempotency_key: format!("weight-{day}"),
            }
        })
        .collect()
}

/// Evening check-ins on some days: calories, how they slept, how stressed they felt.
pub fn check_ins(habits: &Habits, days: &[NaiveDate]) -> Vec<(NaiveDate, pb::ManualValues)> {
    let mut rng = StdRng::seed_from_u64(habits.seed + 4);
    days.iter()
        .filter_map(|&day| {
            let values = pb::ManualValues {
                calories: Some(rng.gen_range(1_800..2_600)),
                protein_grams: Some(f64::from(rng.gen_range(90..150))),
                sleep_quality: Some(rng.gen_range(5..10)),
                perceived_stress: Some(rng.gen_range(2..8)),
                ..Default::default()
            };
            rng.gen_bool(0.5).then_some((day, values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::items;
    use crate::domain::validate::Context;

    fn habits() -> Habits {
        Habits { seed: 7, steps: 9_000, sleep_minutes: 430, weight_kg: 72.0, pounds: true, strava: true }
    }

    /// Every item the demo sends passes the service's own validation, so the demo never
    /// shows a rejection.
    #[test]
    fn every_sample_item_is_valid() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 30).unwrap();
        let ctx = Context { now: at(today, 12, 0), zone: Some(ZONE) };
        let days = past_days(today, 21);
        let h = habits();
        let check = |result: Result<_, Vec<_>>| assert!(result.is_ok(), "{:?}", result.err());
        steps(&h, &days).iter().for_each(|s| check(items::steps_sample(ctx, "s", s).map(|_| ())));
        sleep(&h, &days).iter().for_each(|s| check(items::sleep_session(ctx, "s", s).map(|_| ())));
        workouts(&h, &days).iter().for_each(|w| check(items::workout(ctx, "w", w).map(|_| ())));
        weights(&h, &days).iter().for_each(|m| check(items::body_metric(ctx, "m", m).map(|_| ())));
        assert_eq!(steps(&h, &days).len(), 42);
        assert!(workouts(&h, &days).iter().any(|w| w.source == pb::Source::Strava as i32));
    }
}
