//! The embedded SQLite store: WAL, `synchronous=FULL`, one writer connection taking
//! `BEGIN IMMEDIATE` transactions, and a small pool of readers.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use tokio::sync::{broadcast, mpsc, oneshot, Mutex};

use super::sql::{shared_imports, sql_store};
use super::{EntryChange, StoreError, StoreResult, StoredEntry, FEED_BUFFER};

shared_imports!();

#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Writer>,
    readers: SqlitePool,
    /// Appends go to the group-commit task, which writes several requests per transaction.
    appends: mpsc::Sender<AppendJob>,
}

/// The one writer connection and what must happen under it.
struct Writer {
    pool: SqlitePool,
    /// Held from `BEGIN` until the transaction's changes are published, so the live feed
    /// sees changes in commit (= position) order.
    lock: Arc<Mutex<()>>,
    changes: broadcast::Sender<Arc<EntryChange>>,
}

/// One request's append, waiting for the group commit that includes it.
struct AppendJob {
    user_id: String,
    actor: String,
    events: Vec<NewEvent>,
    rule: PriorityRule,
    reply: oneshot::Sender<StoreResult<Vec<AppendOutcome>>>,
}

/// Requests committed together at most; more wait for the next commit.
const MAX_GROUP: usize = 64;

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
        let writer = Arc::new(Writer { pool, lock: Arc::new(Mutex::new(())), changes });
        let (appends, jobs) = mpsc::channel(1024);
        tokio::spawn(group_commit(writer.clone(), jobs));
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

    async fn write_tx(&self, _user_id: Option<&str>) -> StoreResult<SqliteWrite> {
        self.writer.write_tx().await
    }

    async fn commit_and_publish(&self, write: SqliteWrite, changed: Vec<StoredEntry>) -> StoreResult<()> {
        self.writer.commit_and_publish(write, changed).await
    }

    /// Hands the append to the group-commit task and waits until it is committed.
    async fn append_events(
        &self,
        user_id: &str,
        actor: &str,
        events: Vec<NewEvent>,
        rule: &PriorityRule,
    ) -> StoreResult<Vec<AppendOutcome>> {
        let (reply, committed) = oneshot::channel();
        let job =
            AppendJob { user_id: user_id.to_string(), actor: actor.to_string(), events, rule: rule.clone(), reply };
        let gone = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        self.appends.send(job).await.map_err(|_| gone())?;
        committed.await.map_err(|_| gone())?
    }
}

/// Group commit: takes every append waiting, writes them in one transaction (one fsync),
/// and acknowledges each only after the commit. If the shared transaction fails, each
/// request is retried alone, so one bad request cannot fail its neighbours.
async fn group_commit(writer: Arc<Writer>, mut jobs: mpsc::Receiver<AppendJob>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        match writer.append_group(&group).await {
            Ok(outcomes) => {
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) if group.len() == 1 => {
                let _ = group.pop().expect("one job").reply.send(Err(e));
            }
            Err(_) => {
                for job in group {
                    let alone = writer.append_group(std::slice::from_ref(&job)).await;
                    let _ = job.reply.send(alone.map(|mut outcomes| outcomes.remove(0)));
                }
            }
        }
    }
}

impl Writer {
    /// Starts a write: takes the write lock, then `BEGIN IMMEDIATE`. One writer at a time
    /// also serializes every user-day.
    async fn write_tx(&self) -> StoreResult<SqliteWrite> {
        let guard = self.lock.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(StoreError::from_sqlx)?;
        Ok(SqliteWrite { tx, _guard: guard })
    }

    /// The appends of several requests in one transaction; one outcome list per request.
    async fn append_group(&self, group: &[AppendJob]) -> StoreResult<Vec<Vec<AppendOutcome>>> {
        let mut tx = self.write_tx().await?;
        let now = now();
        let (mut outcomes, mut changed) = (Vec::with_capacity(group.len()), Vec::new());
        for job in group {
            let (job_outcomes, job_changed) =
                projector::append(&mut tx, &job.user_id, &job.actor, &job.events, &job.rule, now).await?;
            outcomes.push(job_outcomes);
            changed.extend(job_changed);
        }
        self.commit_and_publish(tx, changed).await?;
        Ok(outcomes)
    }

    /// Commits, then publishes the changed entries while still holding the write lock.
    async fn commit_and_publish(&self, mut write: SqliteWrite, changed: Vec<StoredEntry>) -> StoreResult<()> {
        let mut published = Vec::with_capacity(changed.len());
        let mut coach: Option<(String, String)> = None; // (user_id, coach_id): a write is one user's
        for entry in changed {
            let coach_id = match &coach {
                Some((user_id, coach_id)) if *user_id == entry.user_id => coach_id.clone(),
                _ => {
                    let coach_id: String = sqlx::query_scalar("SELECT coach_id FROM users WHERE user_id = $1")
                        .bind(&entry.user_id)
                        .fetch_optional(&mut *write.tx)
                        .await
                        .map_err(StoreError::from_sqlx)?
                        .unwrap_or_default();
                    coach = Some((entry.user_id.clone(), coach_id.clone()));
                    coach_id
                }
            };
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
