//! The embedded SQLite store: WAL, `synchronous=FULL`, one writer connection taking
//! `BEGIN IMMEDIATE` transactions, and a small pool of readers.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{broadcast, Mutex, OwnedMutexGuard};

use super::backend::{Backend, Upgrade};
use super::columns::{from_micros, parse_day, parse_event_id, Day, EventId, Timestamp};
use super::projector::{DaySpan, EventRow, Inserted, KeyLookup, KeyedEvent, Revision, UserDay};
use super::rehash::{HashUpgrade, StoredHash};
use super::roster::{self, Clients, Published};
use super::rows::{self, AccessRow, ClientRow, CoachOf, DeviceRow, RemovalRow, SyncRow};
use super::rows::{
    event_days_after, stored_hash_from_row, user_day, user_events_from_rows, BodyRow, EntryRow, EventColumns, RuleRow,
    TokenRow, ENTRY_COLUMNS, EVENT_COLUMNS, IN_SPAN,
};
use super::sql_store::SqlStore;
use super::{
    Access, FeedChange, FeedFilter, FeedRecord, PoolUse, Removal, StoreError, StoreOptions, StoreResult, StoredEntry,
};
use crate::domain::event::StoredEvent;
use crate::metrics::FEED_POSITION;

/// WAL pages written before a commit copies them back into the database file (SQLite's
/// default is 1,000). Ingest rewrites the same index pages commit after commit, so a longer
/// interval copies each of them back once instead of many times: single-item ingest +15%
/// and batch ingest +20% in interleaved benchmark runs, for a WAL of up to ~40 MB.
pub const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// The store on an SQLite database file.
pub type SqliteStore = SqlStore<SqliteBackend>;

pub struct SqliteBackend {
    /// Locked from `BEGIN` until the transaction's changes are published, so the live feed
    /// sees changes in commit (= position) order. The writer owns its connection rather than
    /// borrowing it from a pool of one: handing a pooled connection back and taking it again
    /// cost ~0.5–1 ms per transaction, as much as a group's statements.
    writer: Arc<Mutex<WriterConnection>>,
    /// Readers never wait for the writer in WAL mode, so the feed shares them.
    readers: SqlitePool,
    changes: broadcast::Sender<Arc<FeedChange>>,
}

struct WriterConnection {
    connection: SqliteConnection,
    /// A transaction was begun and neither committed nor rolled back (its write was dropped
    /// on an error): the next write rolls it back first.
    open: bool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and runs the migrations.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        Self::open_with(url, &StoreOptions::default()).await
    }

    /// Like `open`, run with `store` options.
    pub async fn open_with(url: &str, store: &StoreOptions) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        let mut connection = options.connect().await.map_err(StoreError::from_sqlx)?;
        sqlx::migrate!("migrations/sqlite").run(&mut connection).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(StoreError::from_sqlx)?;
        let (changes, _) = broadcast::channel(store.feed_buffer);
        let writer = Arc::new(Mutex::new(WriterConnection { connection, open: false }));
        // One lane: there is one writer connection, and waiting requests join the next group.
        SqlStore::start(SqliteBackend { writer, readers, changes }, 1, store).await
    }
}

/// One `BEGIN IMMEDIATE` transaction on the writer connection, used as the connection
/// itself. Holds the write lock until dropped.
pub struct SqliteWrite(Option<OwnedMutexGuard<WriterConnection>>);

impl SqliteWrite {
    fn writer(&mut self) -> &mut WriterConnection {
        self.0.as_mut().expect("held until dropped")
    }
}

impl Deref for SqliteWrite {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.0.as_ref().expect("held until dropped").connection
    }
}

impl DerefMut for SqliteWrite {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.writer().connection
    }
}

impl Drop for SqliteWrite {
    /// A write dropped without its commit (an error, or nothing to write, such as a pairing
    /// code that does not redeem) is rolled back now, under the lock it still holds: left
    /// open, it would keep every other process (the CLI) from writing to the database file
    /// until this server's next write.
    fn drop(&mut self) {
        let Some(mut writer) = self.0.take().filter(|writer| writer.open) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            if run(&mut writer.connection, "ROLLBACK").await.is_ok() {
                writer.open = false;
            }
        });
    }
}

async fn run(connection: &mut SqliteConnection, statement: &'static str) -> StoreResult<()> {
    sqlx::query(statement).execute(connection).await.map_err(StoreError::from_sqlx)?;
    Ok(())
}

/// The coach of each user with a changed entry, in one query.
async fn coaches_of(conn: &mut SqliteConnection, changed: &[StoredEntry]) -> StoreResult<HashMap<String, String>> {
    let users: BTreeSet<&str> = changed.iter().map(|entry| entry.user_id.as_str()).collect();
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let mut query = sqlx::QueryBuilder::<Sqlite>::new("SELECT user_id, coach_id FROM users WHERE user_id");
    push_in_list(&mut query, users);
    let rows = query.build().fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
    rows.iter().map(|row| Ok((row.try_get("user_id")?, row.try_get("coach_id")?))).collect()
}

/// Commits `write`'s transaction; the writer's lock stays held until `write` is dropped.
async fn commit_holding_lock(write: &mut SqliteWrite) -> StoreResult<()> {
    run(write, "COMMIT").await?;
    // A failed COMMIT leaves the transaction open, and the flag set for a rollback.
    write.writer().open = false;
    Ok(())
}

/// `rows::push_clients` with this backend's list test.
fn push_clients<'a>(query: &mut sqlx::QueryBuilder<'a, Sqlite>, clients: Clients<'a>) {
    rows::push_clients(query, clients, |query, users| push_in_list(query, users.iter().map(String::as_str)));
}

/// `rows::push_feed_filter` with this backend's list test.
fn push_feed_filter<'a>(query: &mut sqlx::QueryBuilder<'a, Sqlite>, filter: &'a FeedFilter, coach_of: CoachOf) {
    rows::push_feed_filter(query, filter, coach_of, |query, users| {
        push_in_list(query, users.iter().map(String::as_str))
    });
}

/// Appends ` IN ($a, $b, …)`, each item bound as a parameter. (SQLite prepares statements
/// in microseconds, so one per length of list costs little.)
fn push_in_list<'a, T>(query: &mut sqlx::QueryBuilder<'a, Sqlite>, items: impl IntoIterator<Item = T>)
where
    T: 'a + sqlx::Encode<'a, Sqlite> + sqlx::Type<Sqlite> + Send,
{
    query.push(" IN (");
    let mut list = query.separated(", ");
    for item in items {
        list.push_bind(item);
    }
    list.push_unseparated(")");
}

/// Appends `((k1 = $a AND k2 = $b AND <column> IN (…)) OR …)`: one term per distinct key,
/// each served by an index on `(k1, k2, <column>, …)`.
fn push_grouped<'a, const N: usize, T>(
    query: &mut sqlx::QueryBuilder<'a, Sqlite>,
    key_columns: [&str; N],
    column: &str,
    items: impl IntoIterator<Item = ([&'a str; N], T)>,
) where
    T: 'a + sqlx::Encode<'a, Sqlite> + sqlx::Type<Sqlite> + Send,
{
    let mut grouped: BTreeMap<[&'a str; N], Vec<T>> = BTreeMap::new();
    for (key, item) in items {
        grouped.entry(key).or_default().push(item);
    }
    query.push("(");
    for (i, (key, items)) in grouped.into_iter().enumerate() {
        query.push(if i == 0 { "(" } else { " OR (" });
        for (key_column, value) in key_columns.iter().zip(key) {
            query.push(*key_column).push(" = ").push_bind(value).push(" AND ");
        }
        query.push(column);
        push_in_list(query, items);
        query.push(")");
    }
    query.push(")");
}

/// `push_grouped` by user: rows whose `(user_id, <column>)` is one of `pairs`.
fn push_per_user<'a, T>(
    query: &mut sqlx::QueryBuilder<'a, Sqlite>,
    column: &str,
    pairs: impl IntoIterator<Item = (&'a str, T)>,
) where
    T: 'a + sqlx::Encode<'a, Sqlite> + sqlx::Type<Sqlite> + Send,
{
    push_grouped(query, ["user_id"], column, pairs.into_iter().map(|(user_id, item)| ([user_id], item)));
}

/// Appends `VALUES (…), (…)`: the rows of `insert_entries` and `upsert_entries`, in the
/// column order they name.
fn push_entry_rows<'a>(query: &mut sqlx::QueryBuilder<'a, Sqlite>, entries: &'a [(StoredEntry, String)]) {
    query.push_values(entries, |mut values, (entry, body)| {
        values
            .push_bind(entry.user_id.as_str())
            .push_bind(Day(entry.day))
            .push_bind(entry.position)
            .push_bind(Timestamp(entry.updated_at))
            .push_bind(body.as_str())
            // A literal (an integer, safe as text): as a parameter it took a chunk's insert
            // past SQLite's limit (6 × 6,144).
            .push(entry.rule_version);
    });
}

/// An event as `span_events` reads it: a JSON object of its row's columns, its texts
/// borrowed from the document where they need no unescaping.
#[derive(serde::Deserialize)]
struct EventJson<'a> {
    seq: i64,
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    day: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    observed_at: i64,
    recorded_at: i64,
    actor: String,
    #[serde(borrow)]
    payload: PayloadJson<'a>,
}

/// A stored payload's JSON text, borrowed from the document around it.
struct PayloadJson<'a>(&'a str);

impl<'de: 'a, 'a> serde::Deserialize<'de> for PayloadJson<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: &'a serde_json::value::RawValue = serde::Deserialize::deserialize(deserializer)?;
        Ok(PayloadJson(raw.get()))
    }
}

impl EventJson<'_> {
    fn into_event(self) -> StoreResult<StoredEvent> {
        let corrupt = |e: sqlx::error::BoxDynError| StoreError::Corrupt(e.to_string());
        EventColumns {
            seq: self.seq,
            event_id: parse_event_id(&self.event_id).map_err(corrupt)?,
            day: self.day.as_deref().map(parse_day).transpose().map_err(corrupt)?,
            kind: &self.kind,
            source: &self.source,
            observed_at: Timestamp(from_micros(self.observed_at).map_err(corrupt)?),
            recorded_at: Timestamp(from_micros(self.recorded_at).map_err(corrupt)?),
            actor: self.actor,
            payload: self.payload.0,
        }
        .into_event()
    }
}

/// `sql`, a statement on the rows `IN_SPAN`, with the bounds of `span` bound.
fn in_span<'q>(sql: &'q str, span: &'q DaySpan) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    sqlx::query(sql).bind(&span.after.0).bind(Day(span.after.1)).bind(&span.last.0).bind(Day(span.last.1))
}

impl Backend for SqliteBackend {
    type Conn = SqliteConnection;
    type Reader = PoolConnection<Sqlite>;
    type Snapshot = sqlx::Transaction<'static, Sqlite>;
    type Write = SqliteWrite;

    /// Enough to spread a transaction's fixed costs thin, few enough that a chunk's entry
    /// insert (5 parameters per day, a day per event at most; see `push_entry_rows`) stays
    /// under SQLite's 32,766 parameters.
    const REBUILD_CHUNK_EVENTS: i64 = 6144;

    async fn reader(&self) -> StoreResult<PoolConnection<Sqlite>> {
        self.readers.acquire().await.map_err(StoreError::from_sqlx)
    }

    async fn feed_reader(&self) -> StoreResult<PoolConnection<Sqlite>> {
        self.reader().await
    }

    /// A read transaction in WAL mode sees one snapshot.
    async fn snapshot(&self) -> StoreResult<sqlx::Transaction<'static, Sqlite>> {
        self.readers.begin_with("BEGIN").await.map_err(StoreError::from_sqlx)
    }

    async fn end_snapshot(snapshot: sqlx::Transaction<'static, Sqlite>) -> StoreResult<()> {
        snapshot.commit().await.map_err(StoreError::from_sqlx)
    }

    /// Takes the write lock, then `BEGIN IMMEDIATE`: one writer at a time serializes every
    /// user-day.
    async fn write(&self, _users: &[&str]) -> StoreResult<SqliteWrite> {
        let mut writer = self.writer.clone().lock_owned().await;
        if writer.open {
            run(&mut writer.connection, "ROLLBACK").await?;
            writer.open = false;
        }
        run(&mut writer.connection, "BEGIN IMMEDIATE").await?;
        writer.open = true;
        Ok(SqliteWrite(Some(writer)))
    }

    /// The single writer already waits for every write in progress.
    async fn write_rule(&self) -> StoreResult<SqliteWrite> {
        self.write(&[]).await
    }

    async fn commit(mut write: SqliteWrite) -> StoreResult<()> {
        commit_holding_lock(&mut write).await
    }

    /// Commits, then publishes what changed while still holding the write lock. A write's
    /// positions are consecutive, so each change follows the position before it.
    async fn commit_and_publish(&self, mut write: SqliteWrite, changed: Published) -> StoreResult<()> {
        let coaches = coaches_of(&mut write, &changed.entries).await?;
        let clients = match changed.clients.is_empty() {
            true => Vec::new(),
            false => roster::read_clients::<Self>(&mut write, Clients::Named(&changed.clients)).await?,
        };
        // Committed, and published before `write` (the writer's lock) is dropped.
        commit_holding_lock(&mut write).await?;
        let entries = changed.entries.into_iter().map(|entry| {
            let coach_id = coaches.get(&entry.user_id).cloned().unwrap_or_default();
            (coach_id, FeedRecord::Entry(Arc::new(entry)))
        });
        let clients = clients.into_iter().map(|client| (client.coach_id.clone(), FeedRecord::Client(Arc::new(client))));
        let removals = changed
            .removals
            .into_iter()
            .map(|removal| (removal.coach_id.clone(), FeedRecord::Removal(Arc::new(removal))));
        let mut records: Vec<(String, FeedRecord)> = entries.chain(clients).chain(removals).collect();
        records.sort_by_key(|(_, record)| record.position());
        if let Some((_, last)) = records.last() {
            metrics::gauge!(FEED_POSITION).set(last.position() as f64);
        }
        for (coach_id, record) in records {
            let change = FeedChange { after: record.position() - 1, coach_id, record };
            // No receiver is fine: nobody is streaming.
            let _ = self.changes.send(Arc::new(change));
        }
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<FeedChange>> {
        self.changes.subscribe()
    }

    /// The readers (the writer keeps its own connection).
    fn pools(&self) -> Vec<PoolUse> {
        vec![PoolUse { pool: "readers", open: self.readers.size(), idle: self.readers.num_idle() }]
    }

    async fn keyed_events(conn: &mut SqliteConnection, keys: &[KeyLookup<'_>]) -> StoreResult<Vec<KeyedEvent>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT user_id, kind, dedupe_key, event_id, content_hash FROM events WHERE ",
        );
        let keys = keys.iter().map(|lookup| ([lookup.user_id, lookup.kind], lookup.key));
        push_grouped(&mut query, ["user_id", "kind"], "dedupe_key", keys);
        let rows = query.build().fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        rows.iter()
            .map(|r| {
                Ok(KeyedEvent {
                    user_id: r.try_get("user_id")?,
                    kind: r.try_get("kind")?,
                    key: r.try_get("dedupe_key")?,
                    event_id: r.try_get::<EventId, _>("event_id")?.0,
                    content_hash: r.try_get("content_hash")?,
                })
            })
            .collect()
    }

    async fn insert_events(
        conn: &mut SqliteConnection,
        recorded_at: DateTime<Utc>,
        rows: &[EventRow<'_>],
    ) -> StoreResult<Inserted> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (event_id, user_id, day, kind, source, dedupe_key, content_hash, payload,
                                 observed_at, recorded_at, actor) ",
        );
        query.push_values(rows, |mut values, row| {
            values
                .push_bind(EventId(row.event_id))
                .push_bind(row.user_id)
                .push_bind(row.day.map(Day))
                .push_bind(row.event.kind().as_str())
                .push_bind(row.event.source.as_str())
                .push_bind(row.event.stored_key(row.event_id))
                .push_bind(row.event.content_hash.as_str())
                .push_bind(serde_json::to_string(&row.event.payload).expect("payloads serialize"))
                .push_bind(Timestamp(row.event.observed_at))
                .push_bind(Timestamp(recorded_at))
                .push_bind(row.actor);
        });
        query.push(" RETURNING event_id, seq, (SELECT COALESCE(MAX(version), 0) FROM priority_rules) AS rule_version");
        let rows = query.build().fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        let ids = rows.iter().map(|r| Ok((r.try_get::<EventId, _>("event_id")?.0, r.try_get("seq")?)));
        let rule_version = rows.first().map(|r| r.try_get("rule_version")).transpose()?.unwrap_or_default();
        Ok(Inserted { ids: ids.collect::<StoreResult<_>>()?, rule_version })
    }

    async fn workout_revisions(conn: &mut SqliteConnection, workouts: &[(&str, &str)]) -> StoreResult<Vec<Revision>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT user_id, dedupe_key, day, observed_at, seq FROM events WHERE kind = 'workout' AND ",
        );
        push_per_user(&mut query, "dedupe_key", workouts.iter().map(|(user_id, id)| (*user_id, *id)));
        let rows = query.build().fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        rows.iter()
            .map(|r| {
                Ok(Revision {
                    user_id: r.try_get("user_id")?,
                    workout_id: r.try_get("dedupe_key")?,
                    day: r.try_get::<Day, _>("day")?.0,
                    recency: (r.try_get::<Timestamp, _>("observed_at")?.0, r.try_get("seq")?),
                })
            })
            .collect()
    }

    async fn day_events(conn: &mut SqliteConnection, days: &[UserDay<'_>]) -> StoreResult<Vec<(String, StoredEvent)>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE "));
        push_per_user(&mut query, "day", days.iter().map(|(user_id, day)| (*user_id, Day(*day))));
        let rows = query.build().fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        user_events_from_rows(&rows)
    }

    async fn workout_events(
        conn: &mut SqliteConnection,
        workouts: &[(String, String)],
    ) -> StoreResult<Vec<(String, StoredEvent)>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE kind IN ('workout', 'workout_deleted') AND "
        ));
        push_per_user(&mut query, "dedupe_key", workouts.iter().map(|(user_id, id)| (user_id.as_str(), id.as_str())));
        let rows = query.build().fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        user_events_from_rows(&rows)
    }

    async fn stored_bodies(conn: &mut SqliteConnection, days: &[UserDay<'_>]) -> StoreResult<Vec<BodyRow>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new("SELECT user_id, day, body FROM entries WHERE ");
        push_per_user(&mut query, "day", days.iter().map(|(user_id, day)| (*user_id, Day(*day))));
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn take_positions(conn: &mut SqliteConnection, count: i64) -> StoreResult<i64> {
        sqlx::query_scalar("UPDATE feed_position SET position = position + $1 WHERE id = 1 RETURNING position")
            .bind(count)
            .fetch_one(conn)
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn insert_entries(conn: &mut SqliteConnection, entries: &[(StoredEntry, String)]) -> StoreResult<()> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(format!("INSERT INTO entries ({ENTRY_COLUMNS}) "));
        push_entry_rows(&mut query, entries);
        query.build().execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn upsert_entries(conn: &mut SqliteConnection, entries: &[(StoredEntry, String)]) -> StoreResult<()> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(format!("INSERT INTO entries ({ENTRY_COLUMNS}) "));
        push_entry_rows(&mut query, entries);
        query.push(
            " ON CONFLICT (user_id, day) DO UPDATE
             SET position = excluded.position, updated_at = excluded.updated_at, body = excluded.body,
                 rule_version = excluded.rule_version",
        );
        query.build().execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// (No index leads with `(user_id, seq)`, so this reads all of a user's entries in
    /// `events_by_day` in any form.)
    async fn newest_seqs(conn: &mut SqliteConnection, users: &[&str]) -> StoreResult<Vec<(String, i64)>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new("SELECT user_id, MAX(seq) AS seq FROM events WHERE user_id");
        push_in_list(&mut query, users.iter().copied());
        query.push(" GROUP BY user_id ORDER BY user_id");
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn entries_changed_after(conn: &mut SqliteConnection, span: &DaySpan, head: i64) -> StoreResult<bool> {
        // Counted over the span (`FILTER`, not `WHERE`), so that no plan walks the whole
        // position index looking for one.
        let sql = format!("SELECT COUNT(*) FILTER (WHERE position > $5) FROM entries WHERE {IN_SPAN}");
        let changed: i64 =
            in_span(&sql, span).bind(head).fetch_one(conn).await.map_err(StoreError::from_sqlx)?.try_get(0)?;
        Ok(changed > 0)
    }

    async fn record_sync(conn: &mut SqliteConnection, rows: &[SyncRow]) -> StoreResult<()> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO sync_status (user_id, actor, kind, events, newest_observed_at, last_stored_at, last_day) ",
        );
        query.push_values(rows, |mut values, row| {
            values
                .push_bind(row.user_id.as_str())
                .push_bind(row.actor.as_str())
                .push_bind(row.kind.as_str())
                .push_bind(row.events)
                .push_bind(row.newest_observed_at)
                .push_bind(row.last_stored_at)
                .push_bind(row.last_day);
        });
        query.push(
            " ON CONFLICT (user_id, actor, kind) DO UPDATE SET
                 events = sync_status.events + excluded.events,
                 newest_observed_at = MAX(sync_status.newest_observed_at, excluded.newest_observed_at),
                 last_stored_at = MAX(sync_status.last_stored_at, excluded.last_stored_at),
                 last_day = NULLIF(MAX(COALESCE(sync_status.last_day, ''), COALESCE(excluded.last_day, '')), '')",
        );
        query.build().execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn nth_event_day_after(
        conn: &mut SqliteConnection,
        after: &(String, NaiveDate),
        user_id: Option<&str>,
        n: i64,
    ) -> StoreResult<Option<(String, NaiveDate)>> {
        let mut query = event_days_after::<Sqlite>(after, user_id, " ORDER BY user_id, day LIMIT 1 OFFSET ");
        query.push_bind(n - 1);
        let found: Option<(String, Day)> =
            query.build_query_as().fetch_optional(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(found.map(user_day))
    }

    async fn last_event_day_after(
        conn: &mut SqliteConnection,
        after: &(String, NaiveDate),
        user_id: Option<&str>,
    ) -> StoreResult<Option<(String, NaiveDate)>> {
        let mut query = event_days_after::<Sqlite>(after, user_id, " ORDER BY user_id DESC, day DESC LIMIT 1");
        let found: Option<(String, Day)> =
            query.build_query_as().fetch_optional(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(found.map(user_day))
    }

    /// One range scan (a statement whose text never changes) that returns one row per day,
    /// its events as a JSON array. Rows are what cost here: sqlx hands each from its worker
    /// thread through a channel, column by column, which made reading a row per event most
    /// of a rebuild's time.
    async fn span_events(conn: &mut SqliteConnection, span: &DaySpan) -> StoreResult<Vec<(String, StoredEvent)>> {
        let sql = format!(
            "SELECT user_id, json_group_array(json_object(
                 'seq', seq, 'event_id', event_id, 'day', day, 'kind', kind, 'source', source,
                 'observed_at', observed_at, 'recorded_at', recorded_at, 'actor', actor,
                 'payload', json(payload))) AS events
             FROM events
             WHERE {IN_SPAN}
             GROUP BY user_id, day"
        );
        let rows = in_span(&sql, span).fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        let mut events = Vec::new();
        for row in &rows {
            let user_id: String = row.try_get("user_id")?;
            let day_events: &str = row.try_get("events")?;
            let day_events: Vec<EventJson> =
                serde_json::from_str(day_events).map_err(|e| StoreError::Corrupt(format!("events of a day: {e}")))?;
            for columns in day_events {
                events.push((user_id.clone(), columns.into_event()?));
            }
        }
        Ok(events)
    }

    async fn span_bodies(conn: &mut SqliteConnection, span: &DaySpan) -> StoreResult<Vec<BodyRow>> {
        let sql = format!("SELECT user_id, day, body FROM entries WHERE {IN_SPAN}");
        let rows = in_span(&sql, span).fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        rows.iter().map(|row| Ok(sqlx::FromRow::from_row(row)?)).collect()
    }

    async fn feed_head(conn: &mut SqliteConnection) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT position FROM feed_position WHERE id = 1")
            .fetch_one(conn)
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn event_days(conn: &mut SqliteConnection) -> StoreResult<Vec<(String, NaiveDate)>> {
        let days: Vec<(String, Day)> =
            sqlx::query_as("SELECT DISTINCT user_id, day FROM events WHERE day IS NOT NULL ORDER BY user_id, day")
                .fetch_all(conn)
                .await
                .map_err(StoreError::from_sqlx)?;
        Ok(days.into_iter().map(user_day).collect())
    }

    async fn rule_version(conn: &mut SqliteConnection) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM priority_rules")
            .fetch_one(conn)
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn priority_rule(conn: &mut SqliteConnection, version: i64) -> StoreResult<Option<RuleRow>> {
        sqlx::query_as("SELECT version, rule, set_at, set_by, applied_at FROM priority_rules WHERE version = $1")
            .bind(version)
            .fetch_optional(conn)
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn insert_priority_rule(
        conn: &mut SqliteConnection,
        version: i64,
        rule: &str,
        set_by: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO priority_rules (version, rule, set_at, set_by) VALUES ($1, $2, $3, $4)")
            .bind(version)
            .bind(rule)
            .bind(Timestamp(at))
            .bind(set_by)
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn mark_rule_applied(conn: &mut SqliteConnection, version: i64, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE priority_rules SET applied_at = $2 WHERE version = $1 AND applied_at IS NULL")
            .bind(version)
            .bind(Timestamp(at))
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn stamp_rule_version(conn: &mut SqliteConnection, span: &DaySpan, version: i64) -> StoreResult<()> {
        let sql = format!("UPDATE entries SET rule_version = $5 WHERE {IN_SPAN} AND rule_version <> $5");
        in_span(&sql, span).bind(version).execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn upgraded(conn: &mut SqliteConnection, upgrade: Upgrade, version: &str) -> StoreResult<bool> {
        let sql = format!("SELECT version FROM {} ORDER BY completed_at DESC, version DESC LIMIT 1", upgrade.table());
        let last: Option<String> =
            sqlx::query_scalar(&sql).fetch_optional(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(last.as_deref() == Some(version))
    }

    async fn mark_upgraded(
        conn: &mut SqliteConnection,
        upgrade: Upgrade,
        version: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO {} (version, completed_at) VALUES ($1, $2)
             ON CONFLICT (version) DO UPDATE SET completed_at = excluded.completed_at",
            upgrade.table()
        );
        sqlx::query(&sql).bind(version).bind(Timestamp(at)).execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Along `seq`, the table's own key (the user in `after` is not needed).
    async fn events_after(
        conn: &mut SqliteConnection,
        after: &(String, i64),
        limit: i64,
    ) -> StoreResult<Vec<StoredHash>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, dedupe_key, content_hash FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
        );
        let rows = sqlx::query(&sql).bind(after.1).bind(limit).fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        rows.iter().map(stored_hash_from_row).collect()
    }

    async fn update_hashes(conn: &mut SqliteConnection, upgrades: &[HashUpgrade]) -> StoreResult<()> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "UPDATE events SET dedupe_key = v.column1, content_hash = v.column2 FROM (VALUES ",
        );
        let mut values = query.separated(", ");
        for u in upgrades {
            values.push("(").push_bind_unseparated(&u.dedupe_key);
            values.push_bind(&u.content_hash).push_bind(&u.user_id).push_bind(u.seq);
            values.push_unseparated(")");
        }
        query.push(
            ") AS v WHERE events.user_id = v.column3 AND events.seq = v.column4 AND NOT EXISTS (
                 SELECT 1 FROM events AS same WHERE same.user_id = v.column3 AND same.kind = events.kind
                 AND same.dedupe_key = v.column1 AND same.content_hash = v.column2)",
        );
        query.build().execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn ping(conn: &mut SqliteConnection) -> StoreResult<()> {
        run(conn, "SELECT 1").await
    }

    /// Nothing to do: SQLite plans these reads by their indexes without statistics (an
    /// import's reads stay as fast as the tables grow: BENCHMARKS.md, the legacy import).
    async fn refresh_statistics(_conn: &mut SqliteConnection) -> StoreResult<()> {
        Ok(())
    }

    async fn live_tokens(conn: &mut SqliteConnection, token_hashes: &[&str]) -> StoreResult<Vec<TokenRow>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT token_hash, role, subject_id, device_id FROM tokens WHERE revoked_at IS NULL AND token_hash",
        );
        push_in_list(&mut query, token_hashes.iter().copied());
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn coach_of(conn: &mut SqliteConnection, user_id: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT coach_id FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(conn)
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn coach_exists(conn: &mut SqliteConnection, coach_id: &str) -> StoreResult<bool> {
        let found: Option<String> = sqlx::query_scalar("SELECT coach_id FROM coaches WHERE coach_id = $1")
            .bind(coach_id)
            .fetch_optional(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(found.is_some())
    }

    async fn insert_coach(
        conn: &mut SqliteConnection,
        coach_id: &str,
        name: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO coaches (coach_id, name, created_at) VALUES ($1, $2, $3)")
            .bind(coach_id)
            .bind(name)
            .bind(Timestamp(at))
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn insert_coach_token(
        conn: &mut SqliteConnection,
        token_hash: &str,
        coach_id: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO tokens (token_hash, role, subject_id, created_at) VALUES ($1, 'coach', $2, $3)")
            .bind(token_hash)
            .bind(coach_id)
            .bind(Timestamp(at))
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn ensure_user(
        conn: &mut SqliteConnection,
        user_id: &str,
        coach_id: &str,
        display_name: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (user_id, coach_id, display_name, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(coach_id)
        .bind(display_name)
        .bind(Timestamp(at))
        .execute(conn)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn rename_user(conn: &mut SqliteConnection, user_id: &str, display_name: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET display_name = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(display_name)
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(done.rows_affected() > 0)
    }

    async fn clients(conn: &mut SqliteConnection, clients: Clients<'_>) -> StoreResult<Vec<ClientRow>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT u.user_id, u.coach_id, u.display_name, u.created_at, u.roster_position FROM users u WHERE ",
        );
        push_clients(&mut query, clients);
        query.push(" ORDER BY u.user_id");
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn devices(conn: &mut SqliteConnection, clients: Clients<'_>) -> StoreResult<Vec<DeviceRow>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT t.subject_id AS user_id, COALESCE(t.device_id, '') AS device_id,
                    COALESCE(t.device_name, '') AS device_name, t.created_at, t.revoked_at
             FROM tokens t JOIN users u ON u.user_id = t.subject_id
             WHERE t.role = 'device' AND ",
        );
        push_clients(&mut query, clients);
        query.push(" ORDER BY t.subject_id, t.created_at");
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn syncs(conn: &mut SqliteConnection, clients: Clients<'_>) -> StoreResult<Vec<SyncRow>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT s.user_id, s.actor, s.kind, s.events, s.newest_observed_at, s.last_stored_at, s.last_day
             FROM sync_status s JOIN users u ON u.user_id = s.user_id
             WHERE ",
        );
        push_clients(&mut query, clients);
        query.push(" ORDER BY s.user_id, s.actor, s.kind");
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    /// The single writer already excludes every other.
    async fn lock_clients(_conn: &mut SqliteConnection, _users: &[&str]) -> StoreResult<()> {
        Ok(())
    }

    async fn set_roster_positions(conn: &mut SqliteConnection, positions: &[(&str, i64)]) -> StoreResult<()> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new("UPDATE users SET roster_position = v.column2 FROM (");
        query.push_values(positions, |mut row, (user_id, position)| {
            row.push_bind(*user_id).push_bind(*position);
        });
        query.push(") AS v WHERE users.user_id = v.column1");
        query.build().execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn claim_sync_notices(
        conn: &mut SqliteConnection,
        users: &[&str],
        before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new("UPDATE users SET roster_synced_at = ");
        query.push_bind(Timestamp(at)).push(" WHERE user_id");
        push_in_list(&mut query, users.iter().copied());
        query.push(" AND roster_synced_at < ").push_bind(Timestamp(before)).push(" RETURNING user_id");
        query.build_query_scalar().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn roster_rows(
        conn: &mut SqliteConnection,
        filter: &FeedFilter,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> StoreResult<Vec<(String, i64)>> {
        let mut query =
            sqlx::QueryBuilder::<Sqlite>::new("SELECT user_id, roster_position FROM users WHERE roster_position > ");
        query.push_bind(after).push(" AND roster_position <= ").push_bind(up_to);
        push_feed_filter(&mut query, filter, CoachOf::User);
        query.push(" ORDER BY roster_position LIMIT ").push_bind(i64::from(limit));
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn sync_of_actor(conn: &mut SqliteConnection, user_id: &str, actor: &str) -> StoreResult<Vec<SyncRow>> {
        sqlx::query_as(
            "SELECT user_id, actor, kind, events, newest_observed_at, last_stored_at, last_day
             FROM sync_status WHERE user_id = $1 AND actor = $2 ORDER BY kind",
        )
        .bind(user_id)
        .bind(actor)
        .fetch_all(conn)
        .await
        .map_err(StoreError::from_sqlx)
    }

    async fn insert_device_token(
        conn: &mut SqliteConnection,
        token_hash: &str,
        user_id: &str,
        device_id: &str,
        device_name: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tokens (token_hash, role, subject_id, device_id, device_name, created_at)
             VALUES ($1, 'device', $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(device_id)
        .bind(device_name)
        .bind(Timestamp(at))
        .execute(conn)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn insert_pairing_code(
        conn: &mut SqliteConnection,
        code_hash: &str,
        coach_id: &str,
        user_id: &str,
        display_name: Option<&str>,
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO pairing_codes (code_hash, coach_id, user_id, display_name, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(code_hash)
        .bind(coach_id)
        .bind(user_id)
        .bind(display_name)
        .bind(Timestamp(at))
        .bind(Timestamp(expires_at))
        .execute(conn)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn claim_pairing_code(
        conn: &mut SqliteConnection,
        code_hash: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<(String, String, Option<String>)>> {
        sqlx::query_as(
            "UPDATE pairing_codes SET redeemed_at = $2
             WHERE code_hash = $1 AND redeemed_at IS NULL AND expires_at > $2
             RETURNING user_id, coach_id, display_name",
        )
        .bind(code_hash)
        .bind(Timestamp(at))
        .fetch_optional(conn)
        .await
        .map_err(StoreError::from_sqlx)
    }

    async fn expire_pairing_codes_of(
        conn: &mut SqliteConnection,
        coach_id: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE pairing_codes SET expires_at = $2
             WHERE coach_id = $1 AND redeemed_at IS NULL AND expires_at > $2",
        )
        .bind(coach_id)
        .bind(Timestamp(at))
        .execute(conn)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn revoke_coach_tokens(conn: &mut SqliteConnection, coach_id: &str, at: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $2 WHERE role = 'coach' AND subject_id = $1 AND revoked_at IS NULL",
        )
        .bind(coach_id)
        .bind(Timestamp(at))
        .execute(conn)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(done.rows_affected())
    }

    async fn revoke_devices(
        conn: &mut SqliteConnection,
        user_id: &str,
        device_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $3
             WHERE role = 'device' AND subject_id = $1 AND ($2 IS NULL OR device_id = $2)
               AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(Timestamp(at))
        .execute(conn)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(done.rows_affected())
    }

    async fn entry(conn: &mut SqliteConnection, user_id: &str, day: NaiveDate) -> StoreResult<Option<EntryRow>> {
        sqlx::query_as(&format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE user_id = $1 AND day = $2"))
            .bind(user_id)
            .bind(Day(day))
            .fetch_optional(conn)
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn entries(
        conn: &mut SqliteConnection,
        user_id: &str,
        start: NaiveDate,
        end: NaiveDate,
        after: Option<NaiveDate>,
        limit: u32,
    ) -> StoreResult<Vec<EntryRow>> {
        sqlx::query_as(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries
             WHERE user_id = $1 AND day >= $2 AND day <= $3 AND ($4 IS NULL OR day > $4)
             ORDER BY day LIMIT $5"
        ))
        .bind(user_id)
        .bind(Day(start))
        .bind(Day(end))
        .bind(after.map(Day))
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await
        .map_err(StoreError::from_sqlx)
    }

    async fn insert_accesses(conn: &mut SqliteConnection, accesses: &[&Access]) -> StoreResult<()> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO access_log (user_id, accessor, rpc, detail, peer, accessed_at) ",
        );
        query.push_values(accesses, |mut row, access| {
            row.push_bind(&access.user_id)
                .push_bind(&access.accessor)
                .push_bind(&access.rpc)
                .push_bind(&access.detail)
                .push_bind(&access.peer)
                .push_bind(Timestamp(access.at));
        });
        query.build().execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn access_rows(
        conn: &mut SqliteConnection,
        user_id: &str,
        before: i64,
        limit: u32,
    ) -> StoreResult<Vec<AccessRow>> {
        sqlx::query_as(
            "SELECT seq, user_id, accessor, rpc, detail, peer, accessed_at FROM access_log
             WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(user_id)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await
        .map_err(StoreError::from_sqlx)
    }

    async fn user_events(
        conn: &mut SqliteConnection,
        user_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<(String, StoredEvent)>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(user_id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await
        .map_err(StoreError::from_sqlx)?;
        user_events_from_rows(&rows)
    }

    async fn delete_rows(
        conn: &mut SqliteConnection,
        table: &'static str,
        column: &'static str,
        value: &str,
    ) -> StoreResult<()> {
        sqlx::query(&format!("DELETE FROM {table} WHERE {column} = $1"))
            .bind(value)
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn was_removed(conn: &mut SqliteConnection, user_id: &str) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT position FROM removals WHERE user_id = $1 LIMIT 1")
            .bind(user_id)
            .fetch_optional(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(found.is_some())
    }

    async fn insert_removal(conn: &mut SqliteConnection, removal: &Removal, removed_by: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO removals (position, user_id, coach_id, removed_at, removed_by) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(removal.position)
        .bind(&removal.user_id)
        .bind(&removal.coach_id)
        .bind(Timestamp(removal.removed_at))
        .bind(removed_by)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from_sqlx)?;
        sqlx::query("UPDATE feed_position SET removed_through = $1 WHERE id = 1")
            .bind(removal.position)
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn removal_rows(
        conn: &mut SqliteConnection,
        filter: &FeedFilter,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> StoreResult<Vec<RemovalRow>> {
        let mut query = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT position, user_id, coach_id, removed_at FROM removals WHERE position > ",
        );
        query.push_bind(after).push(" AND position <= ").push_bind(up_to);
        push_feed_filter(&mut query, filter, CoachOf::Column);
        query.push(" ORDER BY position LIMIT ").push_bind(i64::from(limit));
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn feed_rows(
        conn: &mut SqliteConnection,
        filter: &FeedFilter,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> StoreResult<Vec<EntryRow>> {
        let mut query =
            sqlx::QueryBuilder::<Sqlite>::new(format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE position > "));
        query.push_bind(after).push(" AND position <= ").push_bind(up_to);
        push_feed_filter(&mut query, filter, CoachOf::User);
        query.push(" ORDER BY position LIMIT ").push_bind(i64::from(limit));
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::store::conformance::{self, steps};
    use crate::store::Store;
    use coachfit_testkit::ScratchDatabase;

    /// A store on a new file, removed with the returned guard.
    async fn open() -> (SqliteStore, ScratchDatabase) {
        let database = ScratchDatabase::create("sqlite").await.unwrap();
        let store = SqliteStore::open(&database.url).await.unwrap();
        (store, database)
    }

    #[tokio::test]
    async fn the_sqlite_store_conforms() {
        conformance::run(open).await;
    }

    /// A write dropped before its commit (a statement failed mid-transaction) is rolled
    /// back by the next write, not committed with it.
    #[tokio::test]
    async fn a_write_dropped_before_its_commit_is_rolled_back_by_the_next() {
        let (store, _db) = open().await;
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let mut dropped = store.backend().write(&[]).await.unwrap();
        sqlx::query("INSERT INTO coaches (coach_id, name, created_at) VALUES ('c1', 'Dropped', 0)")
            .execute(&mut *dropped)
            .await
            .unwrap();
        drop(dropped);

        conformance::users(&store, &["u1"]).await;
        store.append("u1", "u1", vec![steps(day, 1_000, 8)]).await.unwrap();

        let coaches: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM coaches").fetch_one(&store.backend().readers).await.unwrap();
        assert_eq!(coaches, 1, "the dropped write's coach was not committed (only the test's own)");
        let entry = store.get_entry("u1", day).await.unwrap().unwrap();
        assert_eq!(entry.body.steps, Some(1_000));
    }
}
