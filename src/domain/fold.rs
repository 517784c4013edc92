//! The fold: one user-day's events in, one `Day` out. Pure: no I/O, no clock.
//!
//! For every field each source offers at most one candidate (its latest observation);
//! the field shows the candidate of the source the `PriorityRule` ranks highest.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::{ManualReport, Metric, Payload, SleepReport, StoredEvent, WorkoutReport};
use super::field::{Field, FieldValue};
use super::priority::PriorityRule;
use super::Source;

/// The fold's version, recorded with the stored days once every day is folded by it
/// (`Store::upgrade_fold`). A change that gives any stored day a different result takes a
/// new version. 2: a day's sleep sessions are summed (1 took the latest report). 3:
/// `data_sources` lists the sources with data, not every source with an event. 4: a
/// workout two reporters of one source sent counts once, as one two sources sent did.
pub const VERSION: &str = "4";

/// The read model of one user-day. Stored as JSON without its absent top-level fields
/// (half the bytes of a typical day, written and logged for every change).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Day {
    pub steps: Option<u32>,
    pub weight_kg: Option<f64>,
    pub height_m: Option<f64>,
    pub body_fat_percent: Option<f64>,
    pub lean_body_mass_kg: Option<f64>,
    pub calories: Option<u32>,
    pub protein_grams: Option<f64>,
    pub carbs_grams: Option<f64>,
    pub fat_grams: Option<f64>,
    pub fiber_grams: Option<f64>,
    pub sleep_minutes: Option<u32>,
    pub sleep_quality: Option<u32>,
    pub perceived_stress: Option<u32>,
    pub notes: Option<String>,
    pub sleep: Option<SleepRecord>,
    #[serde(default, skip_serializing_if = "WorkoutSummary::is_empty")]
    pub workouts: WorkoutSummary,
    pub data_sources: Vec<Source>,
    pub provenance: Vec<Provenance>,
}

/// The sleep that counts for the day: of one source, its sessions summed (a night and its
/// naps), in the main (longest) session's window, with that session's report's id and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SleepRecord {
    pub source: Source,
    pub event_id: Uuid,
    pub observed_at: DateTime<Utc>,
    pub report: SleepReport,
    /// Sessions summed; a day of one session stores none (so it reads as it always has).
    #[serde(default = "one_session", skip_serializing_if = "is_one_session")]
    pub sessions: u32,
}

fn one_session() -> u32 {
    1
}

fn is_one_session(sessions: &u32) -> bool {
    *sessions == 1
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkoutSummary {
    pub count: u32,
    pub total_minutes: f64,
    pub active_kcal: f64,
    pub distance_meters: f64,
    pub sessions: Vec<CountedWorkout>,
}

impl WorkoutSummary {
    fn is_empty(&self) -> bool {
        *self == WorkoutSummary::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountedWorkout {
    pub source: Source,
    pub event_id: Uuid,
    pub report: WorkoutReport,
}

/// Why a field shows its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub field: Field,
    pub source: Source,
    /// A lower-priority source reported a different value for this field on this day.
    pub overridden: bool,
    pub event_ids: Vec<Uuid>,
    #[serde(deserialize_with = "reason::stored")]
    pub reason: Reason,
}

pub use reason::Reason;

/// One source's offer for one field.
#[derive(Debug, Clone)]
struct Candidate {
    source: Source,
    value: FieldValue,
    event_id: Uuid,
    reason: Reason,
}

/// A value a lower-ranked source offered for a field, which the shown value outranked
/// (what `ExplainEntry` shows beside a correction: "coach overrode HealthKit 8,432").
#[derive(Debug, Clone, PartialEq)]
pub struct Outranked {
    pub field: Field,
    pub source: Source,
    pub value: FieldValue,
    pub event_id: Uuid,
}

/// Folds the events of `day` (plus the other revisions and deletions of workouts that have
/// an event on `day`) into the day's read model.
pub fn fold(day: NaiveDate, events: &[StoredEvent], rule: &PriorityRule) -> Day {
    // Each source's sleep, once: it offers `sleep_minutes` and competes for the SleepRecord.
    let sleeps = sleeps_by_source(events);
    let candidates = candidates(events, &sleeps);

    let mut out = Day::default();
    // The sources with data on the day: a value offered for a field (shown or overridden),
    // or a workout. A source whose every value was withdrawn has none.
    let mut with_data: BTreeSet<Source> = candidates.values().flatten().map(|c| c.source).collect();
    for (field, offers) in candidates {
        let (winner, overridden) = pick(rule, field, &offers, |a, b| a.value == b.value);
        winner.value.apply(&mut out);
        out.provenance.push(Provenance {
            field,
            source: winner.source,
            overridden,
            event_ids: vec![winner.event_id],
            reason: winner.reason.clone(),
        });
    }
    fold_sleep_record(&mut out, sleeps, rule);
    with_data.extend(fold_workouts(&mut out, day, events, rule));
    out.data_sources = with_data.into_iter().collect();
    // By name: the order stored bodies have always had.
    out.provenance.sort_by_key(|p| p.field.as_str());
    out
}

/// The values lower-ranked sources offered for the day's fields that differ from the value
/// shown, per field in rank order.
pub fn outranked(events: &[StoredEvent], rule: &PriorityRule) -> Vec<Outranked> {
    let mut out = Vec::new();
    for (field, offers) in candidates(events, &sleeps_by_source(events)) {
        let winner = winner(rule, field, &offers);
        let mut beaten: Vec<&Candidate> = beaten(rule, field, &offers, winner, |a, b| a.value == b.value).collect();
        beaten.sort_by_key(|o| rule.rank(field, o.source));
        out.extend(beaten.into_iter().map(|o| Outranked {
            field,
            source: o.source,
            value: o.value.clone(),
            event_id: o.event_id,
        }));
    }
    out
}

fn sleeps_by_source(events: &[StoredEvent]) -> Vec<SleepRecord> {
    Source::ALL.into_iter().filter_map(|source| sleep_of(events, source)).collect()
}

/// Every source's offer (its latest value) for each scalar field of the day.
fn candidates(events: &[StoredEvent], sleeps: &[SleepRecord]) -> BTreeMap<Field, Vec<Candidate>> {
    let mut candidates: BTreeMap<Field, Vec<Candidate>> = BTreeMap::new();
    let mut offer = |candidate: Candidate| candidates.entry(candidate.value.field()).or_default().push(candidate);
    for source in [Source::Coach, Source::Manual] {
        for candidate in manual_candidates(events, source) {
            offer(candidate);
        }
    }
    for source in Source::ALL {
        if let Some((event, steps)) = latest(events, source, |p| match p {
            Payload::Steps(s) => Some(s),
            _ => None,
        }) {
            let reason = Reason::LatestStepTotal { source, observed_at: event.observed_at };
            offer(candidate(event, FieldValue::Steps(steps.total_steps), reason));
        }
        if let Some(sleep) = sleeps.iter().find(|sleep| sleep.source == source) {
            let reason = match sleep.sessions {
                1 => Reason::LatestSleepSummary { source, observed_at: sleep.observed_at },
                sessions => Reason::SleepSessionsSummed { source, sessions },
            };
            let minutes = FieldValue::SleepMinutes(sleep.report.total_sleep_minutes);
            offer(Candidate { source, value: minutes, event_id: sleep.event_id, reason });
        }
        for metric in Metric::ALL {
            if let Some((event, (value, measured_at))) = latest_metric(events, source, metric) {
                let reason = Reason::LatestMeasurement { source, measured_at };
                offer(candidate(event, metric.value(value), reason));
            }
        }
    }
    candidates
}

fn candidate(event: &StoredEvent, value: FieldValue, reason: Reason) -> Candidate {
    Candidate { source: event.source, value, event_id: event.event_id, reason }
}

/// The winning offer by priority, and whether a lower-priority offer said something else.
fn pick<'a, T>(rule: &PriorityRule, field: Field, offers: &'a [T], same: impl Fn(&T, &T) -> bool) -> (&'a T, bool)
where
    T: HasSource,
{
    let winner = winner(rule, field, offers);
    (winner, beaten(rule, field, offers, winner, same).next().is_some())
}

/// The offer of the source the rule ranks highest for `field`.
fn winner<'a, T: HasSource>(rule: &PriorityRule, field: Field, offers: &'a [T]) -> &'a T {
    offers.iter().min_by_key(|o| rule.rank(field, o.source())).expect("a field with a candidate has at least one offer")
}

/// The offers of lower-ranked sources than `winner`'s that said something else.
fn beaten<'a, T: HasSource>(
    rule: &'a PriorityRule,
    field: Field,
    offers: &'a [T],
    winner: &'a T,
    same: impl Fn(&T, &T) -> bool + 'a,
) -> impl Iterator<Item = &'a T> + 'a {
    let rank = rule.rank(field, winner.source());
    offers.iter().filter(move |o| rule.rank(field, o.source()) > rank && !same(o, winner))
}

trait HasSource {
    fn source(&self) -> Source;
}

impl HasSource for Candidate {
    fn source(&self) -> Source {
        self.source
    }
}

impl HasSource for SleepRecord {
    fn source(&self) -> Source {
        self.source
    }
}

/// The event of `source` with the greatest `(observed_at, seq)` among those `select` accepts.
fn latest<'a, T>(
    events: &'a [StoredEvent],
    source: Source,
    select: impl Fn(&'a Payload) -> Option<&'a T>,
) -> Option<(&'a StoredEvent, &'a T)> {
    events
        .iter()
        .filter(|e| e.source == source)
        .filter_map(|e| select(&e.payload).map(|t| (e, t)))
        .max_by_key(|(e, _)| e.recency())
}

/// Per metric the latest `measured_at`, ties broken by `(observed_at, seq)`.
fn latest_metric(
    events: &[StoredEvent],
    source: Source,
    metric: Metric,
) -> Option<(&StoredEvent, (f64, DateTime<Utc>))> {
    events
        .iter()
        .filter(|e| e.source == source)
        .filter_map(|e| match &e.payload {
            Payload::BodyMetric(m) if m.metric == metric => Some((e, (m.value, m.measured_at))),
            _ => None,
        })
        .max_by_key(|(e, (_, measured_at))| (*measured_at, e.recency()))
}

/// Per manual field, the latest manual event of `source` that set or cleared it: latest by
/// the time the person made the entry (`observed_at`), then by `seq`. So an entry made
/// offline and delivered late does not undo a later one of the same source.
fn manual_candidates(events: &[StoredEvent], source: Source) -> Vec<Candidate> {
    let mut manual: Vec<(&StoredEvent, &ManualReport)> = events
        .iter()
        .filter(|e| e.source == source)
        .filter_map(|e| match &e.payload {
            Payload::Manual(report) => Some((e, report)),
            _ => None,
        })
        .collect();
    manual.sort_by_key(|(e, _)| std::cmp::Reverse(e.recency()));
    Field::MANUAL
        .into_iter()
        .filter_map(|field| {
            let (event, value) = manual.iter().find_map(|(e, report)| report.touches(field).map(|value| (e, value)))?;
            let reason = Reason::LatestManualEntry { actor: event.actor.clone(), seq: event.seq };
            value.map(|v| candidate(event, v.clone(), reason))
        })
        .collect()
}

/// One source's sleep on the day. Its reports whose windows overlap are reports of one
/// session, the latest standing for it (a revision may move the start by minutes); reports
/// that do not overlap are sessions of their own (a night and a nap), and are summed.
fn sleep_of(events: &[StoredEvent], source: Source) -> Option<SleepRecord> {
    let mut reports: Vec<(&StoredEvent, &SleepReport)> = events
        .iter()
        .filter(|e| e.source == source)
        .filter_map(|e| match &e.payload {
            Payload::Sleep(s) => Some((e, s)),
            _ => None,
        })
        .collect();
    reports.sort_by_key(|(e, _)| std::cmp::Reverse(e.recency()));
    let mut sessions: Vec<(&StoredEvent, &SleepReport)> = Vec::new();
    for (event, report) in reports {
        let overlaps = |(_, s): &(&StoredEvent, &SleepReport)| {
            s.sleep_start < report.sleep_end && report.sleep_start < s.sleep_end
        };
        if !sessions.iter().any(overlaps) {
            sessions.push((event, report));
        }
    }
    let &(main_event, main) =
        sessions.iter().max_by_key(|(e, s)| (s.sleep_end - s.sleep_start, s.sleep_start, e.recency()))?;
    let total =
        |minutes: fn(&SleepReport) -> u32| sessions.iter().fold(0u32, |sum, (_, s)| sum.saturating_add(minutes(s)));
    // A stage counts when some session reports it.
    let stage = |minutes: fn(&SleepReport) -> Option<u32>| {
        sessions
            .iter()
            .filter_map(|(_, s)| minutes(s))
            .fold(None, |sum: Option<u32>, m| Some(sum.unwrap_or(0).saturating_add(m)))
    };
    let report = SleepReport {
        total_sleep_minutes: total(|s| s.total_sleep_minutes),
        in_bed_minutes: stage(|s| s.in_bed_minutes),
        awake_minutes: stage(|s| s.awake_minutes),
        core_minutes: stage(|s| s.core_minutes),
        deep_minutes: stage(|s| s.deep_minutes),
        rem_minutes: stage(|s| s.rem_minutes),
        sleep_start: main.sleep_start,
        sleep_end: main.sleep_end,
        source_devices: main.source_devices.clone(),
    };
    Some(SleepRecord {
        source,
        event_id: main_event.event_id,
        observed_at: main_event.observed_at,
        report,
        sessions: sessions.len() as u32,
    })
}

/// The SleepRecord comes from the highest-priority source with a sleep session.
fn fold_sleep_record(day: &mut Day, offers: Vec<SleepRecord>, rule: &PriorityRule) {
    if offers.is_empty() {
        return;
    }
    let (winner, overridden) = pick(rule, Field::Sleep, &offers, |a, b| a.report == b.report);
    day.provenance.push(Provenance {
        field: Field::Sleep,
        source: winner.source,
        overridden,
        event_ids: vec![winner.event_id],
        reason: Reason::HighestRankedSleepSession { source: winner.source },
    });
    day.sleep = Some(winner.clone());
}

/// Per workout the latest revision, unless a later-or-equal deletion removed it; the ones
/// whose latest revision starts on `day` count, and a session two sources or two reporters
/// both reported (same type, overlapping at least half of the shorter) counts once, from
/// the better source, and of one source's from the latest report: an import and the phone
/// that later syncs the same run, say, each under its own id.
/// Returns the sources of the day's workouts (counted or not).
fn fold_workouts(day: &mut Day, date: NaiveDate, events: &[StoredEvent], rule: &PriorityRule) -> BTreeSet<Source> {
    let mut latest_revision: BTreeMap<&str, (&StoredEvent, &WorkoutReport)> = BTreeMap::new();
    let mut latest_deletion: BTreeMap<&str, &StoredEvent> = BTreeMap::new();
    for event in events {
        match &event.payload {
            Payload::Workout(w) => {
                let slot = latest_revision.entry(&w.workout_id).or_insert((event, w));
                if event.recency() > slot.0.recency() {
                    *slot = (event, w);
                }
            }
            Payload::WorkoutDeleted(d) => {
                let slot = latest_deletion.entry(&d.workout_id).or_insert(event);
                if event.recency() > slot.recency() {
                    *slot = event;
                }
            }
            _ => {}
        }
    }
    let mut live: Vec<(&StoredEvent, &WorkoutReport)> = latest_revision
        .into_values()
        .filter(|(event, _)| event.day == Some(date))
        .filter(|(event, w)| {
            latest_deletion.get(w.workout_id.as_str()).is_none_or(|deletion| deletion.observed_at < event.observed_at)
        })
        .collect();
    let sources = live.iter().map(|(event, _)| event.source).collect();
    // Twins are dropped in favour of the ones before them: the better source's, and of one
    // source's, the latest report.
    live.sort_by(|(a, wa), (b, wb)| {
        (rule.rank(Field::Workouts, a.source), std::cmp::Reverse(a.recency()), wa.start_time, &wa.workout_id).cmp(&(
            rule.rank(Field::Workouts, b.source),
            std::cmp::Reverse(b.recency()),
            wb.start_time,
            &wb.workout_id,
        ))
    });

    // A twin of a better source's session is dropped, however many there are (as a source
    // reports one session once); a twin of another reporter's session of the same source
    // only one to one, so a reporter's own overlapping sessions (two apps recording one run)
    // are not all taken for the one another reporter sent.
    // Each kept session with the reporters whose twin of it was dropped.
    let mut kept: Vec<(&StoredEvent, &WorkoutReport, Vec<&str>)> = Vec::new();
    let mut overridden = false;
    for (event, workout) in live {
        let by = reporter(&event.actor);
        if kept.iter().any(|(k, kw, _)| k.source != event.source && same_session(kw, workout)) {
            overridden = true;
            continue;
        }
        let same_source_twin = kept
            .iter_mut()
            .find(|(k, kw, taken)| reporter(&k.actor) != by && !taken.contains(&by) && same_session(kw, workout));
        match same_source_twin {
            Some((_, _, taken)) => taken.push(by),
            None => kept.push((event, workout, Vec::new())),
        }
    }
    kept.sort_by(|(_, a, _), (_, b, _)| (a.start_time, &a.workout_id).cmp(&(b.start_time, &b.workout_id)));
    let Some(best) = kept.iter().map(|(e, _, _)| e.source).min_by_key(|s| rule.rank(Field::Workouts, *s)) else {
        return sources;
    };
    day.provenance.push(Provenance {
        field: Field::Workouts,
        source: best,
        overridden,
        event_ids: kept.iter().map(|(e, _, _)| e.event_id).collect(),
        reason: Reason::LatestWorkoutRevisions,
    });
    let summary = &mut day.workouts;
    for (event, workout, _) in kept {
        summary.count += 1;
        summary.total_minutes += workout.duration_seconds / 60.0;
        summary.active_kcal += workout.active_energy_kcal.unwrap_or(0.0);
        summary.distance_meters += workout.distance_meters.unwrap_or(0.0);
        summary.sessions.push(CountedWorkout {
            source: event.source,
            event_id: event.event_id,
            report: workout.clone(),
        });
    }
    sources
}

/// Who reported a workout, for telling twins apart: a client's devices all sync the one
/// HealthKit store (its workouts under the same ids), so they are one reporter; each
/// import is another.
fn reporter(actor: &str) -> &str {
    if actor.starts_with("device:") {
        "device"
    } else {
        actor
    }
}

/// Same type, and overlapping for at least half of the shorter session.
fn same_session(a: &WorkoutReport, b: &WorkoutReport) -> bool {
    if !a.workout_type.eq_ignore_ascii_case(&b.workout_type) {
        return false;
    }
    let overlap = (a.end_time.min(b.end_time) - a.start_time.max(b.start_time)).num_milliseconds();
    let shorter = (a.end_time - a.start_time).num_milliseconds().min((b.end_time - b.start_time).num_milliseconds());
    overlap > 0 && 2 * overlap >= shorter
}

#[path = "fold_reason.rs"]
mod reason;

#[cfg(test)]
#[path = "fold_tests.rs"]
mod tests;
