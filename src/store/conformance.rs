//! Store-level tests every backend runs on its own store (`run`), for what the behavioural
//! suite cannot reach from outside: the rebuild pipeline's read-ahead against writes that
//! land between a chunk's read and its write.

use std::future::Future;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use coachfit_testkit::ScratchDatabase;

use super::backend::Backend;
use super::sql_store::SqlStore;
use super::{rebuild, Store};
use crate::domain::event::{KeyReuse, NewEvent, Payload, StepsReport};
use crate::domain::priority::PriorityRule;
use crate::domain::Source;

/// A day's step total from `source`, reported `hours` after the start of 2026-03-01.
fn steps_from(source: Source, day: NaiveDate, total_steps: u32, hours: i64) -> NewEvent {
    let at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + Duration::hours(hours);
    let payload = Payload::Steps(StepsReport { total_steps, source_devices: vec![] });
    NewEvent::new(Some(day), source, at, payload, None, KeyReuse::Reject)
}

/// A day's HealthKit step total, reported `hours` after the start of 2026-03-01.
pub(crate) fn steps(day: NaiveDate, total_steps: u32, hours: i64) -> NewEvent {
    steps_from(Source::Healthkit, day, total_steps, hours)
}

/// Runs every conformance test, each on a new store from `open` (with a guard that
/// removes its database when dropped).
pub(crate) async fn run<B, F, O>(open: O)
where
    B: Backend,
    O: Fn() -> F,
    F: Future<Output = (SqlStore<B>, ScratchDatabase)>,
{
    let (store, _db) = open().await;
    a_rebuild_chunk_read_before_a_new_event_is_read_again(store).await;
    let (store, _db) = open().await;
    a_rebuild_chunk_read_before_an_entry_changed_is_read_again(store).await;
    let (store, _db) = open().await;
    a_rebuild_of_more_events_than_a_chunk_replays_every_event_once(store).await;
}

/// A rebuild reads a chunk before it takes the writer; an event appended in between must
/// make it read again, not overwrite the newer entry with a stale fold.
async fn a_rebuild_chunk_read_before_a_new_event_is_read_again<B: Backend>(store: SqlStore<B>) {
    let (rule, day) = (PriorityRule::default(), NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
    store.append("u1", "u1", vec![steps(day, 1_000, 8)], &rule).await.unwrap();
    let span = rebuild::list_chunks(store.backend(), Some("u1")).recv().await.unwrap().unwrap();
    let stale = rebuild::read_chunk(store.backend(), span, &rule).await.unwrap().unwrap();

    store.append("u1", "u1", vec![steps(day, 2_000, 9)], &rule).await.unwrap();
    rebuild::rebuild_chunk(store.backend().as_ref(), stale, &rule).await.unwrap();

    let entry = store.get_entry("u1", day).await.unwrap().unwrap();
    assert_eq!(entry.body.steps, Some(2_000));
}

/// Nor may an entry changed without a new event (re-folded under another rule) in between
/// be left as it is because it was unchanged when the chunk was read.
async fn a_rebuild_chunk_read_before_an_entry_changed_is_read_again<B: Backend>(store: SqlStore<B>) {
    let (rule, day) = (PriorityRule::default(), NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
    let manual = steps_from(Source::Manual, day, 500, 9);
    store.append("u1", "u1", vec![steps(day, 1_000, 8), manual], &rule).await.unwrap();
    let span = rebuild::list_chunks(store.backend(), Some("u1")).recv().await.unwrap().unwrap();
    let stale = rebuild::read_chunk(store.backend(), span, &rule).await.unwrap().unwrap();

    let healthkit_first = PriorityRule::from_json(r#"{"default": ["healthkit", "manual", "strava"]}"#).unwrap();
    store.recompute_day("u1", day, &healthkit_first).await.unwrap();
    assert_eq!(store.get_entry("u1", day).await.unwrap().unwrap().body.steps, Some(1_000));
    rebuild::rebuild_chunk(store.backend().as_ref(), stale, &rule).await.unwrap();

    let entry = store.get_entry("u1", day).await.unwrap().unwrap();
    assert_eq!(entry.body.steps, Some(500), "the manual value wins again under the rebuild's rule");
}

/// A rebuild walks the days chunk by chunk: every day with events is re-folded once, across
/// chunk boundaries and users, and each stale entry is put right.
async fn a_rebuild_of_more_events_than_a_chunk_replays_every_event_once<B: Backend>(store: SqlStore<B>) {
    let rule = PriorityRule::default();
    let first = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let days = B::REBUILD_CHUNK_EVENTS as usize + 100;
    let day = |d: usize| first + Duration::days(d as i64);
    for user in ["u1", "u2"] {
        for part in (0..days).collect::<Vec<_>>().chunks(500) {
            let events = part.iter().map(|&d| steps(day(d), 1_000 + d as u32, 8)).collect();
            store.append(user, user, events, &rule).await.unwrap();
        }
    }
    store.append("u1", "u1", vec![steps(first, 5_000, 9)], &rule).await.unwrap();
    // Every stored entry made wrong, as a bug in an earlier release would leave them.
    for user in ["u1", "u2"] {
        let stored = store.list_entries(user, first, day(days), None, u32::MAX).await.unwrap();
        let wrong: Vec<_> = stored
            .into_iter()
            .map(|mut entry| {
                entry.body.steps = Some(0);
                let body = serde_json::to_string(&entry.body).unwrap();
                (entry, body)
            })
            .collect();
        let mut write = store.backend().write(&[user]).await.unwrap();
        B::upsert_entries(&mut write, &wrong).await.unwrap();
        B::commit(write).await.unwrap();
    }
    assert_eq!(store.verify(&rule).await.unwrap().len(), 2 * days);

    let stats = store.rebuild(None, &rule).await.unwrap();

    assert_eq!((stats.days_rebuilt, stats.events_replayed), (2 * days as u64, 2 * days as u64 + 1));
    assert_eq!(store.verify(&rule).await.unwrap(), vec![]);
    for user in ["u1", "u2"] {
        let entries = store.list_entries(user, first, day(days), None, u32::MAX).await.unwrap();
        let steps: Vec<Option<i64>> = entries.iter().map(|entry| entry.body.steps.map(i64::from)).collect();
        let expected: Vec<Option<i64>> =
            (0..days).map(|d| Some(if user == "u1" && d == 0 { 5_000 } else { 1_000 + d as i64 })).collect();
        assert_eq!(steps, expected, "{user}'s days, each from its newest HealthKit total");
    }
}
