//! Rows as both backends store them, and how they become domain values. Columns whose
//! type differs between the backends are read as `columns` types, so one reading of each
//! row serves both.

use chrono::NaiveDate;
use sqlx::{ColumnIndex, Decode, Row, Type};
use uuid::Uuid;

use super::columns::{Day, EventId, Timestamp};
use super::{StoreError, StoreResult, StoredEntry, TokenOwner};
use crate::domain::event::{EventKind, Payload, StoredEvent};
use crate::domain::Source;

/// The columns `user_event_from_row` reads, in its order: it reads them by position (by
/// name, sqlx hashed each column's name for every row of a rebuild).
pub(crate) const EVENT_COLUMNS: &str =
    "user_id, seq, event_id, day, kind, source, observed_at, recorded_at, actor, payload";

/// The columns of an `EntryRow`.
pub(crate) const ENTRY_COLUMNS: &str = "user_id, day, position, updated_at, body, rule_version";

/// An entries row (`ENTRY_COLUMNS`), as read.
#[derive(Debug, sqlx::FromRow)]
pub struct EntryRow {
    pub user_id: String,
    pub day: Day,
    pub position: i64,
    pub updated_at: Timestamp,
    pub body: String,
    pub rule_version: i64,
}

impl EntryRow {
    pub(crate) fn into_entry(self) -> StoreResult<StoredEntry> {
        Ok(StoredEntry {
            day: self.day.0,
            updated_at: self.updated_at.0,
            body: serde_json::from_str(&self.body).map_err(|e| StoreError::Corrupt(format!("entry: {e}")))?,
            user_id: self.user_id,
            position: self.position,
            rule_version: self.rule_version,
        })
    }

    /// The entry, or `None` (logged) when its body cannot be read: one bad row (written by
    /// a release that let a sum overflow, say) must never stop the feed for everyone after
    /// it. `verify` lists such a day and `rebuild` repairs it.
    pub(crate) fn into_readable_entry(self) -> Option<StoredEntry> {
        let (user_id, day, position) = (self.user_id.clone(), self.day.0, self.position);
        match self.into_entry() {
            Ok(entry) => Some(entry),
            Err(error) => {
                tracing::error!(%user_id, %day, position, %error, "unreadable entry skipped by the feed; run `coachfit verify`");
                None
            }
        }
    }
}

/// A stored version of the priority rule.
#[derive(sqlx::FromRow)]
pub struct RuleRow {
    pub version: i64,
    pub rule: String,
    pub set_at: Timestamp,
    pub set_by: String,
    pub applied_at: Option<Timestamp>,
}

/// A stored body of an entry, by its user and day.
#[derive(sqlx::FromRow)]
pub struct BodyRow {
    pub user_id: String,
    pub day: Day,
    pub body: String,
}

/// A tokens row of a live token.
#[derive(sqlx::FromRow)]
pub struct TokenRow {
    pub token_hash: String,
    pub role: String,
    pub subject_id: String,
    pub device_id: Option<String>,
}

impl TokenRow {
    pub(crate) fn into_owner(self) -> StoreResult<(String, TokenOwner)> {
        let owner = match self.role.as_str() {
            "device" => TokenOwner::Device { user_id: self.subject_id, device_id: self.device_id.unwrap_or_default() },
            "coach" => TokenOwner::Coach { coach_id: self.subject_id },
            other => return Err(StoreError::Corrupt(format!("token role {other}"))),
        };
        Ok((self.token_hash, owner))
    }
}

/// An events row's columns, as read from a row (`user_event_from_row`) or from the JSON
/// document of a day's events (`sqlite::span_events`).
pub(crate) struct EventColumns<'a> {
    pub seq: i64,
    pub event_id: Uuid,
    pub day: Option<NaiveDate>,
    pub kind: &'a str,
    pub source: &'a str,
    pub observed_at: Timestamp,
    pub recorded_at: Timestamp,
    pub actor: String,
    /// The payload's JSON text, read once its kind is known (`Payload::from_json`).
    pub payload: &'a str,
}

impl EventColumns<'_> {
    pub(crate) fn into_event(self) -> StoreResult<StoredEvent> {
        let (kind, source) = (self.kind, self.source);
        let kind = EventKind::parse(kind).ok_or_else(|| StoreError::Corrupt(format!("kind {kind}")))?;
        let payload =
            Payload::from_json(kind, self.payload).map_err(|e| StoreError::Corrupt(format!("payload: {e}")))?;
        Ok(StoredEvent {
            seq: self.seq,
            event_id: self.event_id,
            day: self.day,
            source: Source::parse(source).ok_or_else(|| StoreError::Corrupt(format!("source {source}")))?,
            observed_at: self.observed_at.0,
            recorded_at: self.recorded_at.0,
            actor: self.actor,
            payload,
        })
    }
}

/// A row of `EVENT_COLUMNS` (of either backend): an event and its user.
pub(crate) fn user_event_from_row<'r, R>(row: &'r R) -> StoreResult<(String, StoredEvent)>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    Timestamp: Decode<'r, R::Database> + Type<R::Database>,
    Day: Decode<'r, R::Database> + Type<R::Database>,
    EventId: Decode<'r, R::Database> + Type<R::Database>,
{
    let event = EventColumns {
        seq: row.try_get(1)?,
        event_id: row.try_get::<EventId, _>(2)?.0,
        day: row.try_get::<Option<Day>, _>(3)?.map(|day| day.0),
        kind: row.try_get(4)?,
        source: row.try_get(5)?,
        observed_at: row.try_get(6)?,
        recorded_at: row.try_get(7)?,
        actor: row.try_get(8)?,
        payload: row.try_get(9)?,
    };
    Ok((row.try_get(0)?, event.into_event()?))
}

/// The events of `rows` (of `EVENT_COLUMNS`), in order.
pub(crate) fn user_events_from_rows<'r, R>(rows: &'r [R]) -> StoreResult<Vec<(String, StoredEvent)>>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    Timestamp: Decode<'r, R::Database> + Type<R::Database>,
    Day: Decode<'r, R::Database> + Type<R::Database>,
    EventId: Decode<'r, R::Database> + Type<R::Database>,
{
    // Sized first: collecting `Result`s grows the vector, copying every event again.
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        events.push(user_event_from_row(row)?);
    }
    Ok(events)
}

/// A row of `EVENT_COLUMNS, dedupe_key, content_hash`, as `Backend::events_after` selects
/// them.
pub(crate) fn stored_hash_from_row<'r, R>(row: &'r R) -> StoreResult<super::rehash::StoredHash>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    Timestamp: Decode<'r, R::Database> + Type<R::Database>,
    Day: Decode<'r, R::Database> + Type<R::Database>,
    EventId: Decode<'r, R::Database> + Type<R::Database>,
{
    let (user_id, event) = user_event_from_row(row)?;
    Ok(super::rehash::StoredHash { user_id, event, dedupe_key: row.try_get(10)?, content_hash: row.try_get(11)? })
}

/// Rows of a `DaySpan`: after the user-day `($1, $2)`, up to and including `($3, $4)`. The
/// bounds on `user_id` alone say nothing the row comparisons do not, but PostgreSQL
/// estimates a row comparison as a third of the table (and so planned a parallel scan,
/// 9 ms, for a check of a thousand entries that takes 1 ms along the primary key).
pub(crate) const IN_SPAN: &str =
    "user_id >= $1 AND user_id <= $3 AND (user_id, day) > ($1, $2) AND (user_id, day) <= ($3, $4)";

/// Appends the condition that selects `clients` from `users` as `u`; `users_in` appends
/// the backend's list test (` IN (…)`, ` = ANY(…)`).
pub(crate) fn push_clients<'a, DB: sqlx::Database>(
    query: &mut sqlx::QueryBuilder<'a, DB>,
    clients: super::roster::Clients<'a>,
    users_in: impl FnOnce(&mut sqlx::QueryBuilder<'a, DB>, &'a [String]),
) where
    &'a str: sqlx::Encode<'a, DB> + Type<DB>,
{
    match clients {
        super::roster::Clients::OfCoach(coach_id) => {
            query.push("u.coach_id = ").push_bind(coach_id);
        }
        super::roster::Clients::Named(users) => {
            query.push("u.user_id");
            users_in(query, users);
        }
    }
}

/// How a feed table tells whose coach a row's user has, for `FeedFilter::Coach`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CoachOf {
    /// Through `users` (entries, clients: the user exists).
    User,
    /// Its own `coach_id` column (removals: the user is gone).
    Column,
}

/// Appends the condition that selects the users of `filter` (columns unqualified), as
/// `push_clients` does.
pub(crate) fn push_feed_filter<'a, DB: sqlx::Database>(
    query: &mut sqlx::QueryBuilder<'a, DB>,
    filter: &'a super::FeedFilter,
    coach_of: CoachOf,
    users_in: impl FnOnce(&mut sqlx::QueryBuilder<'a, DB>, &'a [String]),
) where
    &'a str: sqlx::Encode<'a, DB> + Type<DB>,
{
    match (filter, coach_of) {
        (super::FeedFilter::All, _) => {}
        (super::FeedFilter::Users(users), _) => {
            query.push(" AND user_id");
            users_in(query, users);
        }
        (super::FeedFilter::Coach(coach_id), CoachOf::User) => {
            query
                .push(" AND user_id IN (SELECT user_id FROM users WHERE coach_id = ")
                .push_bind(coach_id.as_str())
                .push(")");
        }
        (super::FeedFilter::Coach(coach_id), CoachOf::Column) => {
            query.push(" AND coach_id = ").push_bind(coach_id.as_str());
        }
    }
}

/// A `(user_id, day)` row as read, as the store passes it on.
pub(crate) fn user_day((user_id, day): (String, Day)) -> (String, NaiveDate) {
    (user_id, day.0)
}

/// `SELECT user_id, day FROM events` after the user-day `after` (of `user_id` only, if
/// given), then `order`: a walk along `events_by_day` that reads only the index, for a
/// rebuild's chunk ends (counting each day's events on the way took twice as long).
pub(crate) fn event_days_after<'a, DB: sqlx::Database>(
    after: &(String, NaiveDate),
    user_id: Option<&str>,
    order: &str,
) -> sqlx::QueryBuilder<'a, DB>
where
    String: 'a + sqlx::Encode<'a, DB> + Type<DB>,
    Day: 'a + sqlx::Encode<'a, DB> + Type<DB>,
{
    let mut query = sqlx::QueryBuilder::<DB>::new("SELECT user_id, day FROM events WHERE day IS NOT NULL");
    // `user_id >=` as well, for the reason `IN_SPAN` gives.
    query.push(" AND user_id >= ").push_bind(after.0.clone());
    query.push(" AND (user_id, day) > (").push_bind(after.0.clone()).push(", ").push_bind(Day(after.1)).push(")");
    if let Some(user_id) = user_id {
        query.push(" AND user_id = ").push_bind(user_id.to_string());
    }
    query.push(order);
    query
}

impl SyncRow {
    pub(crate) fn into_synced(self) -> StoreResult<super::Synced> {
        Ok(super::Synced {
            events: u64::try_from(self.events).map_err(|_| StoreError::Corrupt(format!("count {}", self.events)))?,
            newest_observed_at: self.newest_observed_at.0,
            last_stored_at: self.last_stored_at.0,
            last_day: self.last_day.map(|day| day.0),
            actor: self.actor,
            kind: self.kind,
        })
    }
}

impl DeviceRow {
    pub(crate) fn into_device(self) -> super::Device {
        super::Device {
            paired_at: self.created_at.0,
            revoked: self.revoked_at.is_some(),
            device_id: self.device_id,
            name: self.device_name,
        }
    }
}

/// A client of a coach, as the roster lists them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClientRow {
    pub user_id: String,
    pub coach_id: String,
    pub display_name: Option<String>,
    pub created_at: Timestamp,
    pub roster_position: i64,
}

/// A device token of a client (live or revoked).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceRow {
    pub user_id: String,
    pub device_id: String,
    pub device_name: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// What one author has stored of one kind for a user (`sync_status`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SyncRow {
    pub user_id: String,
    /// `device:<id>`, `coach:<id>` or `admin`.
    pub actor: String,
    pub kind: String,
    pub events: i64,
    pub newest_observed_at: Timestamp,
    pub last_stored_at: Timestamp,
    pub last_day: Option<Day>,
}

/// A user's removal from the feed (`removals`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RemovalRow {
    pub position: i64,
    pub user_id: String,
    pub coach_id: String,
    pub removed_at: Timestamp,
}

impl RemovalRow {
    pub fn into_removal(self) -> super::Removal {
        super::Removal {
            removed_at: self.removed_at.0,
            user_id: self.user_id,
            coach_id: self.coach_id,
            position: self.position,
        }
    }
}

/// An `access_log` row.
#[derive(Debug, sqlx::FromRow)]
pub struct AccessRow {
    pub seq: i64,
    pub user_id: String,
    pub accessor: String,
    pub rpc: String,
    pub detail: String,
    pub peer: String,
    pub accessed_at: Timestamp,
}

impl AccessRow {
    pub fn into_logged(self) -> super::LoggedAccess {
        super::LoggedAccess {
            seq: self.seq,
            access: super::Access {
                at: self.accessed_at.0,
                user_id: self.user_id,
                accessor: self.accessor,
                rpc: self.rpc,
                detail: self.detail,
                peer: self.peer,
            },
        }
    }
}
