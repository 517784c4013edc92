//! The PostgreSQL store: several stateless instances on one database.
//!
//! Writes go through group commit (several requests per transaction, a few transactions in
//! flight per instance). Writers of one user are serialized by a transaction-scoped advisory
//! lock, so two instances re-folding the same day never lose an event. Feed positions come
//! from a counter row updated inside the write transaction: its row lock makes positions
//! commit in order.
//! Each instance relays committed changes to its subscribers: NOTIFY is only a wake-up, the
//! relay always reads the store by position (and re-reads after a reconnect or at least every
//! `RELAY_POLL`), so a lost notification delays a change but never drops it.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::group::GroupCommit;
use super::sql::{shared_imports, sql_store};
use super::{EntryChange, StoreError, StoreOptions, StoreResult, StoredEntry};

shared_imports!();

/// The NOTIFY channel that wakes every instance's relay.
const CHANNEL: &str = "coachfit_entries";
/// How often the relay reads the store even without a notification.
const RELAY_POLL: Duration = Duration::from_secs(2);
/// Connections for the feed: the relay's LISTEN connection plus readers.
const FEED_CONNECTIONS: u32 = 4;
/// Entries the relay reads per query.
const RELAY_PAGE: i64 = 256;
/// How a rebuild's read sees one snapshot of the database.
const READ_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
/// Events a rebuild re-folds per transaction, about. A chunk's dozen statements and two
/// transactions cost the same whatever its size: 12,288 rebuilt 1.13M events ~12% faster
/// than 6,144 (24,576: 3% more, for 40% more memory). A chunk holds its users' locks for
/// tens of milliseconds.
const REBUILD_CHUNK_EVENTS: i64 = 12_288;

/// Connection settings for PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub max_connections: u32,
    /// How long a call waits for a connection before answering UNAVAILABLE.
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// Group-commit lanes (transactions in flight at once) per instance, at most: while one
/// lane's transaction commits, the next group is already being written. Two, not four:
/// with four, the benchmark's fan-out p99 was 144–220 ms against 33–95 ms with two (more
/// transactions queue on the feed counter row), and single-item ingest was no faster.
const GROUP_LANES: u32 = 2;

#[derive(Clone)]
pub struct PostgresStore {
    writer: Arc<PgWriter>,
    /// For the relay and stream catch-ups only.
    feed_pool: PgPool,
    changes: broadcast::Sender<Arc<EntryChange>>,
    appends: GroupCommit,
    /// Kept for its `Drop`: the relay lives as long as some clone of the store.
    _relay: Arc<Relay>,
}

/// Writes on the request pool.
struct PgWriter {
    pool: PgPool,
    max_events_per_day: usize,
}

/// The relay task; it stops when the last clone of the store is dropped.
struct Relay(JoinHandle<()>);

impl Drop for Relay {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PostgresStore {
    /// Connects, runs the migrations (serialized across instances by sqlx's migration lock)
    /// and starts relaying committed changes to this instance's subscribers.
    pub async fn open(url: &str, settings: &PgSettings) -> StoreResult<PostgresStore> {
        Self::open_with(url, settings, &StoreOptions::default()).await
    }

    /// Like `open`, run with `store` options.
    pub async fn open_with(url: &str, settings: &PgSettings, store: &StoreOptions) -> StoreResult<PostgresStore> {
        let timeout = format!("{}ms", settings.statement_timeout.as_millis());
        // NOTICEs (such as "relation _sqlx_migrations already exists, skipping" on every start)
        // are not worth a log line.
        let options = PgConnectOptions::from_str(url)?
            .options([("statement_timeout", timeout.as_str()), ("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(StoreError::from_sqlx)?;
        // The feed has connections of its own (the relay's LISTEN connection, its reads, and
        // stream catch-ups): many streams catching up must not starve requests of connections,
        // and queued requests must not delay the feed.
        let feed_pool = PgPoolOptions::new()
            .max_connections(FEED_CONNECTIONS)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(StoreError::from_sqlx)?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let (changes, _) = broadcast::channel(store.feed_buffer);
        let head = feed_head(&pool).await?;
        let relay = tokio::spawn(relay_changes(feed_pool.clone(), changes.clone(), head));
        let writer = Arc::new(PgWriter { pool, max_events_per_day: store.max_events_per_day });
        let appends =
            GroupCommit::start(writer.clone(), GROUP_LANES.min(settings.max_connections) as usize, store.write_queue);
        let store = PostgresStore { writer, feed_pool, changes, appends, _relay: Arc::new(Relay(relay)) };
        store.upgrade_content_hashes().await?;
        Ok(store)
    }

    fn readers(&self) -> &PgPool {
        &self.writer.pool
    }

    fn feed_readers(&self) -> &PgPool {
        &self.feed_pool
    }

    fn subscribe_changes(&self) -> broadcast::Receiver<Arc<EntryChange>> {
        self.changes.subscribe()
    }
}

impl PgWriter {
    /// Starts a write holding the advisory lock of each of `users`, taken in one order
    /// everywhere so that two writers never wait for each other's locks.
    async fn write_tx(&self, users: &[&str]) -> StoreResult<PgWrite> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from_sqlx)?;
        if !users.is_empty() {
            sqlx::query(
                "SELECT pg_advisory_xact_lock(lock_key) FROM (
                     SELECT DISTINCT hashtextextended(user_id, 0) AS lock_key FROM UNNEST($1::text[]) AS user_id
                     ORDER BY lock_key
                 ) AS keys",
            )
            .bind(users)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        Ok(PgWrite { tx })
    }

    /// Commits with a NOTIFY, delivered to every instance's relay when (and if) it commits.
    async fn commit_and_publish(&self, mut write: PgWrite, changed: Vec<StoredEntry>) -> StoreResult<()> {
        if let Some(last) = changed.last() {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(last.position.to_string())
                .execute(&mut *write.tx)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        write.commit().await
    }
}

/// Follows NOTIFY as a hint and republishes committed changes, read by position, to the
/// local broadcast. Runs until aborted.
async fn relay_changes(pool: PgPool, changes: broadcast::Sender<Arc<EntryChange>>, start: i64) {
    let mut published = start;
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "feed relay cannot listen; retrying");
                tokio::time::sleep(RELAY_POLL).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "feed relay cannot listen; retrying");
            tokio::time::sleep(RELAY_POLL).await;
            continue;
        }
        loop {
            // Read first: whatever committed while we were not listening is caught here.
            if let Err(e) = relay_from(&pool, &changes, &mut published).await {
                tracing::warn!(error = %e, "feed relay read failed");
            }
            match tokio::time::timeout(RELAY_POLL, listener.try_recv()).await {
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "feed relay lost its listener; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Publishes every entry changed after `published`, in position order.
async fn relay_from(
    pool: &PgPool,
    changes: &broadcast::Sender<Arc<EntryChange>>,
    published: &mut i64,
) -> StoreResult<()> {
    let head = feed_head(pool).await?;
    if changes.receiver_count() == 0 {
        // Nobody here follows the live feed (a CLI rebuild, say), so there is nothing to
        // read. A later follower catches up from the database, and a change's `after`
        // tells it of any gap.
        *published = head;
        return Ok(());
    }
    while *published < head {
        let rows = sqlx::query(
            "SELECT e.user_id, e.day, e.position, e.updated_at_us, e.body, COALESCE(u.coach_id, '') AS coach_id
             FROM entries e LEFT JOIN users u ON u.user_id = e.user_id
             WHERE e.position > $1 AND e.position <= $2 ORDER BY e.position LIMIT $3",
        )
        .bind(*published)
        .bind(head)
        .bind(RELAY_PAGE)
        .fetch_all(pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        let complete = (rows.len() as i64) < RELAY_PAGE;
        for row in &rows {
            let Some(entry) = readable_entry(row)? else {
                // Skipped: the next change's `after` covers it, so no follower waits for it.
                *published = row.try_get("position")?;
                continue;
            };
            let change = EntryChange { after: *published, coach_id: row.try_get("coach_id")?, entry: Arc::new(entry) };
            *published = change.entry.position;
            let _ = changes.send(Arc::new(change));
        }
        if complete {
            // Positions up to head with no row now belong to entries changed again later;
            // those come in a later read. The next change still follows `published`.
            break;
        }
    }
    Ok(())
}

/// Appends ` = ANY($a)`, the items bound as one array: the statement's text is the same
/// for any number of items, so PostgreSQL parses and plans it once per connection (lists
/// of every length were new statements, and their planning was a quarter of a group's
/// time in the database).
fn push_in_list<'a, T>(query: &mut sqlx::QueryBuilder<'a, Postgres>, items: impl IntoIterator<Item = T>)
where
    T: 'a + sqlx::postgres::PgHasArrayType + sqlx::Encode<'a, Postgres> + sqlx::Type<Postgres> + Send,
{
    query.push(" = ANY(").push_bind(items.into_iter().collect::<Vec<T>>()).push(")");
}

/// Appends `(k1, k2, <column>) IN (SELECT * FROM UNNEST($a, $b, $c))`, each column's
/// values bound as one array (see `push_in_list`); an index on `(k1, k2, <column>, …)`
/// serves each row.
fn push_grouped<'a, const N: usize, T>(
    query: &mut sqlx::QueryBuilder<'a, Postgres>,
    key_columns: [&str; N],
    column: &str,
    items: impl IntoIterator<Item = ([&'a str; N], T)>,
) where
    T: 'a + sqlx::postgres::PgHasArrayType + sqlx::Encode<'a, Postgres> + sqlx::Type<Postgres> + Send,
{
    let mut keys: [Vec<&'a str>; N] = std::array::from_fn(|_| Vec::new());
    let mut values = Vec::new();
    for (key, value) in items {
        for (column, part) in keys.iter_mut().zip(key) {
            column.push(part);
        }
        values.push(value);
    }
    query.push("(").push(key_columns.join(", ")).push(", ").push(column).push(") IN (SELECT * FROM UNNEST(");
    for column in keys {
        query.push_bind(column).push(", ");
    }
    query.push_bind(values).push("))");
}

/// Appends the rows of `insert_events`, in the column order it names, as one array per
/// column (see `push_in_list`), in order: a request's events take their `seq`s in the
/// order they came.
fn push_event_rows<'a>(
    query: &mut sqlx::QueryBuilder<'a, Postgres>,
    recorded_at: DateTime<Utc>,
    rows: &'a [projector::EventRow<'a>],
) {
    let event_ids: Vec<String> = rows.iter().map(|row| row.event_id.to_string()).collect();
    let users: Vec<&str> = rows.iter().map(|row| row.user_id).collect();
    let days: Vec<Option<String>> = rows.iter().map(|row| row.day.map(|d| d.to_string())).collect();
    let kinds: Vec<&str> = rows.iter().map(|row| row.event.kind().as_str()).collect();
    let sources: Vec<&str> = rows.iter().map(|row| row.event.source.as_str()).collect();
    let keys: Vec<String> = rows.iter().map(|row| row.event.stored_key(row.event_id)).collect();
    let hashes: Vec<&str> = rows.iter().map(|row| row.event.content_hash.as_str()).collect();
    let payloads: Vec<String> =
        rows.iter().map(|row| serde_json::to_string(&row.event.payload).expect("payloads serialize")).collect();
    let observed: Vec<i64> = rows.iter().map(|row| micros(row.event.observed_at)).collect();
    let actors: Vec<&str> = rows.iter().map(|row| row.actor).collect();
    query
        .push("SELECT event_id, user_id, day, kind, source, dedupe_key, content_hash, payload, observed_at_us, ")
        .push_bind(micros(recorded_at))
        .push(", actor FROM UNNEST(")
        .push_bind(event_ids)
        .push(", ")
        .push_bind(users)
        .push(", ")
        .push_bind(days)
        .push(", ")
        .push_bind(kinds)
        .push(", ")
        .push_bind(sources)
        .push(", ")
        .push_bind(keys)
        .push(", ")
        .push_bind(hashes)
        .push(", ")
        .push_bind(payloads)
        .push(", ")
        .push_bind(observed)
        .push(", ")
        .push_bind(actors)
        .push(
            ") WITH ORDINALITY AS row (event_id, user_id, day, kind, source, dedupe_key, content_hash, payload,
                                        observed_at_us, actor, n) ORDER BY n",
        );
}

/// Appends the rows of `insert_entries` and `upsert_entries`, in the column order they
/// name, as one array per column (see `push_in_list`).
fn push_entry_rows<'a>(query: &mut sqlx::QueryBuilder<'a, Postgres>, entries: &'a [(StoredEntry, String)]) {
    let users: Vec<&str> = entries.iter().map(|(entry, _)| entry.user_id.as_str()).collect();
    let days: Vec<String> = entries.iter().map(|(entry, _)| entry.day.to_string()).collect();
    let positions: Vec<i64> = entries.iter().map(|(entry, _)| entry.position).collect();
    let updated: Vec<i64> = entries.iter().map(|(entry, _)| micros(entry.updated_at)).collect();
    let bodies: Vec<&str> = entries.iter().map(|(_, body)| body.as_str()).collect();
    query
        .push("SELECT * FROM UNNEST(")
        .push_bind(users)
        .push(", ")
        .push_bind(days)
        .push(", ")
        .push_bind(positions)
        .push(", ")
        .push_bind(updated)
        .push(", ")
        .push_bind(bodies)
        .push(")");
}

/// The events of the days of `span`, in any order (their related workouts' are read
/// apart): one range scan whose text never changes, so it is prepared once.
/// Up to `limit` events after `after` in the order of a walk over every event: the
/// primary key `(user_id, seq)`.
async fn events_after(
    conn: &mut PgConnection,
    after: &(String, i64),
    limit: i64,
) -> StoreResult<Vec<super::rehash::StoredHash>> {
    let sql =
        format!("SELECT {EVENT_COLUMNS}, dedupe_key, content_hash FROM events WHERE (user_id, seq) > ($1, $2) ORDER BY user_id, seq LIMIT $3");
    let rows = sqlx::query(&sql)
        .bind(&after.0)
        .bind(after.1)
        .bind(limit)
        .fetch_all(conn)
        .await
        .map_err(StoreError::from_sqlx)?;
    rows.iter().map(stored_hash_from_row).collect()
}

async fn span_events(conn: &mut PgConnection, span: &DaySpan) -> StoreResult<Vec<(String, StoredEvent)>> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE {IN_SPAN}");
    let rows = in_span(&sql, span).fetch_all(&mut *conn).await.map_err(StoreError::from_sqlx)?;
    user_events_from_rows(&rows)
}

/// The `seq` of each user's newest event, ordered by user id: one step down the primary
/// key `(user_id, seq)` per user. (`MAX(seq) ... GROUP BY user_id` read every event of
/// every user: 4 ms for the 11 users of a 1,024-day rebuild chunk, against 0.15 ms.)
async fn newest_seqs(conn: &mut PgConnection, users: &[&str]) -> StoreResult<Vec<(String, i64)>> {
    let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT user_id, (SELECT MAX(seq) FROM events WHERE events.user_id = users.user_id) AS seq
         FROM UNNEST($1::text[]) AS users (user_id) ORDER BY user_id",
    )
    .bind(users)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::from_sqlx)?;
    Ok(rows.into_iter().filter_map(|(user_id, seq)| Some((user_id, seq?))).collect())
}

/// One write transaction (under the user's advisory lock when it has one).
struct PgWrite {
    tx: sqlx::Transaction<'static, Postgres>,
}

impl PgWrite {
    async fn commit(self) -> StoreResult<()> {
        self.tx.commit().await.map_err(StoreError::from_sqlx)
    }
}

sql_store!(Postgres, PostgresStore, PgWriter, PgWrite);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::scratch::{test_postgres_server, ScratchDatabase};
    use crate::store::sql::{rebuild_tests, steps};
    use crate::store::Store;

    /// A store on a database of its own on the server the behavioural tests use, dropped
    /// with the returned guard.
    async fn open() -> (PostgresStore, ScratchDatabase) {
        let database = ScratchDatabase::create(&test_postgres_server()).await.unwrap();
        let store = PostgresStore::open(&database.url, &PgSettings::default()).await.unwrap();
        (store, database)
    }

    rebuild_tests!();
}
