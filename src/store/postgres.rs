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

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::backend::{Backend, Upgrade};
use super::columns::{Day, EventId, Timestamp};
use super::projector::{DaySpan, EventRow, Inserted, KeyLookup, KeyedEvent, Revision, UserDay};
use super::rehash::{HashUpgrade, StoredHash};
use super::roster::{self, Clients, Published};
use super::rows::{self, AccessRow, ClientRow, CoachOf, DeviceRow, RemovalRow, SyncRow};
use super::rows::{
    event_days_after, stored_hash_from_row, user_day, user_events_from_rows, BodyRow, EntryRow, RuleRow, TokenRow,
    ENTRY_COLUMNS, EVENT_COLUMNS, IN_SPAN,
};
use super::sql_store::SqlStore;
use super::{
    Access, FeedChange, FeedFilter, FeedRecord, PoolUse, Removal, StoreError, StoreOptions, StoreResult, StoredEntry,
};
use crate::domain::event::StoredEvent;
use crate::metrics::{FEED_POSITION, RELAY_LAG};

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

/// The store on a PostgreSQL database, shared by any number of instances.
pub type PostgresStore = SqlStore<PgBackend>;

pub struct PgBackend {
    /// For requests and writes.
    pool: PgPool,
    /// For the relay and stream catch-ups only.
    feed_pool: PgPool,
    changes: broadcast::Sender<Arc<FeedChange>>,
    /// Kept for its `Drop`: the relay lives as long as the backend.
    _relay: Relay,
}

/// The relay task; it stops when the backend is dropped.
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
        // Migrations run on a connection taken out of the pool, without the statement
        // timeout that guards requests: one that rewrites or backfills a large table takes
        // longer (migration 0010: 20 s for 3.3M events).
        let mut migrating = pool.acquire().await.map_err(StoreError::from_sqlx)?.detach();
        sqlx::query("SET statement_timeout = 0").execute(&mut migrating).await.map_err(StoreError::from_sqlx)?;
        sqlx::migrate!("migrations/postgres").run(&mut migrating).await?;
        migrating.close().await.map_err(StoreError::from_sqlx)?;
        // The feed has connections of its own (the relay's LISTEN connection, its reads, and
        // stream catch-ups): many streams catching up must not starve requests of connections,
        // and queued requests must not delay the feed.
        let feed_pool = PgPoolOptions::new()
            .max_connections(FEED_CONNECTIONS)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(StoreError::from_sqlx)?;
        let (changes, _) = broadcast::channel(store.feed_buffer);
        let head = PgBackend::feed_head(&mut *pool.acquire().await.map_err(StoreError::from_sqlx)?).await?;
        let relay = Relay(tokio::spawn(relay_changes(feed_pool.clone(), changes.clone(), head)));
        let lanes = GROUP_LANES.min(settings.max_connections) as usize;
        SqlStore::start(PgBackend { pool, feed_pool, changes, _relay: relay }, lanes, store).await
    }
}

/// Follows NOTIFY as a hint and republishes committed changes, read by position, to the
/// local broadcast. Runs until aborted.
async fn relay_changes(pool: PgPool, changes: broadcast::Sender<Arc<FeedChange>>, start: i64) {
    let mut cursor = RelayCursor { published: start, read_to: start };
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
            if let Err(e) = relay_from(&pool, &changes, &mut cursor).await {
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

/// How far a relay has got.
struct RelayCursor {
    /// The position of the last change published (what the next one follows).
    published: i64,
    /// Every change up to here has been read (positions without a row belong to records
    /// changed again later).
    read_to: i64,
}

/// Publishes every entry, roster change and removal after the cursor, in position order.
async fn relay_from(
    pool: &PgPool,
    changes: &broadcast::Sender<Arc<FeedChange>>,
    cursor: &mut RelayCursor,
) -> StoreResult<()> {
    let mut conn = pool.acquire().await.map_err(StoreError::from_sqlx)?;
    // Removals are rare: read only when one is newer than what was published.
    let (head, removed_through): (i64, i64) =
        sqlx::query_as("SELECT position, removed_through FROM feed_position WHERE id = 1")
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::from_sqlx)?;
    metrics::gauge!(RELAY_LAG).set((head - cursor.read_to) as f64);
    let published = &mut cursor.published;
    if changes.receiver_count() == 0 {
        // Nobody here follows the live feed (a CLI rebuild, say), so there is nothing to
        // read. A later follower catches up from the database, and a change's `after`
        // tells it of any gap.
        *published = head;
        cursor.read_to = head;
        return Ok(());
    }
    while *published < head {
        let rows: Vec<RelayRow> = sqlx::query_as(
            "SELECT e.user_id, e.day, e.position, e.updated_at, e.body, e.rule_version, COALESCE(u.coach_id, '') AS coach_id
             FROM entries e LEFT JOIN users u ON u.user_id = e.user_id
             WHERE e.position > $1 AND e.position <= $2 ORDER BY e.position LIMIT $3",
        )
        .bind(*published)
        .bind(head)
        .bind(RELAY_PAGE)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::from_sqlx)?;
        let touched = PgBackend::roster_rows(&mut conn, &FeedFilter::All, *published, head, RELAY_PAGE as u32).await?;
        let removed = match removed_through > *published {
            true => PgBackend::removal_rows(&mut conn, &FeedFilter::All, *published, head, RELAY_PAGE as u32).await?,
            false => Vec::new(),
        };
        let pages = [
            (rows.len(), rows.last().map(|row| row.entry.position)),
            (touched.len(), touched.last().map(|t| t.1)),
            (removed.len(), removed.last().map(|row| row.position)),
        ];
        let read_to = roster::read_to(head, RELAY_PAGE as usize, pages);
        let clients = roster::clients_read_to::<PgBackend>(&mut conn, touched, read_to).await?;
        // By position; `None` for an entry that cannot be read.
        let mut records: Vec<(i64, String, Option<FeedRecord>)> = rows
            .into_iter()
            .filter(|row| row.entry.position <= read_to)
            .map(|RelayRow { entry, coach_id }| {
                (entry.position, coach_id, entry.into_readable_entry().map(|entry| FeedRecord::Entry(Arc::new(entry))))
            })
            .collect();
        records.extend(
            clients
                .into_iter()
                .map(|client| (client.position, client.coach_id.clone(), Some(FeedRecord::Client(Arc::new(client))))),
        );
        for row in removed.into_iter().filter(|row| row.position <= read_to) {
            let removal = row.into_removal();
            records.push((removal.position, removal.coach_id.clone(), Some(FeedRecord::Removal(Arc::new(removal)))));
        }
        records.sort_by_key(|(position, _, _)| *position);
        for (position, coach_id, record) in records {
            let Some(record) = record else {
                // Skipped: the next change's `after` covers it, so no follower waits for it.
                *published = position;
                continue;
            };
            let _ = changes.send(Arc::new(FeedChange { after: *published, coach_id, record }));
            *published = position;
        }
        if read_to == head {
            // Positions up to head with no row now belong to records changed again later;
            // those come in a later read. The next change still follows `published`.
            break;
        }
        *published = read_to;
    }
    cursor.read_to = head;
    metrics::gauge!(FEED_POSITION).set(head as f64);
    metrics::gauge!(RELAY_LAG).set(0.0);
    Ok(())
}

/// A changed entry and its user's coach, as the relay reads them.
#[derive(sqlx::FromRow)]
struct RelayRow {
    #[sqlx(flatten)]
    entry: EntryRow,
    coach_id: String,
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

/// `rows::push_clients` with this backend's list test.
fn push_clients<'a>(query: &mut sqlx::QueryBuilder<'a, Postgres>, clients: Clients<'a>) {
    rows::push_clients(query, clients, |query, users| push_in_list(query, users.iter().map(String::as_str)));
}

/// `rows::push_feed_filter` with this backend's list test.
fn push_feed_filter<'a>(query: &mut sqlx::QueryBuilder<'a, Postgres>, filter: &'a FeedFilter, coach_of: CoachOf) {
    rows::push_feed_filter(query, filter, coach_of, |query, users| {
        push_in_list(query, users.iter().map(String::as_str))
    });
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
    rows: &'a [EventRow<'a>],
) {
    let event_ids: Vec<EventId> = rows.iter().map(|row| EventId(row.event_id)).collect();
    let users: Vec<&str> = rows.iter().map(|row| row.user_id).collect();
    let days: Vec<Option<Day>> = rows.iter().map(|row| row.day.map(Day)).collect();
    let kinds: Vec<&str> = rows.iter().map(|row| row.event.kind().as_str()).collect();
    let sources: Vec<&str> = rows.iter().map(|row| row.event.source.as_str()).collect();
    let keys: Vec<String> = rows.iter().map(|row| row.event.stored_key(row.event_id)).collect();
    let hashes: Vec<&str> = rows.iter().map(|row| row.event.content_hash.as_str()).collect();
    let payloads: Vec<String> =
        rows.iter().map(|row| serde_json::to_string(&row.event.payload).expect("payloads serialize")).collect();
    let observed: Vec<Timestamp> = rows.iter().map(|row| Timestamp(row.event.observed_at)).collect();
    let actors: Vec<&str> = rows.iter().map(|row| row.actor).collect();
    query
        .push("SELECT event_id, user_id, day, kind, source, dedupe_key, content_hash, payload, observed_at, ")
        .push_bind(Timestamp(recorded_at))
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
                                        observed_at, actor, n) ORDER BY n",
        );
}

/// Appends the rows of `insert_entries` and `upsert_entries`, in the column order they
/// name, as one array per column (see `push_in_list`).
fn push_entry_rows<'a>(query: &mut sqlx::QueryBuilder<'a, Postgres>, entries: &'a [(StoredEntry, String)]) {
    let users: Vec<&str> = entries.iter().map(|(entry, _)| entry.user_id.as_str()).collect();
    let days: Vec<Day> = entries.iter().map(|(entry, _)| Day(entry.day)).collect();
    let positions: Vec<i64> = entries.iter().map(|(entry, _)| entry.position).collect();
    let updated: Vec<Timestamp> = entries.iter().map(|(entry, _)| Timestamp(entry.updated_at)).collect();
    let bodies: Vec<&str> = entries.iter().map(|(_, body)| body.as_str()).collect();
    let versions: Vec<i64> = entries.iter().map(|(entry, _)| entry.rule_version).collect();
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
        .push(", ")
        .push_bind(versions)
        .push(")");
}

/// One write transaction (under the advisory locks of its users).
pub type PgWrite = sqlx::Transaction<'static, Postgres>;

/// `push_grouped` by user: rows whose `(user_id, <column>)` is one of `pairs`.
fn push_per_user<'a, T>(
    query: &mut sqlx::QueryBuilder<'a, Postgres>,
    column: &str,
    pairs: impl IntoIterator<Item = (&'a str, T)>,
) where
    T: 'a + sqlx::postgres::PgHasArrayType + sqlx::Encode<'a, Postgres> + sqlx::Type<Postgres> + Send,
{
    push_grouped(query, ["user_id"], column, pairs.into_iter().map(|(user_id, item)| ([user_id], item)));
}

/// `sql`, a statement on the rows `IN_SPAN`, with the bounds of `span` bound.
fn in_span<'q>(sql: &'q str, span: &'q DaySpan) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql).bind(&span.after.0).bind(Day(span.after.1)).bind(&span.last.0).bind(Day(span.last.1))
}

impl Backend for PgBackend {
    type Conn = PgConnection;
    type Reader = PoolConnection<Postgres>;
    type Snapshot = sqlx::Transaction<'static, Postgres>;
    type Write = PgWrite;

    /// A chunk's dozen statements and two transactions cost the same whatever its size:
    /// 12,288 rebuilt 1.13M events ~12% faster than 6,144 (24,576: 3% more, for 40% more
    /// memory). A chunk holds its users' locks for tens of milliseconds.
    const REBUILD_CHUNK_EVENTS: i64 = 12_288;

    async fn reader(&self) -> StoreResult<PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(StoreError::from_sqlx)
    }

    async fn feed_reader(&self) -> StoreResult<PoolConnection<Postgres>> {
        self.feed_pool.acquire().await.map_err(StoreError::from_sqlx)
    }

    async fn snapshot(&self) -> StoreResult<sqlx::Transaction<'static, Postgres>> {
        self.pool.begin_with(READ_SNAPSHOT).await.map_err(StoreError::from_sqlx)
    }

    async fn end_snapshot(snapshot: sqlx::Transaction<'static, Postgres>) -> StoreResult<()> {
        snapshot.commit().await.map_err(StoreError::from_sqlx)
    }

    /// Holds the advisory lock of each of `users`, taken in one order everywhere so that two
    /// writers never wait for each other's locks.
    /// A write of users' data also holds the priority rule's lock shared, taken first (in the
    /// same statement: the one-time subquery runs before any user's lock), so that a change
    /// of the rule (`write_rule`) waits for the writes in progress.
    async fn write(&self, users: &[&str]) -> StoreResult<PgWrite> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from_sqlx)?;
        if !users.is_empty() {
            sqlx::query(
                "SELECT pg_advisory_xact_lock(lock_key) FROM (
                     SELECT DISTINCT hashtextextended(user_id, 0) AS lock_key FROM UNNEST($1::text[]) AS user_id
                     WHERE (SELECT count(*) FROM (SELECT pg_advisory_xact_lock_shared(hashtextextended('rules:priority', 0))) AS rule) = 1
                     ORDER BY lock_key
                 ) AS keys",
            )
            .bind(users)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        Ok(tx)
    }

    async fn write_rule(&self) -> StoreResult<PgWrite> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from_sqlx)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('rules:priority', 0))")
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(tx)
    }

    async fn commit(write: PgWrite) -> StoreResult<()> {
        write.commit().await.map_err(StoreError::from_sqlx)
    }

    /// Commits with a NOTIFY, delivered to every instance's relay when (and if) it commits;
    /// the relays read what changed by position.
    async fn commit_and_publish(&self, mut write: PgWrite, changed: Published) -> StoreResult<()> {
        if !changed.is_empty() {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(&mut *write)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        Self::commit(write).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<FeedChange>> {
        self.changes.subscribe()
    }

    fn pools(&self) -> Vec<PoolUse> {
        let usage = |pool: &'static str, connections: &PgPool| PoolUse {
            pool,
            open: connections.size(),
            idle: connections.num_idle(),
        };
        vec![usage("requests", &self.pool), usage("feed", &self.feed_pool)]
    }

    async fn keyed_events(conn: &mut PgConnection, keys: &[KeyLookup<'_>]) -> StoreResult<Vec<KeyedEvent>> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(
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
        conn: &mut PgConnection,
        recorded_at: DateTime<Utc>,
        rows: &[EventRow<'_>],
    ) -> StoreResult<Inserted> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(
            "INSERT INTO events (event_id, user_id, day, kind, source, dedupe_key, content_hash, payload,
                                 observed_at, recorded_at, actor) ",
        );
        push_event_rows(&mut query, recorded_at, rows);
        query.push(" RETURNING event_id, seq, (SELECT COALESCE(MAX(version), 0) FROM priority_rules) AS rule_version");
        let rows = query.build().fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        let ids = rows.iter().map(|r| Ok((r.try_get::<EventId, _>("event_id")?.0, r.try_get("seq")?)));
        let rule_version = rows.first().map(|r| r.try_get("rule_version")).transpose()?.unwrap_or_default();
        Ok(Inserted { ids: ids.collect::<StoreResult<_>>()?, rule_version })
    }

    async fn workout_revisions(conn: &mut PgConnection, workouts: &[(&str, &str)]) -> StoreResult<Vec<Revision>> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(
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

    async fn day_events(conn: &mut PgConnection, days: &[UserDay<'_>]) -> StoreResult<Vec<(String, StoredEvent)>> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE "));
        push_per_user(&mut query, "day", days.iter().map(|(user_id, day)| (*user_id, Day(*day))));
        let rows = query.build().fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        user_events_from_rows(&rows)
    }

    async fn workout_events(
        conn: &mut PgConnection,
        workouts: &[(String, String)],
    ) -> StoreResult<Vec<(String, StoredEvent)>> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE kind IN ('workout', 'workout_deleted') AND "
        ));
        push_per_user(&mut query, "dedupe_key", workouts.iter().map(|(user_id, id)| (user_id.as_str(), id.as_str())));
        let rows = query.build().fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        user_events_from_rows(&rows)
    }

    async fn stored_bodies(conn: &mut PgConnection, days: &[UserDay<'_>]) -> StoreResult<Vec<BodyRow>> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new("SELECT user_id, day, body FROM entries WHERE ");
        push_per_user(&mut query, "day", days.iter().map(|(user_id, day)| (*user_id, Day(*day))));
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn take_positions(conn: &mut PgConnection, count: i64) -> StoreResult<i64> {
        sqlx::query_scalar("UPDATE feed_position SET position = position + $1 WHERE id = 1 RETURNING position")
            .bind(count)
            .fetch_one(conn)
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn insert_entries(conn: &mut PgConnection, entries: &[(StoredEntry, String)]) -> StoreResult<()> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(format!("INSERT INTO entries ({ENTRY_COLUMNS}) "));
        push_entry_rows(&mut query, entries);
        query.build().execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn upsert_entries(conn: &mut PgConnection, entries: &[(StoredEntry, String)]) -> StoreResult<()> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(format!("INSERT INTO entries ({ENTRY_COLUMNS}) "));
        push_entry_rows(&mut query, entries);
        query.push(
            " ON CONFLICT (user_id, day) DO UPDATE
             SET position = excluded.position, updated_at = excluded.updated_at, body = excluded.body,
                 rule_version = excluded.rule_version",
        );
        query.build().execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// One step down the primary key `(user_id, seq)` per user. (`MAX(seq) ... GROUP BY
    /// user_id` read every event of every user: 4 ms for the 11 users of a 1,024-day
    /// rebuild chunk, against 0.15 ms.)
    async fn newest_seqs(conn: &mut PgConnection, users: &[&str]) -> StoreResult<Vec<(String, i64)>> {
        let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT user_id, (SELECT MAX(seq) FROM events WHERE events.user_id = users.user_id) AS seq
             FROM UNNEST($1::text[]) AS users (user_id) ORDER BY user_id",
        )
        .bind(users)
        .fetch_all(conn)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(rows.into_iter().filter_map(|(user_id, seq)| Some((user_id, seq?))).collect())
    }

    async fn entries_changed_after(conn: &mut PgConnection, span: &DaySpan, head: i64) -> StoreResult<bool> {
        // Counted over the span (`FILTER`, not `WHERE`), so that no plan walks the whole
        // position index looking for one.
        let sql = format!("SELECT COUNT(*) FILTER (WHERE position > $5) FROM entries WHERE {IN_SPAN}");
        let changed: i64 =
            in_span(&sql, span).bind(head).fetch_one(conn).await.map_err(StoreError::from_sqlx)?.try_get(0)?;
        Ok(changed > 0)
    }

    async fn record_sync(conn: &mut PgConnection, rows: &[SyncRow]) -> StoreResult<()> {
        let column = |value: fn(&SyncRow) -> &str| rows.iter().map(value).collect::<Vec<&str>>();
        let time = |value: fn(&SyncRow) -> Timestamp| rows.iter().map(value).collect::<Vec<Timestamp>>();
        let events: Vec<i64> = rows.iter().map(|row| row.events).collect();
        let days: Vec<Option<Day>> = rows.iter().map(|row| row.last_day).collect();
        sqlx::query(
            "INSERT INTO sync_status (user_id, actor, kind, events, newest_observed_at, last_stored_at, last_day)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::timestamptz[], $6::timestamptz[], $7::date[])
             ON CONFLICT (user_id, actor, kind) DO UPDATE SET
                 events = sync_status.events + EXCLUDED.events,
                 newest_observed_at = GREATEST(sync_status.newest_observed_at, EXCLUDED.newest_observed_at),
                 last_stored_at = GREATEST(sync_status.last_stored_at, EXCLUDED.last_stored_at),
                 last_day = GREATEST(sync_status.last_day, EXCLUDED.last_day)",
        )
        .bind(column(|row| &row.user_id))
        .bind(column(|row| &row.actor))
        .bind(column(|row| &row.kind))
        .bind(events)
        .bind(time(|row| row.newest_observed_at))
        .bind(time(|row| row.last_stored_at))
        .bind(days)
        .execute(conn)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn nth_event_day_after(
        conn: &mut PgConnection,
        after: &(String, NaiveDate),
        user_id: Option<&str>,
        n: i64,
    ) -> StoreResult<Option<(String, NaiveDate)>> {
        let mut query = event_days_after::<Postgres>(after, user_id, " ORDER BY user_id, day LIMIT 1 OFFSET ");
        query.push_bind(n - 1);
        let found: Option<(String, Day)> =
            query.build_query_as().fetch_optional(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(found.map(user_day))
    }

    async fn last_event_day_after(
        conn: &mut PgConnection,
        after: &(String, NaiveDate),
        user_id: Option<&str>,
    ) -> StoreResult<Option<(String, NaiveDate)>> {
        let mut query = event_days_after::<Postgres>(after, user_id, " ORDER BY user_id DESC, day DESC LIMIT 1");
        let found: Option<(String, Day)> =
            query.build_query_as().fetch_optional(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(found.map(user_day))
    }

    /// One range scan whose text never changes, so it is prepared once.
    async fn span_events(conn: &mut PgConnection, span: &DaySpan) -> StoreResult<Vec<(String, StoredEvent)>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE {IN_SPAN}");
        let rows = in_span(&sql, span).fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        user_events_from_rows(&rows)
    }

    async fn span_bodies(conn: &mut PgConnection, span: &DaySpan) -> StoreResult<Vec<BodyRow>> {
        let sql = format!("SELECT user_id, day, body FROM entries WHERE {IN_SPAN}");
        let rows = in_span(&sql, span).fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
        rows.iter().map(|row| Ok(sqlx::FromRow::from_row(row)?)).collect()
    }

    async fn feed_head(conn: &mut PgConnection) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT position FROM feed_position WHERE id = 1")
            .fetch_one(conn)
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn event_days(conn: &mut PgConnection) -> StoreResult<Vec<(String, NaiveDate)>> {
        let days: Vec<(String, Day)> =
            sqlx::query_as("SELECT DISTINCT user_id, day FROM events WHERE day IS NOT NULL ORDER BY user_id, day")
                .fetch_all(conn)
                .await
                .map_err(StoreError::from_sqlx)?;
        Ok(days.into_iter().map(user_day).collect())
    }

    async fn rule_version(conn: &mut PgConnection) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM priority_rules")
            .fetch_one(conn)
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn priority_rule(conn: &mut PgConnection, version: i64) -> StoreResult<Option<RuleRow>> {
        sqlx::query_as("SELECT version, rule, set_at, set_by, applied_at FROM priority_rules WHERE version = $1")
            .bind(version)
            .fetch_optional(conn)
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn insert_priority_rule(
        conn: &mut PgConnection,
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

    async fn mark_rule_applied(conn: &mut PgConnection, version: i64, at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE priority_rules SET applied_at = $2 WHERE version = $1 AND applied_at IS NULL")
            .bind(version)
            .bind(Timestamp(at))
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn stamp_rule_version(conn: &mut PgConnection, span: &DaySpan, version: i64) -> StoreResult<()> {
        let sql = format!("UPDATE entries SET rule_version = $5 WHERE {IN_SPAN} AND rule_version <> $5");
        in_span(&sql, span).bind(version).execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn upgraded(conn: &mut PgConnection, upgrade: Upgrade, version: &str) -> StoreResult<bool> {
        let sql = format!("SELECT version FROM {} ORDER BY completed_at DESC, version DESC LIMIT 1", upgrade.table());
        let last: Option<String> =
            sqlx::query_scalar(&sql).fetch_optional(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(last.as_deref() == Some(version))
    }

    async fn mark_upgraded(
        conn: &mut PgConnection,
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

    /// Along the primary key `(user_id, seq)`.
    async fn events_after(conn: &mut PgConnection, after: &(String, i64), limit: i64) -> StoreResult<Vec<StoredHash>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, dedupe_key, content_hash FROM events
             WHERE (user_id, seq) > ($1, $2) ORDER BY user_id, seq LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(&after.0)
            .bind(after.1)
            .bind(limit)
            .fetch_all(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        rows.iter().map(stored_hash_from_row).collect()
    }

    async fn update_hashes(conn: &mut PgConnection, upgrades: &[HashUpgrade]) -> StoreResult<()> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(
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

    async fn ping(conn: &mut PgConnection) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn refresh_statistics(conn: &mut PgConnection) -> StoreResult<()> {
        sqlx::query("ANALYZE events, entries").execute(conn).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn live_tokens(conn: &mut PgConnection, token_hashes: &[&str]) -> StoreResult<Vec<TokenRow>> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(
            "SELECT token_hash, role, subject_id, device_id FROM tokens WHERE revoked_at IS NULL AND token_hash",
        );
        push_in_list(&mut query, token_hashes.iter().copied());
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn coach_of(conn: &mut PgConnection, user_id: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT coach_id FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(conn)
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn coach_exists(conn: &mut PgConnection, coach_id: &str) -> StoreResult<bool> {
        let found: Option<String> = sqlx::query_scalar("SELECT coach_id FROM coaches WHERE coach_id = $1")
            .bind(coach_id)
            .fetch_optional(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(found.is_some())
    }

    async fn insert_coach(conn: &mut PgConnection, coach_id: &str, name: &str, at: DateTime<Utc>) -> StoreResult<()> {
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
        conn: &mut PgConnection,
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
        conn: &mut PgConnection,
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

    async fn rename_user(conn: &mut PgConnection, user_id: &str, display_name: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET display_name = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(display_name)
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(done.rows_affected() > 0)
    }

    async fn clients(conn: &mut PgConnection, clients: Clients<'_>) -> StoreResult<Vec<ClientRow>> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(
            "SELECT u.user_id, u.coach_id, u.display_name, u.created_at, u.roster_position FROM users u WHERE ",
        );
        push_clients(&mut query, clients);
        query.push(" ORDER BY u.user_id");
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn devices(conn: &mut PgConnection, clients: Clients<'_>) -> StoreResult<Vec<DeviceRow>> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(
            "SELECT t.subject_id AS user_id, COALESCE(t.device_id, '') AS device_id,
                    COALESCE(t.device_name, '') AS device_name, t.created_at, t.revoked_at
             FROM tokens t JOIN users u ON u.user_id = t.subject_id
             WHERE t.role = 'device' AND ",
        );
        push_clients(&mut query, clients);
        query.push(" ORDER BY t.subject_id, t.created_at");
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn syncs(conn: &mut PgConnection, clients: Clients<'_>) -> StoreResult<Vec<SyncRow>> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(
            "SELECT s.user_id, s.actor, s.kind, s.events, s.newest_observed_at, s.last_stored_at, s.last_day
             FROM sync_status s JOIN users u ON u.user_id = s.user_id
             WHERE ",
        );
        push_clients(&mut query, clients);
        query.push(" ORDER BY s.user_id, s.actor, s.kind");
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    /// In user order, so that two writes lock the same clients in one order.
    async fn lock_clients(conn: &mut PgConnection, users: &[&str]) -> StoreResult<()> {
        sqlx::query("SELECT 1 FROM users WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE")
            .bind(users)
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn set_roster_positions(conn: &mut PgConnection, positions: &[(&str, i64)]) -> StoreResult<()> {
        let users: Vec<&str> = positions.iter().map(|(user_id, _)| *user_id).collect();
        let numbers: Vec<i64> = positions.iter().map(|(_, position)| *position).collect();
        sqlx::query(
            "UPDATE users SET roster_position = v.position
             FROM UNNEST($1::text[], $2::int8[]) AS v (user_id, position)
             WHERE users.user_id = v.user_id",
        )
        .bind(users)
        .bind(numbers)
        .execute(conn)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn claim_sync_notices(
        conn: &mut PgConnection,
        users: &[&str],
        before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "UPDATE users SET roster_synced_at = $3 WHERE user_id = ANY($1) AND roster_synced_at < $2
             RETURNING user_id",
        )
        .bind(users)
        .bind(Timestamp(before))
        .bind(Timestamp(at))
        .fetch_all(conn)
        .await
        .map_err(StoreError::from_sqlx)
    }

    async fn roster_rows(
        conn: &mut PgConnection,
        filter: &FeedFilter,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> StoreResult<Vec<(String, i64)>> {
        let mut query =
            sqlx::QueryBuilder::<Postgres>::new("SELECT user_id, roster_position FROM users WHERE roster_position > ");
        query.push_bind(after).push(" AND roster_position <= ").push_bind(up_to);
        push_feed_filter(&mut query, filter, CoachOf::User);
        query.push(" ORDER BY roster_position LIMIT ").push_bind(i64::from(limit));
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn sync_of_actor(conn: &mut PgConnection, user_id: &str, actor: &str) -> StoreResult<Vec<SyncRow>> {
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
        conn: &mut PgConnection,
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
        conn: &mut PgConnection,
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
        conn: &mut PgConnection,
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

    async fn expire_pairing_codes_of(conn: &mut PgConnection, coach_id: &str, at: DateTime<Utc>) -> StoreResult<()> {
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

    async fn revoke_coach_tokens(conn: &mut PgConnection, coach_id: &str, at: DateTime<Utc>) -> StoreResult<u64> {
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
        conn: &mut PgConnection,
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

    async fn entry(conn: &mut PgConnection, user_id: &str, day: NaiveDate) -> StoreResult<Option<EntryRow>> {
        sqlx::query_as(&format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE user_id = $1 AND day = $2"))
            .bind(user_id)
            .bind(Day(day))
            .fetch_optional(conn)
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn entries(
        conn: &mut PgConnection,
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

    async fn insert_accesses(conn: &mut PgConnection, accesses: &[&Access]) -> StoreResult<()> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(
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
        conn: &mut PgConnection,
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
        conn: &mut PgConnection,
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
        conn: &mut PgConnection,
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

    async fn was_removed(conn: &mut PgConnection, user_id: &str) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT position FROM removals WHERE user_id = $1 LIMIT 1")
            .bind(user_id)
            .fetch_optional(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(found.is_some())
    }

    async fn insert_removal(conn: &mut PgConnection, removal: &Removal, removed_by: &str) -> StoreResult<()> {
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
        conn: &mut PgConnection,
        filter: &FeedFilter,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> StoreResult<Vec<RemovalRow>> {
        let mut query = sqlx::QueryBuilder::<Postgres>::new(
            "SELECT position, user_id, coach_id, removed_at FROM removals WHERE position > ",
        );
        query.push_bind(after).push(" AND position <= ").push_bind(up_to);
        push_feed_filter(&mut query, filter, CoachOf::Column);
        query.push(" ORDER BY position LIMIT ").push_bind(i64::from(limit));
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }

    async fn feed_rows(
        conn: &mut PgConnection,
        filter: &FeedFilter,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> StoreResult<Vec<EntryRow>> {
        let mut query =
            sqlx::QueryBuilder::<Postgres>::new(format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE position > "));
        query.push_bind(after).push(" AND position <= ").push_bind(up_to);
        push_feed_filter(&mut query, filter, CoachOf::User);
        query.push(" ORDER BY position LIMIT ").push_bind(i64::from(limit));
        query.build_query_as().fetch_all(conn).await.map_err(StoreError::from_sqlx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;
    use coachfit_testkit::{test_postgres_server, ScratchDatabase};

    /// A store on a database of its own on the server the behavioural tests use, dropped
    /// with the returned guard.
    async fn open() -> (PostgresStore, ScratchDatabase) {
        let database = ScratchDatabase::create(&test_postgres_server()).await.unwrap();
        let store = PostgresStore::open(&database.url, &PgSettings::default()).await.unwrap();
        (store, database)
    }

    #[tokio::test]
    async fn the_postgres_store_conforms() {
        conformance::run(open).await;
    }
}
