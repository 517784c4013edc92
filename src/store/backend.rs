//! What a database gives the store: connections, transactions and the statements that the
//! generic code (`SqlStore`: group commit, the projector, rebuild, verify, accounts) runs.
//! `sqlite::SqliteBackend` and `postgres::PgBackend` implement it, each with its own SQL
//! in its own module; everything that decides anything is written once, over this trait.
//!
//! Statements are associated functions on a connection, so one statement serves a write
//! transaction, a read snapshot or a pooled reader alike (each derefs to `Conn`).

use std::future::Future;
use std::ops::DerefMut;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::broadcast;

use super::projector::{DaySpan, EventRow, Inserted, KeyLookup, KeyedEvent, Revision, UserDay};
use super::rehash::{HashUpgrade, StoredHash};
use super::roster::{Clients, Published};
use super::rows::{AccessRow, BodyRow, ClientRow, DeviceRow, EntryRow, RemovalRow, RuleRow, SyncRow, TokenRow};
use super::{Access, FeedChange, FeedFilter, PoolUse, Removal, StoreResult, StoredEntry};
use crate::domain::event::StoredEvent;

/// A result of a statement, as a future that may move between threads.
pub trait Answer<T>: Future<Output = StoreResult<T>> + Send {}
impl<T, F: Future<Output = StoreResult<T>> + Send> Answer<T> for F {}

/// What a one-time upgrade of stored data brings to a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// Every event's content hash (`domain::canonical`).
    ContentHashes,
    /// Every stored day's fold (`domain::fold::VERSION`).
    Fold,
}

impl Upgrade {
    /// The table recording the versions reached.
    pub fn table(self) -> &'static str {
        match self {
            Upgrade::ContentHashes => "content_hash_versions",
            Upgrade::Fold => "fold_versions",
        }
    }
}

pub trait Backend: Send + Sync + Sized + 'static {
    /// A connection: every statement runs on one.
    type Conn: Send;
    /// A pooled connection for reads.
    type Reader: DerefMut<Target = Self::Conn> + Send;
    /// A read-only transaction that sees one snapshot of the database.
    type Snapshot: DerefMut<Target = Self::Conn> + Send;
    /// An open write transaction; writers of the same users wait for it. Dropped without
    /// its commit, it is rolled back.
    type Write: DerefMut<Target = Self::Conn> + Send;

    /// Events a rebuild re-folds per transaction, about: a chunk ends with the day of its
    /// `REBUILD_CHUNK_EVENTS`th event.
    const REBUILD_CHUNK_EVENTS: i64;

    // Connections and transactions.

    fn reader(&self) -> impl Answer<Self::Reader>;
    /// A reader for the live feed's catch-up reads, kept apart from the request path where
    /// the backend has connections to spare for that.
    fn feed_reader(&self) -> impl Answer<Self::Reader>;
    fn snapshot(&self) -> impl Answer<Self::Snapshot>;
    fn end_snapshot(snapshot: Self::Snapshot) -> impl Answer<()>;
    /// Starts a write that holds the write lock of each of `users` (taken in one order
    /// everywhere) until it ends.
    fn write(&self, users: &[&str]) -> impl Answer<Self::Write>;
    /// Starts the write that changes the priority rule: it waits for every write of users'
    /// data in progress, and holds new ones off until it ends, so that no write folds under
    /// a rule older than one committed before it (see `rules`).
    fn write_rule(&self) -> impl Answer<Self::Write>;
    fn commit(write: Self::Write) -> impl Answer<()>;
    /// Commits, and makes what the write changed known to the live feed of every
    /// instance, in position order, in commit order.
    fn commit_and_publish(&self, write: Self::Write, changed: Published) -> impl Answer<()>;
    /// Committed changes, in position order, as they happen.
    fn subscribe(&self) -> broadcast::Receiver<Arc<FeedChange>>;
    /// How the backend's connection pools are used now.
    fn pools(&self) -> Vec<PoolUse>;

    // The write path (`projector`). Each statement takes a whole batch, of any users.

    /// The stored events under these dedupe keys.
    fn keyed_events(conn: &mut Self::Conn, keys: &[KeyLookup<'_>]) -> impl Answer<Vec<KeyedEvent>>;
    /// Inserts events in order; returns each one's id and `seq`, and the newest priority
    /// rule version, read by the same statement (so after the write's locks, at no extra
    /// round trip: see `rules`).
    fn insert_events(conn: &mut Self::Conn, recorded_at: DateTime<Utc>, rows: &[EventRow<'_>])
        -> impl Answer<Inserted>;
    /// Every stored revision of these `(user_id, workout_id)` workouts.
    fn workout_revisions(conn: &mut Self::Conn, workouts: &[(&str, &str)]) -> impl Answer<Vec<Revision>>;
    /// The events of these days, with their users, in any order.
    fn day_events(conn: &mut Self::Conn, days: &[UserDay<'_>]) -> impl Answer<Vec<(String, StoredEvent)>>;
    /// Every revision and deletion of these `(user_id, workout_id)` workouts, in any order.
    fn workout_events(conn: &mut Self::Conn, workouts: &[(String, String)]) -> impl Answer<Vec<(String, StoredEvent)>>;
    /// The stored bodies of these days' entries.
    fn stored_bodies(conn: &mut Self::Conn, days: &[UserDay<'_>]) -> impl Answer<Vec<BodyRow>>;
    /// Takes `count` consecutive feed positions and returns the last. Positions follow
    /// commit order.
    fn take_positions(conn: &mut Self::Conn, count: i64) -> impl Answer<i64>;
    /// Stores entries of days that have none yet, with their bodies already serialized.
    fn insert_entries(conn: &mut Self::Conn, entries: &[(StoredEntry, String)]) -> impl Answer<()>;
    /// Stores entries over those of their days, with their bodies already serialized.
    fn upsert_entries(conn: &mut Self::Conn, entries: &[(StoredEntry, String)]) -> impl Answer<()>;
    /// The `seq` of each user's newest event, ordered by user id.
    fn newest_seqs(conn: &mut Self::Conn, users: &[&str]) -> impl Answer<Vec<(String, i64)>>;
    /// Whether an entry of `span` took a feed position after `head`.
    fn entries_changed_after(conn: &mut Self::Conn, span: &DaySpan, head: i64) -> impl Answer<bool>;
    /// Adds newly stored events to `sync_status`: each row's `events` to the count, its
    /// newest observation, store time and last day where they are later.
    fn record_sync(conn: &mut Self::Conn, rows: &[SyncRow]) -> impl Answer<()>;

    // Rebuild and verify.

    /// The `(user_id, day)` of the `n`th event (from 1) after the user-day `after` along
    /// `(user_id, day)` (of `user_id` only, if given).
    fn nth_event_day_after(
        conn: &mut Self::Conn,
        after: &(String, NaiveDate),
        user_id: Option<&str>,
        n: i64,
    ) -> impl Answer<Option<(String, NaiveDate)>>;
    /// The last `(user_id, day)` with events after the user-day `after` (of `user_id` only).
    fn last_event_day_after(
        conn: &mut Self::Conn,
        after: &(String, NaiveDate),
        user_id: Option<&str>,
    ) -> impl Answer<Option<(String, NaiveDate)>>;
    /// The events of the days of `span`, with their users (their related workouts' are
    /// read apart), grouped by day.
    fn span_events(conn: &mut Self::Conn, span: &DaySpan) -> impl Answer<Vec<(String, StoredEvent)>>;
    /// The stored bodies of the entries of `span`.
    fn span_bodies(conn: &mut Self::Conn, span: &DaySpan) -> impl Answer<Vec<BodyRow>>;
    /// The last feed position taken by a committed write.
    fn feed_head(conn: &mut Self::Conn) -> impl Answer<i64>;
    /// Every user-day that has events, in order.
    fn event_days(conn: &mut Self::Conn) -> impl Answer<Vec<(String, NaiveDate)>>;

    // The priority rule (`rules`).

    /// The newest stored rule version; 0 (the built-in default) when none is stored.
    fn rule_version(conn: &mut Self::Conn) -> impl Answer<i64>;
    fn priority_rule(conn: &mut Self::Conn, version: i64) -> impl Answer<Option<RuleRow>>;
    fn insert_priority_rule(
        conn: &mut Self::Conn,
        version: i64,
        rule: &str,
        set_by: &str,
        at: DateTime<Utc>,
    ) -> impl Answer<()>;
    /// Records that every stored day has been folded under `version`.
    fn mark_rule_applied(conn: &mut Self::Conn, version: i64, at: DateTime<Utc>) -> impl Answer<()>;
    /// Records that the entries of `span` are folded under `version` (a day whose fold did
    /// not change keeps its position).
    fn stamp_rule_version(conn: &mut Self::Conn, span: &DaySpan, version: i64) -> impl Answer<()>;

    // Content-hash upgrades (`rehash`).

    /// Whether `version` is the one the stored data was last brought to (a release rolled
    /// back and forward again upgrades again).
    fn upgraded(conn: &mut Self::Conn, upgrade: Upgrade, version: &str) -> impl Answer<bool>;
    fn mark_upgraded(conn: &mut Self::Conn, upgrade: Upgrade, version: &str, at: DateTime<Utc>) -> impl Answer<()>;
    /// Up to `limit` events after `after` (a user and a `seq`) along the table's key.
    fn events_after(conn: &mut Self::Conn, after: &(String, i64), limit: i64) -> impl Answer<Vec<StoredHash>>;
    /// Sets each upgrade's key and hash, unless another event of its user and kind has them.
    fn update_hashes(conn: &mut Self::Conn, upgrades: &[HashUpgrade]) -> impl Answer<()>;

    // Principals.

    fn ping(conn: &mut Self::Conn) -> impl Answer<()>;
    /// Brings the query planner's statistics of the growing tables up to date.
    fn refresh_statistics(conn: &mut Self::Conn) -> impl Answer<()>;
    /// The live (unrevoked) tokens among these hashes.
    fn live_tokens(conn: &mut Self::Conn, token_hashes: &[&str]) -> impl Answer<Vec<TokenRow>>;
    fn coach_of(conn: &mut Self::Conn, user_id: &str) -> impl Answer<Option<String>>;
    fn coach_exists(conn: &mut Self::Conn, coach_id: &str) -> impl Answer<bool>;
    fn insert_coach(conn: &mut Self::Conn, coach_id: &str, name: &str, at: DateTime<Utc>) -> impl Answer<()>;
    fn insert_coach_token(
        conn: &mut Self::Conn,
        token_hash: &str,
        coach_id: &str,
        at: DateTime<Utc>,
    ) -> impl Answer<()>;
    /// Adds a client user of the coach, unless the user exists.
    fn ensure_user(
        conn: &mut Self::Conn,
        user_id: &str,
        coach_id: &str,
        display_name: Option<&str>,
        at: DateTime<Utc>,
    ) -> impl Answer<()>;
    /// Sets a user's display name; whether the user exists.
    fn rename_user(conn: &mut Self::Conn, user_id: &str, display_name: &str) -> impl Answer<bool>;
    /// The clients, by user id.
    fn clients(conn: &mut Self::Conn, clients: Clients<'_>) -> impl Answer<Vec<ClientRow>>;
    /// Every device token of the clients, live or revoked.
    fn devices(conn: &mut Self::Conn, clients: Clients<'_>) -> impl Answer<Vec<DeviceRow>>;
    /// The `sync_status` rows of the clients.
    fn syncs(conn: &mut Self::Conn, clients: Clients<'_>) -> impl Answer<Vec<SyncRow>>;
    /// Locks the clients' rows: `roster::touch` takes them before the feed's counter, the
    /// order a sync notice takes them in, so that the two never wait on each other.
    fn lock_clients(conn: &mut Self::Conn, users: &[&str]) -> impl Answer<()>;
    /// Sets the clients' roster positions.
    fn set_roster_positions(conn: &mut Self::Conn, positions: &[(&str, i64)]) -> impl Answer<()>;
    /// Records a sync notice at `at` for those of `users` whose last one is before
    /// `before`; returns them.
    fn claim_sync_notices(
        conn: &mut Self::Conn,
        users: &[&str],
        before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> impl Answer<Vec<String>>;
    /// The clients matching `filter` whose roster position is in `(after, up_to]`, by
    /// position, at most `limit`.
    fn roster_rows(
        conn: &mut Self::Conn,
        filter: &FeedFilter,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> impl Answer<Vec<(String, i64)>>;
    /// The `sync_status` rows of one author for one user.
    fn sync_of_actor(conn: &mut Self::Conn, user_id: &str, actor: &str) -> impl Answer<Vec<SyncRow>>;
    fn insert_device_token(
        conn: &mut Self::Conn,
        token_hash: &str,
        user_id: &str,
        device_id: &str,
        device_name: &str,
        at: DateTime<Utc>,
    ) -> impl Answer<()>;
    /// A code for `user_id`; `display_name` names a new client once the code is redeemed.
    fn insert_pairing_code(
        conn: &mut Self::Conn,
        code_hash: &str,
        coach_id: &str,
        user_id: &str,
        display_name: Option<&str>,
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> impl Answer<()>;
    /// Marks an unexpired, unused code redeemed in one statement (so of two concurrent
    /// redeems exactly one claims it); returns its user, coach and display name.
    fn claim_pairing_code(
        conn: &mut Self::Conn,
        code_hash: &str,
        at: DateTime<Utc>,
    ) -> impl Answer<Option<(String, String, Option<String>)>>;
    /// Expires the coach's codes not yet redeemed.
    fn expire_pairing_codes_of(conn: &mut Self::Conn, coach_id: &str, at: DateTime<Utc>) -> impl Answer<()>;
    /// Revokes the coach's live tokens; returns how many.
    fn revoke_coach_tokens(conn: &mut Self::Conn, coach_id: &str, at: DateTime<Utc>) -> impl Answer<u64>;
    /// Revokes the user's live device tokens (of one device, if given); returns how many.
    fn revoke_devices(
        conn: &mut Self::Conn,
        user_id: &str,
        device_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> impl Answer<u64>;

    // Erasure (`erasure`).

    /// Deletes the rows of `table` whose `column` is `value`.
    fn delete_rows(conn: &mut Self::Conn, table: &'static str, column: &'static str, value: &str) -> impl Answer<()>;
    /// Whether a user of this id was erased (their removal is kept on the feed).
    fn was_removed(conn: &mut Self::Conn, user_id: &str) -> impl Answer<bool>;
    /// Records a removal, and that it is the latest (`feed_position.removed_through`).
    fn insert_removal(conn: &mut Self::Conn, removal: &Removal, removed_by: &str) -> impl Answer<()>;
    /// Removals matching `filter` with positions in `(after, up_to]`, by position, at most
    /// `limit`.
    fn removal_rows(
        conn: &mut Self::Conn,
        filter: &FeedFilter,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> impl Answer<Vec<RemovalRow>>;

    // The access log (`access`).

    fn insert_accesses(conn: &mut Self::Conn, accesses: &[&Access]) -> impl Answer<()>;
    /// The user's accesses with `seq` below `before`, newest first, at most `limit`.
    fn access_rows(conn: &mut Self::Conn, user_id: &str, before: i64, limit: u32) -> impl Answer<Vec<AccessRow>>;

    // Export (`export`).

    /// Up to `limit` of the user's events after `after_seq`, by `seq`.
    fn user_events(
        conn: &mut Self::Conn,
        user_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> impl Answer<Vec<(String, StoredEvent)>>;

    // Read models.

    fn entry(conn: &mut Self::Conn, user_id: &str, day: NaiveDate) -> impl Answer<Option<EntryRow>>;
    /// Entries of `user_id` in `[start, end]` after `after`, by day, at most `limit`.
    fn entries(
        conn: &mut Self::Conn,
        user_id: &str,
        start: NaiveDate,
        end: NaiveDate,
        after: Option<NaiveDate>,
        limit: u32,
    ) -> impl Answer<Vec<EntryRow>>;
    /// Entries matching `filter` with positions in `(after, up_to]`, by position, at most `limit`.
    fn feed_rows(
        conn: &mut Self::Conn,
        filter: &FeedFilter,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> impl Answer<Vec<EntryRow>>;
}
