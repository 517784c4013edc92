//! Storage: the append-only events table, the read models folded from it, and the
//! principals behind tokens. `Store` is what the service calls; `SqlStore` implements it
//! once over a `Backend` (connections, transactions, statements), which `sqlite` and
//! `postgres` implement.

mod access;
mod backend;
pub mod columns;
#[cfg(test)]
mod conformance;
mod erasure;
mod group;
pub mod postgres;
mod projector;
mod rebuild;
mod rehash;
mod roster;
mod rows;
mod rules;
mod sql_store;
pub mod sqlite;

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::domain::event::{NewEvent, StoredEvent};
use crate::domain::fold::Day;
use crate::domain::priority::PriorityRule;

pub use projector::AppendOutcome;
pub use rules::{StoredRule, VersionedRule};
pub use sql_store::SqlStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The driver's error is in the message and deliberately not a `source`: with it, an
    // error chain printed whole (`{:#}`) said everything twice.
    /// The database cannot be reached or timed out; the caller may retry.
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// The store's writer or token lookups have stopped: the server is going away.
    #[error("the store is closed")]
    Closed,
    /// More writes are waiting than the writer may queue: this one was not taken.
    #[error("too many writes waiting")]
    Overloaded,
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// One failure of a read several callers shared (`api::token_lookups`).
    #[error(transparent)]
    Shared(std::sync::Arc<StoreError>),
    /// The write's user was erased after the call was authorized.
    #[error("the user was erased")]
    UserErased,
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> StoreError {
        StoreError::Database(err)
    }
}

impl StoreError {
    /// Classifies a driver error: connection trouble is `Unavailable`, the rest is a bug.
    pub fn from_sqlx(err: sqlx::Error) -> StoreError {
        match err {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                StoreError::Unavailable(err)
            }
            sqlx::Error::Database(ref db) if is_unavailable(db.as_ref()) => StoreError::Unavailable(err),
            sqlx::Error::Database(ref db) if is_user_erased(db.as_ref()) => StoreError::UserErased,
            other => StoreError::Database(other),
        }
    }
}

/// Database errors that mean "not reachable right now" rather than "this request is wrong".
fn is_unavailable(db: &dyn sqlx::error::DatabaseError) -> bool {
    match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        // Connection exceptions (08), insufficient resources (53), operator intervention such
        // as a terminated backend or a statement timeout (57), not accepting connections (55000).
        Some(pg) => {
            let code = pg.code();
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57") || code == "55000"
        }
        // SQLite: a busy or locked database.
        None => db.message().contains("database is locked"),
    }
}

/// The refusal of events whose user does not exist (migration 0008's trigger).
fn is_user_erased(db: &dyn sqlx::error::DatabaseError) -> bool {
    match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        Some(pg) => pg.code() == "CF001",
        None => db.message().contains("user erased"),
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Who a stored token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOwner {
    Device { user_id: String, device_id: String },
    Coach { coach_id: String },
}

/// What `Store::import_client` found: the client added, a user of that id already there
/// (with their coach, which may be another), or a user of that id erased before (who must
/// not come back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportedClient {
    Added,
    Existing { coach_id: String },
    Erased,
}

/// A device paired by redeeming a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paired {
    pub user_id: String,
    pub coach_id: String,
    pub device_id: String,
}

/// A client on a coach's roster.
#[derive(Debug, Clone, PartialEq)]
pub struct RosterClient {
    pub user_id: String,
    pub coach_id: String,
    /// The feed position of the client's latest roster change (0: none since it was added
    /// by a release without roster positions).
    pub position: i64,
    pub display_name: Option<String>,
    /// When the client was added (created, or their first code redeemed).
    pub added_at: DateTime<Utc>,
    pub devices: Vec<Device>,
    pub synced: Vec<Synced>,
}

/// A device paired to a client, live or revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub device_id: String,
    pub name: String,
    pub paired_at: DateTime<Utc>,
    pub revoked: bool,
}

/// What one author (`device:<id>`, `coach:<id>`, `admin`) stored of one event kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub actor: String,
    pub kind: String,
    pub events: u64,
    pub newest_observed_at: DateTime<Utc>,
    pub last_stored_at: DateTime<Utc>,
    pub last_day: Option<NaiveDate>,
}

/// An Entry as stored: the folded day and its feed position.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    pub user_id: String,
    pub day: NaiveDate,
    pub position: i64,
    pub updated_at: DateTime<Utc>,
    pub body: Day,
    /// The priority rule version the day was last folded under.
    pub rule_version: i64,
}

/// A user erased, as the feed tells subscribers who followed them (their entries are gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub user_id: String,
    pub coach_id: String,
    pub position: i64,
    pub removed_at: DateTime<Utc>,
}

/// A read of a client's health data by someone other than the client (the access log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Whose data was read.
    pub user_id: String,
    /// Who read it: `coach:<coach id>` or `admin`, as events name their authors.
    pub accessor: String,
    pub rpc: String,
    /// What the call named of the data (its dates); empty when it read all it could see.
    pub detail: String,
    /// The IP address the call came from; empty when unknown.
    pub peer: String,
    pub at: DateTime<Utc>,
}

/// An access as stored, with its place in the user's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedAccess {
    pub seq: i64,
    pub access: Access,
}

/// What took a feed position: an entry's new version, a client's roster change (the
/// client as it is after it), or a user's erasure. Shared by every subscriber that
/// receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedRecord {
    Entry(Arc<StoredEntry>),
    Client(Arc<RosterClient>),
    Removal(Arc<Removal>),
}

impl FeedRecord {
    pub fn position(&self) -> i64 {
        match self {
            FeedRecord::Entry(entry) => entry.position,
            FeedRecord::Client(client) => client.position,
            FeedRecord::Removal(removal) => removal.position,
        }
    }

    pub fn user_id(&self) -> &str {
        match self {
            FeedRecord::Entry(entry) => &entry.user_id,
            FeedRecord::Client(client) => &client.user_id,
            FeedRecord::Removal(removal) => &removal.user_id,
        }
    }
}

/// A committed change, as the live feed carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedChange {
    /// The publisher has delivered every change up to this position: a follower whose
    /// cursor is at least here misses nothing by taking this change next.
    pub after: i64,
    /// The coach of the record's user, so coach streams can filter without a lookup.
    pub coach_id: String,
    pub record: FeedRecord,
}

/// A page of the feed read back from the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeedPage {
    /// The readable records of the page, by position.
    pub records: Vec<FeedRecord>,
    /// Every matching record up to this position has been read.
    pub read_to: i64,
}

/// Which entries a feed reader wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedFilter {
    /// Everyone (admin).
    All,
    /// These users.
    Users(Vec<String>),
    /// Every client of this coach, including ones added later.
    Coach(String),
}

impl FeedFilter {
    pub fn matches(&self, change: &FeedChange) -> bool {
        match self {
            FeedFilter::All => true,
            FeedFilter::Users(users) => users.iter().any(|user| user == change.record.user_id()),
            FeedFilter::Coach(coach_id) => change.coach_id == *coach_id,
        }
    }
}

/// How one connection pool is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    pub pool: &'static str,
    /// Connections open.
    pub open: u32,
    pub idle: usize,
}

/// What `rebuild` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildStats {
    pub days_rebuilt: u64,
    pub events_replayed: u64,
    /// Days whose entry changed (took a new feed position).
    pub days_changed: u64,
}

/// A day whose stored read model differs from the fold of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub user_id: String,
    pub day: NaiveDate,
}

/// Everything the service needs from a database.
pub trait Store: Clone + Send + Sync + 'static {
    /// Is the database reachable?
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Brings the query planner's statistics up to date, after a bulk write: PostgreSQL's
    /// autovacuum analyzes a table a minute or more after it grew, and until then plans
    /// reads of an imported history as if the tables were empty (scanning them whole).
    fn refresh_statistics(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// The owners of those of these tokens that exist and are not revoked, by token hash.
    fn token_owners(
        &self,
        token_hashes: &[&str],
    ) -> impl Future<Output = StoreResult<Vec<(String, TokenOwner)>>> + Send;
    /// The coach of a client user; `None` when the user does not exist.
    fn coach_of(&self, user_id: &str) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    fn create_coach(&self, name: &str, token_hash: &str) -> impl Future<Output = StoreResult<String>> + Send;
    /// Revokes every live token of the coach and stores a new one, in one transaction that
    /// holds the coach's write lock; `false` when the coach does not exist, or when
    /// `presented` (the caller's own token) is no longer live by then (revoked or rotated
    /// meanwhile: a stolen token cannot outlive its revocation by racing it).
    fn rotate_coach_token(
        &self,
        coach_id: &str,
        token_hash: &str,
        presented: Option<&str>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Revokes every live token of the coach and expires the coach's unredeemed pairing
    /// codes, under the coach's write lock; how many tokens, or `None` when the coach does
    /// not exist.
    fn revoke_coach(&self, coach_id: &str) -> impl Future<Output = StoreResult<Option<u32>>> + Send;
    /// Creates a client user of a coach with one device token; `None` when the coach is unknown.
    fn create_client(
        &self,
        coach_id: &str,
        display_name: Option<&str>,
        device_name: &str,
        token_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// Adds a coach under an id of their own (one brought from another system) with a first
    /// token; `false`, changing nothing, when the coach exists.
    fn import_coach(
        &self,
        coach_id: &str,
        name: &str,
        token_hash: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Adds a client under an id of their own to a coach, without a device (they pair),
    /// unless a user of that id exists or was erased; `None` when the coach is unknown.
    fn import_client(
        &self,
        user_id: &str,
        coach_id: &str,
        display_name: Option<&str>,
    ) -> impl Future<Output = StoreResult<Option<ImportedClient>>> + Send;
    /// Renames a client; `false` when the user does not exist.
    fn rename_client(&self, user_id: &str, display_name: &str) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The coach's clients with their devices and what each author stored of each kind.
    fn roster(&self, coach_id: &str) -> impl Future<Output = StoreResult<Vec<RosterClient>>> + Send;
    /// What one author (a device's actor, say) stored of each kind for a user.
    fn synced_by(&self, user_id: &str, actor: &str) -> impl Future<Output = StoreResult<Vec<Synced>>> + Send;

    /// Stores a pairing code (by its hash) for `user_id`, which must be a client of
    /// `coach_id`, or for a new client of the coach when `user_id` is `None`: the new user's
    /// id is chosen now, and the user exists once the code is redeemed (a code never used
    /// leaves nothing behind). Returns the user, or `None` when the user is not the coach's
    /// client.
    fn create_pairing_code(
        &self,
        coach_id: &str,
        user_id: Option<&str>,
        display_name: Option<&str>,
        code_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// Claims an unexpired, unused code (once, even under concurrent redeems), creates its
    /// user if the code was for a new client, and adds a device token for the user. `None`
    /// for any code that cannot be redeemed.
    fn redeem_pairing_code(
        &self,
        code_hash: &str,
        device_name: &str,
        token_hash: &str,
    ) -> impl Future<Output = StoreResult<Option<Paired>>> + Send;
    /// Revokes one device of the user, or all of them; returns how many were revoked.
    fn revoke_devices(&self, user_id: &str, device_id: Option<&str>) -> impl Future<Output = StoreResult<u32>> + Send;
    /// Deletes every row of the user's (events, entries, sync status, device tokens,
    /// pairing codes, the user) in one transaction, and puts their removal on the feed;
    /// `by` is who erased them. `None` when there was no user (erased before, say): any
    /// pairing code reserved for the id is deleted all the same.
    fn erase_user(&self, user_id: &str, by: &str) -> impl Future<Output = StoreResult<Option<Removal>>> + Send;

    /// Appends reads to the access log, in one transaction; those of users erased
    /// meanwhile are left out.
    fn log_accesses(&self, accesses: &[Access]) -> impl Future<Output = StoreResult<()>> + Send;
    /// The user's access log, newest first: at most `limit` accesses before `before` (a
    /// `seq`), or from the newest.
    fn access_log(
        &self,
        user_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<LoggedAccess>>> + Send;

    /// Appends the events of one request and re-folds every day they touch, in one
    /// transaction. Returns one outcome per event, in order.
    fn append(
        &self,
        user_id: &str,
        actor: &str,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = StoreResult<Vec<AppendOutcome>>> + Send;

    fn get_entry(&self, user_id: &str, day: NaiveDate)
        -> impl Future<Output = StoreResult<Option<StoredEntry>>> + Send;
    /// Entries of `user_id` in `[start, end]` after `after` (exclusive), by day, at most `limit`.
    fn list_entries(
        &self,
        user_id: &str,
        start: NaiveDate,
        end: NaiveDate,
        after: Option<NaiveDate>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<StoredEntry>>> + Send;
    /// Up to `limit` of the user's events after `after_seq`, by `seq` (an export's pages).
    fn user_events(
        &self,
        user_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<StoredEvent>>> + Send;
    /// The events the fold of a day reads, by `seq`.
    fn fold_input(&self, user_id: &str, day: NaiveDate) -> impl Future<Output = StoreResult<Vec<StoredEvent>>> + Send;

    /// Committed changes, in position order, as they happen. A receiver that falls behind
    /// gets `Lagged` and reads the missed changes back with `feed_page`.
    fn changes(&self) -> tokio::sync::broadcast::Receiver<Arc<FeedChange>>;
    /// How the database connection pools are used now.
    fn pool_use(&self) -> Vec<PoolUse>;
    /// The position of the latest committed change (0 when there is none).
    fn head_position(&self) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Entries, removals (and, with `clients`, roster changes) matching `filter` whose
    /// position is in `(after, up_to]`, by position, at most `limit` rows of each read.
    fn feed_page(
        &self,
        filter: &FeedFilter,
        after: i64,
        up_to: i64,
        limit: u32,
        clients: bool,
    ) -> impl Future<Output = StoreResult<FeedPage>> + Send;

    /// Re-folds one day from its events and stores the result.
    fn recompute_day(
        &self,
        user_id: &str,
        day: NaiveDate,
    ) -> impl Future<Output = StoreResult<Option<StoredEntry>>> + Send;
    /// Re-folds every day (of one user, or of everyone).
    fn rebuild(&self, user_id: Option<&str>) -> impl Future<Output = StoreResult<RebuildStats>> + Send;
    /// Days whose stored read model differs from the fold of their events under the rule
    /// in force, or was folded under another version of the rule.
    fn verify(&self) -> impl Future<Output = StoreResult<Vec<Mismatch>>> + Send;
    /// Whether the stored days were last re-folded by this release's fold, under the rule
    /// in force.
    fn fold_is_current(&self) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Re-folds every day when the stored days were folded by an earlier version of the
    /// fold (`domain::fold::VERSION`) or the rule in force has not been applied to every day
    /// (its pass was interrupted); what it did, if it had to.
    fn refold_if_stale(&self) -> impl Future<Output = StoreResult<Option<RebuildStats>>> + Send;

    /// The priority rule in force (the built-in default, version 0, until one is set).
    fn priority_rule(&self) -> impl Future<Output = StoreResult<StoredRule>> + Send;
    /// The priority rule stored as `version` (an entry's `rule_version`, say).
    fn priority_rule_at(&self, version: i64) -> impl Future<Output = StoreResult<Arc<VersionedRule>>> + Send;
    /// Stores `rule` as the next version, in force for every write from its commit on,
    /// then re-folds every day under it (to the end, even if the caller stops waiting).
    /// Returns the version and what the re-fold did. The rule already in force is not
    /// stored again.
    fn set_priority_rule(
        &self,
        rule: &PriorityRule,
        set_by: &str,
    ) -> impl Future<Output = StoreResult<(i64, RebuildStats)>> + Send;
}

/// How many changes the live feed buffers for a slow reader before it reads from the store.
pub const FEED_BUFFER: usize = 1024;

/// Events one user-day may hold unless configured otherwise. Every append to a day reads
/// all of its events, so an unbounded day would make each write to it slower, and the one
/// writer everyone shares with it (40,000 events on one day took an append from 12 to
/// 250 ms). A phone reporting its step total every five minutes adds under 300 a day.
pub const DEFAULT_MAX_EVENTS_PER_DAY: usize = 5_000;

/// How a store runs, beyond where its database is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Changes the live feed buffers for a slow reader before it must read from the store.
    pub feed_buffer: usize,
    /// Events one user-day may hold; an append past it is `AppendOutcome::DayFull`.
    pub max_events_per_day: usize,
    /// Appends that may wait for the writer; past this the store is overloaded and sheds new
    /// ones (`StoreError::Overloaded`) instead of queueing without end. At ~64 requests per
    /// group, 1,024 is about 16 commits of backlog.
    pub write_queue: usize,
    /// How often a client's syncs take a roster position, at most (`roster::SYNC_NOTICE_EVERY`).
    pub sync_notice_every: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            feed_buffer: FEED_BUFFER,
            max_events_per_day: DEFAULT_MAX_EVENTS_PER_DAY,
            write_queue: 1024,
            sync_notice_every: std::time::Duration::from_secs(60),
        }
    }
}

/// The current time at the precision the store keeps (microseconds), so that a change
/// published live equals the same entry read back.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// A new random id.
pub fn new_id() -> String {
    Uuid::new_v4().to_string()
}
