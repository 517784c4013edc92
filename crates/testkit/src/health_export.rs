//! A generated Apple Health export (`export.zip`) and what the Health app would show for
//! each day of it, worked out here minute by minute from how it was generated — not by
//! the importer's code.
//!
//! (A night whose samples fall on odd seconds is known to within a minute of rounding.)
//!
//! Every day: walks recorded by the Watch (short samples) and, often at the same time, by
//! the iPhone (longer samples that begin earlier and end later, counting a few more steps a
//! minute); now and then a walk across midnight; heart-rate samples the import skips. Every
//! night: the Watch's stages and the iPhone's time in bed (every sixth night, stages on odd
//! seconds and no phone), the night of each DST change included; naps; runs every third day (half described the iOS 16 way, with statistics,
//! half the older way, with totals); weekly weigh-ins in kg or lb, body fat as HealthKit's
//! fraction, lean mass, a height.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const ZONE: &str = "America/New_York";
const WATCH: &str = "Ana\u{2019}s Apple Watch";
const PHONE: &str = "Ana\u{2019}s iPhone";
const WATCH_DEVICE: &str = "&lt;&lt;HKDevice: 0x1&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,2, software:10.3&gt;";
const PHONE_DEVICE: &str = "&lt;&lt;HKDevice: 0x2&gt;, name:iPhone, manufacturer:Apple Inc., model:iPhone, hardware:iPhone14,2, software:17.3&gt;";

/// What a day should show after the import.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpectedDay {
    pub steps: Option<u32>,
    pub sleep_minutes: Option<u32>,
    pub deep_minutes: Option<u32>,
    pub in_bed_minutes: Option<u32>,
    pub sleep_sessions: u32,
    /// Minutes `sleep_minutes` and `deep_minutes` may be off by: a night recorded on odd
    /// seconds is rounded to minutes.
    pub sleep_slack: u32,
    pub workouts: u32,
    pub workout_kcal: f64,
    pub workout_meters: f64,
    pub weight_kg: Option<f64>,
    pub body_fat_percent: Option<f64>,
    pub lean_body_mass_kg: Option<f64>,
    pub height_m: Option<f64>,
}

pub struct Fixture {
    pub path: PathBuf,
    pub days: BTreeMap<NaiveDate, ExpectedDay>,
    /// `Record` and `Workout` elements written.
    pub records: u64,
    /// The size of export.xml.
    pub bytes: u64,
    pub step_days: u64,
    pub sleep_sessions: u64,
    pub workouts: u64,
    pub body_metrics: u64,
}

/// Writes export.xml straight into the zip: an export of gigabytes is never in memory.
struct Writer {
    xml: BufWriter<zip::ZipWriter<File>>,
    zone: Tz,
    records: u64,
    bytes: u64,
}

impl Writer {
    fn time(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.zone).format("%Y-%m-%d %H:%M:%S %z").to_string()
    }

    fn record(&mut self, kind: &str, watch: bool, unit: &str, start: DateTime<Utc>, end: DateTime<Utc>, value: &str) {
        let (source, device) = if watch { (WATCH, WATCH_DEVICE) } else { (PHONE, PHONE_DEVICE) };
        let (start, end) = (self.time(start), self.time(end));
        let line = format!(
            r#" <Record type="{kind}" sourceName="{source}" sourceVersion="10.3" device="{device}" unit="{unit}" creationDate="{end}" startDate="{start}" endDate="{end}" value="{value}"/>"#
        );
        self.line(&line);
        self.records += 1;
    }

    /// A whole-minute walk as step samples of `min..=max` minutes at `rate` steps a minute;
    /// each minute's steps go into `counted`.
    fn walk(
        &mut self,
        rng: &mut StdRng,
        watch: bool,
        (start, minutes): (DateTime<Utc>, i64),
        (min, max): (i64, i64),
        rate: i64,
        counted: &mut BTreeMap<DateTime<Utc>, i64>,
    ) {
        let mut done = 0;
        while done < minutes {
            let length = rng.gen_range(min..=max).min(minutes - done);
            let at = start + Duration::minutes(done);
            let steps = (rate * length).to_string();
            self.record(
                "HKQuantityTypeIdentifierStepCount",
                watch,
                "count",
                at,
                at + Duration::minutes(length),
                &steps,
            );
            for minute in 0..length {
                counted.insert(at + Duration::minutes(minute), rate);
            }
            done += length;
        }
    }

    fn line(&mut self, line: &str) {
        self.xml.write_all(line.as_bytes()).unwrap();
        self.xml.write_all(b"\n").unwrap();
        self.bytes += line.len() as u64 + 1;
    }

    fn sleep(&mut self, watch: bool, start: DateTime<Utc>, seconds: i64, stage: &str) {
        let value = format!("HKCategoryValueSleepAnalysis{stage}");
        self.record(
            "HKCategoryTypeIdentifierSleepAnalysis",
            watch,
            "",
            start,
            start + Duration::seconds(seconds),
            &value,
        );
    }
}

fn local(zone: Tz, day: NaiveDate, minute_of_day: i64) -> DateTime<Utc> {
    let naive = day.and_hms_opt(0, 0, 0).unwrap() + Duration::minutes(minute_of_day);
    zone.from_local_datetime(&naive).earliest().expect("the fixture avoids DST gaps").with_timezone(&Utc)
}

/// Writes `export.zip` into `dir`: `days` days from 2024-01-01 and `filler` skipped
/// heart-rate samples a day.
pub fn generate(dir: &Path, days: i64, filler: u32, seed: u64) -> Fixture {
    let zone: Tz = ZONE.parse().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let path = dir.join("export.zip");
    let mut zip = zip::ZipWriter::new(File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(true);
    zip.start_file("apple_health_export/export.xml", options).unwrap();
    let mut w = Writer { xml: BufWriter::with_capacity(1 << 16, zip), zone, records: 0, bytes: 0 };
    w.line(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE HealthData [\n<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord)*)>\n<!ATTLIST HealthData locale CDATA #REQUIRED>\n]>\n<HealthData locale=\"en_US\">\n <ExportDate value=\"2025-03-01 08:00:00 -0500\"/>\n <Me HKCharacteristicTypeIdentifierDateOfBirth=\"1990-04-01\" HKCharacteristicTypeIdentifierBiologicalSex=\"HKBiologicalSexFemale\"/>",
    );
    let first = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let mut expected: BTreeMap<NaiveDate, ExpectedDay> = BTreeMap::new();
    // The steps each minute counts for, by the minute's instant: the Watch's where it
    // recorded, else the iPhone's.
    let mut watch_minutes: BTreeMap<DateTime<Utc>, i64> = BTreeMap::new();
    let mut phone_minutes: BTreeMap<DateTime<Utc>, i64> = BTreeMap::new();
    let (mut sleep_sessions, mut workouts, mut body_metrics) = (0, 0, 0);

    for n in 0..days {
        let day = first + Duration::days(n);
        // Walks between 06:00 and 22:00, apart from each other.
        let mut minute = 6 * 60 + rng.gen_range(0..60);
        while minute < 21 * 60 {
            let length = rng.gen_range(5..=40);
            let rate = rng.gen_range(60..=130);
            let start = local(zone, day, minute);
            let (watch, phone) = match rng.gen_range(0..10) {
                0..=1 => (true, false),
                2..=3 => (false, true),
                _ => (true, true),
            };
            if watch {
                w.walk(&mut rng, true, (start, length), (1, 6), rate, &mut watch_minutes);
            }
            if phone {
                // The iPhone counts a little more, from two minutes before to three after.
                let from = start - Duration::minutes(2);
                w.walk(&mut rng, false, (from, length + 5), (3, 10), rate + 7, &mut phone_minutes);
            }
            minute += length + rng.gen_range(10..=60);
        }
        if n % 10 == 5 {
            // A walk home across midnight: one 20-minute sample, split between the days.
            let start = local(zone, day, 23 * 60 + 50);
            w.walk(&mut rng, true, (start, 20), (20, 20), 90, &mut watch_minutes);
        }
        for _ in 0..filler {
            let at = local(zone, day, rng.gen_range(3 * 60..24 * 60));
            w.record(
                "HKQuantityTypeIdentifierHeartRate",
                true,
                "count/min",
                at,
                at,
                &rng.gen_range(50..=160).to_string(),
            );
        }

        // The night from this day to the next: the Watch's stages and around them the
        // iPhone's time in bed; but every sixth night the phone stays out of the bedroom and
        // the Watch's samples fall on odd seconds (the service keeps minutes: rounded).
        let phone_in_bedroom = n % 6 != 2;
        let odd_seconds = |rng: &mut StdRng| if phone_in_bedroom { 0 } else { rng.gen_range(1..60) };
        let bedtime = local(zone, day, 22 * 60 + rng.gen_range(0..=90));
        let mut at = bedtime + Duration::minutes(10) + Duration::seconds(odd_seconds(&mut rng));
        let (mut asleep, mut deep) = (0, 0);
        while asleep < 400 * 60 {
            for (stage, range) in
                [("AsleepCore", 40..=70), ("AsleepDeep", 20..=50), ("AsleepREM", 15..=35), ("Awake", 0..=8)]
            {
                let minutes = rng.gen_range(range);
                if minutes == 0 {
                    continue;
                }
                let seconds = minutes * 60 + odd_seconds(&mut rng);
                w.sleep(true, at, seconds, stage);
                at += Duration::seconds(seconds);
                if stage != "Awake" {
                    asleep += seconds;
                }
                if stage == "AsleepDeep" {
                    deep += seconds;
                }
            }
        }
        let wake = at;
        let wake_day = wake.with_timezone(&zone).date_naive();
        let night = expected.entry(wake_day).or_default();
        if phone_in_bedroom {
            let in_bed_start = bedtime + Duration::minutes(5);
            let in_bed = wake + Duration::minutes(5) - in_bed_start;
            w.sleep(false, in_bed_start, in_bed.num_seconds(), "InBed");
            night.in_bed_minutes = Some(in_bed.num_minutes() as u32);
        } else {
            night.sleep_slack = 1;
        }
        let minutes = |seconds: i64| (seconds as f64 / 60.0).round() as u32;
        night.sleep_minutes = Some(night.sleep_minutes.unwrap_or(0) + minutes(asleep));
        night.deep_minutes = Some(minutes(deep));
        night.sleep_sessions += 1;
        sleep_sessions += 1;
        if n % 4 == 1 {
            // An afternoon nap on the day after the night: a session of its own.
            let nap = rng.gen_range(20..=45);
            w.sleep(true, local(zone, wake_day, 14 * 60), nap * 60, "AsleepUnspecified");
            let day = expected.entry(wake_day).or_default();
            day.sleep_minutes = Some(day.sleep_minutes.unwrap_or(0) + nap as u32);
            day.sleep_sessions += 1;
            sleep_sessions += 1;
        }

        if n % 3 == 0 {
            let start = local(zone, day, 18 * 60 + 30);
            let minutes = rng.gen_range(25..=60);
            let end = start + Duration::minutes(minutes);
            let moving = minutes - 2;
            let (kcal, meters) = (9.5 * moving as f64, 160.0 * moving as f64);
            let (avg, max) = (rng.gen_range(120..=160), rng.gen_range(15..=30));
            let (start_text, end_text) = (w.time(start), w.time(end));
            let heart = format!(
                r#"  <WorkoutStatistics type="HKQuantityTypeIdentifierHeartRate" startDate="{start_text}" endDate="{end_text}" average="{avg}" minimum="90" maximum="{}" unit="count/min"/>"#,
                avg + max
            );
            if workouts % 2 == 0 {
                w.line(&format!(r#" <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="{moving}" durationUnit="min" sourceName="{WATCH}" sourceVersion="10.3" device="{WATCH_DEVICE}" creationDate="{end_text}" startDate="{start_text}" endDate="{end_text}">"#));
                w.line(&heart);
                w.line(&format!(r#"  <WorkoutStatistics type="HKQuantityTypeIdentifierActiveEnergyBurned" startDate="{start_text}" endDate="{end_text}" sum="{kcal}" unit="kcal"/>"#));
                w.line(&format!(r#"  <WorkoutStatistics type="HKQuantityTypeIdentifierDistanceWalkingRunning" startDate="{start_text}" endDate="{end_text}" sum="{}" unit="km"/>"#, meters / 1000.0));
            } else {
                w.line(&format!(r#" <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="{moving}" durationUnit="min" totalDistance="{}" totalDistanceUnit="km" totalEnergyBurned="{kcal}" totalEnergyBurnedUnit="kcal" sourceName="{WATCH}" sourceVersion="10.3" creationDate="{end_text}" startDate="{start_text}" endDate="{end_text}">"#, meters / 1000.0));
                w.line(r#"  <MetadataEntry key="HKIndoorWorkout" value="0"/>"#);
                w.line(&heart);
            }
            w.line(" </Workout>");
            w.records += 1;
            workouts += 1;
            let today = expected.entry(day).or_default();
            today.workouts += 1;
            today.workout_kcal += kcal;
            today.workout_meters += meters;
        }

        if n % 7 == 3 {
            let at = local(zone, day, 7 * 60);
            let kg = 82.0 - 0.05 * (n / 7) as f64;
            let today = expected.entry(day).or_default();
            if (n / 7) % 2 == 0 {
                w.record("HKQuantityTypeIdentifierBodyMass", false, "kg", at, at, &format!("{kg:.2}"));
                today.weight_kg = Some((kg * 100.0).round() / 100.0);
            } else {
                let lb = (kg / 0.45359237 * 10.0).round() / 10.0;
                w.record("HKQuantityTypeIdentifierBodyMass", false, "lb", at, at, &format!("{lb:.1}"));
                today.weight_kg = Some(lb * 0.45359237);
            }
            let fraction = 0.2 + 0.001 * (n % 17) as f64;
            w.record("HKQuantityTypeIdentifierBodyFatPercentage", false, "%", at, at, &format!("{fraction:.3}"));
            today.body_fat_percent = Some(fraction * 100.0);
            w.record("HKQuantityTypeIdentifierLeanBodyMass", false, "kg", at, at, "62.5");
            today.lean_body_mass_kg = Some(62.5);
            body_metrics += 3;
        }
        if n == 0 {
            let at = local(zone, day, 8 * 60);
            w.record("HKQuantityTypeIdentifierHeight", false, "cm", at, at, "178");
            expected.entry(day).or_default().height_m = Some(1.78);
            body_metrics += 1;
        }
    }
    w.line("</HealthData>");
    let bytes = w.bytes;
    w.xml.into_inner().map_err(|e| e.into_error()).unwrap().finish().unwrap();

    for (minute, rate) in
        phone_minutes.iter().filter(|(minute, _)| !watch_minutes.contains_key(minute)).chain(&watch_minutes)
    {
        let day = minute.with_timezone(&zone).date_naive();
        let today = expected.entry(day).or_default();
        today.steps = Some(today.steps.unwrap_or(0) + *rate as u32);
    }
    let step_days = expected.values().filter(|day| day.steps.is_some()).count() as u64;
    Fixture { path, days: expected, records: w.records, bytes, step_days, sleep_sessions, workouts, body_metrics }
}
