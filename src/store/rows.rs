//! Rows as both backends store them, and how they become domain values. Both schemas use
//! the same portable column types (TEXT ids and days, BIGINT microseconds, JSON text), so
//! one reading of each row serves both.

use std::borrow::Cow;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{ColumnIndex, Decode, Row, Type};
use uuid::Uuid;

use super::{StoreError, StoreResult, StoredEntry, TokenOwner};
use crate::domain::event::{EventKind, Payload, StoredEvent};
use crate::domain::Source;

/// The columns `user_event_from_row` reads, in its order: it reads them by position (by
/// name, sqlx hashed each column's name for every row of a rebuild).
pub(crate) const EVENT_COLUMNS: &str =
    "user_id, seq, event_id, day, kind, source, observed_at_us, recorded_at_us, actor, payload";

/// The columns of an `EntryRow`.
pub(crate) const ENTRY_COLUMNS: &str = "user_id, day, position, updated_at_us, body, rule_version";

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| StoreError::Corrupt(format!("timestamp {us}")))
}

pub(crate) fn parse_day(text: &str) -> StoreResult<NaiveDate> {
    NaiveDate::from_str(text).map_err(|_| StoreError::Corrupt(format!("day {text}")))
}

pub(crate) fn parse_uuid(text: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt(format!("uuid {text}")))
}

/// An entries row (`ENTRY_COLUMNS`), as read.
#[derive(Debug, sqlx::FromRow)]
pub struct EntryRow {
    pub user_id: String,
    pub day: String,
    pub position: i64,
    pub updated_at_us: i64,
    pub body: String,
    pub rule_version: i64,
}

impl EntryRow {
    pub(crate) fn into_entry(self) -> StoreResult<StoredEntry> {
        Ok(StoredEntry {
            day: parse_day(&self.day)?,
            updated_at: from_micros(self.updated_at_us)?,
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
        let (user_id, day, position) = (self.user_id.clone(), self.day.clone(), self.position);
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
    pub set_at_us: i64,
    pub set_by: String,
    pub applied_at_us: Option<i64>,
}

/// A stored body of an entry, by its user and day.
#[derive(sqlx::FromRow)]
pub struct BodyRow {
    pub user_id: String,
    pub day: String,
    pub body: String,
}

impl BodyRow {
    pub(crate) fn into_body(self) -> StoreResult<(String, NaiveDate, String)> {
        Ok((self.user_id, parse_day(&self.day)?, self.body))
    }
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

/// An events row's columns, as a row or as a JSON object (`sqlite::span_events`)
/// carries them.
#[derive(serde::Deserialize)]
pub(crate) struct EventColumns<'a> {
    pub seq: i64,
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub day: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub source: Cow<'a, str>,
    pub observed_at_us: i64,
    pub recorded_at_us: i64,
    pub actor: String,
    #[serde(borrow)]
    pub payload: PayloadJson<'a>,
}

/// A stored payload's JSON text, borrowed from a row's column or from the JSON document
/// around it, read once its kind is known (`Payload::from_json`).
pub(crate) struct PayloadJson<'a>(pub &'a str);

impl<'de: 'a, 'a> serde::Deserialize<'de> for PayloadJson<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: &'a serde_json::value::RawValue = serde::Deserialize::deserialize(deserializer)?;
        Ok(PayloadJson(raw.get()))
    }
}

impl EventColumns<'_> {
    pub(crate) fn into_event(self) -> StoreResult<StoredEvent> {
        let (kind, source) = (self.kind, self.source);
        let kind = EventKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("kind {kind}")))?;
        let payload =
            Payload::from_json(kind, self.payload.0).map_err(|e| StoreError::Corrupt(format!("payload: {e}")))?;
        Ok(StoredEvent {
            seq: self.seq,
            event_id: parse_uuid(&self.event_id)?,
            day: self.day.map(|day| parse_day(&day)).transpose()?,
            source: Source::parse(&source).ok_or_else(|| StoreError::Corrupt(format!("source {source}")))?,
            observed_at: from_micros(self.observed_at_us)?,
            recorded_at: from_micros(self.recorded_at_us)?,
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
{
    let event = EventColumns {
        seq: row.try_get(1)?,
        event_id: Cow::Borrowed(row.try_get(2)?),
        day: row.try_get::<Option<&str>, _>(3)?.map(Cow::Borrowed),
        kind: Cow::Borrowed(row.try_get(4)?),
        source: Cow::Borrowed(row.try_get(5)?),
        observed_at_us: row.try_get(6)?,
        recorded_at_us: row.try_get(7)?,
        actor: row.try_get(8)?,
        payload: PayloadJson(row.try_get(9)?),
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

/// `SELECT user_id, day FROM events` after the user-day `after` (of `user_id` only, if
/// given), then `order`: a walk along `events_by_day` that reads only the index, for a
/// rebuild's chunk ends (counting each day's events on the way took twice as long).
pub(crate) fn event_days_after<'a, DB: sqlx::Database>(
    after: &(String, String),
    user_id: Option<&str>,
    order: &str,
) -> sqlx::QueryBuilder<'a, DB>
where
    String: 'a + sqlx::Encode<'a, DB> + Type<DB>,
{
    let mut query = sqlx::QueryBuilder::<DB>::new("SELECT user_id, day FROM events WHERE day IS NOT NULL");
    // `user_id >=` as well, for the reason `IN_SPAN` gives.
    query.push(" AND user_id >= ").push_bind(after.0.clone());
    query.push(" AND (user_id, day) > (").push_bind(after.0.clone()).push(", ").push_bind(after.1.clone()).push(")");
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
            newest_observed_at: from_micros(self.newest_observed_at_us)?,
            last_stored_at: from_micros(self.last_stored_at_us)?,
            last_day: self.last_day.as_deref().map(parse_day).transpose()?,
            actor: self.actor,
            kind: self.kind,
        })
    }
}

impl DeviceRow {
    pub(crate) fn into_device(self) -> StoreResult<super::Device> {
        Ok(super::Device {
            paired_at: from_micros(self.created_at_us)?,
            revoked: self.revoked_at_us.is_some(),
            device_id: self.device_id,
            name: self.device_name,
        })
    }
}

/// A client of a coach, as the roster lists them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ClientRow {
    pub user_id: String,
    pub coach_id: String,
    pub display_name: Option<String>,
    pub created_at_us: i64,
    pub roster_position: i64,
}

/// A device token of a client (live or revoked).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceRow {
    pub user_id: String,
    pub device_id: String,
    pub device_name: String,
    pub created_at_us: i64,
    pub revoked_at_us: Option<i64>,
}

/// What one author has stored of one kind for a user (`sync_status`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SyncRow {
    pub user_id: String,
    /// `device:<id>`, `coach:<id>` or `admin`.
    pub actor: String,
    pub kind: String,
    pub events: i64,
    pub newest_observed_at_us: i64,
    pub last_stored_at_us: i64,
    pub last_day: Option<String>,
}

/// A user's removal from the feed (`removals`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RemovalRow {
    pub position: i64,
    pub user_id: String,
    pub coach_id: String,
    pub removed_at_us: i64,
}

impl RemovalRow {
    pub fn into_removal(self) -> StoreResult<super::Removal> {
        Ok(super::Removal {
            removed_at: from_micros(self.removed_at_us)?,
            user_id: self.user_id,
            coach_id: self.coach_id,
            position: self.position,
        })
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
    pub at_us: i64,
}

impl AccessRow {
    pub fn into_logged(self) -> StoreResult<super::LoggedAccess> {
        Ok(super::LoggedAccess {
            seq: self.seq,
            access: super::Access {
                at: from_micros(self.at_us)?,
                user_id: self.user_id,
                accessor: self.accessor,
                rpc: self.rpc,
                detail: self.detail,
                peer: self.peer,
            },
        })
    }
}
