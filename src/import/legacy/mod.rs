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

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{NaiveDate, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use crate::accounts::{hash_token, new_token};
use crate::api::ingest::item_results;
use crate::api::items::{self, CheckedItem};
use crate::domain::fold::Day;
use crate::domain::validate::Context;
use crate::store::{ImportedClient, Store};
use mapping::{Item, Mapped, ACTOR};
use people::{Client, LeftOut};
use report::{Cause, Difference, Events, Reconciliation, Skipped};
use rows::EntryRow;
pub use rows::Legacy;

/// The tables the import reads, whose rows it counts.
const TABLES: [&str; 6] = ["User", "Cohort", "CohortMembership", "Entry", "SleepRecord", "Workout"];

/// Reports per append: a few months of a client's history per transaction.
const APPEND_CHUNK: usize = 500;

/// A coach the import added, with the coach's first token (shown only now).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewCoach {
    pub coach_id: String,
    pub name: String,
    pub coach_token: String,
}

/// Imports the legacy database into `store`, days in `zone` where a time must be placed
/// on one (workouts); `new_coach` is told of each coach added. Returns the reconciliation.
pub async fn import<S: Store>(
    legacy: &Legacy,
    store: &S,
    zone: Tz,
    mut new_coach: impl FnMut(NewCoach),
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
            new_coach(NewCoach { coach_id: coach.id.clone(), name: coach.name.clone(), coach_token: token });
        } else {
            report.coaches.existing += 1;
        }
    }
    for client in &people.clients {
        import_client(legacy, store, zone, client, &mut report).await?;
    }
    // Coaches' own rows, and everything of users who came in as nobody.
    let clients: HashSet<&str> = people.clients.iter().map(|c| c.id.as_str()).collect();
    let coaches_only = people.coaches.iter().filter(|c| !clients.contains(c.id.as_str()));
    let left_out = coaches_only.map(|c| (c.id.as_str(), LeftOut::NotAClient, true));
    let left_out = left_out.chain(people.left_out.iter().map(|(id, why)| (id.as_str(), *why, false)));
    for (user_id, why, is_coach) in left_out {
        let [entries, sleeps, workouts] = legacy.row_counts(user_id).await?;
        if is_coach && entries + sleeps + workouts == 0 {
            continue;
        }
        let cause = match why {
            LeftOut::NoCoach => Cause::NoCoach,
            LeftOut::NotAClient => Cause::NotAClient,
            LeftOut::InvalidId => Cause::InvalidId,
        };
        let detail = format!(
            "not a client here: their {entries} Entry, {sleeps} SleepRecord and {workouts} Workout rows stay out"
        );
        report.skipped.push(Skipped { table: "User", id: user_id.to_string(), column: None, cause, detail });
    }
    report.unexplained = report.differences.iter().filter(|d| d.cause.is_none()).count() as u64;
    Ok(report)
}

async fn import_client<S: Store>(
    legacy: &Legacy,
    store: &S,
    zone: Tz,
    client: &Client,
    report: &mut Reconciliation,
) -> anyhow::Result<()> {
    match store.import_client(&client.id, &client.coach_id, client.name.as_deref()).await? {
        Some(ImportedClient::Added) => report.clients.added += 1,
        Some(ImportedClient::Existing { coach_id }) => {
            report.clients.existing += 1;
            if coach_id != client.coach_id {
                let detail = format!(
                    "the service has them under coach {coach_id}, the legacy database under {}: not moved",
                    client.coach_id
                );
                let skip =
                    Skipped { table: "User", id: client.id.clone(), column: None, cause: Cause::OtherCoach, detail };
                report.skipped.push(skip);
            }
        }
        None => anyhow::bail!("the coach {} of client {} is not in the service", client.coach_id, client.id),
    }
    let entries = legacy.entries(&client.id).await?;
    let ctx = Context { now: Utc::now(), zone: Some(zone) };
    let mut mapped = Mapped::default();
    for row in &entries {
        mapped.extend(mapping::entry(ctx, zone, row));
    }
    for row in &legacy.sleep_records(&client.id).await? {
        mapped.extend(mapping::sleep(ctx, row));
    }
    mapped.extend(mapping::workouts(ctx, &legacy.workouts(&client.id).await?));
    let Mapped { items, mut skipped } = mapped;
    write(store, &client.id, items, &mut report.events, &mut skipped).await?;
    report.differences.extend(reconcile(store, &client.id, &entries, &skipped).await?);
    report.skipped.extend(skipped);
    Ok(())
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
            let described: Vec<String> =
                result.violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect();
            let detail = described.join("; ");
            let columns: Vec<Option<&'static str>> = match columns.is_empty() {
                true => vec![None],
                false => columns.into_iter().map(Some).collect(),
            };
            for column in columns {
                skipped.push(Skipped { table, id: id.clone(), column, cause: Cause::Refused, detail: detail.clone() });
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
        let events = store.fold_input(user_id, row.date).await?;
        let actors: HashMap<Uuid, String> = events.into_iter().map(|e| (e.event_id, e.actor)).collect();
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
