//! Daily step totals from step samples, as the Health app shows them: where a Watch and an
//! iPhone both counted the same minutes, only the better-ranked source's samples count
//! there; a sample is spread evenly over its time, and one that spans midnight is split
//! between the two days.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::timeline::{self, Span};
use super::zone::{day_bounds, local_day};

/// A step sample: `[start, end)` in Unix seconds, its count and its source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSample {
    pub start: i64,
    pub end: i64,
    pub count: f64,
    pub source: usize,
}

/// One day's total.
#[derive(Debug, Clone, PartialEq)]
pub struct DayTotal {
    pub steps: f64,
    /// The end of the day's last counted sample: a later export's total of the same day
    /// is observed later, and so replaces this one.
    pub last_end: DateTime<Utc>,
    /// The sources whose samples counted.
    pub sources: BTreeSet<usize>,
}

/// Each local day's total in `zone`, `rank` ordering the sources (lower wins).
pub fn daily_totals(samples: &[StepSample], zone: Tz, rank: impl Fn(usize) -> u32) -> BTreeMap<NaiveDate, DayTotal> {
    let spans: Vec<Span> = samples.iter().map(|s| Span { start: s.start, end: s.end, rank: rank(s.source) }).collect();
    let mut days: BTreeMap<NaiveDate, DayTotal> = BTreeMap::new();
    for piece in timeline::winners(&spans) {
        let sample = &samples[piece.span];
        let length = (sample.end - sample.start) as f64;
        let mut start = piece.start;
        loop {
            let day = local_day(zone, start);
            let (_, next_midnight) = day_bounds(zone, day);
            let end = piece.end.min(next_midnight);
            let share = if length > 0.0 { sample.count * (end - start) as f64 / length } else { sample.count };
            let end_at = DateTime::from_timestamp(end, 0).expect("a sample's time");
            let total =
                days.entry(day).or_insert_with(|| DayTotal { steps: 0.0, last_end: end_at, sources: BTreeSet::new() });
            total.steps += share;
            total.last_end = total.last_end.max(end_at);
            total.sources.insert(sample.source);
            if end >= piece.end {
                break;
            }
            start = end;
        }
    }
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp()
    }

    fn sample(start: &str, end: &str, count: f64, source: usize) -> StepSample {
        StepSample { start: at(start), end: at(end), count, source }
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn the_watch_counts_where_both_walked_and_the_phone_where_only_it_did() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        // The watch (source 0) 09:00–09:10, 600 steps; the phone (source 1) 09:05–09:25,
        // 1,000 steps: its last 15 minutes count (750).
        let samples = [
            sample("2024-05-01T09:00:00+02:00", "2024-05-01T09:10:00+02:00", 600.0, 0),
            sample("2024-05-01T09:05:00+02:00", "2024-05-01T09:25:00+02:00", 1_000.0, 1),
        ];
        let days = daily_totals(&samples, zone, |source| source as u32);
        assert_eq!(days[&date("2024-05-01")].steps, 1_350.0);
        let phone_first = daily_totals(&samples, zone, |source| 1 - source as u32);
        assert_eq!(phone_first[&date("2024-05-01")].steps, 1_000.0 + 300.0, "the order is the caller's");
    }

    #[test]
    fn a_sample_across_midnight_is_split_by_time_in_the_local_zone() {
        let zone: Tz = "America/New_York".parse().unwrap();
        let samples = [sample("2024-03-09T23:50:00-05:00", "2024-03-10T00:10:00-05:00", 200.0, 0)];
        let days = daily_totals(&samples, zone, |_| 0);
        assert_eq!(days[&date("2024-03-09")].steps, 100.0);
        assert_eq!(days[&date("2024-03-10")].steps, 100.0);
        assert_eq!(days[&date("2024-03-09")].last_end, DateTime::parse_from_rfc3339("2024-03-10T05:00:00Z").unwrap());
    }
}
