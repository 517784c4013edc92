//! The CoachFit database's rows the import reads, as Prisma keeps them: quoted PascalCase
//! tables, camelCase columns, `timestamp(3)` times in UTC. Everything is read in one
//! read-only transaction, so the rows counted are the rows imported even while the web app
//! still writes.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sqlx::{Connection, Executor, PgConnection};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub invited_by_coach_id: Option<String>,
}

/// A client's place in a cohort, with the cohort's coach.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MembershipRow {
    pub user_id: String,
    pub cohort_id: String,
    pub coach_id: String,
    pub cohort_created_at: NaiveDateTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EntryRow {
    pub id: String,
    pub date: NaiveDate,
    pub weight_lbs: Option<f64>,
    pub steps: Option<i32>,
    pub calories: Option<i32>,
    pub height_inches: Option<f64>,
    pub sleep_quality: Option<i32>,
    pub perceived_stress: Option<i32>,
    pub notes: Option<String>,
    pub has_custom_responses: bool,
    /// `dataSources` as stored (a JSON array of strings, or anything else a defect left).
    pub data_sources: Option<serde_json::Value>,
    pub body_fat_percentage: Option<f64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SleepRow {
    pub id: String,
    pub date: NaiveDate,
    pub total_sleep_mins: i32,
    pub in_bed_mins: Option<i32>,
    pub awake_mins: Option<i32>,
    pub asleep_core_mins: Option<i32>,
    pub asleep_deep_mins: Option<i32>,
    pub asleep_rem_mins: Option<i32>,
    pub sleep_start: Option<NaiveDateTime>,
    pub sleep_end: Option<NaiveDateTime>,
    pub source_devices: Option<serde_json::Value>,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkoutRow {
    pub id: String,
    pub workout_type: String,
    pub start_time: NaiveDateTime,
    pub end_time: NaiveDateTime,
    pub duration_secs: i32,
    pub calories_active: Option<i32>,
    pub distance_meters: Option<f64>,
    pub avg_heart_rate: Option<i32>,
    pub max_heart_rate: Option<i32>,
    pub source_device: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A `timestamp(3)` column's value: UTC.
pub fn utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

/// The legacy database, as of one snapshot.
pub struct Legacy {
    conn: PgConnection,
}

impl Legacy {
    pub async fn connect(url: &str) -> anyhow::Result<Legacy> {
        let mut conn = PgConnection::connect(url).await?;
        // Never committed: the connection's end ends it.
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        Ok(Legacy { conn })
    }

    /// Rows in `table` (one of the tables the import reads).
    pub async fn count(&mut self, table: &str) -> anyhow::Result<u64> {
        let count: i64 =
            sqlx::query_scalar(&format!(r#"SELECT count(*) FROM "{table}""#)).fetch_one(&mut self.conn).await?;
        Ok(count as u64)
    }

    /// A user's rows: `[Entry, SleepRecord, Workout]`.
    pub async fn row_counts(&mut self, user_id: &str) -> anyhow::Result<[u64; 3]> {
        let (entries, sleeps, workouts): (i64, i64, i64) = sqlx::query_as(
            r#"SELECT (SELECT count(*) FROM "Entry" WHERE "userId" = $1),
                      (SELECT count(*) FROM "SleepRecord" WHERE "userId" = $1),
                      (SELECT count(*) FROM "Workout" WHERE "userId" = $1)"#,
        )
        .bind(user_id)
        .fetch_one(&mut self.conn)
        .await?;
        Ok([entries as u64, sleeps as u64, workouts as u64])
    }

    pub async fn users(&mut self) -> anyhow::Result<Vec<UserRow>> {
        Ok(sqlx::query_as(
            r#"SELECT id, name, roles::text[] AS roles, "invitedByCoachId" AS invited_by_coach_id
               FROM "User" ORDER BY id"#,
        )
        .fetch_all(&mut self.conn)
        .await?)
    }

    pub async fn memberships(&mut self) -> anyhow::Result<Vec<MembershipRow>> {
        Ok(sqlx::query_as(
            r#"SELECT m."userId" AS user_id, c.id AS cohort_id, c."coachId" AS coach_id,
                      c."createdAt" AS cohort_created_at
               FROM "CohortMembership" m JOIN "Cohort" c ON c.id = m."cohortId""#,
        )
        .fetch_all(&mut self.conn)
        .await?)
    }

    pub async fn entries(&mut self, user_id: &str) -> anyhow::Result<Vec<EntryRow>> {
        Ok(sqlx::query_as(
            r#"SELECT id, date, "weightLbs" AS weight_lbs, steps, calories, "heightInches" AS height_inches,
                      "sleepQuality" AS sleep_quality, "perceivedStress" AS perceived_stress, notes,
                      COALESCE(jsonb_typeof("customResponses") <> 'null'
                          AND "customResponses" NOT IN ('{}', '[]', '""'), false) AS has_custom_responses, "dataSources" AS data_sources,
                      "bodyFatPercentage" AS body_fat_percentage, "createdAt" AS created_at,
                      "updatedAt" AS updated_at
               FROM "Entry" WHERE "userId" = $1 ORDER BY date"#,
        )
        .bind(user_id)
        .fetch_all(&mut self.conn)
        .await?)
    }

    pub async fn sleep_records(&mut self, user_id: &str) -> anyhow::Result<Vec<SleepRow>> {
        Ok(sqlx::query_as(
            r#"SELECT id, date, "totalSleepMins" AS total_sleep_mins, "inBedMins" AS in_bed_mins,
                      "awakeMins" AS awake_mins, "asleepCoreMins" AS asleep_core_mins,
                      "asleepDeepMins" AS asleep_deep_mins, "asleepREMMins" AS asleep_rem_mins,
                      "sleepStart" AS sleep_start, "sleepEnd" AS sleep_end,
                      "sourceDevices" AS source_devices, "updatedAt" AS updated_at
               FROM "SleepRecord" WHERE "userId" = $1 ORDER BY date"#,
        )
        .bind(user_id)
        .fetch_all(&mut self.conn)
        .await?)
    }

    pub async fn workouts(&mut self, user_id: &str) -> anyhow::Result<Vec<WorkoutRow>> {
        Ok(sqlx::query_as(
            r#"SELECT id, "workoutType" AS workout_type, "startTime" AS start_time, "endTime" AS end_time,
                      "durationSecs" AS duration_secs, "caloriesActive" AS calories_active,
                      "distanceMeters" AS distance_meters, "avgHeartRate" AS avg_heart_rate,
                      "maxHeartRate" AS max_heart_rate, "sourceDevice" AS source_device,
                      "createdAt" AS created_at, "updatedAt" AS updated_at
               FROM "Workout" WHERE "userId" = $1 ORDER BY "startTime", id"#,
        )
        .bind(user_id)
        .fetch_all(&mut self.conn)
        .await?)
    }
}
