//! Why the fold gave a field its value, as data. The words are the API's to choose
//! (`api::convert::reason_text`); bodies store this, so rewording changes no stored day.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::Source;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The latest step total of the winning source.
    LatestStepTotal { source: Source, observed_at: DateTime<Utc> },
    /// The latest sleep summary of the winning source.
    LatestSleepSummary { source: Source, observed_at: DateTime<Utc> },
    /// The winning source's sessions of the day (a night and naps), each its latest report, summed.
    SleepSessionsSummed { source: Source, sessions: u32 },
    /// The latest measurement of the winning source.
    LatestMeasurement { source: Source, measured_at: DateTime<Utc> },
    /// The newest manual entry that set the field.
    LatestManualEntry { actor: String, seq: i64 },
    /// The sleep session of the source ranked highest.
    HighestRankedSleepSession { source: Source },
    /// The latest revision of each workout not deleted; a session two sources or two
    /// reporters sent counts once.
    LatestWorkoutRevisions,
}

/// Reads a stored reason: data, or the English sentence bodies held before reasons were
/// data. The sentences were made by one formula per kind, so they read back exactly, and
/// a day stored before keeps its body and feed position through a re-fold.
pub(super) fn stored<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Reason, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Data(Reason),
        Sentence(String),
    }
    match Stored::deserialize(deserializer)? {
        Stored::Data(reason) => Ok(reason),
        Stored::Sentence(text) => {
            from_sentence(&text).ok_or_else(|| serde::de::Error::custom(format!("unknown reason sentence '{text}'")))
        }
    }
}

/// The reason an earlier release wrote as `text`.
fn from_sentence(text: &str) -> Option<Reason> {
    let instant = |text: &str| DateTime::parse_from_rfc3339(text).ok().map(|at| at.with_timezone(&Utc));
    let latest = |text: &str, what: &str, verb: &str| -> Option<(Source, DateTime<Utc>)> {
        let rest = text.strip_prefix("latest ")?;
        let (source, rest) = rest.split_once(' ')?;
        let at = rest.strip_prefix(what)?.strip_prefix(", ")?.strip_prefix(verb)?.strip_prefix(' ')?;
        Some((Source::parse(source)?, instant(at)?))
    };
    if text == "latest revision of each workout not deleted; sessions two sources reported count once" {
        return Some(Reason::LatestWorkoutRevisions);
    }
    if let Some(rest) = text.strip_prefix("latest manual entry by ") {
        let (actor, seq) = rest.rsplit_once(" (event #")?;
        let seq = seq.strip_suffix(')')?.parse().ok()?;
        return Some(Reason::LatestManualEntry { actor: actor.to_string(), seq });
    }
    if let Some(source) = text.strip_suffix(" sleep session ranks highest") {
        return Some(Reason::HighestRankedSleepSession { source: Source::parse(source)? });
    }
    if let Some((source, observed_at)) = latest(text, "step total", "observed") {
        return Some(Reason::LatestStepTotal { source, observed_at });
    }
    if let Some((source, observed_at)) = latest(text, "sleep summary", "observed") {
        return Some(Reason::LatestSleepSummary { source, observed_at });
    }
    let (source, measured_at) = latest(text, "measurement", "measured")?;
    Some(Reason::LatestMeasurement { source, measured_at })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// Sentences exactly as the earlier release stored them.
    #[test]
    fn every_sentence_an_earlier_release_stored_reads_as_its_reason() {
        let at = Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap();
        let fine = Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap() + chrono::Duration::microseconds(123_456);
        let cases = [
            (
                "latest healthkit step total, observed 2026-03-10T09:00:00+00:00",
                Reason::LatestStepTotal { source: Source::Healthkit, observed_at: at },
            ),
            (
                "latest strava sleep summary, observed 2026-03-10T09:00:00.123456+00:00",
                Reason::LatestSleepSummary { source: Source::Strava, observed_at: fine },
            ),
            (
                "latest healthkit measurement, measured 2026-03-10T09:00:00+00:00",
                Reason::LatestMeasurement { source: Source::Healthkit, measured_at: at },
            ),
            (
                "latest manual entry by coach:c (1) (event #42)",
                Reason::LatestManualEntry { actor: "coach:c (1)".into(), seq: 42 },
            ),
            ("manual sleep session ranks highest", Reason::HighestRankedSleepSession { source: Source::Manual }),
            (
                "latest revision of each workout not deleted; sessions two sources reported count once",
                Reason::LatestWorkoutRevisions,
            ),
        ];
        for (sentence, reason) in cases {
            let json = serde_json::to_string(sentence).unwrap();
            let read = stored(&mut serde_json::Deserializer::from_str(&json)).unwrap();
            assert_eq!(read, reason, "{sentence}");
        }
        for unknown in
            ["because", "latest fitbit step total, observed 2026-03-10T09:00:00+00:00", "latest manual entry by x"]
        {
            let json = serde_json::to_string(unknown).unwrap();
            assert!(stored(&mut serde_json::Deserializer::from_str(&json)).is_err(), "{unknown}");
        }
    }
}
