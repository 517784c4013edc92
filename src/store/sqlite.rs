//! The embedded SQLite store: WAL, `synchronous=FULL`, one writer connection taking
//! `BEGIN IMMEDIATE` transactions, and a small pool of readers.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{broadcast, Mutex};

use super::group::GroupCommit;
use super::sql::{shared_imports, sql_store};
use super::{EntryChange, StoreError, StoreResult, StoredEntry, FEED_BUFFER};

shared_imports!();

#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<SqliteWriter>,
    readers: SqlitePool,
    appends: GroupCommit,
}

/// The one writer connection and what must happen under it.
struct SqliteWriter {
    pool: SqlitePool,
    /// Held from `BEGIN` until the transaction's changes are published, so the live feed
    /// sees changes in commit (= position) order.
    lock: Arc<Mutex<()>>,
    changes: broadcast::Sender<Arc<EntryChange>>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and runs the migrations.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        Self::open_with(url, FEED_BUFFER).await
    }

    /// Like `open`, with `feed_buffer` changes buffered for a slow feed reader before it must
    /// read back from the store.
    pub async fn open_with(url: &str, feed_buffer: usize) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(StoreError::from_sqlx)?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(StoreError::from_sqlx)?;
        let (changes, _) = broadcast::channel(feed_buffer);
        let writer = Arc::new(SqliteWriter { pool, lock: Arc::new(Mutex::new(())), changes });
        // One lane: there is one writer connection, and waiting requests join the next group.
        let appends = GroupCommit::start(writer.clone(), 1);
        Ok(SqliteStore { writer, readers, appends })
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
        let guard = self.lock.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(StoreError::from_sqlx)?;
        Ok(SqliteWrite { tx, _guard: guard })
    }

    /// Commits, then publishes the changed entries while still holding the write lock.
    async fn commit_and_publish(&self, mut write: SqliteWrite, changed: Vec<StoredEntry>) -> StoreResult<()> {
        let coaches = coaches_of(&mut write.tx, &changed).await?;
        write.tx.commit().await.map_err(StoreError::from_sqlx)?;
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

/// One `BEGIN IMMEDIATE` transaction on the writer connection, under the write lock.
struct SqliteWrite {
    tx: sqlx::Transaction<'static, Sqlite>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl SqliteWrite {
    async fn commit(self) -> StoreResult<()> {
        self.tx.commit().await.map_err(StoreError::from_sqlx)
    }
}

sql_store!(Sqlite, SqliteStore, SqliteWriter, SqliteWrite);

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::domain::event::{KeyReuse, NewEvent, Observed, Payload, StepsReport};
    use crate::domain::Source;
    use crate::store::Store;

    fn steps(day: NaiveDate, total_steps: u32, hours: i64) -> NewEvent {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + Duration::hours(hours);
        let payload = Payload::Steps(StepsReport { total_steps, source_devices: vec![] });
        NewEvent::new(Some(day), Source::Healthkit, Observed::ByClient(at), payload, None, KeyReuse::Reject)
    }

    /// A rebuild reads a chunk before it takes the writer; an event appended in between
    /// must make it read again, not overwrite the newer entry with a stale fold.
    #[tokio::test]
    async fn a_rebuild_chunk_read_before_a_new_event_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("t.db").display())).await.unwrap();
        let (rule, day) = (PriorityRule::default(), NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        store.append("u1", "u1", vec![steps(day, 1_000, 8)], &rule).await.unwrap();
        let chunk = store.event_days(Some("u1")).await.unwrap();
        let stale = store.prefetch_chunk(&chunk).await.unwrap().unwrap();

        store.append("u1", "u1", vec![steps(day, 2_000, 9)], &rule).await.unwrap();
        store.rebuild_chunk(&chunk, stale, &rule).await.unwrap();

        let entry = store.get_entry("u1", day).await.unwrap().unwrap();
        assert_eq!(entry.body.steps, Some(2_000));
    }
}
