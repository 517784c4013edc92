//! The write path shared by every backend: dedupe, append, re-fold the touched days, all
//! inside the caller's transaction, with a fixed number of statements per request however
//! many items it carries. Backends supply the SQL through `WriteTx`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{StoreResult, StoredEntry};
use crate::domain::event::{KeyReuse, NewEvent, Payload, StoredEvent};
use crate::domain::fold::fold;
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

/// An event already stored under a dedupe key.
#[derive(Debug, Clone)]
pub(crate) struct KeyedEvent {
    pub kind: String,
    pub key: String,
    pub event_id: Uuid,
    pub content_hash: String,
}

/// A new event and what the store adds to it.
pub(crate) struct EventRow<'a> {
    pub event: &'a NewEvent,
    pub day: Option<NaiveDate>,
    pub event_id: Uuid,
}

/// Where and when one revision of a workout was observed.
#[derive(Debug, Clone)]
pub(crate) struct Revision {
    pub workout_id: String,
    pub day: NaiveDate,
    pub recency: (DateTime<Utc>, i64),
}

/// The statements the write path needs, run inside one open transaction. Each takes a
/// whole batch, so a request costs the same few round trips whatever its size.
pub(crate) trait WriteTx: Send {
    /// The stored events of `user_id` whose dedupe key is one of `keys` (any kind).
    async fn keyed_events(&mut self, user_id: &str, keys: &[&str]) -> StoreResult<Vec<KeyedEvent>>;
    async fn insert_events(
        &mut self,
        user_id: &str,
        actor: &str,
        recorded_at: DateTime<Utc>,
        rows: &[EventRow<'_>],
    ) -> StoreResult<()>;
    /// Every stored revision of these workouts.
    async fn workout_revisions(&mut self, user_id: &str, workout_ids: &[&str]) -> StoreResult<Vec<Revision>>;
    /// What the folds of `days` read (see `inputs_by_day`), in any order.
    async fn fold_inputs(&mut self, user_id: &str, days: &[NaiveDate]) -> StoreResult<Vec<StoredEvent>>;
    /// The stored bodies (JSON) of these days' entries.
    async fn stored_bodies(&mut self, user_id: &str, days: &[NaiveDate]) -> StoreResult<Vec<(NaiveDate, String)>>;
    /// Takes `count` consecutive feed positions and returns the last. Positions follow
    /// commit order.
    async fn take_positions(&mut self, count: i64) -> StoreResult<i64>;
    /// Stores entries with their bodies already serialized.
    async fn upsert_entries(&mut self, entries: &[(StoredEntry, String)]) -> StoreResult<()>;
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
    let keys: Vec<&str> =
        events.iter().filter(|e| e.key_reuse != KeyReuse::Never).map(|e| e.dedupe_key.as_str()).collect();
    let mut known: HashMap<(String, String), Vec<(Uuid, String)>> = HashMap::new();
    if !keys.is_empty() {
        for stored in tx.keyed_events(user_id, &keys).await? {
            known.entry((stored.kind, stored.key)).or_default().push((stored.event_id, stored.content_hash));
        }
    }

    let mut outcomes = Vec::with_capacity(events.len());
    let mut accepted: Vec<(&NewEvent, Uuid)> = Vec::new();
    for event in events {
        let event_id = Uuid::new_v4();
        if event.key_reuse != KeyReuse::Never {
            let same_key = known.entry((event.kind().as_str().to_string(), event.dedupe_key.clone())).or_default();
            if let Some((id, _)) = same_key.iter().find(|(_, hash)| *hash == event.content_hash) {
                outcomes.push(AppendOutcome::Duplicate(*id));
                continue;
            }
            if !same_key.is_empty() && event.key_reuse == KeyReuse::Reject {
                outcomes.push(AppendOutcome::KeyReused);
                continue;
            }
            same_key.push((event_id, event.content_hash.clone()));
        }
        outcomes.push(AppendOutcome::Accepted(event_id));
        accepted.push((event, event_id));
    }

    let (rows, touched) = place_events(tx, user_id, &accepted).await?;
    if !rows.is_empty() {
        tx.insert_events(user_id, actor, now, &rows).await?;
    }
    let touched: Vec<NaiveDate> = touched.into_iter().collect();
    let changed = refold_days(tx, user_id, &touched, rule, now).await?;
    Ok((outcomes, changed))
}

/// Gives each accepted event its day and finds every day the batch touches. A workout
/// revision also touches the days of its earlier revisions (it may have moved); a deletion
/// belongs to the day of the workout's latest revision, if one is known.
async fn place_events<'a, T: WriteTx>(
    tx: &mut T,
    user_id: &str,
    accepted: &[(&'a NewEvent, Uuid)],
) -> StoreResult<(Vec<EventRow<'a>>, BTreeSet<NaiveDate>)> {
    let workout_ids: Vec<&str> = accepted.iter().filter_map(|(e, _)| e.payload.workout_id()).collect();
    let mut revisions: HashMap<String, Vec<Revision>> = HashMap::new();
    if !workout_ids.is_empty() {
        for revision in tx.workout_revisions(user_id, &workout_ids).await? {
            revisions.entry(revision.workout_id.clone()).or_default().push(revision);
        }
    }
    let mut rows = Vec::with_capacity(accepted.len());
    let mut touched = BTreeSet::new();
    for (order, (event, event_id)) in accepted.iter().enumerate() {
        let mut day = event.day;
        if let Some(workout_id) = event.payload.workout_id() {
            let known = revisions.entry(workout_id.to_string()).or_default();
            touched.extend(known.iter().map(|r| r.day));
            match (&event.payload, event.day) {
                (Payload::WorkoutDeleted(_), _) => day = known.iter().max_by_key(|r| r.recency).map(|r| r.day),
                (_, Some(revision_day)) => known.push(Revision {
                    workout_id: workout_id.to_string(),
                    day: revision_day,
                    // Stored after every earlier revision: its seq will be larger.
                    recency: (event.observed_at, i64::MAX - (accepted.len() - order) as i64),
                }),
                _ => {}
            }
        }
        touched.extend(day);
        rows.push(EventRow { event, day, event_id: *event_id });
    }
    Ok((rows, touched))
}

/// Splits what `fold_inputs` returned into each day's fold input: the day's own events,
/// plus every other revision and deletion of the workouts that appear on it.
pub(crate) fn inputs_by_day(days: &[NaiveDate], events: Vec<StoredEvent>) -> BTreeMap<NaiveDate, Vec<StoredEvent>> {
    let mut by_workout: HashMap<String, Vec<&StoredEvent>> = HashMap::new();
    for event in &events {
        if let Some(workout_id) = event.payload.workout_id() {
            by_workout.entry(workout_id.to_string()).or_default().push(event);
        }
    }
    let mut inputs = BTreeMap::new();
    for &day in days {
        let own: Vec<&StoredEvent> = events.iter().filter(|e| e.day == Some(day)).collect();
        let mut input: BTreeMap<i64, StoredEvent> = own.iter().map(|e| (e.seq, (*e).clone())).collect();
        for workout_id in own.iter().filter_map(|e| e.payload.workout_id()) {
            for related in by_workout.get(workout_id).into_iter().flatten() {
                input.entry(related.seq).or_insert_with(|| (*related).clone());
            }
        }
        inputs.insert(day, input.into_values().collect());
    }
    inputs
}

/// The workout ids whose other events the folds of these events need.
pub(crate) fn related_workout_ids(events: &[StoredEvent]) -> Vec<String> {
    let ids: BTreeSet<&str> = events.iter().filter_map(|e| e.payload.workout_id()).collect();
    ids.into_iter().map(str::to_string).collect()
}

/// Folds `days` from their events and stores, under new positions, the ones that changed.
/// Returns the changed entries.
pub(crate) async fn refold_days<T: WriteTx>(
    tx: &mut T,
    user_id: &str,
    days: &[NaiveDate],
    rule: &PriorityRule,
    now: DateTime<Utc>,
) -> StoreResult<Vec<StoredEntry>> {
    if days.is_empty() {
        return Ok(Vec::new());
    }
    let inputs = inputs_by_day(days, tx.fold_inputs(user_id, days).await?);
    // Serialization is canonical, so comparing JSON text tells a changed day without
    // parsing what is stored.
    let stored: HashMap<NaiveDate, String> = tx.stored_bodies(user_id, days).await?.into_iter().collect();
    let mut changed = Vec::new();
    for (day, input) in inputs {
        if !input.iter().any(|e| e.day == Some(day)) {
            continue;
        }
        let folded = fold(day, &input, rule);
        let body = serde_json::to_string(&folded).expect("days serialize");
        if stored.get(&day) != Some(&body) {
            changed.push((day, folded, body));
        }
    }
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let last = tx.take_positions(changed.len() as i64).await?;
    let first = last - changed.len() as i64 + 1;
    let rows: Vec<(StoredEntry, String)> = changed
        .into_iter()
        .enumerate()
        .map(|(i, (day, folded, body))| {
            let entry = StoredEntry {
                user_id: user_id.to_string(),
                day,
                position: first + i as i64,
                updated_at: now,
                body: folded,
            };
            (entry, body)
        })
        .collect();
    tx.upsert_entries(&rows).await?;
    Ok(rows.into_iter().map(|(entry, _)| entry).collect())
}
