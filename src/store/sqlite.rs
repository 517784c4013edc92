//! The embedded SQLite store: WAL, `synchronous=FULL`, one writer connection taking
//! `BEGIN IMMEDIATE` transactions, and a small pool of readers.

use std::collections::{BTreeSet, HashMap};
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{broadcast, Mutex, OwnedMutexGuard};

use super::group::GroupCommit;
use super::sql::{shared_imports, sql_store};
use super::{EntryChange, StoreError, StoreOptions, StoreResult, StoredEntry};

shared_imports!();

/// WAL pages written before a commit copies them back into the database file (SQLite's
/// default is 1,000). Ingest rewrites the same index pages commit after commit, so a longer
/// interval copies each of them back once instead of many times: single-item ingest +15%
/// and batch ingest +20% in interleaved benchmark runs, for a WAL of up to ~40 MB.
pub(crate) const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;
/// How a rebuild's read sees one snapshot of the database (a read transaction in WAL mode).
const READ_SNAPSHOT: &str = "BEGIN";
/// Events a rebuild re-folds per transaction, about: enough to spread a transaction's fixed
/// costs thin, few enough that a chunk's entry insert (5 parameters per day, a day per event
/// at most) stays under SQLite's 32,766 parameters.
const REBUILD_CHUNK_EVENTS: i64 = 6144;

#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<SqliteWriter>,
    readers: SqlitePool,
    appends: GroupCommit,
}

/// The one writer connection and what must happen under it.
struct SqliteWriter {
    /// Locked from `BEGIN` until the transaction's changes are published, so the live feed
    /// sees changes in commit (= position) order. The writer owns its connection rather than
    /// borrowing it from a pool of one: handing a pooled connection back and taking it again
    /// cost ~0.5–1 ms per transaction, as much as a group's statements.
    connection: Arc<Mutex<WriterConnection>>,
    changes: broadcast::Sender<Arc<EntryChange>>,
    max_events_per_day: usize,
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
        let connection = Arc::new(Mutex::new(WriterConnection { connection, open: false }));
        let writer = Arc::new(SqliteWriter { connection, changes, max_events_per_day: store.max_events_per_day });
        // One lane: there is one writer connection, and waiting requests join the next group.
        let appends = GroupCommit::start(writer.clone(), 1, store.write_queue);
        let store = SqliteStore { writer, readers, appends };
        store.upgrade_content_hashes().await?;
        Ok(store)
    }

    fn readers(&self) -> &SqlitePool {
        &self.readers
    }

    /// Readers never wait for the writer in WAL mode, so the feed shares them.
    fn feed_readers(&self) -> &SqlitePool {
        &self.readers
    }

    fn subscribe_changes(&self) -> broadcast::Receiver<Arc<EntryChange>> {
        self.writer.changes.subscribe()
    }
}

impl SqliteWriter {
    /// Starts a write: takes the write lock, then `BEGIN IMMEDIATE`. One writer at a time
    /// serializes every user-day.
    async fn write_tx(&self, _users: &[&str]) -> StoreResult<SqliteWrite> {
        let mut writer = self.connection.clone().lock_owned().await;
        if writer.open {
            run(&mut writer.connection, "ROLLBACK").await?;
            writer.open = false;
        }
        run(&mut writer.connection, "BEGIN IMMEDIATE").await?;
        writer.open = true;
        Ok(SqliteWrite { tx: WriterTransaction(Some(writer)) })
    }

    /// Commits, then publishes the changed entries while still holding the write lock.
    async fn commit_and_publish(&self, mut write: SqliteWrite, changed: Vec<StoredEntry>) -> StoreResult<()> {
        let coaches = coaches_of(&mut write.tx, &changed).await?;
        write.commit().await?;
        for entry in changed {
            let coach_id = coaches.get(&entry.user_id).cloned().unwrap_or_default();
            let change = EntryChange { after: entry.position - 1, coach_id, entry: Arc::new(entry) };
            // No receiver is fine: nobody is streaming.
            let _ = self.changes.send(Arc::new(change));
        }
        Ok(())
    }
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

/// Up to `limit` events after `after` in the order of a walk over every event: `seq`, the
/// table's own key (the user in `after` is not needed).
async fn events_after(
    conn: &mut SqliteConnection,
    after: &(String, i64),
    limit: i64,
) -> StoreResult<Vec<super::rehash::StoredHash>> {
    let sql =
        format!("SELECT {EVENT_COLUMNS}, dedupe_key, content_hash FROM events WHERE seq > $1 ORDER BY seq LIMIT $2");
    let rows = sqlx::query(&sql).bind(after.1).bind(limit).fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
    rows.iter().map(stored_hash_from_row).collect()
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
    let mut grouped: std::collections::BTreeMap<[&'a str; N], Vec<T>> = std::collections::BTreeMap::new();
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

/// Appends `VALUES (…), (…)`: the rows of `insert_events`, in the column order it names.
fn push_event_rows<'a>(
    query: &mut sqlx::QueryBuilder<'a, Sqlite>,
    recorded_at: DateTime<Utc>,
    rows: &'a [projector::EventRow<'a>],
) {
    query.push_values(rows, |mut values, row| {
        values
            .push_bind(row.event_id.to_string())
            .push_bind(row.user_id)
            .push_bind(row.day.map(|d| d.to_string()))
            .push_bind(row.event.kind().as_str())
            .push_bind(row.event.source.as_str())
            .push_bind(row.event.stored_key(row.event_id))
            .push_bind(row.event.content_hash.as_str())
            .push_bind(serde_json::to_string(&row.event.payload).expect("payloads serialize"))
            .push_bind(micros(row.event.observed_at))
            .push_bind(micros(recorded_at))
            .push_bind(row.actor);
    });
}

/// Appends `VALUES (…), (…)`: the rows of `insert_entries` and `upsert_entries`, in the
/// column order they name.
fn push_entry_rows<'a>(query: &mut sqlx::QueryBuilder<'a, Sqlite>, entries: &'a [(StoredEntry, String)]) {
    query.push_values(entries, |mut values, (entry, body)| {
        values
            .push_bind(entry.user_id.as_str())
            .push_bind(entry.day.to_string())
            .push_bind(entry.position)
            .push_bind(micros(entry.updated_at))
            .push_bind(body.as_str());
    });
}

/// The events of the days of `span`, in `(user_id, day)` order (their related workouts' are
/// read apart): one range scan (a statement whose text never changes) that returns one row
/// per day, its events as a JSON array. Rows are what cost here: sqlx hands each from its
/// worker thread through a channel, column by column, which made reading a row per event
/// most of a rebuild's time.
async fn span_events(conn: &mut SqliteConnection, span: &DaySpan) -> StoreResult<Vec<(String, StoredEvent)>> {
    let sql = format!(
        "SELECT user_id, json_group_array(json_object(
             'seq', seq, 'event_id', event_id, 'day', day, 'kind', kind, 'source', source,
             'observed_at_us', observed_at_us, 'recorded_at_us', recorded_at_us, 'actor', actor,
             'payload', json(payload))) AS events
         FROM events
         WHERE {IN_SPAN}
         GROUP BY user_id, day"
    );
    let rows = in_span(&sql, span).fetch_all(&mut *conn).await.map_err(StoreError::from_sqlx)?;
    let mut events = Vec::new();
    for row in &rows {
        let user_id: String = row.try_get("user_id")?;
        let day_events: &str = row.try_get("events")?;
        let day_events: Vec<EventColumns> =
            serde_json::from_str(day_events).map_err(|e| StoreError::Corrupt(format!("events of a day: {e}")))?;
        for columns in day_events {
            events.push((user_id.clone(), columns.into_event()?));
        }
    }
    Ok(events)
}

/// The `seq` of each user's newest event, ordered by user id. (No index leads with
/// `(user_id, seq)`, so this reads all of a user's entries in `events_by_day` in any form.)
async fn newest_seqs(conn: &mut SqliteConnection, users: &[&str]) -> StoreResult<Vec<(String, i64)>> {
    let mut query = sqlx::QueryBuilder::<Sqlite>::new("SELECT user_id, MAX(seq) AS seq FROM events WHERE user_id");
    push_in_list(&mut query, users.iter().copied());
    query.push(" GROUP BY user_id ORDER BY user_id");
    let rows = query.build().fetch_all(&mut *conn).await.map_err(StoreError::from_sqlx)?;
    rows.iter().map(|r| Ok((r.try_get("user_id")?, r.try_get("seq")?))).collect()
}

/// One `BEGIN IMMEDIATE` transaction on the writer connection, which it holds locked.
struct SqliteWrite {
    tx: WriterTransaction,
}

impl SqliteWrite {
    async fn commit(mut self) -> StoreResult<()> {
        run(&mut self.tx, "COMMIT").await?;
        // A failed COMMIT leaves the transaction open, and the flag set for a rollback.
        self.tx.writer().open = false;
        Ok(())
    }
}

/// The writer connection while a transaction is open on it; used as the connection itself.
/// Holds the write lock until dropped.
struct WriterTransaction(Option<OwnedMutexGuard<WriterConnection>>);

impl WriterTransaction {
    fn writer(&mut self) -> &mut WriterConnection {
        self.0.as_mut().expect("held until dropped")
    }
}

impl Deref for WriterTransaction {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.0.as_ref().expect("held until dropped").connection
    }
}

impl DerefMut for WriterTransaction {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.writer().connection
    }
}

impl Drop for WriterTransaction {
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

sql_store!(Sqlite, SqliteStore, SqliteWriter, SqliteWrite);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::scratch::ScratchDatabase;
    use crate::store::sql::{rebuild_tests, steps};
    use crate::store::Store;

    /// A store on a new file, removed with the returned guard.
    async fn open() -> (SqliteStore, ScratchDatabase) {
        let database = ScratchDatabase::create("sqlite").await.unwrap();
        let store = SqliteStore::open(&database.url).await.unwrap();
        (store, database)
    }

    rebuild_tests!();

    /// A write dropped before its commit (a statement failed mid-transaction) is rolled
    /// back by the next write, not committed with it.
    #[tokio::test]
    async fn a_write_dropped_before_its_commit_is_rolled_back_by_the_next() {
        let (store, _db) = open().await;
        let (rule, day) = (PriorityRule::default(), NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        let mut dropped = store.writer.write_tx(&[]).await.unwrap();
        sqlx::query("INSERT INTO coaches (coach_id, name, created_at_us) VALUES ('c1', 'Dropped', 0)")
            .execute(&mut *dropped.tx)
            .await
            .unwrap();
        drop(dropped);

        store.append("u1", "u1", vec![steps(day, 1_000, 8)], &rule).await.unwrap();

        let coaches: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM coaches").fetch_one(store.readers()).await.unwrap();
        assert_eq!(coaches, 0, "the dropped write's row was not committed");
        let entry = store.get_entry("u1", day).await.unwrap().unwrap();
        assert_eq!(entry.body.steps, Some(1_000));
    }
}
