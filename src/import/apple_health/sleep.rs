//! Sleep sessions from sleep analysis samples. Samples less than `SESSION_GAP` apart are
//! one session (a night with its awakenings; a nap is a session of its own); within one,
//! stages from several sources count each moment once (the source order decides), "in bed"
//! is the time any source says so, and the session belongs to the local day it ends on.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::timeline::{self, Span};
use super::xml::Stage;
use super::zone::local_day;

/// Samples closer than this belong to one session (seconds).
pub const SESSION_GAP: i64 = 3_600;

/// A sleep analysis sample: `[start, end)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SleepSample {
    pub start: i64,
    pub end: i64,
    pub stage: Stage,
    pub source: usize,
}

/// One session, its stages in seconds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Session {
    /// From the first sample that counted (a stage, or in bed) to the last.
    pub start: i64,
    pub end: i64,
    pub in_bed: i64,
    pub awake: i64,
    pub core: i64,
    pub deep: i64,
    pub rem: i64,
    pub unspecified: i64,
    pub sources: BTreeSet<usize>,
}

/// A session's stages in whole minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Minutes {
    pub awake: u32,
    pub core: u32,
    pub deep: u32,
    pub rem: u32,
    pub unspecified: u32,
}

impl Minutes {
    pub fn asleep(&self) -> u32 {
        self.core + self.deep + self.rem + self.unspecified
    }
}

impl Session {
    pub fn asleep(&self) -> i64 {
        self.core + self.deep + self.rem + self.unspecified
    }

    /// The stages in whole minutes, rounded along their running total: each is within a
    /// minute of its seconds, and together they never exceed the session's length rounded
    /// (stages of 100½, 50½, 30½ and 10½ minutes fill 192 minutes; rounded one by one they
    /// would be 194, more than the session holds).
    pub fn minutes(&self) -> Minutes {
        let (mut seconds, mut counted) = (0i64, 0u32);
        let mut next = |stage: i64| {
            seconds += stage;
            let total = (seconds as f64 / 60.0).round() as u32;
            let minutes = total - counted;
            counted = total;
            minutes
        };
        Minutes {
            awake: next(self.awake),
            core: next(self.core),
            deep: next(self.deep),
            rem: next(self.rem),
            unspecified: next(self.unspecified),
        }
    }

    /// Whether the session told stages apart (core, deep, REM).
    pub fn staged(&self) -> bool {
        self.core + self.deep + self.rem > 0
    }

    /// The local day it ends on: the wake-up day.
    pub fn day(&self, zone: Tz) -> NaiveDate {
        local_day(zone, self.end)
    }

    pub fn ended_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.end, 0).expect("a sample's time")
    }
}

/// The sessions with time asleep, in time order.
pub fn sessions(mut samples: Vec<SleepSample>, rank: impl Fn(usize) -> u32) -> Vec<Session> {
    samples.sort_by_key(|s| (s.start, s.end));
    let mut sessions = Vec::new();
    let mut group: Vec<SleepSample> = Vec::new();
    let mut group_end = i64::MIN;
    for sample in samples {
        if !group.is_empty() && sample.start > group_end.saturating_add(SESSION_GAP) {
            sessions.extend(session(&group, &rank));
            group.clear();
        }
        group_end = if group.is_empty() { sample.end } else { group_end.max(sample.end) };
        group.push(sample);
    }
    sessions.extend(session(&group, &rank));
    sessions
}

fn session(samples: &[SleepSample], rank: &impl Fn(usize) -> u32) -> Option<Session> {
    let (in_bed, stages): (Vec<&SleepSample>, Vec<&SleepSample>) =
        samples.iter().partition(|s| s.stage == Stage::InBed);
    let spans: Vec<Span> = stages.iter().map(|s| Span { start: s.start, end: s.end, rank: rank(s.source) }).collect();
    let pieces = timeline::winners(&spans);
    let end = pieces.iter().map(|piece| piece.end).max()?;
    let mut found = Session { start: pieces.first()?.start, end, ..Session::default() };
    for piece in &pieces {
        let sample = stages[piece.span];
        let seconds = piece.end - piece.start;
        found.sources.insert(sample.source);
        match sample.stage {
            Stage::Awake => found.awake += seconds,
            Stage::Core => found.core += seconds,
            Stage::Deep => found.deep += seconds,
            Stage::Rem => found.rem += seconds,
            Stage::Unspecified => found.unspecified += seconds,
            Stage::InBed => unreachable!("in-bed samples are apart"),
        }
    }
    // Any source in bed: every in-bed span ranks the same, so the pieces are their union.
    let in_bed: Vec<Span> = in_bed.iter().map(|s| Span { start: s.start, end: s.end, rank: 0 }).collect();
    for piece in timeline::winners(&in_bed) {
        found.in_bed += piece.end - piece.start;
        (found.start, found.end) = (found.start.min(piece.start), found.end.max(piece.end));
    }
    (found.asleep() > 0).then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60;

    fn sample(start: i64, minutes: i64, stage: Stage, source: usize) -> SleepSample {
        SleepSample { start: start * MIN, end: (start + minutes) * MIN, stage, source }
    }

    #[test]
    fn a_night_with_an_awakening_is_one_session_and_a_nap_another() {
        let night = [
            sample(0, 480, Stage::InBed, 1),
            sample(10, 90, Stage::Core, 0),
            sample(100, 60, Stage::Deep, 0),
            sample(160, 20, Stage::Awake, 0),
            sample(180, 40, Stage::Rem, 0),
            // Awake for 50 minutes: still the same night.
            sample(270, 200, Stage::Core, 0),
        ];
        let nap = [sample(800, 30, Stage::Unspecified, 0)];
        let found = sessions(night.iter().chain(&nap).copied().collect(), |source| source as u32);
        assert_eq!(found.len(), 2);
        let n = &found[0];
        assert_eq!(
            (n.in_bed, n.core, n.deep, n.rem, n.awake, n.unspecified),
            (480 * MIN, 290 * MIN, 60 * MIN, 40 * MIN, 20 * MIN, 0)
        );
        assert_eq!((n.start, n.end), (0, 480 * MIN), "in bed from the first minute to the last");
        assert_eq!((found[1].unspecified, found[1].in_bed, found[1].staged()), (30 * MIN, 0, false));
    }

    #[test]
    fn overlapping_sources_count_each_minute_once_by_their_order() {
        // The watch's stages and a sleep app's "asleep" over the same hours.
        let samples = vec![sample(0, 60, Stage::Core, 0), sample(0, 90, Stage::Unspecified, 2)];
        let found = sessions(samples, |source| source as u32);
        assert_eq!((found[0].core, found[0].unspecified), (60 * MIN, 30 * MIN));
        assert_eq!(found[0].sources, BTreeSet::from([0, 2]));
    }

    #[test]
    fn stages_of_odd_seconds_round_to_minutes_that_fit_the_session() {
        let seconds = |minutes: i64| minutes * MIN + 30;
        let session = Session {
            start: 0,
            end: seconds(100) + seconds(50) + seconds(30) + seconds(10),
            core: seconds(100),
            deep: seconds(50),
            rem: seconds(30),
            awake: seconds(10),
            ..Session::default()
        };
        let m = session.minutes();
        let exact = [(m.awake, 10.5), (m.core, 100.5), (m.deep, 50.5), (m.rem, 30.5)];
        assert!(exact.iter().all(|&(got, want)| (f64::from(got) - want).abs() <= 1.0), "{m:?}");
        assert_eq!(m.awake + m.core + m.deep + m.rem, 192, "the session's 192 minutes, not 194");
        assert_eq!(m.unspecified, 0);
    }

    #[test]
    fn time_in_bed_alone_is_not_sleep() {
        assert_eq!(sessions(vec![sample(0, 480, Stage::InBed, 1)], |_| 0), vec![]);
    }
}
