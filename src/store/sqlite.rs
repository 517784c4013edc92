//! The embedded SQLite store: WAL, `synchronous=FULL`, one writer connection taking
//! `BEGIN IMMEDIATE` transactions, and a small pool of readers.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use tokio::sync::{broadcast, Mutex};

use super::sql::{shared_imports, sql_store};
use super::{EntryChange, StoreError, StoreResult, StoredEntry, FEED_BUFFER};

shared_imports!();

#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    /// Held from `BEGIN` until the transaction's changes are published, so the live feed
    /// sees changes in commit (= position) order.
    write_lock: Arc<Mutex<()>>,
    changes: broadcast::Sender<Arc<EntryChange>>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and runs the migrations.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(StoreError::from_sqlx)?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(StoreError::from_sqlx)?;
        let (changes, _) = broadcast::channel(FEED_BUFFER);
        Ok(SqliteStore { writer, readers, write_lock: Arc::new(Mutex::new(())), changes })
    }

    /// Sets how many changes the live feed buffers for a slow reader before it must read
    /// back from the store. Call before anyone subscribes.
    pub fn with_feed_buffer(mut self, changes: usize) -> Self {
        self.changes = broadcast::channel(changes).0;
        self
    }

    fn readers(&self) -> &SqlitePool {
        &self.readers
    }

    /// Starts a write: takes the write lock, then `BEGIN IMMEDIATE`. One writer at a time
    /// also serializes every user-day.
    async fn write_tx(&self, _user_id: Option<&str>) -> StoreResult<SqliteWrite> {
        let guard = self.write_lock.clone().lock_owned().await;
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(StoreError::from_sqlx)?;
        Ok(SqliteWrite { tx, _guard: guard })
    }

    /// Commits, then publishes the changed entries while still holding the write lock.
    async fn commit_and_publish(&self, mut write: SqliteWrite, changed: Vec<StoredEntry>) -> StoreResult<()> {
        let mut published = Vec::with_capacity(changed.len());
        for entry in changed {
            let coach_id: String = sqlx::query_scalar("SELECT coach_id FROM users WHERE user_id = $1")
                .bind(&entry.user_id)
                .fetch_optional(&mut *write.tx)
                .await
                .map_err(StoreError::from_sqlx)?
                .unwrap_or_default();
            published.push(Arc::new(EntryChange { after: entry.position - 1, coach_id, entry: Arc::new(entry) }));
        }
        write.tx.commit().await.map_err(StoreError::from_sqlx)?;
        for change in published {
            // No receiver is fine: nobody is streaming.
            let _ = self.changes.send(change);
        }
        Ok(())
    }
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

sql_store!(Sqlite, SqliteStore, SqliteWrite);
