//! `coachfit import coachfit-legacy`: the CoachFit web app's PostgreSQL database (its
//! Prisma schema) into this service: coaches and clients under their own ids, each
//! client's `Entry`, `SleepRecord` and `Workout` rows as the reports the app would have
//! sent (`mapping`), then every imported Entry row compared with the day the service
//! shows (`reconcile`). Runs again as often as wanted: what came in before is a duplicate,
//! a changed row comes in anew (README: Importing history).

mod mapping;
mod people;
mod reconcile;
pub mod report;
mod rows;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Context as _;
use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use crate::accounts::{hash_token, new_token};
use crate::api::ingest::item_results;
use crate::api::items::{self, CheckedItem};
use crate::domain::event::{Payload, StoredEvent};
use crate::domain::fold::Day;
use crate::domain::reason;
use crate::domain::validate::Context;
use crate::store::{ImportedClient, Store};
use mapping::{Held, Item, Mapped, ACTOR};
use people::Client;
use report::{Cause, DayWithoutRow, Difference, Events, Listener, NewCoach, Reconciliation, Skipped};
use rows::EntryRow;
pub use rows::Legacy;

/// The tables the import reads, whose rows it counts.
const TABLES: [&str; 6] = ["User", "Cohort", "CohortMembership", "Entry", "SleepRecord", "Workout"];

/// Reports per append: a few months of a client's history per transaction.
const APPEND_CHUNK: usize = 500;

/// A page of a client's events read back.
const EVENTS_PAGE: u32 = 1000;

/// Events written before the planner's statistics are first refreshed; then each time the
/// events written have doubled since (a PostgreSQL database that grew from empty without
/// them read each day by scanning its tables: a 200-client import took 71 s, not 19).
const REFRESH_STATISTICS_AFTER: u64 = 10_000;

/// Imports the legacy database into `store`, days in `zone` where a time must be placed
/// on one (workouts, measurements); `listener` is told what happens as it does. Returns
/// the reconciliation's counts.
pub async fn import<S: Store>(
    legacy: &mut Legacy,
    store: &S,
    zone: Tz,
    listener: &mut impl Listener,
) -> anyhow::Result<Reconciliation> {
    let mut report = Reconciliation::default();
    for table in TABLES {
        report.rows_read.insert(table, legacy.count(table).await?);
    }
    let users = legacy.users().await?;
    let people = people::place(&users, &legacy.memberships().await?);
    for coach in &people.coaches {
        let token = new_token();
        if store.import_coach(&coach.id, &coach.name, &hash_token(&token)).await? {
            report.coaches.added += 1;
            let added = NewCoach { coach_id: coach.id.clone(), name: coach.name.clone(), coach_token: token };
            listener.coach_added(&added).context("printing a new coach's token (rotate it: it was not shown)")?;
        } else {
            report.coaches.existing += 1;
        }
    }
    let mut refresh_at = REFRESH_STATISTICS_AFTER;
    for client in &people.clients {
        import_client(legacy, store, zone, client, &mut report, listener).await?;
        if report.events.written >= refresh_at {
            store.refresh_statistics().await?;
            refresh_at = report.events.written * 2;
        }
    }
    for (user_id, cause) in &people.left_out {
        leave_out(legacy, user_id, *cause, &mut report, listener).await?;
    }
    // A coach's own rows stay out too (a coach who is also a client brought theirs in).
    for coach in people.coaches.iter().filter(|coach| !people.clients.iter().any(|c| c.id == coach.id)) {
        if legacy.row_counts(&coach.id).await?.iter().any(|rows| *rows > 0) {
            leave_out(legacy, &coach.id, Cause::NotAClient, &mut report, listener).await?;
        }
    }
    Ok(report)
}

/// Lists a user who does not come in as a client, with the rows that stay out with them.
async fn leave_out(
    legacy: &mut Legacy,
    user_id: &str,
    cause: Cause,
    report: &mut Reconciliation,
    listener: &mut impl Listener,
) -> anyhow::Result<()> {
    let [entries, sleeps, workouts] = legacy.row_counts(user_id).await?;
    let detail =
        format!("not a client here: their {entries} Entry, {sleeps} SleepRecord and {workouts} Workout rows stay out");
    report.skip(Skipped { table: "User", id: user_id.to_string(), column: None, cause, detail }, listener)?;
    Ok(())
}

async fn import_client<S: Store>(
    legacy: &mut Legacy,
    store: &S,
    zone: Tz,
    client: &Client,
    report: &mut Reconciliation,
    listener: &mut impl Listener,
) -> anyhow::Result<()> {
    let user = |cause, detail| Skipped { table: "User", id: client.id.clone(), column: None, cause, detail };
    match store.import_client(&client.id, &client.coach_id, client.name.as_deref()).await? {
        Some(ImportedClient::Added) => report.clients.added += 1,
        Some(ImportedClient::Existing { coach_id }) => {
            report.clients.existing += 1;
            if coach_id != client.coach_id {
                let detail = format!(
                    "the service has them under coach {coach_id}, the legacy database under {}: not moved",
                    client.coach_id
                );
                report.skip(user(Cause::OtherCoach, detail), listener)?;
            }
        }
        Some(ImportedClient::Erased) => {
            let detail = "erased from the service: nothing of theirs comes in again".to_string();
            report.skip(user(Cause::Erased, detail), listener)?;
            return Ok(());
        }
        None => anyhow::bail!("the coach {} of client {} is not in the service", client.coach_id, client.id),
    }
    let before = InService::read(store, &client.id).await?;
    let entries = legacy.entries(&client.id).await?;
    let ctx = Context { now: Utc::now(), zone: Some(zone) };
    let mut mapped = Mapped::default();
    let nothing_held = Held::new();
    for row in &entries {
        mapped.extend(mapping::entry(ctx, zone, row, before.held.get(&row.date).unwrap_or(&nothing_held)));
    }
    for row in &legacy.sleep_records(&client.id).await? {
        mapped.extend(mapping::sleep(ctx, row));
    }
    let workouts = legacy.workouts(&client.id).await?;
    let kept = mapping::kept_workouts(&workouts, &mut mapped);
    for row in &kept {
        mapped.extend(mapping::workout(ctx, row));
    }
    let kept: BTreeSet<&str> = kept.iter().map(|row| row.id.as_str()).collect();
    for gone in before.imported_workouts.iter().filter(|id| !kept.contains(id.as_str())) {
        mapped.items.push(mapping::workout_gone(ctx, gone));
        report.events.workouts_withdrawn += 1;
    }
    let Mapped { items, mut skipped } = mapped;
    write(store, &client.id, items, &mut report.events, &mut skipped).await?;
    for difference in reconcile(store, &client.id, &entries, &skipped).await? {
        report.differ(difference, listener)?;
    }
    let dates: BTreeSet<NaiveDate> = entries.iter().map(|row| row.date).collect();
    for date in before.imported_days.iter().filter(|day| !dates.contains(day)) {
        report.lack_row(DayWithoutRow { user_id: client.id.clone(), date: *date }, listener)?;
    }
    for skip in skipped {
        report.skip(skip, listener)?;
    }
    Ok(())
}

/// What the service had of a client before this run.
#[derive(Default)]
struct InService {
    /// Workouts the import brought in and has not withdrawn.
    imported_workouts: BTreeSet<String>,
    /// Days the import brought an Entry row's values to.
    imported_days: BTreeSet<NaiveDate>,
    /// Per day, the fields other authors reported, and who last did.
    held: BTreeMap<NaiveDate, Held>,
}

impl InService {
    async fn read<S: Store>(store: &S, user_id: &str) -> anyhow::Result<InService> {
        let (mut seen, mut after) = (InService::default(), 0);
        loop {
            let page = store.user_events(user_id, after, EVENTS_PAGE).await?;
            page.iter().for_each(|event| seen.add(event));
            match page.last() {
                Some(last) if page.len() == EVENTS_PAGE as usize => after = last.seq,
                _ => return Ok(seen),
            }
        }
    }

    fn add(&mut self, event: &StoredEvent) {
        let Some(day) = event.day else { return };
        let fields = match (&event.payload, event.actor == ACTOR) {
            (Payload::Workout(w), true) => {
                self.imported_workouts.insert(w.workout_id.clone());
                return;
            }
            // Deleted by anyone: nothing to withdraw.
            (Payload::WorkoutDeleted(d), _) => {
                self.imported_workouts.remove(&d.workout_id);
                return;
            }
            (Payload::Steps(_) | Payload::BodyMetric(_) | Payload::Manual(_), true) => {
                self.imported_days.insert(day);
                return;
            }
            (Payload::Steps(_), false) => vec![crate::domain::field::Field::Steps],
            (Payload::BodyMetric(m), false) => vec![m.metric.field()],
            (Payload::Manual(r), false) => r.set.iter().map(|v| v.field()).chain(r.clear.iter().copied()).collect(),
            _ => return,
        };
        let held = self.held.entry(day).or_default();
        for field in fields {
            held.insert(field, event.actor.clone());
        }
    }
}

/// Appends the items' reports as the client's, a chunk at a time; what the store or the
/// checks refused joins `skipped`.
async fn write<S: Store>(
    store: &S,
    user_id: &str,
    items: Vec<Item>,
    events: &mut Events,
    skipped: &mut Vec<Skipped>,
) -> anyhow::Result<()> {
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let (checked, origins): (Vec<CheckedItem>, Vec<_>) =
            items.by_ref().take(APPEND_CHUNK).map(|item| (item.checked, (item.table, item.id, item.columns))).unzip();
        let valid = items::valid_events(&checked);
        let outcomes = if valid.is_empty() { vec![] } else { store.append(user_id, ACTOR, valid).await? };
        let answer = item_results(checked, outcomes);
        events.written += u64::from(answer.accepted);
        events.already_there += u64::from(answer.duplicates);
        events.refused += u64::from(answer.rejected);
        for (result, (table, id, columns)) in answer.results.iter().zip(origins) {
            if result.violations.is_empty() {
                continue;
            }
            let reused = result.violations.iter().any(|v| v.reason == reason::IDEMPOTENCY_KEY_REUSED);
            let cause = if reused { Cause::KeyReused } else { Cause::Refused };
            let described: Vec<String> =
                result.violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect();
            let detail = described.join("; ");
            let columns: Vec<Option<&'static str>> = match columns.is_empty() {
                true => vec![None],
                false => columns.into_iter().map(Some).collect(),
            };
            for column in columns {
                skipped.push(Skipped { table, id: id.clone(), column, cause, detail: detail.clone() });
            }
        }
    }
    Ok(())
}

/// Each Entry row against the day the service shows.
async fn reconcile<S: Store>(
    store: &S,
    user_id: &str,
    entries: &[EntryRow],
    skipped: &[Skipped],
) -> anyhow::Result<Vec<Difference>> {
    let (Some(first), Some(last)) = (entries.iter().map(|e| e.date).min(), entries.iter().map(|e| e.date).max()) else {
        return Ok(vec![]);
    };
    let days = stored_days(store, user_id, first, last).await?;
    let mut differences = Vec::new();
    for row in entries {
        let day = days.get(&row.date);
        let differs = reconcile::compare(row, day);
        if differs.is_empty() {
            continue;
        }
        // Who reported the values shown, read only when `explain` needs them.
        let actors: HashMap<Uuid, String> = match differs.iter().any(|d| reconcile::needs_authors(row, d, skipped)) {
            true => store.fold_input(user_id, row.date).await?.into_iter().map(|e| (e.event_id, e.actor)).collect(),
            false => HashMap::new(),
        };
        differences.extend(differs.into_iter().map(|d| reconcile::explain(user_id, row, d, day, skipped, &actors)));
    }
    Ok(differences)
}

/// The user's days in `[first, last]`.
async fn stored_days<S: Store>(
    store: &S,
    user_id: &str,
    first: NaiveDate,
    last: NaiveDate,
) -> anyhow::Result<BTreeMap<NaiveDate, Day>> {
    const PAGE: u32 = 1000;
    let (mut days, mut after) = (BTreeMap::new(), None);
    loop {
        let page = store.list_entries(user_id, first, last, after, PAGE).await?;
        let full = page.len() == PAGE as usize;
        after = page.last().map(|entry| entry.day);
        days.extend(page.into_iter().map(|entry| (entry.day, entry.body)));
        if !full {
            return Ok(days);
        }
    }
}
