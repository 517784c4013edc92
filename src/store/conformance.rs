//! Store-level tests every backend runs on its own store (`run`), for what the behavioural
//! suite cannot reach from outside: the rebuild pipeline's read-ahead against writes that
//! land between a chunk's read and its write, a priority rule stored but not yet applied to
//! every day, and an append (of events, of access records) that reaches the writer after
//! its user was erased.

use std::future::Future;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use coachfit_testkit::ScratchDatabase;

use super::backend::Backend;
use super::sql_store::SqlStore;
use super::{rebuild, Access, Store, StoreError};
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
    let with_users = || async {
        let (store, db) = open().await;
        users(&store, &["u1", "u2"]).await;
        (store, db)
    };
    let (store, _db) = with_users().await;
    a_rebuild_chunk_read_before_a_new_event_is_read_again(store).await;
    let (store, _db) = with_users().await;
    a_rebuild_chunk_read_before_an_entry_changed_is_read_again(store).await;
    let (store, _db) = with_users().await;
    a_rebuild_of_more_events_than_a_chunk_replays_every_event_once(store).await;
    let (store, _db) = with_users().await;
    a_stored_rule_folds_the_next_write_and_its_pass_folds_the_rest(store).await;
    let (store, _db) = with_users().await;
    an_append_authorized_before_its_user_was_erased_stores_nothing(store).await;
    let (store, _db) = with_users().await;
    access_records_of_an_erased_user_are_left_out_and_a_log_reads_newest_first(store).await;
}

/// Adds client users (of one coach): events are stored only for users who exist.
pub(crate) async fn users<B: Backend>(store: &SqlStore<B>, ids: &[&str]) {
    let mut write = store.backend().write(&[]).await.unwrap();
    let at = Utc::now();
    B::insert_coach(&mut write, "coach", "Coach", at).await.unwrap();
    for id in ids {
        B::ensure_user(&mut write, id, "coach", None, at).await.unwrap();
    }
    B::commit(write).await.unwrap();
}

/// A call authorized just before its user was erased reaches the writer after: the
/// database refuses its events, so nothing of the user comes back; others' writes go on.
async fn an_append_authorized_before_its_user_was_erased_stores_nothing<B: Backend>(store: SqlStore<B>) {
    let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
    store.append("u1", "device:1", vec![steps(day, 1_000, 8)]).await.unwrap();
    let removal = store.erase_user("u1", "admin").await.unwrap().expect("u1 existed");
    assert_eq!((removal.user_id.as_str(), removal.coach_id.as_str()), ("u1", "coach"));

    let late = store.append("u1", "device:1", vec![steps(day, 2_000, 9)]).await;
    assert!(matches!(late, Err(StoreError::UserErased)), "{late:?}");
    assert!(store.fold_input("u1", day).await.unwrap().is_empty(), "no event of u1 was stored");
    assert!(store.get_entry("u1", day).await.unwrap().is_none());
    assert!(store.erase_user("u1", "admin").await.unwrap().is_none(), "erasing again finds nobody");
    store.append("u2", "device:2", vec![steps(day, 3_000, 9)]).await.expect("others write on");
}

/// An access read before an erasure and stored after names nobody: it is left out, and
/// the others of its batch are stored.
async fn access_records_of_an_erased_user_are_left_out_and_a_log_reads_newest_first<B: Backend>(store: SqlStore<B>) {
    let access = |user: &str, detail: &str| Access {
        user_id: user.to_string(),
        accessor: "coach:coach".to_string(),
        rpc: "GetEntry".to_string(),
        detail: detail.to_string(),
        peer: "192.0.2.7".to_string(),
        at: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
    };
    store.log_accesses(&[access("u1", "2026-03-01"), access("u2", "2026-03-01")]).await.unwrap();
    store.erase_user("u1", "admin").await.unwrap().expect("u1 existed");
    let batch = [access("u1", "2026-03-02"), access("u2", "2026-03-02"), access("u2", "2026-03-03")];
    store.log_accesses(&batch).await.expect("a batch naming an erased user is stored all the same");

    assert_eq!(store.access_log("u1", None, 10).await.unwrap(), vec![]);
    let newest = store.access_log("u2", None, 2).await.unwrap();
    let details: Vec<&str> = newest.iter().map(|logged| logged.access.detail.as_str()).collect();
    assert_eq!(details, ["2026-03-03", "2026-03-02"]);
    assert_eq!(newest[0].access, batch[2], "stored as given");
    let older = store.access_log("u2", Some(newest[1].seq), 2).await.unwrap();
    let details: Vec<&str> = older.iter().map(|logged| logged.access.detail.as_str()).collect();
    assert_eq!(details, ["2026-03-01"], "the page before the second");
}

const HEALTHKIT_FIRST: &str = r#"{"default": ["healthkit", "manual", "strava"]}"#;

/// A rebuild reads a chunk before it takes the writer; an event appended in between must
/// make it read again, not overwrite the newer entry with a stale fold.
async fn a_rebuild_chunk_read_before_a_new_event_is_read_again<B: Backend>(store: SqlStore<B>) {
    let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
    store.append("u1", "u1", vec![steps(day, 1_000, 8)]).await.unwrap();
    let span = rebuild::list_chunks(store.backend(), Some("u1")).recv().await.unwrap().unwrap();
    let stale = rebuild::read_chunk(store.backend(), store.rules(), span).await.unwrap().unwrap();

    store.append("u1", "u1", vec![steps(day, 2_000, 9)]).await.unwrap();
    rebuild::rebuild_chunk(store.backend().as_ref(), store.rules(), stale).await.unwrap();

    let entry = store.get_entry("u1", day).await.unwrap().unwrap();
    assert_eq!(entry.body.steps, Some(2_000));
}

/// Nor may a chunk folded under one rule be stored after another rule came into force (and
/// re-folded the day meanwhile): it is folded again under the rule in force at its write.
async fn a_rebuild_chunk_read_before_an_entry_changed_is_read_again<B: Backend>(store: SqlStore<B>) {
    let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
    let manual = steps_from(Source::Manual, day, 500, 9);
    store.append("u1", "u1", vec![steps(day, 1_000, 8), manual]).await.unwrap();
    let span = rebuild::list_chunks(store.backend(), Some("u1")).recv().await.unwrap().unwrap();
    let stale = rebuild::read_chunk(store.backend(), store.rules(), span).await.unwrap().unwrap();
    assert_eq!(store.get_entry("u1", day).await.unwrap().unwrap().body.steps, Some(500));

    let healthkit_first = PriorityRule::from_json(HEALTHKIT_FIRST).unwrap();
    let version = store.store_priority_rule(&healthkit_first, "test").await.unwrap();
    rebuild::rebuild_chunk(store.backend().as_ref(), store.rules(), stale).await.unwrap();

    let entry = store.get_entry("u1", day).await.unwrap().unwrap();
    assert_eq!(entry.body.steps, Some(1_000), "HealthKit wins under the rule in force at the chunk's write");
    assert_eq!(entry.rule_version, version);
}

/// A rebuild walks the days chunk by chunk: every day with events is re-folded once, across
/// chunk boundaries and users, and each stale entry is put right.
async fn a_rebuild_of_more_events_than_a_chunk_replays_every_event_once<B: Backend>(store: SqlStore<B>) {
    let first = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let days = B::REBUILD_CHUNK_EVENTS as usize + 100;
    let day = |d: usize| first + Duration::days(d as i64);
    for user in ["u1", "u2"] {
        for part in (0..days).collect::<Vec<_>>().chunks(500) {
            let events = part.iter().map(|&d| steps(day(d), 1_000 + d as u32, 8)).collect();
            store.append(user, user, events).await.unwrap();
        }
    }
    store.append("u1", "u1", vec![steps(first, 5_000, 9)]).await.unwrap();
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
    assert_eq!(store.verify().await.unwrap().len(), 2 * days);

    let stats = store.rebuild(None).await.unwrap();

    assert_eq!((stats.days_rebuilt, stats.events_replayed), (2 * days as u64, 2 * days as u64 + 1));
    assert_eq!(stats.days_changed, 2 * days as u64, "every day was wrong");
    assert_eq!(store.verify().await.unwrap(), vec![]);
    for user in ["u1", "u2"] {
        let entries = store.list_entries(user, first, day(days), None, u32::MAX).await.unwrap();
        let steps: Vec<Option<i64>> = entries.iter().map(|entry| entry.body.steps.map(i64::from)).collect();
        let expected: Vec<Option<i64>> =
            (0..days).map(|d| Some(if user == "u1" && d == 0 { 5_000 } else { 1_000 + d as i64 })).collect();
        assert_eq!(steps, expected, "{user}'s days, each from its newest HealthKit total");
    }
}

/// A rule stored (as `set_priority_rule` does first) is in force for the next write at once;
/// the days stored before it are folded under it by its pass, which `verify` and
/// `fold_is_current` wait for and `refold_if_stale` finishes (after an interrupted pass).
/// A day the new rule folds to the same values keeps its position.
async fn a_stored_rule_folds_the_next_write_and_its_pass_folds_the_rest<B: Backend>(store: SqlStore<B>) {
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    let manual = |d, total| steps_from(Source::Manual, day(d), total, 9);
    store.append("u1", "u1", vec![steps(day(1), 1_000, 8), manual(1, 500), steps(day(3), 3_000, 8)]).await.unwrap();
    let (before, unchanged) =
        (store.get_entry("u1", day(1)).await.unwrap().unwrap(), store.get_entry("u1", day(3)).await.unwrap().unwrap());
    assert_eq!((before.body.steps, before.rule_version), (Some(500), 0), "the client's own entry wins by default");

    let version = store.store_priority_rule(&PriorityRule::from_json(HEALTHKIT_FIRST).unwrap(), "test").await.unwrap();
    assert_eq!(version, 1);
    store.append("u1", "u1", vec![steps(day(2), 2_000, 8), manual(2, 700)]).await.unwrap();
    let next = store.get_entry("u1", day(2)).await.unwrap().unwrap();
    assert_eq!((next.body.steps, next.rule_version), (Some(2_000), 1), "the next write folds under the new rule");
    assert!(!store.fold_is_current().await.unwrap());
    let stale: Vec<NaiveDate> = store.verify().await.unwrap().into_iter().map(|m| m.day).collect();
    assert_eq!(stale, vec![day(1), day(3)], "days the pass has not reached yet");
    // Each stored day can still be explained under the rule it was folded with.
    assert_eq!(store.priority_rule_at(0).await.unwrap().rule, PriorityRule::default());
    let stored = store.priority_rule_at(version).await.unwrap();
    assert_eq!(stored.rule.to_json(), PriorityRule::from_json(HEALTHKIT_FIRST).unwrap().to_json());
    assert_eq!(store.priority_rule().await.unwrap().current.version, version, "reading an old one kept the new");

    let stats = store.refold_if_stale().await.unwrap().expect("the interrupted pass is finished");
    assert_eq!((stats.days_rebuilt, stats.days_changed), (3, 1));
    let after = store.get_entry("u1", day(1)).await.unwrap().unwrap();
    assert_eq!((after.body.steps, after.rule_version), (Some(1_000), 1));
    let kept = store.get_entry("u1", day(3)).await.unwrap().unwrap();
    assert_eq!((kept.position, kept.rule_version), (unchanged.position, 1), "same values, same position");
    assert_eq!(store.verify().await.unwrap(), vec![]);
    assert!(store.fold_is_current().await.unwrap() && store.priority_rule().await.unwrap().applied);
    assert_eq!(store.refold_if_stale().await.unwrap(), None);
}
