//! The write path shared by every backend: dedupe, append, re-fold the touched days, all
//! inside the caller's transaction. Backends supply the SQL through `WriteTx`.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{StoreResult, StoredEntry};
use crate::domain::event::{EventKind, KeyReuse, NewEvent, Payload, StoredEvent};
use crate::domain::fold::{fold, Day};
use crate::domain::priority::PriorityRule;

/// What happened to one event of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Accepted(Uuid),
    /// Already stored with the same content: no new event.
    Duplicate(Uuid),
    /// The idempotency key is taken by an event with other content.
    KeyReused,
}

/// The statements the write path needs, run inside one open transaction.
pub(crate) trait WriteTx: Send {
    /// `(event_id, content_hash)` of the events with this dedupe key.
    async fn events_with_key(&mut self, user_id: &str, kind: EventKind, key: &str) -> StoreResult<Vec<(Uuid, String)>>;
    #[allow(clippy::too_many_arguments)]
    async fn insert_event(
        &mut self,
        user_id: &str,
        actor: &str,
        event: &NewEvent,
        day: Option<NaiveDate>,
        event_id: Uuid,
        recorded_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Days of a workout's revisions, latest observation first.
    async fn workout_revision_days(&mut self, user_id: &str, workout_id: &str) -> StoreResult<Vec<NaiveDate>>;
    async fn fold_input(&mut self, user_id: &str, day: NaiveDate) -> StoreResult<Vec<StoredEvent>>;
    async fn stored_day(&mut self, user_id: &str, day: NaiveDate) -> StoreResult<Option<Day>>;
    /// Takes the next feed position; positions follow commit order.
    async fn next_position(&mut self) -> StoreResult<i64>;
    async fn upsert_entry(
        &mut self,
        user_id: &str,
        day: NaiveDate,
        position: i64,
        updated_at: DateTime<Utc>,
        body: &Day,
    ) -> StoreResult<()>;
}

/// Appends `events` for `user_id` and re-folds the days they touch. Returns one outcome
/// per event and the entries that changed.
pub(crate) async fn append<T: WriteTx>(
    tx: &mut T,
    user_id: &str,
    actor: &str,
    events: &[NewEvent],
    rule: &PriorityRule,
    now: DateTime<Utc>,
) -> StoreResult<(Vec<AppendOutcome>, Vec<StoredEntry>)> {
    let mut outcomes = Vec::with_capacity(events.len());
    let mut touched: BTreeSet<NaiveDate> = BTreeSet::new();
    for event in events {
        if let Some(outcome) = existing_outcome(tx, user_id, event).await? {
            outcomes.push(outcome);
            continue;
        }
        let mut day = event.day;
        if let Some(workout_id) = event.payload.workout_id() {
            let revision_days = tx.workout_revision_days(user_id, workout_id).await?;
            // A deletion belongs to the day of the workout's latest revision, if any is known.
            if matches!(event.payload, Payload::WorkoutDeleted(_)) {
                day = revision_days.first().copied();
            }
            touched.extend(revision_days);
        }
        touched.extend(day);
        let event_id = Uuid::new_v4();
        tx.insert_event(user_id, actor, event, day, event_id, now).await?;
        outcomes.push(AppendOutcome::Accepted(event_id));
    }
    let mut changed = Vec::new();
    for day in touched {
        changed.extend(refold_day(tx, user_id, day, rule, now).await?);
    }
    Ok((outcomes, changed))
}

/// Duplicate or key reuse, when the dedupe key is already stored.
async fn existing_outcome<T: WriteTx>(
    tx: &mut T,
    user_id: &str,
    event: &NewEvent,
) -> StoreResult<Option<AppendOutcome>> {
    if event.key_reuse == KeyReuse::Never {
        return Ok(None);
    }
    let stored = tx.events_with_key(user_id, event.kind(), &event.dedupe_key).await?;
    if let Some((event_id, _)) = stored.iter().find(|(_, hash)| *hash == event.content_hash) {
        return Ok(Some(AppendOutcome::Duplicate(*event_id)));
    }
    Ok(match (stored.is_empty(), event.key_reuse) {
        (false, KeyReuse::Reject) => Some(AppendOutcome::KeyReused),
        _ => None,
    })
}

/// Folds a day from its events and stores it under a new position when it changed.
/// Returns the entry when it changed.
pub(crate) async fn refold_day<T: WriteTx>(
    tx: &mut T,
    user_id: &str,
    day: NaiveDate,
    rule: &PriorityRule,
    now: DateTime<Utc>,
) -> StoreResult<Option<StoredEntry>> {
    let input = tx.fold_input(user_id, day).await?;
    if !input.iter().any(|e| e.day == Some(day)) {
        return Ok(None);
    }
    let folded = fold(day, &input, rule);
    if tx.stored_day(user_id, day).await?.as_ref() == Some(&folded) {
        return Ok(None);
    }
    let position = tx.next_position().await?;
    tx.upsert_entry(user_id, day, position, now, &folded).await?;
    Ok(Some(StoredEntry { user_id: user_id.to_string(), day, position, updated_at: now, body: folded }))
}
