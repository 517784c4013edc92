//! The storage limits the service is measured against: a raw multi-row insert of event rows
//! and a plain sequential read of the events table, with sqlx and nothing else.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use sqlx::{Arguments, Database, Encode, Executor, IntoArguments, Pool, Type};

use coachfit::domain::event::{Payload, StepsReport};
use coachfit::store::columns::{Day, EventId, Timestamp};

/// One events-table row, shaped like the service's own.
pub struct RawEvent {
    pub event_id: EventId,
    /// The event id as text: its dedupe key and content hash here.
    pub key: String,
    pub user_id: String,
    pub day: Day,
    pub payload: String,
    pub observed_at: Timestamp,
}

impl RawEvent {
    /// A HealthKit step total for `user_id` on `day`.
    pub fn steps(user_id: &str, day: chrono::NaiveDate, total_steps: u32, observed_at_us: i64) -> RawEvent {
        let payload = Payload::Steps(StepsReport { total_steps, source_devices: vec!["bench".into()] });
        let event_id = uuid::Uuid::new_v4();
        RawEvent {
            event_id: EventId(event_id),
            key: event_id.to_string(),
            user_id: user_id.to_string(),
            day: Day(day),
            payload: serde_json::to_string(&payload).expect("payloads serialize"),
            observed_at: Timestamp(
                chrono::DateTime::from_timestamp_micros(observed_at_us).expect("an instant in range"),
            ),
        }
    }
}

/// Adds `users` as clients of `coach_id`, outside any timing: events are stored only for
/// users who exist.
pub async fn add_users<DB>(pool: &Pool<DB>, coach_id: &str, users: &[String]) -> anyhow::Result<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Timestamp: Encode<'q, DB> + Type<DB>,
{
    let mut conn = pool.acquire().await?;
    for chunk in users.chunks(300) {
        let mut sql = String::from("INSERT INTO users (user_id, coach_id, created_at) VALUES ");
        let mut args = DB::Arguments::default();
        for (i, user) in chunk.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            sql.push_str(&format!("{sep}(${}, ${}, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3));
            args.add(user.clone()).map_err(|e| anyhow::anyhow!(e))?;
            args.add(coach_id.to_string()).map_err(|e| anyhow::anyhow!(e))?;
            args.add(Timestamp(chrono::DateTime::UNIX_EPOCH)).map_err(|e| anyhow::anyhow!(e))?;
        }
        sqlx::query_with(&sql, args).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts each batch with one multi-row statement (one commit each), `concurrency` batches
/// in flight. Returns the elapsed time.
pub async fn insert<DB>(pool: &Pool<DB>, batches: &[Vec<RawEvent>], concurrency: usize) -> anyhow::Result<Duration>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> EventId: Encode<'q, DB> + Type<DB>,
    for<'q> Day: Encode<'q, DB> + Type<DB>,
    for<'q> Timestamp: Encode<'q, DB> + Type<DB>,
{
    let started = Instant::now();
    let lanes = (0..concurrency.max(1)).map(|lane| async move {
        let mut conn = pool.acquire().await?;
        for batch in batches.iter().skip(lane).step_by(concurrency.max(1)) {
            let mut sql = String::from(
                "INSERT INTO events (event_id, user_id, day, kind, source, dedupe_key, content_hash, payload,
                                     observed_at, recorded_at, actor) VALUES ",
            );
            let mut args = DB::Arguments::default();
            for (i, e) in batch.iter().enumerate() {
                let p = i * 8;
                let sep = if i == 0 { "" } else { ", " };
                sql.push_str(&format!(
                    "{sep}(${}, ${}, ${}, 'steps', 'healthkit', ${}, ${}, ${}, ${}, ${}, 'bench')",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8
                ));
                args.add(e.event_id).map_err(|e| anyhow::anyhow!(e))?;
                args.add(e.user_id.clone()).map_err(|e| anyhow::anyhow!(e))?;
                args.add(e.day).map_err(|e| anyhow::anyhow!(e))?;
                for text in [&e.key, &e.key, &e.payload] {
                    args.add(text.clone()).map_err(|e| anyhow::anyhow!(e))?;
                }
                args.add(e.observed_at).map_err(|e| anyhow::anyhow!(e))?;
                args.add(e.observed_at).map_err(|e| anyhow::anyhow!(e))?;
            }
            sqlx::query_with(&sql, args).execute(&mut *conn).await?;
        }
        anyhow::Ok(())
    });
    for lane in futures::future::join_all(lanes).await {
        lane?;
    }
    Ok(started.elapsed())
}

/// Reads every event in `seq` order, decoding each row. Returns (rows, elapsed).
pub async fn sequential_read<DB>(pool: &Pool<DB>) -> anyhow::Result<(u64, Duration)>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'r> String: sqlx::Decode<'r, DB> + Type<DB>,
    for<'r> i64: sqlx::Decode<'r, DB> + Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    use sqlx::Row;
    let started = Instant::now();
    let mut rows = sqlx::query("SELECT seq, user_id, payload FROM events ORDER BY seq").fetch(pool);
    let (mut count, mut bytes) = (0u64, 0usize);
    while let Some(row) = rows.try_next().await? {
        let _seq: i64 = row.try_get(0)?;
        let user: String = row.try_get(1)?;
        let payload: String = row.try_get(2)?;
        bytes += user.len() + payload.len();
        count += 1;
    }
    std::hint::black_box(bytes);
    Ok((count, started.elapsed()))
}
