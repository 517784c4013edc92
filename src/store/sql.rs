//! SQL shared by the SQLite and PostgreSQL stores.
//!
//! Both schemas use portable column types (TEXT ids and days, BIGINT microseconds) and the
//! statements use `$n` placeholders, which both drivers accept, so one body of query code
//! serves both. It is written once in `sql_store!` and expanded per backend: sqlx has no
//! practical generic-over-database form for async code that must be `Send`, and `sqlx::Any`
//! would give up typed pools and backend-specific connect options. Each backend supplies
//! only what really differs: connecting, its writer's `write_tx` (how writers are
//! serialized) and `commit_and_publish` (how the live feed learns of a commit),
//! `subscribe_changes`, `readers()` and `feed_readers()` (where stream catch-ups read, kept
//! apart from the request path), how many group-commit lanes it runs, how a statement
//! matches a set of keys (`push_in_list`, `push_grouped`) and binds many rows
//! (`push_event_rows`, `push_entry_rows`): SQLite lists them, PostgreSQL binds arrays so
//! that a statement's text, and so its plan, is the same for any number of keys or rows;
//! and how a rebuild reads the events of a span of days (`span_events`), each user's newest
//! event (`newest_seqs`), in one snapshot (`READ_SNAPSHOT`), and how many events it re-folds
//! per transaction, about (`REBUILD_CHUNK_EVENTS`: a chunk ends with the day of its
//! `REBUILD_CHUNK_EVENTS`th event).

use std::borrow::Cow;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{projector, StoreError, StoreResult};
use crate::domain::event::{EventKind, Payload, StoredEvent};
use crate::domain::Source;

/// Rows of a `DaySpan`: after the user-day `($1, $2)`, up to and including `($3, $4)`. The
/// bounds on `user_id` alone say nothing the row comparisons do not, but PostgreSQL
/// estimates a row comparison as a third of the table (and so planned a parallel scan,
/// 9 ms, for a check of a thousand entries that takes 1 ms along the primary key).
pub(crate) const IN_SPAN: &str =
    "user_id >= $1 AND user_id <= $3 AND (user_id, day) > ($1, $2) AND (user_id, day) <= ($3, $4)";

/// Chunks a rebuild reads and folds while it writes one.
pub(crate) const READS_AHEAD: usize = 3;

/// The columns `user_event_from_row` reads, in its order: it reads them by position (by
/// name, sqlx hashed each column's name for every row of a rebuild).
pub(crate) const EVENT_COLUMNS: &str =
    "user_id, seq, event_id, day, kind, source, observed_at_us, recorded_at_us, actor, payload";

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(us: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| StoreError::Corrupt(format!("timestamp {us}")))
}

pub(crate) fn parse_day(text: String) -> StoreResult<NaiveDate> {
    NaiveDate::from_str(&text).map_err(|_| StoreError::Corrupt(format!("day {text}")))
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
            day: self.day.map(|day| parse_day(day.into_owned())).transpose()?,
            source: Source::parse(&source).ok_or_else(|| StoreError::Corrupt(format!("source {source}")))?,
            observed_at: from_micros(self.observed_at_us)?,
            recorded_at: from_micros(self.recorded_at_us)?,
            actor: self.actor,
            payload,
        })
    }
}

pub(crate) fn parse_uuid(text: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt(format!("uuid {text}")))
}

/// The days of a rebuild's chunk, in `(user_id, day)` order, each with its number of events.
pub(crate) type ChunkDays = Vec<(String, NaiveDate, i64)>;

/// The days of `events`, each with its number of events.
pub(crate) fn day_counts(events: &[(String, StoredEvent)]) -> ChunkDays {
    let mut counts: std::collections::HashMap<(&str, NaiveDate), i64> = std::collections::HashMap::new();
    for (user_id, event) in events {
        if let Some(day) = event.day {
            *counts.entry((user_id.as_str(), day)).or_default() += 1;
        }
    }
    let mut days: ChunkDays = counts.into_iter().map(|((user_id, day), n)| (user_id.to_string(), day, n)).collect();
    days.sort_unstable();
    days
}

/// A rebuild's chunk, read and folded ahead of the transaction that stores it.
pub(crate) struct ChunkRead {
    pub days: ChunkDays,
    pub inputs: projector::Prefetched,
}

/// Expands the shared queries, the `WriteTx`, `GroupWriter` and `Store` implementations for
/// one backend: `sql_store!(Database, StoreType, WriterType, WriteType)`. The store has
/// fields `writer: Arc<WriterType>` and `appends: GroupCommit`; the writer has
/// `write_tx(&self, users: &[&str]) -> StoreResult<WriteType>` (serializing writers of those
/// users) and `commit_and_publish(&self, WriteType, changed entries)`; `WriteType` has a
/// `tx` field and `commit(self)`.
macro_rules! sql_store {
    ($db:ident, $store:ident, $writer:ident, $write:ident) => {
        impl $store {
            /// Waits for a chunk's read (while the next ones are read) and re-folds it.
            async fn rebuild_read(
                &self,
                read: tokio::task::JoinHandle<StoreResult<ChunkRead>>,
                rule: &PriorityRule,
                stats: &mut RebuildStats,
            ) -> StoreResult<()> {
                // A panic in the read task is this call's panic.
                let chunk = read.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
                stats.days_rebuilt += chunk.days.len() as u64;
                stats.events_replayed += chunk.days.iter().map(|(_, _, n)| *n as u64).sum::<u64>();
                self.rebuild_chunk(chunk, rule).await
            }

            /// Re-folds one chunk of days in one transaction (of any users), so a rebuild
            /// never holds a writer for long.
            async fn rebuild_chunk(&self, chunk: ChunkRead, rule: &PriorityRule) -> StoreResult<()> {
                let days: Vec<UserDay> = chunk.days.iter().map(|(user, day, _)| (user.as_str(), *day)).collect();
                let users = projector::distinct_users(days.iter().map(|(user, _)| *user));
                let mut tx = self.writer.write_tx(&users).await?;
                let changed = projector::refold_prefetched(&mut tx, &days, chunk.inputs, rule, now()).await?;
                self.writer.commit_and_publish(tx, changed).await
            }

            /// Lists a rebuild's chunks of days with events (of one user, or of all), in
            /// `(user_id, day)` order, in a task of its own that runs up to two chunks ahead
            /// of the reads.
            fn list_chunks(&self, user_id: Option<&str>) -> tokio::sync::mpsc::Receiver<StoreResult<DaySpan>> {
                let (chunks, listed) = tokio::sync::mpsc::channel(2);
                let (readers, user_id) = (self.readers().clone(), user_id.map(str::to_string));
                tokio::spawn(async move {
                    // Empty texts sort first: the walk starts before the first day (of the user).
                    let mut after = (user_id.clone().unwrap_or_default(), String::new());
                    loop {
                        let last = async {
                            let mut conn = readers.acquire().await.map_err(StoreError::from_sqlx)?;
                            chunk_end(&mut conn, &after, user_id.as_deref()).await
                        }
                        .await;
                        // The walk ends after an error or the last chunk.
                        let span = match last {
                            Ok(Some(last)) => Ok(DaySpan { after: std::mem::replace(&mut after, last.clone()), last }),
                            Ok(None) => return,
                            Err(e) => Err(e),
                        };
                        let failed = span.is_err();
                        if chunks.send(span).await.is_err() || failed {
                            return;
                        }
                    }
                });
                listed
            }

            /// Reads a chunk in one snapshot on a reader connection, then folds it, in a task
            /// of its own, so that the next chunk is read and folded while this one is written.
            fn read_chunk(&self, span: DaySpan, rule: &PriorityRule) -> tokio::task::JoinHandle<StoreResult<ChunkRead>> {
                let (readers, rule) = (self.readers().clone(), rule.clone());
                tokio::spawn(async move {
                    use sqlx::Connection;
                    let mut conn = readers.acquire().await.map_err(StoreError::from_sqlx)?;
                    // One snapshot: a change committed after it shows as a newer event or a
                    // later position to the write that uses this read (`refold_prefetched`).
                    let mut snapshot = conn.begin_with(READ_SNAPSHOT).await.map_err(StoreError::from_sqlx)?;
                    let events = span_events(&mut snapshot, &span).await?;
                    let days = day_counts(&events);
                    let user_days: Vec<UserDay> = days.iter().map(|(user, day, _)| (user.as_str(), *day)).collect();
                    let users = projector::distinct_users(user_days.iter().map(|(user, _)| *user));
                    let newest = newest_seqs(&mut snapshot, &users).await?;
                    let head = feed_head(&mut *snapshot).await?;
                    let events = with_related_workouts(&mut snapshot, events, &[]).await?;
                    let stored = stored_bodies_between(&mut snapshot, &span).await?;
                    snapshot.commit().await.map_err(StoreError::from_sqlx)?;
                    drop(conn);
                    let changed = projector::changed_days(&user_days, events, &stored, &rule);
                    drop(user_days);
                    Ok(ChunkRead { days, inputs: projector::Prefetched { span, newest, head, changed } })
                })
            }

            /// Re-hashes the events stored before the current content-hash form, once
            /// (`store::rehash`), a chunk per transaction along the primary key.
            async fn upgrade_content_hashes(&self) -> StoreResult<()> {
                use crate::domain::canonical::VERSION;
                let done: Option<i64> =
                    sqlx::query_scalar("SELECT completed_at_us FROM content_hash_versions WHERE version = $1")
                        .bind(VERSION)
                        .fetch_optional(self.readers())
                        .await
                        .map_err(StoreError::from_sqlx)?;
                if done.is_some() {
                    return Ok(());
                }
                let (mut after, mut upgraded) = ((String::new(), -1_i64), 0_usize);
                loop {
                    let mut write = self.writer.write_tx(&[]).await?;
                    let stored = events_after(&mut write.tx, &after, rehash::CHUNK).await?;
                    let Some(last) = stored.last() else {
                        write.commit().await?;
                        break;
                    };
                    after = (last.user_id.clone(), last.event.seq);
                    let upgrades = rehash::upgrades(&stored);
                    if !upgrades.is_empty() {
                        let mut query = sqlx::QueryBuilder::<$db>::new(
                            "UPDATE events SET dedupe_key = v.column1, content_hash = v.column2 FROM (VALUES ",
                        );
                        let mut values = query.separated(", ");
                        for u in &upgrades {
                            values.push("(").push_bind_unseparated(&u.dedupe_key);
                            values.push_bind(&u.content_hash).push_bind(&u.user_id).push_bind(u.seq);
                            values.push_unseparated(")");
                        }
                        query.push(
                            ") AS v WHERE events.user_id = v.column3 AND events.seq = v.column4 AND NOT EXISTS (
                                 SELECT 1 FROM events AS same WHERE same.user_id = v.column3 AND same.kind = events.kind
                                 AND same.dedupe_key = v.column1 AND same.content_hash = v.column2)",
                        );
                        query.build().execute(&mut *write.tx).await.map_err(StoreError::from_sqlx)?;
                        upgraded += upgrades.len();
                    }
                    write.commit().await?;
                }
                let mut write = self.writer.write_tx(&[]).await?;
                sqlx::query(
                    "INSERT INTO content_hash_versions (version, completed_at_us) VALUES ($1, $2)
                     ON CONFLICT (version) DO NOTHING",
                )
                .bind(VERSION)
                .bind(micros(now()))
                .execute(&mut *write.tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                write.commit().await?;
                tracing::info!(upgraded, version = VERSION, "stored events re-hashed");
                Ok(())
            }

            /// Every user-day that has events.
            async fn event_days(&self) -> StoreResult<Vec<(String, NaiveDate)>> {
                let rows = sqlx::query(
                    "SELECT DISTINCT user_id, day FROM events WHERE day IS NOT NULL ORDER BY user_id, day",
                )
                .fetch_all(self.readers())
                .await
                .map_err(StoreError::from_sqlx)?;
                rows.iter()
                    .map(|r| Ok((r.try_get("user_id")?, parse_day(r.try_get("day")?)?)))
                    .collect()
            }
        }

        /// The last day of the rebuild chunk after the user-day `after` (of `user_id` only,
        /// if given): the day of the `REBUILD_CHUNK_EVENTS`th event after it, or the last
        /// day with events; `None` if none is left. A walk along `events_by_day` that reads
        /// only the index (counting each day's events on the way took twice as long).
        async fn chunk_end(
            conn: &mut <$db as sqlx::Database>::Connection,
            after: &(String, String),
            user_id: Option<&str>,
        ) -> StoreResult<Option<(String, String)>> {
            let days_after = |order: &str| {
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT user_id, day FROM events WHERE day IS NOT NULL");
                // `user_id >=` as well, for the reason `IN_SPAN` gives.
                query.push(" AND user_id >= ").push_bind(after.0.clone());
                query.push(" AND (user_id, day) > (").push_bind(after.0.clone()).push(", ").push_bind(after.1.clone()).push(")");
                if let Some(user_id) = user_id {
                    query.push(" AND user_id = ").push_bind(user_id.to_string());
                }
                query.push(order);
                query
            };
            let mut nth = days_after(" ORDER BY user_id, day LIMIT 1 OFFSET ");
            nth.push_bind(REBUILD_CHUNK_EVENTS - 1);
            let mut end = nth.build_query_as::<(String, String)>().fetch_optional(&mut *conn).await;
            if matches!(end, Ok(None)) {
                let mut last = days_after(" ORDER BY user_id DESC, day DESC LIMIT 1");
                end = last.build_query_as::<(String, String)>().fetch_optional(&mut *conn).await;
            }
            end.map_err(StoreError::from_sqlx)
        }

        /// `sql`, a statement on the rows `IN_SPAN`, with the bounds of `span` bound.
        fn in_span<'q>(
            sql: &'q str,
            span: &'q DaySpan,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            sqlx::query(sql).bind(&span.after.0).bind(&span.after.1).bind(&span.last.0).bind(&span.last.1)
        }

        /// The stored bodies of the entries of `span`.
        async fn stored_bodies_between(
            conn: &mut <$db as sqlx::Database>::Connection,
            span: &DaySpan,
        ) -> StoreResult<Vec<(String, NaiveDate, String)>> {
            let sql = format!("SELECT user_id, day, body FROM entries WHERE {IN_SPAN}");
            let rows = in_span(&sql, span).fetch_all(conn).await.map_err(StoreError::from_sqlx)?;
            rows.iter().map(|r| Ok((r.try_get("user_id")?, parse_day(r.try_get("day")?)?, r.try_get("body")?))).collect()
        }

        /// The last feed position taken by a committed write.
        async fn feed_head<'c>(conn: impl sqlx::Executor<'c, Database = $db>) -> StoreResult<i64> {
            sqlx::query_scalar("SELECT position FROM feed_position WHERE id = 1")
                .fetch_one(conn)
                .await
                .map_err(StoreError::from_sqlx)
        }

        fn entry_from_row(row: &<$db as sqlx::Database>::Row) -> StoreResult<StoredEntry> {
            let body: String = row.try_get("body")?;
            Ok(StoredEntry {
                user_id: row.try_get("user_id")?,
                day: parse_day(row.try_get("day")?)?,
                position: row.try_get("position")?,
                updated_at: from_micros(row.try_get("updated_at_us")?)?,
                body: serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(format!("entry: {e}")))?,
            })
        }

        /// The entry of a feed row, or `None` (logged) when its body cannot be read: one bad
        /// row (written by a release that let a sum overflow, say) must never stop the feed
        /// for everyone after it. `verify` lists such a day and `rebuild` repairs it.
        fn readable_entry(row: &<$db as sqlx::Database>::Row) -> StoreResult<Option<StoredEntry>> {
            match entry_from_row(row) {
                Ok(entry) => Ok(Some(entry)),
                Err(StoreError::Corrupt(error)) => {
                    let (user_id, day, position): (String, String, i64) =
                        (row.try_get("user_id")?, row.try_get("day")?, row.try_get("position")?);
                    tracing::error!(%user_id, %day, position, %error, "unreadable entry skipped by the feed; run `coachfit verify`");
                    Ok(None)
                }
                Err(other) => Err(other),
            }
        }

        async fn coach_exists(conn: &mut <$db as sqlx::Database>::Connection, coach_id: &str) -> StoreResult<bool> {
            let found: Option<String> = sqlx::query_scalar("SELECT coach_id FROM coaches WHERE coach_id = $1")
                .bind(coach_id)
                .fetch_optional(conn)
                .await
                .map_err(StoreError::from_sqlx)?;
            Ok(found.is_some())
        }

        async fn insert_user(
            conn: &mut <$db as sqlx::Database>::Connection,
            user_id: &str,
            coach_id: &str,
        ) -> StoreResult<()> {
            sqlx::query("INSERT INTO users (user_id, coach_id, created_at_us) VALUES ($1, $2, $3)")
                .bind(user_id)
                .bind(coach_id)
                .bind(micros(now()))
                .execute(conn)
                .await
                .map_err(StoreError::from_sqlx)?;
            Ok(())
        }

        /// A new device of `user_id`, known by the hash of its token.
        async fn insert_device_token(
            conn: &mut <$db as sqlx::Database>::Connection,
            user_id: &str,
            device_name: &str,
            token_hash: &str,
        ) -> StoreResult<String> {
            let device_id = new_id();
            sqlx::query(
                "INSERT INTO tokens (token_hash, role, subject_id, device_id, device_name, created_at_us)
                 VALUES ($1, 'device', $2, $3, $4, $5)",
            )
            .bind(token_hash)
            .bind(user_id)
            .bind(&device_id)
            .bind(device_name)
            .bind(micros(now()))
            .execute(conn)
            .await
            .map_err(StoreError::from_sqlx)?;
            Ok(device_id)
        }

        /// `push_grouped` by user: rows whose `(user_id, <column>)` is one of `pairs`.
        fn push_per_user<'a>(
            query: &mut sqlx::QueryBuilder<'a, $db>,
            column: &str,
            pairs: impl IntoIterator<Item = (&'a str, String)>,
        ) {
            push_grouped(query, ["user_id"], column, pairs.into_iter().map(|(user_id, item)| ([user_id], item)));
        }

        /// A row of `EVENT_COLUMNS, dedupe_key, content_hash`, as each backend's
        /// `events_after` selects them for `upgrade_content_hashes`.
        fn stored_hash_from_row(row: &<$db as sqlx::Database>::Row) -> StoreResult<rehash::StoredHash> {
            let (user_id, event) = user_event_from_row(row)?;
            Ok(rehash::StoredHash { user_id, event, dedupe_key: row.try_get(10)?, content_hash: row.try_get(11)? })
        }

        /// A row of `EVENT_COLUMNS`: an event and its user.
        fn user_event_from_row(row: &<$db as sqlx::Database>::Row) -> StoreResult<(String, StoredEvent)> {
            let event = EventColumns {
                seq: row.try_get(1)?,
                event_id: row.try_get(2)?,
                day: row.try_get(3)?,
                kind: row.try_get(4)?,
                source: row.try_get(5)?,
                observed_at_us: row.try_get(6)?,
                recorded_at_us: row.try_get(7)?,
                actor: row.try_get(8)?,
                payload: PayloadJson(row.try_get(9)?),
            };
            Ok((row.try_get(0)?, event.into_event()?))
        }

        /// The events of `rows` (of `EVENT_COLUMNS`), in order.
        fn user_events_from_rows(rows: &[<$db as sqlx::Database>::Row]) -> StoreResult<Vec<(String, StoredEvent)>> {
            // Sized first: collecting `Result`s grows the vector, copying every event again.
            let mut events = Vec::with_capacity(rows.len());
            for row in rows {
                events.push(user_event_from_row(row)?);
            }
            Ok(events)
        }

        /// The events the folds of `days` read: the days' own events, plus every event of
        /// the workouts that appear on them or in `workouts` (split per day by
        /// `projector::inputs_by_day`).
        async fn fold_inputs(
            conn: &mut <$db as sqlx::Database>::Connection,
            days: &[UserDay<'_>],
            workouts: &[(&str, &str)],
        ) -> StoreResult<Vec<(String, StoredEvent)>> {
            if days.is_empty() {
                return Ok(Vec::new());
            }
            let mut query = sqlx::QueryBuilder::<$db>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE "));
            push_per_user(&mut query, "day", days.iter().map(|(user_id, day)| (*user_id, day.to_string())));
            let rows = query.build().fetch_all(&mut *conn).await.map_err(StoreError::from_sqlx)?;
            let events = user_events_from_rows(&rows)?;
            with_related_workouts(conn, events, workouts).await
        }

        /// `events`, plus every other event of the workouts among them or in `workouts`.
        async fn with_related_workouts(
            conn: &mut <$db as sqlx::Database>::Connection,
            mut events: Vec<(String, StoredEvent)>,
            workouts: &[(&str, &str)],
        ) -> StoreResult<Vec<(String, StoredEvent)>> {
            let workouts = projector::related_workouts(&events, workouts);
            if !workouts.is_empty() {
                let mut query = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE kind IN ('workout', 'workout_deleted') AND "
                ));
                push_per_user(&mut query, "dedupe_key", workouts.iter().map(|(user_id, id)| (user_id.as_str(), id.clone())));
                let rows = query.build().fetch_all(&mut *conn).await.map_err(StoreError::from_sqlx)?;
                let known: std::collections::HashSet<i64> = events.iter().map(|(_, e)| e.seq).collect();
                for row in &rows {
                    let event = user_event_from_row(row)?;
                    if !known.contains(&event.1.seq) {
                        events.push(event);
                    }
                }
            }
            Ok(events)
        }

        /// One day's fold input.
        async fn fold_input(
            conn: &mut <$db as sqlx::Database>::Connection,
            user_id: &str,
            day: NaiveDate,
        ) -> StoreResult<Vec<StoredEvent>> {
            let events = fold_inputs(conn, &[(user_id, day)], &[]).await?;
            Ok(projector::inputs_by_day(&[(user_id, day)], events).pop().map(|(_, input)| input).unwrap_or_default())
        }

        async fn stored_entry(
            conn: &mut <$db as sqlx::Database>::Connection,
            user_id: &str,
            day: NaiveDate,
        ) -> StoreResult<Option<StoredEntry>> {
            sqlx::query(
                "SELECT user_id, day, position, updated_at_us, body FROM entries WHERE user_id = $1 AND day = $2",
            )
            .bind(user_id)
            .bind(day.to_string())
            .fetch_optional(conn)
            .await
            .map_err(StoreError::from_sqlx)?
            .as_ref()
            .map(entry_from_row)
            .transpose()
        }

        impl $crate::store::projector::WriteTx for $write {
            async fn keyed_events(&mut self, keys: &[projector::KeyLookup<'_>]) -> StoreResult<Vec<projector::KeyedEvent>> {
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT user_id, kind, dedupe_key, event_id, content_hash FROM events WHERE ",
                );
                let keys = keys.iter().map(|lookup| ([lookup.user_id, lookup.kind], lookup.key));
                push_grouped(&mut query, ["user_id", "kind"], "dedupe_key", keys);
                let rows = query.build().fetch_all(&mut *self.tx).await.map_err(StoreError::from_sqlx)?;
                rows.iter()
                    .map(|r| {
                        Ok(projector::KeyedEvent {
                            user_id: r.try_get("user_id")?,
                            kind: r.try_get("kind")?,
                            key: r.try_get("dedupe_key")?,
                            event_id: parse_uuid(r.try_get("event_id")?)?,
                            content_hash: r.try_get("content_hash")?,
                        })
                    })
                    .collect()
            }

            async fn insert_events(
                &mut self,
                recorded_at: DateTime<Utc>,
                rows: &[projector::EventRow<'_>],
            ) -> StoreResult<Vec<(Uuid, i64)>> {
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO events (event_id, user_id, day, kind, source, dedupe_key, content_hash, payload,
                                         observed_at_us, recorded_at_us, actor) ",
                );
                push_event_rows(&mut query, recorded_at, rows);
                query.push(" RETURNING event_id, seq");
                let rows = query.build().fetch_all(&mut *self.tx).await.map_err(StoreError::from_sqlx)?;
                rows.iter().map(|r| Ok((parse_uuid(r.try_get("event_id")?)?, r.try_get("seq")?))).collect()
            }

            async fn workout_revisions(&mut self, workouts: &[(&str, &str)]) -> StoreResult<Vec<projector::Revision>> {
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT user_id, dedupe_key, day, observed_at_us, seq FROM events WHERE kind = 'workout' AND ",
                );
                push_per_user(&mut query, "dedupe_key", workouts.iter().map(|(user_id, id)| (*user_id, id.to_string())));
                let rows = query.build().fetch_all(&mut *self.tx).await.map_err(StoreError::from_sqlx)?;
                rows.iter()
                    .map(|r| {
                        Ok(projector::Revision {
                            user_id: r.try_get("user_id")?,
                            workout_id: r.try_get("dedupe_key")?,
                            day: parse_day(r.try_get("day")?)?,
                            recency: (from_micros(r.try_get("observed_at_us")?)?, r.try_get("seq")?),
                        })
                    })
                    .collect()
            }

            async fn fold_inputs(
                &mut self,
                days: &[UserDay<'_>],
                workouts: &[(&str, &str)],
            ) -> StoreResult<Vec<(String, StoredEvent)>> {
                fold_inputs(&mut self.tx, days, workouts).await
            }

            async fn stored_bodies(&mut self, days: &[UserDay<'_>]) -> StoreResult<Vec<(String, NaiveDate, String)>> {
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT user_id, day, body FROM entries WHERE ");
                push_per_user(&mut query, "day", days.iter().map(|(user_id, day)| (*user_id, day.to_string())));
                let rows = query.build().fetch_all(&mut *self.tx).await.map_err(StoreError::from_sqlx)?;
                rows.iter()
                    .map(|r| Ok((r.try_get("user_id")?, parse_day(r.try_get("day")?)?, r.try_get("body")?)))
                    .collect()
            }

            async fn take_positions(&mut self, count: i64) -> StoreResult<i64> {
                sqlx::query_scalar("UPDATE feed_position SET position = position + $1 WHERE id = 1 RETURNING position")
                    .bind(count)
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(StoreError::from_sqlx)
            }

            async fn insert_entries(&mut self, entries: &[(StoredEntry, String)]) -> StoreResult<()> {
                let mut query =
                    sqlx::QueryBuilder::<$db>::new("INSERT INTO entries (user_id, day, position, updated_at_us, body) ");
                push_entry_rows(&mut query, entries);
                query.build().execute(&mut *self.tx).await.map_err(StoreError::from_sqlx)?;
                Ok(())
            }

            async fn upsert_entries(&mut self, entries: &[(StoredEntry, String)]) -> StoreResult<()> {
                let mut query =
                    sqlx::QueryBuilder::<$db>::new("INSERT INTO entries (user_id, day, position, updated_at_us, body) ");
                push_entry_rows(&mut query, entries);
                query.push(
                    " ON CONFLICT (user_id, day) DO UPDATE
                     SET position = excluded.position, updated_at_us = excluded.updated_at_us, body = excluded.body",
                );
                query.build().execute(&mut *self.tx).await.map_err(StoreError::from_sqlx)?;
                Ok(())
            }

            async fn newest_seqs(&mut self, users: &[&str]) -> StoreResult<Vec<(String, i64)>> {
                newest_seqs(&mut self.tx, users).await
            }

            async fn entries_changed_after(&mut self, span: &DaySpan, head: i64) -> StoreResult<bool> {
                // Counted over the span (`FILTER`, not `WHERE`), so that no plan walks the
                // whole position index looking for one.
                let sql = format!("SELECT COUNT(*) FILTER (WHERE position > $5) FROM entries WHERE {IN_SPAN}");
                let changed: i64 = in_span(&sql, span)
                    .bind(head)
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(StoreError::from_sqlx)?
                    .try_get(0)?;
                Ok(changed > 0)
            }
        }

        impl $crate::store::group::GroupWriter for $writer {
            async fn append_group(
                &self,
                group: &[projector::Append<'_>],
                rule: &PriorityRule,
            ) -> StoreResult<Vec<Vec<AppendOutcome>>> {
                let users = projector::distinct_users(group.iter().map(|append| append.user_id));
                let mut tx = self.write_tx(&users).await?;
                let (outcomes, changed) =
                    projector::append(&mut tx, group, rule, self.max_events_per_day, now()).await?;
                self.commit_and_publish(tx, changed).await?;
                Ok(outcomes)
            }
        }

        impl $crate::store::Store for $store {
            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(self.readers()).await.map_err(StoreError::from_sqlx)?;
                Ok(())
            }

            async fn token_owners(&self, token_hashes: &[&str]) -> StoreResult<Vec<(String, TokenOwner)>> {
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT token_hash, role, subject_id, device_id FROM tokens WHERE revoked_at_us IS NULL AND token_hash",
                );
                push_in_list(&mut query, token_hashes.iter().copied());
                let rows = query.build().fetch_all(self.readers()).await.map_err(StoreError::from_sqlx)?;
                rows.iter()
                    .map(|row| {
                        let role: String = row.try_get("role")?;
                        let subject_id: String = row.try_get("subject_id")?;
                        let owner = match role.as_str() {
                            "device" => TokenOwner::Device {
                                user_id: subject_id,
                                device_id: row.try_get::<Option<String>, _>("device_id")?.unwrap_or_default(),
                            },
                            "coach" => TokenOwner::Coach { coach_id: subject_id },
                            other => return Err(StoreError::Corrupt(format!("token role {other}"))),
                        };
                        Ok((row.try_get("token_hash")?, owner))
                    })
                    .collect()
            }

            async fn coach_of(&self, user_id: &str) -> StoreResult<Option<String>> {
                sqlx::query_scalar("SELECT coach_id FROM users WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(self.readers())
                    .await
                    .map_err(StoreError::from_sqlx)
            }

            async fn create_coach(&self, name: &str, token_hash: &str) -> StoreResult<String> {
                let coach_id = new_id();
                let now = micros(now());
                let mut tx = self.writer.write_tx(&[]).await?;
                sqlx::query("INSERT INTO coaches (coach_id, name, created_at_us) VALUES ($1, $2, $3)")
                    .bind(&coach_id)
                    .bind(name)
                    .bind(now)
                    .execute(&mut *tx.tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                sqlx::query(
                    "INSERT INTO tokens (token_hash, role, subject_id, created_at_us) VALUES ($1, 'coach', $2, $3)",
                )
                .bind(token_hash)
                .bind(&coach_id)
                .bind(now)
                .execute(&mut *tx.tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                tx.commit().await?;
                Ok(coach_id)
            }

            async fn create_client(
                &self,
                coach_id: &str,
                device_name: &str,
                token_hash: &str,
            ) -> StoreResult<Option<String>> {
                let user_id = new_id();
                let mut tx = self.writer.write_tx(&[]).await?;
                if !coach_exists(&mut tx.tx, coach_id).await? {
                    return Ok(None);
                }
                insert_user(&mut tx.tx, &user_id, coach_id).await?;
                insert_device_token(&mut tx.tx, &user_id, device_name, token_hash).await?;
                tx.commit().await?;
                Ok(Some(user_id))
            }

            async fn create_pairing_code(
                &self,
                coach_id: &str,
                user_id: Option<&str>,
                code_hash: &str,
                expires_at: DateTime<Utc>,
            ) -> StoreResult<Option<String>> {
                let mut tx = self.writer.write_tx(&[]).await?;
                let user_id = match user_id {
                    Some(user_id) => {
                        let coach: Option<String> = sqlx::query_scalar("SELECT coach_id FROM users WHERE user_id = $1")
                            .bind(user_id)
                            .fetch_optional(&mut *tx.tx)
                            .await
                            .map_err(StoreError::from_sqlx)?;
                        if coach.as_deref() != Some(coach_id) {
                            return Ok(None);
                        }
                        user_id.to_string()
                    }
                    None => {
                        if !coach_exists(&mut tx.tx, coach_id).await? {
                            return Ok(None);
                        }
                        let user_id = new_id();
                        insert_user(&mut tx.tx, &user_id, coach_id).await?;
                        user_id
                    }
                };
                sqlx::query(
                    "INSERT INTO pairing_codes (code_hash, coach_id, user_id, created_at_us, expires_at_us)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(code_hash)
                .bind(coach_id)
                .bind(&user_id)
                .bind(micros(now()))
                .bind(micros(expires_at))
                .execute(&mut *tx.tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                tx.commit().await?;
                Ok(Some(user_id))
            }

            async fn redeem_pairing_code(
                &self,
                code_hash: &str,
                device_name: &str,
                token_hash: &str,
            ) -> StoreResult<Option<Paired>> {
                let mut tx = self.writer.write_tx(&[]).await?;
                // One statement claims the code, so of two concurrent redeems exactly one wins.
                let claimed = sqlx::query(
                    "UPDATE pairing_codes SET redeemed_at_us = $2
                     WHERE code_hash = $1 AND redeemed_at_us IS NULL AND expires_at_us > $2
                     RETURNING user_id, coach_id",
                )
                .bind(code_hash)
                .bind(micros(now()))
                .fetch_optional(&mut *tx.tx)
                .await
                .map_err(StoreError::from_sqlx)?;
                let Some(row) = claimed else { return Ok(None) };
                let (user_id, coach_id): (String, String) = (row.try_get("user_id")?, row.try_get("coach_id")?);
                let device_id = insert_device_token(&mut tx.tx, &user_id, device_name, token_hash).await?;
                tx.commit().await?;
                Ok(Some(Paired { user_id, coach_id, device_id }))
            }

            async fn revoke_devices(&self, user_id: &str, device_id: Option<&str>) -> StoreResult<u32> {
                let mut tx = self.writer.write_tx(&[]).await?;
                let revoked = sqlx::query(
                    "UPDATE tokens SET revoked_at_us = $3
                     WHERE role = 'device' AND subject_id = $1 AND ($2 IS NULL OR device_id = $2)
                       AND revoked_at_us IS NULL",
                )
                .bind(user_id)
                .bind(device_id)
                .bind(micros(now()))
                .execute(&mut *tx.tx)
                .await
                .map_err(StoreError::from_sqlx)?
                .rows_affected();
                tx.commit().await?;
                Ok(revoked as u32)
            }

            async fn append(
                &self,
                user_id: &str,
                actor: &str,
                events: Vec<NewEvent>,
                rule: &PriorityRule,
            ) -> StoreResult<Vec<AppendOutcome>> {
                self.appends.append(user_id, actor, events, rule).await
            }

            async fn get_entry(&self, user_id: &str, day: NaiveDate) -> StoreResult<Option<StoredEntry>> {
                let mut conn = self.readers().acquire().await.map_err(StoreError::from_sqlx)?;
                stored_entry(&mut conn, user_id, day).await
            }

            async fn list_entries(
                &self,
                user_id: &str,
                start: NaiveDate,
                end: NaiveDate,
                after: Option<NaiveDate>,
                limit: u32,
            ) -> StoreResult<Vec<StoredEntry>> {
                let rows = sqlx::query(
                    "SELECT user_id, day, position, updated_at_us, body FROM entries
             WHERE user_id = $1 AND day >= $2 AND day <= $3 AND ($4 IS NULL OR day > $4)
             ORDER BY day LIMIT $5",
                )
                .bind(user_id)
                .bind(start.to_string())
                .bind(end.to_string())
                .bind(after.map(|d| d.to_string()))
                .bind(i64::from(limit))
                .fetch_all(self.readers())
                .await
                .map_err(StoreError::from_sqlx)?;
                rows.iter().map(entry_from_row).collect()
            }

            async fn fold_input(&self, user_id: &str, day: NaiveDate) -> StoreResult<Vec<StoredEvent>> {
                let mut conn = self.readers().acquire().await.map_err(StoreError::from_sqlx)?;
                fold_input(&mut conn, user_id, day).await
            }

            fn changes(&self) -> broadcast::Receiver<Arc<EntryChange>> {
                self.subscribe_changes()
            }

            async fn head_position(&self) -> StoreResult<i64> {
                feed_head(self.feed_readers()).await
            }

            async fn feed_page(
                &self,
                filter: &FeedFilter,
                after: i64,
                up_to: i64,
                limit: u32,
            ) -> StoreResult<super::FeedPage> {
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT e.user_id, e.day, e.position, e.updated_at_us, e.body FROM entries e WHERE e.position > ",
                );
                query.push_bind(after).push(" AND e.position <= ").push_bind(up_to);
                match filter {
                    FeedFilter::All => {}
                    FeedFilter::Users(users) => {
                        query.push(" AND e.user_id");
                        push_in_list(&mut query, users.iter().map(String::as_str));
                    }
                    FeedFilter::Coach(coach_id) => {
                        query
                            .push(" AND e.user_id IN (SELECT user_id FROM users WHERE coach_id = ")
                            .push_bind(coach_id)
                            .push(")");
                    }
                }
                query.push(" ORDER BY e.position LIMIT ").push_bind(i64::from(limit));
                let rows = query.build().fetch_all(self.feed_readers()).await.map_err(StoreError::from_sqlx)?;
                let mut entries = Vec::with_capacity(rows.len());
                for row in &rows {
                    entries.extend(readable_entry(row)?);
                }
                let last_position = rows.last().map(|row| row.try_get("position")).transpose()?;
                Ok(super::FeedPage { entries, rows: rows.len(), last_position })
            }

            async fn recompute_day(
                &self,
                user_id: &str,
                day: NaiveDate,
                rule: &PriorityRule,
            ) -> StoreResult<Option<StoredEntry>> {
                let mut tx = self.writer.write_tx(&[user_id]).await?;
                let changed = projector::refold_days(&mut tx, &[(user_id, day)], rule, now()).await?;
                let entry = stored_entry(&mut tx.tx, user_id, day).await?;
                self.writer.commit_and_publish(tx, changed).await?;
                Ok(entry)
            }

            async fn rebuild(&self, user_id: Option<&str>, rule: &PriorityRule) -> StoreResult<RebuildStats> {
                let mut stats = RebuildStats::default();
                let mut listed = self.list_chunks(user_id);
                let mut ahead = std::collections::VecDeque::new();
                while let Some(span) = listed.recv().await.transpose()? {
                    ahead.push_back(self.read_chunk(span, rule));
                    if ahead.len() > READS_AHEAD {
                        let read = ahead.pop_front().expect("a read");
                        self.rebuild_read(read, rule, &mut stats).await?;
                    }
                }
                for read in ahead {
                    self.rebuild_read(read, rule, &mut stats).await?;
                }
                Ok(stats)
            }

            async fn verify(&self, rule: &PriorityRule) -> StoreResult<Vec<Mismatch>> {
                let mut mismatches = Vec::new();
                let mut conn = self.readers().acquire().await.map_err(StoreError::from_sqlx)?;
                for (user_id, day) in self.event_days().await? {
                    let input = fold_input(&mut conn, &user_id, day).await?;
                    let stored = stored_entry(&mut conn, &user_id, day).await?.map(|e| e.body);
                    if stored != Some(fold(day, &input, rule)) {
                        mismatches.push(Mismatch { user_id, day });
                    }
                }
                Ok(mismatches)
            }
        }
    };
}

pub(crate) use sql_store;

/// The names `sql_store!` expects in scope where it expands.
macro_rules! shared_imports {
    () => {
        #[allow(unused_imports)]
        use {
            super::projector::{self, AppendOutcome, DaySpan, UserDay},
            super::rehash,
            super::sql::{
                day_counts, from_micros, micros, parse_day, parse_uuid, ChunkRead, EventColumns, PayloadJson,
                EVENT_COLUMNS, IN_SPAN, READS_AHEAD,
            },
            super::{new_id, now, FeedFilter, Mismatch, Paired, RebuildStats, Store, TokenOwner},
            crate::domain::event::{EventKind, NewEvent, Payload, StoredEvent},
            crate::domain::fold::{fold, Day},
            crate::domain::priority::PriorityRule,
            crate::domain::Source,
            chrono::{DateTime, NaiveDate, Utc},
            sqlx::Row,
            uuid::Uuid,
        };
    };
}

pub(crate) use shared_imports;

/// A day's HealthKit step total, reported `hours` after the start of 2026-03-01.
#[cfg(test)]
pub(crate) fn steps(day: NaiveDate, total_steps: u32, hours: i64) -> crate::domain::event::NewEvent {
    use crate::domain::event::{KeyReuse, NewEvent, StepsReport};
    use chrono::TimeZone;
    let at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(hours);
    let payload = Payload::Steps(StepsReport { total_steps, source_devices: vec![] });
    NewEvent::new(Some(day), Source::Healthkit, at, payload, None, KeyReuse::Reject)
}

/// The rebuild tests every backend runs on its own store, in a test module where
/// `open().await` gives a new store and a guard that removes its database when dropped.
#[cfg(test)]
macro_rules! rebuild_tests {
    () => {
        use crate::domain::event::{KeyReuse, StepsReport};
        use chrono::{Duration, TimeZone};

        /// A rebuild reads a chunk before it takes the writer; an event appended in between
        /// must make it read again, not overwrite the newer entry with a stale fold.
        #[tokio::test]
        async fn a_rebuild_chunk_read_before_a_new_event_is_read_again() {
            let (store, _db) = open().await;
            let (rule, day) = (PriorityRule::default(), NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
            store.append("u1", "u1", vec![steps(day, 1_000, 8)], &rule).await.unwrap();
            let span = store.list_chunks(Some("u1")).recv().await.unwrap().unwrap();
            let stale = store.read_chunk(span, &rule).await.unwrap().unwrap();

            store.append("u1", "u1", vec![steps(day, 2_000, 9)], &rule).await.unwrap();
            store.rebuild_chunk(stale, &rule).await.unwrap();

            let entry = store.get_entry("u1", day).await.unwrap().unwrap();
            assert_eq!(entry.body.steps, Some(2_000));
        }

        /// Nor may an entry changed without a new event (re-folded under another rule) in
        /// between be left as it is because it was unchanged when the chunk was read.
        #[tokio::test]
        async fn a_rebuild_chunk_read_before_an_entry_changed_is_read_again() {
            let (store, _db) = open().await;
            let (rule, day) = (PriorityRule::default(), NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
            let at = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
            let manual = Payload::Steps(StepsReport { total_steps: 500, source_devices: vec![] });
            let manual = NewEvent::new(Some(day), Source::Manual, at, manual, None, KeyReuse::Reject);
            store.append("u1", "u1", vec![steps(day, 1_000, 8), manual], &rule).await.unwrap();
            let span = store.list_chunks(Some("u1")).recv().await.unwrap().unwrap();
            let stale = store.read_chunk(span, &rule).await.unwrap().unwrap();

            let healthkit_first = PriorityRule::from_json(r#"{"default": ["healthkit", "manual", "strava"]}"#).unwrap();
            store.recompute_day("u1", day, &healthkit_first).await.unwrap();
            assert_eq!(store.get_entry("u1", day).await.unwrap().unwrap().body.steps, Some(1_000));
            store.rebuild_chunk(stale, &rule).await.unwrap();

            let entry = store.get_entry("u1", day).await.unwrap().unwrap();
            assert_eq!(entry.body.steps, Some(500), "the manual value wins again under the rebuild's rule");
        }

        /// A rebuild walks the days chunk by chunk: every day with events is re-folded once,
        /// across chunk boundaries and users.
        #[tokio::test]
        async fn a_rebuild_of_more_events_than_a_chunk_replays_every_event_once() {
            let (store, _db) = open().await;
            let rule = PriorityRule::default();
            let first = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
            let days = REBUILD_CHUNK_EVENTS as usize + 100;
            for user in ["u1", "u2"] {
                for part in (0..days).collect::<Vec<_>>().chunks(500) {
                    let events =
                        part.iter().map(|&d| steps(first + Duration::days(d as i64), 1_000 + d as u32, 8)).collect();
                    store.append(user, user, events, &rule).await.unwrap();
                }
            }
            store.append("u1", "u1", vec![steps(first, 5_000, 9)], &rule).await.unwrap();
            let mut forget = store.writer.write_tx(&[]).await.unwrap();
            sqlx::query("DELETE FROM entries").execute(&mut *forget.tx).await.unwrap();
            forget.commit().await.unwrap();

            let stats = store.rebuild(None, &rule).await.unwrap();

            assert_eq!((stats.days_rebuilt, stats.events_replayed), (2 * days as u64, 2 * days as u64 + 1));
            assert_eq!(store.verify(&rule).await.unwrap(), vec![]);
            assert_eq!(store.get_entry("u1", first).await.unwrap().unwrap().body.steps, Some(5_000));
        }
    };
}

#[cfg(test)]
pub(crate) use rebuild_tests;
