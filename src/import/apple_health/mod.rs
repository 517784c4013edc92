//! `coachfit import apple-health`: an iPhone's Health export (`export.zip`, or its
//! `export.xml`) as the reports the app would have sent: a step total per day, sleep
//! sessions, workouts, body measurements. The XML is read as it streams out of the zip on
//! a thread of its own, and the batches go to a `Sink` as they are made, so memory holds
//! the samples that must be seen whole (steps and sleep, to resolve overlaps) and not the
//! file. Re-running it sends the same reports, which are duplicates.

mod sleep;
mod steps;
mod timeline;
mod xml;
mod zone;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::sink::{Batch, Sink};
use crate::api::convert::timestamp;
use crate::proto::v1 as pb;
pub use xml::DeviceKind;
use xml::{BodyKind, ExportReader, Sample, Source, WorkoutRecord};

/// Items per request: IngestService's limits.
const STEPS_PER_REQUEST: usize = 400;
const SLEEP_PER_REQUEST: usize = 400;
const WORKOUTS_PER_REQUEST: usize = 100;
const METRICS_PER_REQUEST: usize = 50;

/// How to read an export.
#[derive(Debug, Clone)]
pub struct Options {
    /// The person's time zone: days are theirs.
    pub zone: Tz,
    /// Which devices win where their samples overlap, best first (Watch before iPhone by
    /// default); kinds left out come after, in this order: watch, phone, other.
    pub source_order: Vec<DeviceKind>,
}

impl Options {
    fn rank(&self, source: &Source, index: usize) -> u32 {
        let kind = self
            .source_order
            .iter()
            .position(|kind| *kind == source.kind)
            .unwrap_or(self.source_order.len() + source.kind as usize);
        // Of two sources of one kind (two watches), the first one seen in the file.
        (kind as u32) << 16 | index as u32
    }
}

/// What an import read and what became of it.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    /// `Record` and `Workout` elements, used or not.
    pub records_read: u64,
    pub step_samples: u64,
    pub step_days: u64,
    pub sleep_samples: u64,
    pub sleep_sessions: u64,
    pub workouts: u64,
    pub body_metrics: u64,
    /// Samples the import cannot use: body measurements in a unit the service does not
    /// take, sleep analysis values it does not know.
    pub skipped: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// The first rejections, as `field: reason` (all are counted in `rejected`).
    pub rejections: Vec<String>,
}

/// At most this many rejections are listed in the summary.
const LISTED_REJECTIONS: usize = 20;

/// Imports the export at `path` into `sink`, showing progress on a terminal.
pub async fn import(path: &Path, options: Options, sink: &mut impl Sink) -> anyhow::Result<Summary> {
    let (batches, mut received) = mpsc::channel(4);
    let path: PathBuf = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_export(&path, &options, &batches));
    let mut summary = Summary::default();
    while let Some(batch) = received.recv().await {
        let answer = match sink.send(batch).await {
            Ok(answer) => answer,
            Err(error) => {
                // The reader sees the channel closed and stops.
                drop(received);
                let _ = reader.await;
                return Err(error);
            }
        };
        summary.accepted += u64::from(answer.accepted);
        summary.duplicates += u64::from(answer.duplicates);
        summary.rejected += u64::from(answer.rejected);
        for result in answer.results.iter().filter(|r| !r.violations.is_empty()) {
            for violation in &result.violations {
                if summary.rejections.len() < LISTED_REJECTIONS {
                    summary.rejections.push(format!("{}: {}", violation.field, violation.description));
                }
            }
        }
    }
    let read = reader.await.context("the export reader")??;
    Ok(Summary {
        accepted: summary.accepted,
        duplicates: summary.duplicates,
        rejected: summary.rejected,
        rejections: summary.rejections,
        ..read
    })
}

/// Reads the export and sends its batches; what it read.
fn read_export(path: &Path, options: &Options, batches: &mpsc::Sender<Batch>) -> anyhow::Result<Summary> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")) {
        let size = file.metadata()?.len();
        return read_xml(BufReader::new(file), size, options, batches);
    }
    let mut archive = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip file", path.display()))?;
    let name = (0..archive.len())
        .filter_map(|i| archive.name_for_index(i).and_then(Result::ok).map(|name| name.into_owned()))
        .find(|name| name == "export.xml" || name.ends_with("/export.xml"))
        .with_context(|| format!("{} holds no export.xml (apple_health_export/export.xml)", path.display()))?;
    let entry = archive.by_name(&name)?;
    let size = entry.size();
    read_xml(BufReader::with_capacity(1 << 16, entry), size, options, batches)
}

fn read_xml<R: BufRead>(
    input: R,
    size: u64,
    options: &Options,
    batches: &mpsc::Sender<Batch>,
) -> anyhow::Result<Summary> {
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}").expect("a template"),
    );
    let send = |batch: Batch| batches.blocking_send(batch).map_err(|_| anyhow::anyhow!("the import stopped"));
    let mut reader = ExportReader::new(input);
    let mut summary = Summary::default();
    let mut step_samples = Vec::new();
    let mut sleep_samples = Vec::new();
    let mut workouts = Vec::new();
    let mut metrics = Vec::new();
    while let Some(sample) = reader.next_sample()? {
        if batches.is_closed() {
            anyhow::bail!("the import stopped");
        }
        match sample {
            Sample::Steps { source, start, end, count } => {
                step_samples.push(steps::StepSample { start: start.timestamp(), end: end.timestamp(), count, source });
            }
            Sample::Sleep { source, start, end, stage } => {
                sleep_samples.push(sleep::SleepSample {
                    start: start.timestamp(),
                    end: end.timestamp(),
                    stage,
                    source,
                });
            }
            Sample::Workout(record) => {
                workouts.push(workout(&record, &reader.sources()[record.source]));
                if workouts.len() == WORKOUTS_PER_REQUEST {
                    summary.workouts += workouts.len() as u64;
                    send(workouts_request(std::mem::take(&mut workouts), options))?;
                }
            }
            Sample::Body { kind, at, value, unit, .. } => match body_metric(kind, at, value, &unit) {
                Some(metric) => {
                    metrics.push(metric);
                    if metrics.len() == METRICS_PER_REQUEST {
                        summary.body_metrics += metrics.len() as u64;
                        send(metrics_request(std::mem::take(&mut metrics), options))?;
                    }
                }
                None => summary.skipped += 1,
            },
        }
        progress.set_position(reader.position().min(size));
    }
    progress.finish_and_clear();
    summary.records_read = reader.records_read;
    summary.skipped += reader.skipped;
    if !workouts.is_empty() {
        summary.workouts += workouts.len() as u64;
        send(workouts_request(workouts, options))?;
    }
    if !metrics.is_empty() {
        summary.body_metrics += metrics.len() as u64;
        send(metrics_request(metrics, options))?;
    }
    let sources = reader.sources();
    let rank = |source: usize| options.rank(&sources[source], source);
    let names = |used: &BTreeSet<usize>| used.iter().map(|&s| sources[s].name.clone()).collect::<Vec<_>>();

    summary.step_samples = step_samples.len() as u64;
    let days = steps::daily_totals(&step_samples, options.zone, rank);
    drop(step_samples);
    summary.step_days = days.len() as u64;
    let totals: Vec<pb::StepsSample> = days
        .into_iter()
        .map(|(day, total)| pb::StepsSample {
            date: day.to_string(),
            total_steps: total.steps.round() as u32,
            observed_at: Some(timestamp(total.last_end)),
            source_devices: names(&total.sources),
            idempotency_key: String::new(),
        })
        .collect();
    for chunk in totals.chunks(STEPS_PER_REQUEST) {
        send(Batch::Steps(pb::IngestStepsRequest { samples: chunk.to_vec(), time_zone: options.zone.name().into() }))?;
    }

    summary.sleep_samples = sleep_samples.len() as u64;
    let nights: Vec<pb::SleepSession> = sleep::sessions(sleep_samples, rank)
        .iter()
        .map(|session| sleep_session(session, options.zone, names(&session.sources)))
        .collect();
    summary.sleep_sessions = nights.len() as u64;
    for chunk in nights.chunks(SLEEP_PER_REQUEST) {
        send(Batch::Sleep(pb::IngestSleepRequest { sessions: chunk.to_vec(), time_zone: options.zone.name().into() }))?;
    }
    Ok(summary)
}

/// Whole minutes of a number of seconds.
fn minutes(seconds: i64) -> u32 {
    ((seconds as f64) / 60.0).round() as u32
}

fn sleep_session(session: &sleep::Session, zone: Tz, sources: Vec<String>) -> pb::SleepSession {
    let m = session.minutes();
    let staged = |minutes| session.staged().then_some(minutes);
    let mut night = pb::SleepSession {
        date: session.day(zone).to_string(),
        total_sleep_minutes: m.asleep(),
        in_bed_minutes: (session.in_bed > 0).then(|| minutes(session.in_bed)),
        awake_minutes: (session.awake > 0).then_some(m.awake),
        core_minutes: staged(m.core),
        deep_minutes: staged(m.deep),
        rem_minutes: staged(m.rem),
        sleep_start: DateTime::from_timestamp(session.start, 0).map(timestamp),
        sleep_end: Some(timestamp(session.ended_at())),
        observed_at: Some(timestamp(session.ended_at())),
        source_devices: sources,
        idempotency_key: String::new(),
    };
    // Time in bed as another source recorded it may be shorter than the stages (the phone's
    // bedtime against the watch's night): the stages are kept, the in-bed time is not.
    if night.in_bed_minutes.is_some_and(|in_bed| in_bed < m.awake + m.core + m.deep + m.rem) {
        night.in_bed_minutes = None;
    }
    night
}

/// A workout, with an id derived from what it is (type, times, source), so a second import
/// of it is a duplicate.
fn workout(record: &WorkoutRecord, source: &Source) -> pb::Workout {
    let identity =
        format!("{}|{}|{}|{}", record.activity, record.start.to_rfc3339(), record.end.to_rfc3339(), source.name);
    let digest = Sha256::digest(identity.as_bytes());
    let window = (record.end - record.start).num_milliseconds() as f64 / 1_000.0;
    pb::Workout {
        workout_id: format!("apple-health-{}", hex::encode(&digest[..12])),
        workout_type: snake_case(&record.activity),
        start_time: Some(timestamp(record.start)),
        end_time: Some(timestamp(record.end)),
        duration_seconds: record.duration_seconds.unwrap_or(window).min(window),
        active_energy_kcal: record.energy_kcal,
        distance_meters: record.distance_meters,
        avg_heart_rate: record.avg_heart_rate.map(|bpm| bpm.round() as u32),
        max_heart_rate: record.max_heart_rate.map(|bpm| bpm.round() as u32),
        source_device: source.name.clone(),
        source: pb::Source::Healthkit.into(),
        observed_at: Some(timestamp(record.end)),
    }
}

/// `HighIntensityIntervalTraining` → `high_intensity_interval_training`.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// A measurement in a unit the service takes; `None` for another unit.
fn body_metric(kind: BodyKind, at: DateTime<Utc>, value: f64, unit: &str) -> Option<pb::BodyMetric> {
    use pb::{BodyMetricType as T, Unit as U};
    let (kind, value, unit) = match (kind, unit) {
        (BodyKind::Mass, "kg") => (T::Weight, value, U::Kg),
        (BodyKind::Mass, "lb") => (T::Weight, value, U::Lb),
        (BodyKind::Mass, "g") => (T::Weight, value / 1_000.0, U::Kg),
        (BodyKind::Mass, "st") => (T::Weight, value * 14.0, U::Lb),
        (BodyKind::LeanMass, "kg") => (T::LeanBodyMass, value, U::Kg),
        (BodyKind::LeanMass, "lb") => (T::LeanBodyMass, value, U::Lb),
        (BodyKind::LeanMass, "g") => (T::LeanBodyMass, value / 1_000.0, U::Kg),
        (BodyKind::LeanMass, "st") => (T::LeanBodyMass, value * 14.0, U::Lb),
        (BodyKind::Height, "m") => (T::Height, value, U::M),
        (BodyKind::Height, "cm") => (T::Height, value, U::Cm),
        (BodyKind::Height, "in") => (T::Height, value, U::In),
        (BodyKind::Height, "ft") => (T::Height, value * 12.0, U::In),
        (BodyKind::FatFraction, "%") => (T::BodyFatPercentage, value, U::Fraction),
        _ => return None,
    };
    Some(pb::BodyMetric {
        r#type: kind.into(),
        value,
        unit: unit.into(),
        measured_at: Some(timestamp(at)),
        idempotency_key: String::new(),
    })
}

fn workouts_request(workouts: Vec<pb::Workout>, options: &Options) -> Batch {
    Batch::Workouts(pb::IngestWorkoutsRequest {
        workouts,
        deleted_workout_ids: vec![],
        time_zone: options.zone.name().into(),
    })
}

fn metrics_request(metrics: Vec<pb::BodyMetric>, options: &Options) -> Batch {
    Batch::BodyMetrics(pb::IngestBodyMetricsRequest { metrics, time_zone: options.zone.name().into() })
}
