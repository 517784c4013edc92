//! A streaming read of the Health app's `export.xml`: the records the import uses, one at
//! a time, as typed samples. Everything else (heart rate, energy, routes, …) is skipped
//! without being kept, so memory does not grow with the file.

use std::collections::HashMap;
use std::io::BufRead;

use anyhow::{bail, Context};
use chrono::{DateTime, FixedOffset, Utc};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// What recorded a sample, as far as the source order cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceKind {
    Watch,
    Phone,
    Other,
}

impl DeviceKind {
    pub fn parse(name: &str) -> Option<DeviceKind> {
        match name {
            "watch" => Some(DeviceKind::Watch),
            "phone" => Some(DeviceKind::Phone),
            "other" => Some(DeviceKind::Other),
            _ => None,
        }
    }

    /// From the record's `device` description (`…, model:Watch, …`) or, without one, its
    /// source's name ("Ana's Apple Watch").
    fn of(source_name: &str, device: Option<&str>) -> DeviceKind {
        let said = |word: &str| device.is_some_and(|d| d.contains(&format!("model:{word}")));
        if said("Watch") || (device.is_none() && source_name.contains("Watch")) {
            DeviceKind::Watch
        } else if said("iPhone") || (device.is_none() && source_name.contains("iPhone")) {
            DeviceKind::Phone
        } else {
            DeviceKind::Other
        }
    }
}

/// A source of samples: its name as Health shows it, and what kind of device it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub kind: DeviceKind,
}

/// A sleep analysis value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    InBed,
    Awake,
    Core,
    Deep,
    Rem,
    /// "Asleep" without a stage (older watches, third-party apps).
    Unspecified,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Mass,
    Height,
    /// HealthKit keeps it as a fraction of one, labelled "%".
    FatFraction,
    LeanMass,
}

/// A workout as the export describes it (the units are the export's).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkoutRecord {
    pub source: usize,
    pub activity: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub duration_seconds: Option<f64>,
    pub energy_kcal: Option<f64>,
    pub distance_meters: Option<f64>,
    pub avg_heart_rate: Option<f64>,
    pub max_heart_rate: Option<f64>,
}

/// One sample the import uses. `source` indexes `ExportReader::sources`.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    Steps { source: usize, start: DateTime<Utc>, end: DateTime<Utc>, count: f64 },
    Sleep { source: usize, start: DateTime<Utc>, end: DateTime<Utc>, stage: Stage },
    Body { source: usize, kind: BodyKind, at: DateTime<Utc>, value: f64, unit: String },
    Workout(WorkoutRecord),
}

/// Reads samples from `export.xml` as it streams by.
pub struct ExportReader<R: BufRead> {
    xml: Reader<R>,
    buf: Vec<u8>,
    sources: Vec<Source>,
    source_ids: HashMap<(String, DeviceKind), usize>,
    /// The workout whose children (statistics) are being read.
    workout: Option<WorkoutRecord>,
    /// Inside one activity of a multisport workout: its statistics are not the workout's.
    in_activity: bool,
    /// Samples of a kind the import uses with a value it does not know (a sleep analysis
    /// value of a later iOS).
    pub skipped: u64,
    /// Elements read, of any kind (for the summary).
    pub records_read: u64,
}

impl<R: BufRead> ExportReader<R> {
    pub fn new(input: R) -> Self {
        ExportReader {
            xml: Reader::from_reader(input),
            buf: Vec::with_capacity(4096),
            sources: Vec::new(),
            source_ids: HashMap::new(),
            workout: None,
            in_activity: false,
            skipped: 0,
            records_read: 0,
        }
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.xml.buffer_position()
    }

    /// The next sample the import uses; `None` at the end of the document.
    pub fn next_sample(&mut self) -> anyhow::Result<Option<Sample>> {
        loop {
            self.buf.clear();
            let position = self.xml.buffer_position();
            let event =
                self.xml.read_event_into(&mut self.buf).with_context(|| format!("export.xml at byte {position}"))?;
            let (element, is_empty) = match event {
                Event::Eof => return Ok(None),
                Event::Start(element) => (element.into_owned(), false),
                Event::Empty(element) => (element.into_owned(), true),
                Event::End(end) if end.name().as_ref() == b"Workout" => match self.workout.take() {
                    Some(workout) => return Ok(Some(Sample::Workout(workout))),
                    None => continue,
                },
                Event::End(end) if end.name().as_ref() == b"WorkoutActivity" => {
                    self.in_activity = false;
                    continue;
                }
                _ => continue,
            };
            let sample = match element.name().as_ref() {
                b"Record" => {
                    self.records_read += 1;
                    self.record(&element).with_context(|| format!("a Record at byte {position}"))?
                }
                b"Workout" => {
                    self.records_read += 1;
                    let workout =
                        self.workout_start(&element).with_context(|| format!("a Workout at byte {position}"))?;
                    if is_empty {
                        Some(Sample::Workout(workout))
                    } else {
                        self.workout = Some(workout);
                        None
                    }
                }
                b"WorkoutActivity" => {
                    self.in_activity = !is_empty;
                    None
                }
                b"WorkoutStatistics" => {
                    if let Some(workout) = self.workout.as_mut().filter(|_| !self.in_activity) {
                        statistics(workout, &element)?;
                    }
                    None
                }
                _ => None,
            };
            if sample.is_some() {
                return Ok(sample);
            }
        }
    }

    fn source(&mut self, attributes: &Attributes) -> usize {
        let name = attributes.get("sourceName").unwrap_or("unknown source").to_string();
        let kind = DeviceKind::of(&name, attributes.get("device"));
        let next = self.sources.len();
        *self.source_ids.entry((name.clone(), kind)).or_insert_with(|| {
            self.sources.push(Source { name, kind });
            next
        })
    }

    fn record(&mut self, element: &BytesStart) -> anyhow::Result<Option<Sample>> {
        let attributes = Attributes::of(element)?;
        let body_kind = match attributes.required("type")? {
            "HKQuantityTypeIdentifierStepCount" => {
                let source = self.source(&attributes);
                let (start, end) = (attributes.time("startDate")?, attributes.time("endDate")?);
                let count = attributes.number("value")?;
                return Ok(Some(Sample::Steps { source, start, end, count }));
            }
            "HKCategoryTypeIdentifierSleepAnalysis" => {
                let stage = match attributes.required("value")? {
                    "HKCategoryValueSleepAnalysisInBed" => Stage::InBed,
                    "HKCategoryValueSleepAnalysisAwake" => Stage::Awake,
                    "HKCategoryValueSleepAnalysisAsleepCore" => Stage::Core,
                    "HKCategoryValueSleepAnalysisAsleepDeep" => Stage::Deep,
                    "HKCategoryValueSleepAnalysisAsleepREM" => Stage::Rem,
                    "HKCategoryValueSleepAnalysisAsleepUnspecified" | "HKCategoryValueSleepAnalysisAsleep" => {
                        Stage::Unspecified
                    }
                    _ => {
                        self.skipped += 1;
                        return Ok(None);
                    }
                };
                let source = self.source(&attributes);
                let (start, end) = (attributes.time("startDate")?, attributes.time("endDate")?);
                return Ok(Some(Sample::Sleep { source, start, end, stage }));
            }
            "HKQuantityTypeIdentifierBodyMass" => Some(BodyKind::Mass),
            "HKQuantityTypeIdentifierHeight" => Some(BodyKind::Height),
            "HKQuantityTypeIdentifierBodyFatPercentage" => Some(BodyKind::FatFraction),
            "HKQuantityTypeIdentifierLeanBodyMass" => Some(BodyKind::LeanMass),
            _ => None,
        };
        let Some(kind) = body_kind else { return Ok(None) };
        let source = self.source(&attributes);
        let at = attributes.time("startDate")?;
        let value = attributes.number("value")?;
        let unit = attributes.get("unit").unwrap_or_default().to_string();
        Ok(Some(Sample::Body { source, kind, at, value, unit }))
    }

    fn workout_start(&mut self, element: &BytesStart) -> anyhow::Result<WorkoutRecord> {
        let attributes = Attributes::of(element)?;
        let source = self.source(&attributes);
        let activity = attributes.required("workoutActivityType")?;
        let duration_seconds = match attributes.optional_number("duration")? {
            Some(duration) => Some(duration * seconds_per(attributes.get("durationUnit").unwrap_or("min"))?),
            None => None,
        };
        let energy_kcal = attributes
            .optional_number("totalEnergyBurned")?
            .map(|e| kcal(e, attributes.get("totalEnergyBurnedUnit")))
            .transpose()?;
        let distance_meters = attributes
            .optional_number("totalDistance")?
            .map(|d| meters(d, attributes.get("totalDistanceUnit")))
            .transpose()?;
        Ok(WorkoutRecord {
            source,
            activity: activity.strip_prefix("HKWorkoutActivityType").unwrap_or(activity).to_string(),
            start: attributes.time("startDate")?,
            end: attributes.time("endDate")?,
            duration_seconds,
            energy_kcal,
            distance_meters,
            avg_heart_rate: None,
            max_heart_rate: None,
        })
    }
}

/// A workout's statistics child: heart rate, and energy and distance where the workout's
/// own attributes (older exports) did not say.
fn statistics(workout: &mut WorkoutRecord, element: &BytesStart) -> anyhow::Result<()> {
    let attributes = Attributes::of(element)?;
    let kind = attributes.get("type").unwrap_or_default();
    if kind == "HKQuantityTypeIdentifierHeartRate" {
        workout.avg_heart_rate = attributes.optional_number("average")?;
        workout.max_heart_rate = attributes.optional_number("maximum")?;
    } else if kind == "HKQuantityTypeIdentifierActiveEnergyBurned" && workout.energy_kcal.is_none() {
        workout.energy_kcal =
            attributes.optional_number("sum")?.map(|sum| kcal(sum, attributes.get("unit"))).transpose()?;
    } else if kind.starts_with("HKQuantityTypeIdentifierDistance") && workout.distance_meters.is_none() {
        workout.distance_meters =
            attributes.optional_number("sum")?.map(|sum| meters(sum, attributes.get("unit"))).transpose()?;
    }
    Ok(())
}

fn seconds_per(unit: &str) -> anyhow::Result<f64> {
    Ok(match unit {
        "s" | "sec" => 1.0,
        "min" => 60.0,
        "hr" | "h" => 3_600.0,
        other => bail!("unknown duration unit {other}"),
    })
}

fn kcal(value: f64, unit: Option<&str>) -> anyhow::Result<f64> {
    Ok(match unit.unwrap_or("kcal") {
        "kcal" | "Cal" => value,
        "kJ" => value / 4.184,
        other => bail!("unknown energy unit {other}"),
    })
}

fn meters(value: f64, unit: Option<&str>) -> anyhow::Result<f64> {
    Ok(match unit.unwrap_or("m") {
        "m" => value,
        "km" => value * 1_000.0,
        "mi" => value * 1_609.344,
        "yd" => value * 0.9144,
        "ft" => value * 0.3048,
        other => bail!("unknown distance unit {other}"),
    })
}

/// An element's attributes, unescaped.
struct Attributes(Vec<(String, String)>);

impl Attributes {
    fn of(element: &BytesStart) -> anyhow::Result<Attributes> {
        let mut pairs = Vec::with_capacity(10);
        for attribute in element.attributes() {
            let attribute = attribute?;
            let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
            pairs.push((key, attribute.unescape_value()?.into_owned()));
        }
        Ok(Attributes(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn required(&self, name: &str) -> anyhow::Result<&str> {
        self.get(name).with_context(|| format!("no {name}"))
    }

    fn number(&self, name: &str) -> anyhow::Result<f64> {
        let text = self.required(name)?;
        let value: f64 = text.parse().with_context(|| format!("{name}={text:?} is not a number"))?;
        anyhow::ensure!(value.is_finite(), "{name}={text:?} is not a finite number");
        Ok(value)
    }

    /// The number `name` holds, if it is there.
    fn optional_number(&self, name: &str) -> anyhow::Result<Option<f64>> {
        self.get(name).map(|_| self.number(name)).transpose()
    }

    /// `2024-03-10 01:30:00 -0500`, as the export writes every time.
    fn time(&self, name: &str) -> anyhow::Result<DateTime<Utc>> {
        let text = self.required(name)?;
        let at = DateTime::<FixedOffset>::parse_from_str(text, "%Y-%m-%d %H:%M:%S %z")
            .with_context(|| format!("{name}={text:?} is not a time"))?;
        Ok(at.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!ELEMENT HealthData (ExportDate,Me,(Record|Workout)*)>
]>
<HealthData locale="en_US">
 <ExportDate value="2024-03-12 08:00:00 -0400"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth=""/>
 <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Ana&apos;s Apple Watch" sourceVersion="10.3" device="&lt;&lt;HKDevice: 0x1&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,2&gt;" unit="count" creationDate="2024-03-10 09:10:00 -0400" startDate="2024-03-10 09:00:00 -0400" endDate="2024-03-10 09:10:00 -0400" value="812"/>
 <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Ana&apos;s Apple Watch" unit="count/min" startDate="2024-03-10 09:00:00 -0400" endDate="2024-03-10 09:00:00 -0400" value="71">
  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>
 </Record>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Ana&apos;s iPhone" unit="" startDate="2024-03-09 23:00:00 -0500" endDate="2024-03-10 07:00:00 -0400" value="HKCategoryValueSleepAnalysisInBed"/>
 <Record type="HKQuantityTypeIdentifierBodyFatPercentage" sourceName="Scale" unit="%" startDate="2024-03-10 07:05:00 -0400" endDate="2024-03-10 07:05:00 -0400" value="0.215"/>
 <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="30" durationUnit="min" sourceName="Ana&apos;s Apple Watch" startDate="2024-03-10 17:00:00 -0400" endDate="2024-03-10 17:31:00 -0400">
  <MetadataEntry key="HKIndoorWorkout" value="0"/>
  <WorkoutStatistics type="HKQuantityTypeIdentifierHeartRate" startDate="2024-03-10 17:00:00 -0400" endDate="2024-03-10 17:31:00 -0400" average="151.5" minimum="98" maximum="178" unit="count/min"/>
  <WorkoutStatistics type="HKQuantityTypeIdentifierActiveEnergyBurned" sum="1200" unit="kJ"/>
  <WorkoutStatistics type="HKQuantityTypeIdentifierDistanceWalkingRunning" sum="5.1" unit="km"/>
 </Workout>
</HealthData>
"#;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn reads_the_samples_the_import_uses_and_skips_the_rest() {
        let mut reader = ExportReader::new(EXPORT.as_bytes());
        let mut samples = Vec::new();
        while let Some(sample) = reader.next_sample().unwrap() {
            samples.push(sample);
        }
        assert_eq!(
            samples[0],
            Sample::Steps {
                source: 0,
                start: utc("2024-03-10T13:00:00Z"),
                end: utc("2024-03-10T13:10:00Z"),
                count: 812.0
            }
        );
        assert_eq!(
            samples[1],
            Sample::Sleep {
                source: 1,
                start: utc("2024-03-10T04:00:00Z"),
                end: utc("2024-03-10T11:00:00Z"),
                stage: Stage::InBed
            },
            "a night across the change to daylight saving time: seven hours"
        );
        assert_eq!(
            samples[2],
            Sample::Body {
                source: 2,
                kind: BodyKind::FatFraction,
                at: utc("2024-03-10T11:05:00Z"),
                value: 0.215,
                unit: "%".into()
            }
        );
        let Sample::Workout(workout) = &samples[3] else { panic!("{:?}", samples[3]) };
        assert_eq!(workout.activity, "Running");
        assert_eq!(workout.duration_seconds, Some(1_800.0));
        assert!((workout.energy_kcal.unwrap() - 1_200.0 / 4.184).abs() < 1e-9);
        assert_eq!(workout.distance_meters, Some(5_100.0));
        assert_eq!((workout.avg_heart_rate, workout.max_heart_rate), (Some(151.5), Some(178.0)));
        assert_eq!(samples.len(), 4);
        assert_eq!(reader.records_read, 5, "every Record and Workout, used or not");
        let kinds: Vec<DeviceKind> = reader.sources().iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [DeviceKind::Watch, DeviceKind::Phone, DeviceKind::Other]);
        assert_eq!(reader.sources()[0].name, "Ana's Apple Watch");
    }

    #[test]
    fn a_sleep_value_of_a_later_ios_is_skipped_and_a_multisport_legs_statistics_are_not_the_workouts() {
        let export = r#"<HealthData>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Watch" startDate="2024-03-10 01:00:00 -0500" endDate="2024-03-10 01:30:00 -0500" value="HKCategoryValueSleepAnalysisDreaming"/>
 <Workout workoutActivityType="HKWorkoutActivityTypeSwimBikeRun" sourceName="Watch" startDate="2024-03-10 08:00:00 -0500" endDate="2024-03-10 10:00:00 -0500">
  <WorkoutActivity uuid="1" startDate="2024-03-10 08:00:00 -0500" endDate="2024-03-10 08:30:00 -0500">
   <WorkoutStatistics type="HKQuantityTypeIdentifierDistanceSwimming" sum="1500" unit="m"/>
  </WorkoutActivity>
  <WorkoutStatistics type="HKQuantityTypeIdentifierActiveEnergyBurned" sum="1300" unit="kcal"/>
 </Workout>
</HealthData>"#;
        let mut reader = ExportReader::new(export.as_bytes());
        let Some(Sample::Workout(workout)) = reader.next_sample().unwrap() else { panic!("the workout") };
        assert_eq!((workout.energy_kcal, workout.distance_meters), (Some(1_300.0), None));
        assert_eq!(reader.next_sample().unwrap(), None);
        assert_eq!(reader.skipped, 1);
    }

    #[test]
    fn a_broken_record_says_where_it_is() {
        let broken = r#"<HealthData><Record type="HKQuantityTypeIdentifierStepCount" sourceName="x" startDate="yesterday" endDate="2024-03-10 09:10:00 -0400" value="1"/></HealthData>"#;
        let error = ExportReader::new(broken.as_bytes()).next_sample().unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("a Record at byte 12") && message.contains("startDate"), "{message}");
    }
}
