//! The write path shared by every backend: dedupe, append, re-fold the touched days, all
//! inside the caller's transaction. It takes the appends of several requests (of any users)
//! at once, and costs a fixed number of statements per group however many requests and
//! items it carries (callers keep groups small enough for one statement's parameters:
//! see `group::MAX_GROUP_EVENTS` and each backend's `REBUILD_CHUNK_EVENTS`). Backends supply
//! the statements (`Backend`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::backend::Backend;
use super::columns::{self, Timestamp};
use super::roster::{Published, SyncNotices};
use super::rows::{BodyRow, SyncRow};
use super::rules::{RuleCache, VersionedRule};
use super::{StoreError, StoreResult, StoredEntry};
use crate::domain::event::{KeyReuse, NewEvent, Payload, StoredEvent};
use crate::domain::fold::{fold, Day};
use crate::domain::priority::PriorityRule;

/// A day of one user.
pub type UserDay<'a> = (&'a str, NaiveDate);

/// What happened to one event of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    Accepted(Uuid),
    /// Already stored with the same content: no new event.
    Duplicate(Uuid),
    /// The idempotency key is taken by an event with other content.
    KeyReused,
    /// Its day already holds `limit` events, the most a day may: not stored.
    DayFull {
        limit: usize,
    },
}

/// An event of an append, by its request's index in the group and its own in the request.
type EventIndex = (usize, usize);

/// What the write path keeps between appends: the rule and sync notices last seen, and the
/// day limit.
pub(crate) struct Writing<'a> {
    pub rules: &'a RuleCache,
    pub notices: &'a SyncNotices,
    pub max_events_per_day: usize,
}

/// One request's events, appended for its user.
pub(crate) struct Append<'a> {
    pub user_id: &'a str,
    pub actor: &'a str,
    pub events: &'a [NewEvent],
}

/// A dedupe key of one user and kind, as `keyed_events` looks it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyLookup<'a> {
    pub user_id: &'a str,
    pub kind: &'a str,
    pub key: &'a str,
}

/// An event already stored under a dedupe key.
#[derive(Debug, Clone)]
pub struct KeyedEvent {
    pub user_id: String,
    pub kind: String,
    pub key: String,
    pub event_id: Uuid,
    pub content_hash: String,
}

/// What `Backend::insert_events` returns: each event's id and `seq`, and the newest
/// priority rule version as the insert saw it.
pub struct Inserted {
    pub ids: Vec<(Uuid, i64)>,
    pub rule_version: i64,
}

/// A new event and what the store adds to it.
pub struct EventRow<'a> {
    pub user_id: &'a str,
    pub actor: &'a str,
    pub event: &'a NewEvent,
    pub day: Option<NaiveDate>,
    pub event_id: Uuid,
}

impl EventRow<'_> {
    /// The event as the store will return it.
    fn stored(&self, seq: i64, recorded_at: DateTime<Utc>) -> StoredEvent {
        StoredEvent {
            seq,
            event_id: self.event_id,
            day: self.day,
            source: self.event.source,
            observed_at: self.event.observed_at,
            recorded_at,
            actor: self.actor.to_string(),
            payload: self.event.payload.clone(),
        }
    }
}

/// Where and when one revision of a workout was observed.
#[derive(Debug, Clone)]
pub struct Revision {
    pub user_id: String,
    pub workout_id: String,
    pub day: NaiveDate,
    pub recency: (DateTime<Utc>, i64),
}

/// The distinct users among `user_ids`, sorted: the order writers lock them in, and the
/// order `newest_seqs` reports them in.
pub(crate) fn distinct_users<'a>(user_ids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let users: BTreeSet<&str> = user_ids.into_iter().collect();
    users.into_iter().collect()
}

/// The day before any day stored: where walks along `(user_id, day)` start.
pub(crate) fn before_every_day() -> NaiveDate {
    crate::domain::dates::earliest_day().pred_opt().expect("a day before 2000-01-01")
}

/// The user-days after `after`, up to and including `last`, in `(user_id, day)` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySpan {
    pub after: (String, NaiveDate),
    pub last: (String, NaiveDate),
}

/// The days of a span folded ahead of the transaction that stores them: the ones that
/// differed from their stored entries then, and what tells whether that still holds: the
/// rule they were folded under, each of their users' newest event and the feed's head,
/// read in the same snapshot.
pub(crate) struct Prefetched {
    pub span: DaySpan,
    /// The rule version the days were folded under.
    pub rule_version: i64,
    pub newest: Vec<(String, i64)>,
    pub head: i64,
    pub changed: Vec<ChangedDay>,
}

/// A day whose fold differs from its stored entry, with the fold's JSON body.
pub(crate) struct ChangedDay {
    user_id: String,
    day: NaiveDate,
    folded: Day,
    body: String,
    /// Whether the day has an entry yet.
    stored: bool,
}

/// What an append returns: per request, one outcome per event; and what changed (entries,
/// and clients whose syncs took a roster position).
type Appended = (Vec<Vec<AppendOutcome>>, Published);

/// Appends each request's events and re-folds the days they touch. Requests are applied in
/// order, so a later request sees an earlier one's events (a repeated key is a duplicate).
/// Events that would take their day past `max_events_per_day` are `DayFull`: when some
/// are, the append starts over without them (it has only read so far), so that dedupe
/// never points at an event that was not stored.
pub(crate) async fn append<B: Backend>(
    tx: &mut B::Conn,
    appends: &[Append<'_>],
    writing: &Writing<'_>,
    now: DateTime<Utc>,
) -> StoreResult<Appended> {
    let mut refused = HashSet::new();
    loop {
        match append_unless_full::<B>(tx, appends, &refused, writing, now).await? {
            Ok(appended) => return Ok(appended),
            Err(over) => refused.extend(over),
        }
    }
}

/// `append`, with the `refused` events `DayFull`; or, without writing anything, the events
/// that would take their days past the limit.
async fn append_unless_full<B: Backend>(
    tx: &mut B::Conn,
    appends: &[Append<'_>],
    refused: &HashSet<EventIndex>,
    writing: &Writing<'_>,
    now: DateTime<Utc>,
) -> StoreResult<Result<Appended, Vec<EventIndex>>> {
    let max_events_per_day = writing.max_events_per_day;
    let lookups: BTreeSet<KeyLookup> = appends
        .iter()
        .flat_map(|append| {
            append.events.iter().filter(|e| e.key_reuse != KeyReuse::Never).map(|e| KeyLookup {
                user_id: append.user_id,
                kind: e.kind().as_str(),
                key: &e.dedupe_key,
            })
        })
        .collect();
    let lookups: Vec<KeyLookup> = lookups.into_iter().collect();
    let mut known: HashMap<(String, String, String), Vec<(Uuid, String)>> = HashMap::new();
    if !lookups.is_empty() {
        for stored in B::keyed_events(tx, &lookups).await? {
            known
                .entry((stored.user_id, stored.kind, stored.key))
                .or_default()
                .push((stored.event_id, stored.content_hash));
        }
    }

    let mut outcomes = Vec::with_capacity(appends.len());
    let mut accepted: Vec<(&Append, &NewEvent, Uuid)> = Vec::new();
    let mut accepted_indices: Vec<EventIndex> = Vec::new();
    for (request, append) in appends.iter().enumerate() {
        let mut request_outcomes = Vec::with_capacity(append.events.len());
        for (index, event) in append.events.iter().enumerate() {
            if refused.contains(&(request, index)) {
                request_outcomes.push(AppendOutcome::DayFull { limit: max_events_per_day });
                continue;
            }
            let event_id = Uuid::now_v7();
            if event.key_reuse != KeyReuse::Never {
                let key = (append.user_id.to_string(), event.kind().as_str().to_string(), event.dedupe_key.clone());
                let same_key = known.entry(key).or_default();
                if let Some((id, _)) = same_key.iter().find(|(_, hash)| *hash == event.content_hash) {
                    request_outcomes.push(AppendOutcome::Duplicate(*id));
                    continue;
                }
                if !same_key.is_empty() && event.key_reuse == KeyReuse::Reject {
                    request_outcomes.push(AppendOutcome::KeyReused);
                    continue;
                }
                same_key.push((event_id, event.content_hash.clone()));
            }
            request_outcomes.push(AppendOutcome::Accepted(event_id));
            accepted.push((append, event, event_id));
            accepted_indices.push((request, index));
        }
        outcomes.push(request_outcomes);
    }

    if accepted.is_empty() {
        return Ok(Ok((outcomes, Published::default())));
    }
    let workouts: BTreeSet<(&str, &str)> =
        accepted.iter().filter_map(|(append, e, _)| Some((append.user_id, e.payload.workout_id()?))).collect();
    let workouts: Vec<(&str, &str)> = workouts.into_iter().collect();
    let (rows, touched) = place_events::<B>(tx, &accepted, &workouts).await?;
    // The new events are folded from memory: only what was stored before is read back.
    let touched: Vec<UserDay> = touched.into_iter().collect();
    let mut events = fold_inputs::<B>(tx, &touched, &workouts).await?;
    let over = over_the_day_limit(&events, &rows, max_events_per_day);
    if !over.is_empty() {
        return Ok(Err(over.into_iter().map(|row| accepted_indices[row]).collect()));
    }
    // An entry exists iff its day has events (docs/DESIGN.md §5), so only the days with stored
    // events can have an entry to compare with: a batch of new days reads no bodies.
    let with_entries: Vec<UserDay> = {
        let days_with_events: HashSet<UserDay> =
            events.iter().filter_map(|(u, e)| Some((u.as_str(), e.day?))).collect();
        touched.iter().copied().filter(|day| days_with_events.contains(day)).collect()
    };
    let inserted = B::insert_events(tx, now, &rows).await?;
    // The rule in force as the insert saw it: read after this write's locks were taken.
    let rule = writing.rules.at::<B>(tx, inserted.rule_version).await?;
    let seqs: HashMap<Uuid, i64> = inserted.ids.into_iter().collect();
    B::record_sync(tx, &sync_deltas(&rows, now)).await?;
    let synced = distinct_users(rows.iter().map(|row| row.user_id));
    let clients = writing.notices.notice::<B>(tx, &synced, now).await?;
    for row in &rows {
        let seq = *seqs.get(&row.event_id).ok_or_else(|| StoreError::Corrupt("an insert returned no seq".into()))?;
        events.push((row.user_id.to_string(), row.stored(seq, now)));
    }
    let entries = refold_from::<B>(tx, &touched, &with_entries, events, &rule, now).await?;

    Ok(Ok((outcomes, Published { entries, clients, ..Published::default() })))
}

/// What `rows` add to `sync_status`: per user, author and kind, how many events, the newest
/// observation, the store time and the last day.
fn sync_deltas(rows: &[EventRow<'_>], now: DateTime<Utc>) -> Vec<SyncRow> {
    // Per user, author and kind: events, newest observation, last day (made text once per
    // key, not per event).
    type Delta = (i64, DateTime<Utc>, Option<NaiveDate>);
    let mut deltas: BTreeMap<(&str, &str, &str), Delta> = BTreeMap::new();
    for row in rows {
        let (observed_at, day) = (row.event.observed_at, row.day);
        let delta = deltas.entry((row.user_id, row.actor, row.event.kind().as_str())).or_insert((0, observed_at, day));
        *delta = (delta.0 + 1, delta.1.max(observed_at), delta.2.max(day));
    }
    deltas
        .into_iter()
        .map(|((user_id, actor, kind), (events, newest, last_day))| SyncRow {
            user_id: user_id.to_string(),
            actor: actor.to_string(),
            kind: kind.to_string(),
            events,
            newest_observed_at: Timestamp(newest),
            last_stored_at: Timestamp(now),
            last_day: last_day.map(columns::Day),
        })
        .collect()
}

/// The rows (by index) that would take their day past `limit` events, given the days'
/// stored events (`fold_inputs`; a workout's revisions on other days do not count).
fn over_the_day_limit(stored: &[(String, StoredEvent)], rows: &[EventRow<'_>], limit: usize) -> Vec<usize> {
    let mut held: HashMap<UserDay, usize> = HashMap::new();
    for row in rows {
        if let Some(day) = row.day {
            held.insert((row.user_id, day), 0);
        }
    }
    // `fold_inputs` may list an event twice (as its day's and as a workout's).
    let mut counted = HashSet::new();
    for (user_id, event) in stored {
        if let Some(count) = event.day.and_then(|day| held.get_mut(&(user_id.as_str(), day))) {
            if counted.insert(event.seq) {
                *count += 1;
            }
        }
    }
    let mut over = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let Some(count) = row.day.and_then(|day| held.get_mut(&(row.user_id, day))) else { continue };
        *count += 1;
        if *count > limit {
            over.push(index);
        }
    }
    over
}

/// Gives each accepted event its day and finds every day the appends touch. A workout
/// revision also touches the days of its earlier revisions (it may have moved); a deletion
/// belongs to the day of the workout's latest revision, if one is known. `workouts` are the
/// `(user_id, workout_id)` workouts among the events.
async fn place_events<'a, B: Backend>(
    tx: &mut B::Conn,
    accepted: &[(&'a Append<'a>, &'a NewEvent, Uuid)],
    workouts: &[(&str, &str)],
) -> StoreResult<(Vec<EventRow<'a>>, BTreeSet<UserDay<'a>>)> {
    let mut revisions: HashMap<(String, String), Vec<Revision>> = HashMap::new();
    if !workouts.is_empty() {
        for revision in B::workout_revisions(tx, workouts).await? {
            revisions.entry((revision.user_id.clone(), revision.workout_id.clone())).or_default().push(revision);
        }
    }
    let mut rows = Vec::with_capacity(accepted.len());
    let mut touched = BTreeSet::new();
    for (order, (append, event, event_id)) in accepted.iter().enumerate() {
        let user_id = append.user_id;
        let mut day = event.day;
        if let Some(workout_id) = event.payload.workout_id() {
            let known = revisions.entry((user_id.to_string(), workout_id.to_string())).or_default();
            touched.extend(known.iter().map(|r| (user_id, r.day)));
            match (&event.payload, event.day) {
                (Payload::WorkoutDeleted(_), _) => day = known.iter().max_by_key(|r| r.recency).map(|r| r.day),
                (_, Some(revision_day)) => known.push(Revision {
                    user_id: user_id.to_string(),
                    workout_id: workout_id.to_string(),
                    day: revision_day,
                    // Stored after every earlier revision: its seq will be larger.
                    recency: (event.observed_at, i64::MAX - (accepted.len() - order) as i64),
                }),
                _ => {}
            }
        }
        touched.extend(day.map(|day| (user_id, day)));
        rows.push(EventRow { user_id, actor: append.actor, event, day, event_id: *event_id });
    }
    Ok((rows, touched))
}

/// Splits what `fold_inputs` returned into each day's fold input, in the order of `days`
/// (each day once): the day's own events, plus every other revision and deletion of the
/// workouts that appear on it, in `seq` order. Events listed twice count once. Each event
/// moves to its day; only one that several days read is copied.
pub(crate) fn inputs_by_day<'d>(
    days: &[UserDay<'d>],
    events: Vec<(String, StoredEvent)>,
) -> Vec<(UserDay<'d>, Vec<StoredEvent>)> {
    let mut slots: HashMap<UserDay, usize> = HashMap::with_capacity(days.len());
    let mut inputs: Vec<(UserDay<'d>, Vec<StoredEvent>)> = Vec::with_capacity(days.len());
    for &day in days {
        slots.entry(day).or_insert_with(|| {
            inputs.push((day, Vec::new()));
            inputs.len() - 1
        });
    }
    // Where each event goes, as indices (no allocation per event): its own day's slot, and
    // the slots of the days its workout appears on.
    let mut workout_slots: Vec<BTreeSet<usize>> = Vec::new();
    let destinations: Vec<(Option<usize>, Option<usize>)> = {
        let own_slot = |user_id: &str, event: &StoredEvent| slots.get(&(user_id, event.day?)).copied();
        let mut workouts: HashMap<(&str, &str), usize> = HashMap::new();
        for (user_id, event) in &events {
            if let (Some(slot), Some(workout_id)) = (own_slot(user_id, event), event.payload.workout_id()) {
                let next = workouts.len();
                let index = *workouts.entry((user_id, workout_id)).or_insert(next);
                if index == next {
                    workout_slots.push(BTreeSet::new());
                }
                workout_slots[index].insert(slot);
            }
        }
        events
            .iter()
            .map(|(user_id, event)| {
                let workout = event.payload.workout_id().and_then(|id| workouts.get(&(user_id.as_str(), id)));
                (own_slot(user_id, event), workout.copied())
            })
            .collect()
    };
    for ((_, event), (own, workout)) in events.into_iter().zip(destinations) {
        // A workout's event goes to every day its workout appears on (its own day among them).
        let to = match workout {
            Some(workout) => &workout_slots[workout],
            None => {
                if let Some(slot) = own {
                    inputs[slot].1.push(event);
                }
                continue;
            }
        };
        let Some(&last) = to.last() else { continue };
        for &slot in to.range(..last) {
            inputs[slot].1.push(event.clone());
        }
        inputs[last].1.push(event);
    }
    for (_, input) in &mut inputs {
        input.sort_by_key(|e| e.seq);
        input.dedup_by_key(|e| e.seq);
    }
    inputs
}

/// The `(user_id, workout_id)` workouts whose other events the folds of these events need,
/// and `also`.
pub(crate) fn related_workouts(events: &[(String, StoredEvent)], also: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut ids: BTreeSet<(&str, &str)> =
        events.iter().filter_map(|(user_id, e)| Some((user_id.as_str(), e.payload.workout_id()?))).collect();
    ids.extend(also.iter().copied());
    ids.into_iter().map(|(user_id, workout_id)| (user_id.to_string(), workout_id.to_string())).collect()
}

/// What the folds of `days` read (split per day by `inputs_by_day`): the days' own
/// events, plus every event of the workouts that appear on them or in `workouts`, each
/// with its user, in any order.
pub(crate) async fn fold_inputs<B: Backend>(
    conn: &mut B::Conn,
    days: &[UserDay<'_>],
    workouts: &[(&str, &str)],
) -> StoreResult<Vec<(String, StoredEvent)>> {
    if days.is_empty() {
        return Ok(Vec::new());
    }
    let events = B::day_events(conn, days).await?;
    with_related_workouts::<B>(conn, events, workouts).await
}

/// `events`, plus every other event of the workouts among them or in `workouts`.
pub(crate) async fn with_related_workouts<B: Backend>(
    conn: &mut B::Conn,
    mut events: Vec<(String, StoredEvent)>,
    workouts: &[(&str, &str)],
) -> StoreResult<Vec<(String, StoredEvent)>> {
    let workouts = related_workouts(&events, workouts);
    if workouts.is_empty() {
        return Ok(events);
    }
    let known: HashSet<i64> = events.iter().map(|(_, e)| e.seq).collect();
    for event in B::workout_events(conn, &workouts).await? {
        if !known.contains(&event.1.seq) {
            events.push(event);
        }
    }
    Ok(events)
}

/// One day's fold input.
pub(crate) async fn fold_input<B: Backend>(
    conn: &mut B::Conn,
    user_id: &str,
    day: NaiveDate,
) -> StoreResult<Vec<StoredEvent>> {
    let events = fold_inputs::<B>(conn, &[(user_id, day)], &[]).await?;
    Ok(inputs_by_day(&[(user_id, day)], events).pop().map(|(_, input)| input).unwrap_or_default())
}

/// Folds `days` from their stored events and stores, under new positions, the ones that
/// changed. Returns the changed entries.
pub(crate) async fn refold_days<B: Backend>(
    tx: &mut B::Conn,
    days: &[UserDay<'_>],
    rule: &VersionedRule,
    now: DateTime<Utc>,
) -> StoreResult<Vec<StoredEntry>> {
    let events = fold_inputs::<B>(tx, days, &[]).await?;
    refold_from::<B>(tx, days, days, events, rule, now).await
}

/// Stores days folded before the transaction (see `Prefetched`). The fold is used only if
/// it was folded under `rule` (the one in force now), none of the days' users has a newer
/// event now and no entry of the span has changed since; else the days are read and folded
/// again. That is enough because events are never
/// changed or deleted, a user's events take their `seq`s in commit order (every append holds
/// its users' write lock from insert to commit, as the transaction here does now), and every
/// write of an entry takes a new feed position.
pub(crate) async fn refold_prefetched<B: Backend>(
    tx: &mut B::Conn,
    days: &[UserDay<'_>],
    prefetched: Prefetched,
    rule: &VersionedRule,
    now: DateTime<Utc>,
) -> StoreResult<Vec<StoredEntry>> {
    let users = distinct_users(days.iter().map(|(user_id, _)| *user_id));
    if prefetched.rule_version == rule.version
        && B::newest_seqs(tx, &users).await? == prefetched.newest
        && !B::entries_changed_after(tx, &prefetched.span, prefetched.head).await?
    {
        store_changed::<B>(tx, prefetched.changed, rule.version, now).await
    } else {
        refold_days::<B>(tx, days, rule, now).await
    }
}

/// Like `refold_days`, with the days' fold inputs (as `fold_inputs` returns them) given, and
/// the days among them that may have an entry stored (the others have none).
async fn refold_from<B: Backend>(
    tx: &mut B::Conn,
    days: &[UserDay<'_>],
    with_entries: &[UserDay<'_>],
    events: Vec<(String, StoredEvent)>,
    rule: &VersionedRule,
    now: DateTime<Utc>,
) -> StoreResult<Vec<StoredEntry>> {
    if days.is_empty() {
        return Ok(Vec::new());
    }
    let stored = if with_entries.is_empty() { Vec::new() } else { B::stored_bodies(tx, with_entries).await? };
    store_changed::<B>(tx, changed_days(days, events, &stored, &rule.rule), rule.version, now).await
}

/// The days among `days` with events whose fold of `events` (as `fold_inputs` returns them)
/// differs from its stored body in `stored`.
pub(crate) fn changed_days(
    days: &[UserDay<'_>],
    events: Vec<(String, StoredEvent)>,
    stored: &[BodyRow],
    rule: &PriorityRule,
) -> Vec<ChangedDay> {
    // Serialization is canonical, so equal JSON text tells an unchanged day without parsing
    // what is stored; only a body whose text differs is parsed, in case an earlier
    // serialization (with `null`s, say) wrote the same day.
    let stored: HashMap<UserDay, &str> =
        stored.iter().map(|row| ((row.user_id.as_str(), row.day.0), row.body.as_str())).collect();
    let mut changed = Vec::new();
    for ((user_id, day), input) in inputs_by_day(days, events) {
        if !input.iter().any(|e| e.day == Some(day)) {
            continue;
        }
        let folded = fold(day, &input, rule);
        let body = serde_json::to_string(&folded).expect("days serialize");
        let stored = stored.get(&(user_id, day));
        let differs = match stored {
            None => true,
            Some(&text) if text == body => false,
            Some(&text) => serde_json::from_str::<Day>(text).map_or(true, |stored| stored != folded),
        };
        if differs {
            changed.push(ChangedDay { user_id: user_id.to_string(), day, folded, body, stored: stored.is_some() });
        }
    }
    changed
}

/// Stores `changed`, folded under rule `rule_version`, under new feed positions, in order.
/// Returns the stored entries.
async fn store_changed<B: Backend>(
    tx: &mut B::Conn,
    changed: Vec<ChangedDay>,
    rule_version: i64,
    now: DateTime<Utc>,
) -> StoreResult<Vec<StoredEntry>> {
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let last = B::take_positions(tx, changed.len() as i64).await?;
    let first = last - changed.len() as i64 + 1;
    // New days are inserted apart: an upsert's conflict check made storing a thousand new
    // entries take 5.7 ms on PostgreSQL, against 3.3 ms for a plain insert.
    let (mut new, mut replacing) = (Vec::new(), Vec::new());
    for (i, ChangedDay { user_id, day, folded, body, stored }) in changed.into_iter().enumerate() {
        let position = first + i as i64;
        let entry = StoredEntry { user_id, day, position, updated_at: now, body: folded, rule_version };
        if stored { &mut replacing } else { &mut new }.push((entry, body));
    }
    if !new.is_empty() {
        B::insert_entries(tx, &new).await?;
    }
    if !replacing.is_empty() {
        B::upsert_entries(tx, &replacing).await?;
    }
    let mut entries: Vec<StoredEntry> = new.into_iter().chain(replacing).map(|(entry, _)| entry).collect();
    entries.sort_by_key(|entry| entry.position);
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::event::StepsReport;
    use crate::domain::Source;

    #[test]
    fn a_day_stored_in_an_earlier_serialization_is_unchanged_unless_its_values_differ() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        let steps = StoredEvent {
            seq: 1,
            event_id: Uuid::new_v4(),
            day: Some(day),
            source: Source::Healthkit,
            observed_at: at,
            recorded_at: at,
            actor: "device:d1".into(),
            payload: Payload::Steps(StepsReport { total_steps: 8_432, source_devices: vec![] }),
        };
        let (days, events) = ([("u1", day)], vec![("u1".to_string(), steps)]);
        let rule = PriorityRule::default();
        let body = changed_days(&days, events.clone(), &[], &rule).pop().unwrap().body;
        let stored_as = |body: String| [BodyRow { user_id: "u1".to_string(), day: columns::Day(day), body }];

        let with_nulls = body.replacen('{', r#"{"weight_kg":null,"notes":null,"#, 1);
        assert!(changed_days(&days, events.clone(), &stored_as(with_nulls), &rule).is_empty());
        let other_value = body.replace(r#""steps":8432"#, r#""steps":1"#);
        let changed = changed_days(&days, events, &stored_as(other_value), &rule);
        assert_eq!((changed.len(), changed[0].stored), (1, true));
    }
}
