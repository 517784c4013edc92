//! A CoachFit web-app database (its Prisma schema, written from the facts about it) filled
//! with realistic rows and its known defects, and what the legacy import should make of
//! it: the days the service should show, what comes in, what is left out and why, worked
//! out here from the documented mapping (README: Importing history) — not by the importer.
//!
//! Two coaches (one also a client), four clients placed by cohort (the earliest of two),
//! by invitation, or not at all, an admin; two months of Entry rows per client in every
//! `dataSources` style (HealthKit, manual, both, empty, missing), heights and body fat now
//! and then, rows edited after they were made; nights with stages; runs. Defects: HealthKit
//! sleep minutes in `sleepQuality`, body fat saved as a fraction, a stress of 0,
//! `customResponses`, a night without times, a night whose stages overflow its time in
//! bed, runs synced twice a minute and a half apart, a negative step count, a weight that
//! is NaN, `dataSources` saved as a string, a heart rate of 0.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, NaiveDate, NaiveDateTime};
use sqlx::{Connection, PgConnection};

/// The schema as Prisma creates it: quoted PascalCase tables, camelCase columns.
pub const DDL: &str = r#"
CREATE TYPE "Role" AS ENUM ('CLIENT', 'COACH', 'ADMIN');
CREATE TABLE "User" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "email" TEXT NOT NULL UNIQUE,
    "name" TEXT,
    "roles" "Role"[] NOT NULL DEFAULT ARRAY['CLIENT']::"Role"[],
    "isTestUser" BOOLEAN NOT NULL DEFAULT false,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "invitedByCoachId" TEXT REFERENCES "User" ("id"),
    "onboardingComplete" BOOLEAN NOT NULL DEFAULT false,
    "passwordHash" TEXT
);
CREATE TABLE "Cohort" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "name" TEXT NOT NULL,
    "coachId" TEXT NOT NULL REFERENCES "User" ("id"),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "durationConfig" TEXT NOT NULL DEFAULT 'six-week',
    "durationWeeks" INTEGER,
    UNIQUE ("coachId", "name")
);
CREATE TABLE "CohortMembership" (
    "userId" TEXT NOT NULL REFERENCES "User" ("id"),
    "cohortId" TEXT NOT NULL REFERENCES "Cohort" ("id"),
    PRIMARY KEY ("userId", "cohortId")
);
CREATE TABLE "CoachCohortMembership" (
    "coachId" TEXT NOT NULL REFERENCES "User" ("id"),
    "cohortId" TEXT NOT NULL REFERENCES "Cohort" ("id"),
    "addedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY ("coachId", "cohortId")
);
CREATE TABLE "Entry" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "userId" TEXT NOT NULL REFERENCES "User" ("id"),
    "date" DATE NOT NULL,
    "weightLbs" DOUBLE PRECISION,
    "steps" INTEGER,
    "calories" INTEGER,
    "heightInches" DOUBLE PRECISION,
    "sleepQuality" INTEGER,
    "perceivedStress" INTEGER,
    "notes" TEXT,
    "customResponses" JSONB,
    "dataSources" JSONB DEFAULT '[]',
    "bodyFatPercentage" DOUBLE PRECISION,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    UNIQUE ("userId", "date")
);
CREATE TABLE "SleepRecord" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "userId" TEXT NOT NULL REFERENCES "User" ("id"),
    "date" DATE NOT NULL,
    "totalSleepMins" INTEGER NOT NULL,
    "inBedMins" INTEGER,
    "awakeMins" INTEGER,
    "asleepCoreMins" INTEGER,
    "asleepDeepMins" INTEGER,
    "asleepREMMins" INTEGER,
    "sleepStart" TIMESTAMP(3),
    "sleepEnd" TIMESTAMP(3),
    "sourceDevices" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    UNIQUE ("userId", "date")
);
CREATE TABLE "Workout" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "userId" TEXT NOT NULL REFERENCES "User" ("id"),
    "workoutType" TEXT NOT NULL,
    "startTime" TIMESTAMP(3) NOT NULL,
    "endTime" TIMESTAMP(3) NOT NULL,
    "durationSecs" INTEGER NOT NULL,
    "caloriesActive" INTEGER,
    "distanceMeters" DOUBLE PRECISION,
    "avgHeartRate" INTEGER,
    "maxHeartRate" INTEGER,
    "sourceDevice" TEXT,
    "metadata" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL
);
CREATE TABLE "PairingCode" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "code" TEXT NOT NULL UNIQUE,
    "coachId" TEXT NOT NULL REFERENCES "User" ("id"),
    "clientId" TEXT REFERENCES "User" ("id"),
    "expiresAt" TIMESTAMP(3) NOT NULL,
    "usedAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
"#;

const KG_PER_LB: f64 = 0.45359237;
const M_PER_INCH: f64 = 0.0254;
/// Days of history per client in the test's database.
const DAYS: u32 = 60;

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub name: Option<String>,
    pub roles: &'static [&'static str],
    pub invited_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub user_id: String,
    pub date: NaiveDate,
    pub weight_lbs: Option<f64>,
    pub steps: Option<i32>,
    pub calories: Option<i32>,
    pub height_inches: Option<f64>,
    pub sleep_quality: Option<i32>,
    pub perceived_stress: Option<i32>,
    pub notes: Option<String>,
    pub custom_responses: bool,
    /// `dataSources` as JSON text; `None` for SQL NULL.
    pub data_sources: Option<&'static str>,
    pub body_fat: Option<f64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone)]
pub struct Sleep {
    pub id: String,
    pub user_id: String,
    pub date: NaiveDate,
    pub total: i32,
    pub in_bed: i32,
    pub awake: i32,
    pub core: i32,
    pub deep: i32,
    pub rem: i32,
    /// `None`: the defect of a night without times.
    pub window: Option<(NaiveDateTime, NaiveDateTime)>,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone)]
pub struct Workout {
    pub id: String,
    pub user_id: String,
    pub start: NaiveDateTime,
    pub minutes: i64,
    pub calories: i32,
    pub avg_heart_rate: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Workout {
    fn end(&self) -> NaiveDateTime {
        self.start + Duration::minutes(self.minutes)
    }
}

/// A day as the service should show it after the import.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpectedDay {
    pub steps: Option<u32>,
    pub weight_kg: Option<f64>,
    pub height_m: Option<f64>,
    pub body_fat_percent: Option<f64>,
    pub calories: Option<u32>,
    pub sleep_quality: Option<u32>,
    pub perceived_stress: Option<u32>,
    pub notes: Option<String>,
    pub sleep_minutes: Option<u32>,
    pub workouts: u32,
}

/// Something the reconciliation should list as left out: `(table, id, column, cause)`.
pub type ExpectedSkip = (String, String, Option<String>, String);
/// A difference it should list: `(user id, date, field, cause)`.
pub type ExpectedDifference = (String, NaiveDate, String, String);

/// What other authors wrote in the service on a client's day, which the import leaves alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Held {
    pub steps: Option<u32>,
    pub notes: Option<String>,
}

/// Events a row should become: written and refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    pub written: u64,
    pub refused: u64,
}

impl std::ops::AddAssign for Events {
    fn add_assign(&mut self, other: Events) {
        self.written += other.written;
        self.refused += other.refused;
    }
}

pub struct LegacyDb {
    pub users: Vec<User>,
    /// `(cohort id, coach id, created at)`, and `(user id, cohort id)`.
    pub cohorts: Vec<(String, String, NaiveDateTime)>,
    pub memberships: Vec<(String, String)>,
    pub entries: Vec<Entry>,
    pub sleeps: Vec<Sleep>,
    pub workouts: Vec<Workout>,
    /// `(coach id, name)` of the coaches the import should add.
    pub coaches: Vec<(String, String)>,
    /// The clients it should add, with their coaches.
    pub clients: BTreeMap<String, String>,
    /// What other authors wrote in the service, per client and day (`hold`).
    pub held: BTreeMap<(String, NaiveDate), Held>,
    /// Clients erased from the service (`erase`): nothing of theirs comes in again.
    pub erased: BTreeSet<String>,
}

fn id(kind: &str, n: u32) -> String {
    // UUID-shaped, as the web app's ids are, and readable in a failure.
    let kind = kind.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("{kind:08x}-0000-4000-8000-{n:012}")
}

fn at(date: NaiveDate, hour: u32, minute: u32) -> NaiveDateTime {
    date.and_hms_opt(hour, minute, 0).unwrap()
}

impl LegacyDb {
    /// The test's database: the people above, two months each.
    pub fn generate() -> LegacyDb {
        LegacyDb::generate_with(0, DAYS)
    }

    /// The same people with `more_clients` more in Ana's first cohort, `days` of history
    /// each (the benchmark's database).
    pub fn generate_with(more_clients: u32, days: u32) -> LegacyDb {
        let start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let user = |n, name: Option<&str>, roles, invited_by: Option<&String>| User {
            id: id("user", n),
            name: name.map(str::to_string),
            roles,
            invited_by: invited_by.cloned(),
        };
        let ana = user(1, Some("Ana Coach"), &["COACH"][..], None);
        let bo = user(2, Some("Bo Coach"), &["COACH", "CLIENT"][..], None);
        let cy = user(3, Some("Cy"), &["CLIENT"][..], None);
        let di = user(4, Some("Di"), &["CLIENT"][..], None);
        // A test user without a name, invited by Bo.
        let ed = user(5, None, &["CLIENT"][..], Some(&bo.id));
        let fay = user(6, Some("Fay"), &["CLIENT"][..], None);
        let gus = user(7, Some("Gus Admin"), &["ADMIN"][..], None);
        let cohort = |n, coach: &User, day| (id("cohort", n), coach.id.clone(), at(start, 0, 0) - Duration::days(day));
        // Di's earlier cohort is Ana's.
        let cohorts = vec![cohort(1, &ana, 90), cohort(2, &ana, 100), cohort(3, &bo, 30)];
        let memberships = vec![
            (bo.id.clone(), cohorts[0].0.clone()),
            (cy.id.clone(), cohorts[0].0.clone()),
            (di.id.clone(), cohorts[2].0.clone()),
            (di.id.clone(), cohorts[1].0.clone()),
        ];
        let clients: BTreeMap<String, String> = [
            (bo.id.clone(), ana.id.clone()),
            (cy.id.clone(), ana.id.clone()),
            (di.id.clone(), ana.id.clone()),
            (ed.id.clone(), bo.id.clone()),
        ]
        .into();
        let coaches = vec![(ana.id.clone(), "Ana Coach".to_string()), (bo.id.clone(), "Bo Coach".to_string())];
        let mut db = LegacyDb {
            users: vec![ana.clone(), bo.clone(), cy.clone(), di.clone(), ed.clone(), fay.clone(), gus],
            cohorts,
            memberships,
            entries: vec![],
            sleeps: vec![],
            workouts: vec![],
            coaches,
            clients,
            held: BTreeMap::new(),
            erased: BTreeSet::new(),
        };
        for (k, client) in [&bo, &cy, &di, &ed].into_iter().enumerate() {
            db.history(k as u32, days, &client.id, start);
        }
        for n in 0..more_clients {
            let client = user(100 + n, Some(&format!("Client {n}")), &["CLIENT"][..], None);
            db.memberships.push((client.id.clone(), db.cohorts[0].0.clone()));
            db.clients.insert(client.id.clone(), ana.id.clone());
            db.history(4 + n, days, &client.id, start);
            db.users.push(client);
        }
        // The coach's own rows and the unplaced client's are not imported.
        for (n, (who, days)) in [(&ana, 2), (&fay, 3)].into_iter().enumerate() {
            for i in 0..days {
                let date = start + Duration::days(i);
                let mut entry = db.entry(900 + n as u32 * 10 + i as u32, &who.id, date, 2);
                entry.steps = Some(5_000);
                db.entries.push(entry);
            }
        }
        db
    }

    /// An Entry row of style `style` (0 HealthKit, 1 manual, 2 both, 3 none named).
    fn entry(&self, n: u32, user_id: &str, date: NaiveDate, style: u32) -> Entry {
        let created_at = at(date, 20, 0);
        Entry {
            id: id("entry", n),
            user_id: user_id.to_string(),
            date,
            weight_lbs: None,
            steps: None,
            calories: None,
            height_inches: None,
            sleep_quality: None,
            perceived_stress: None,
            notes: None,
            custom_responses: false,
            data_sources: match style {
                0 => Some(r#"["healthkit"]"#),
                1 => Some(r#"["manual"]"#),
                2 => Some(r#"["manual", "HealthKit"]"#),
                _ if n.is_multiple_of(2) => None,
                _ => Some("[]"),
            },
            body_fat: None,
            created_at,
            updated_at: created_at,
        }
    }

    fn history(&mut self, k: u32, days: u32, user_id: &str, start: NaiveDate) {
        for i in 0..days {
            let n = k * 1000 + i;
            let date = start + Duration::days(i64::from(i));
            if i % 7 != 6 {
                let style = (i + k) % 4;
                let mut e = self.entry(n, user_id, date, style);
                if style != 3 {
                    e.steps = Some(4_000 + ((n * 7_919) % 9_000) as i32);
                }
                if i.is_multiple_of(3) {
                    e.weight_lbs = Some(150.0 + f64::from(k) * 10.0 + f64::from(i) * 0.1);
                }
                if i.is_multiple_of(20) {
                    e.height_inches = Some(66.0 + f64::from(k));
                }
                if i % 10 == 5 {
                    e.body_fat = Some(18.0 + f64::from(k) * 0.5);
                }
                if style != 0 {
                    e.calories = Some(1_800 + ((n * 31) % 700) as i32);
                }
                if style == 1 {
                    e.sleep_quality = Some(1 + (i % 10) as i32);
                }
                if style == 1 || style == 3 {
                    e.perceived_stress = Some(1 + ((i * 3) % 10) as i32);
                }
                e.notes = match style {
                    1 if i.is_multiple_of(2) => Some(format!("day {i}: legs sore\nslept well")),
                    3 => Some("weekend".to_string()),
                    _ => None,
                };
                if i.is_multiple_of(5) {
                    e.updated_at = e.created_at + Duration::days(1);
                }
                // The known defects.
                if i % 11 == 4 {
                    e.sleep_quality = Some(380 + i as i32);
                }
                if i % 17 == 8 {
                    e.body_fat = Some(0.21);
                }
                if i % 23 == 9 {
                    e.perceived_stress = Some(0);
                }
                if k == 1 && i % 13 == 3 {
                    e.custom_responses = true;
                }
                match (k, i) {
                    (0, 2) => e.steps = Some(-50),
                    (1, 24) => e.weight_lbs = Some(f64::NAN),
                    (2, 12) => e.data_sources = Some(r#""healthkit""#),
                    _ => {}
                }
                self.entries.push(e);
            }
            if i % 8 != 7 {
                let in_bed = 420 + (i % 60) as i32;
                let (awake, deep, rem) = (20, 60 + (i % 30) as i32, 90);
                let end = at(date, 6, 30) + Duration::minutes(i64::from(k));
                let mut night = Sleep {
                    id: id("sleep", n),
                    user_id: user_id.to_string(),
                    date,
                    total: in_bed - awake,
                    in_bed,
                    awake,
                    core: in_bed - awake - deep - rem,
                    deep,
                    rem,
                    window: Some((end - Duration::minutes(i64::from(in_bed)), end)),
                    updated_at: at(date, 7, 0),
                };
                if i == 10 {
                    night.window = None;
                }
                if i == 20 {
                    night.deep = in_bed;
                }
                self.sleeps.push(night);
            }
            if i % 4 == 1 {
                let run = Workout {
                    id: id("workout", n),
                    user_id: user_id.to_string(),
                    start: at(date, 17, 0),
                    minutes: 30 + i64::from(i % 30),
                    calories: 250 + (i % 100) as i32,
                    avg_heart_rate: if i == 5 { 0 } else { 142 },
                    created_at: at(date, 18, 0),
                    updated_at: at(date, 18, 0),
                };
                if i % 12 == 1 {
                    // Synced again later, its start 90 s off.
                    let again = Workout {
                        id: id("workout", n + 500),
                        start: run.start + Duration::seconds(90),
                        created_at: at(date, 19, 0),
                        updated_at: at(date, 19, 0),
                        ..run.clone()
                    };
                    self.workouts.push(again);
                }
                self.workouts.push(run);
            }
        }
    }

    /// Creates the schema and inserts every row, on the database at `url`.
    pub async fn create(&self, url: &str) -> anyhow::Result<()> {
        let mut connection = PgConnection::connect(url).await?;
        // One transaction: a commit per row would take minutes for the benchmark's.
        let mut conn = connection.begin().await?;
        sqlx::raw_sql(DDL).execute(&mut *conn).await?;
        for (n, u) in self.users.iter().enumerate() {
            let roles: Vec<String> = u.roles.iter().map(|r| r.to_string()).collect();
            sqlx::query(
                r#"INSERT INTO "User" (id, email, name, roles, "isTestUser", "invitedByCoachId", "passwordHash")
                   VALUES ($1, $2, $3, $4::text[]::"Role"[], $5, $6, 'bcrypt$2b$10$secret')"#,
            )
            .bind(&u.id)
            .bind(format!("user{n}@example.com"))
            .bind(&u.name)
            .bind(roles)
            .bind(u.name.is_none())
            .bind(&u.invited_by)
            .execute(&mut *conn)
            .await?;
        }
        for (cohort, coach, created_at) in &self.cohorts {
            sqlx::query(r#"INSERT INTO "Cohort" (id, name, "coachId", "createdAt") VALUES ($1, $1, $2, $3)"#)
                .bind(cohort)
                .bind(coach)
                .bind(created_at)
                .execute(&mut *conn)
                .await?;
        }
        for (user, cohort) in &self.memberships {
            sqlx::query(r#"INSERT INTO "CohortMembership" ("userId", "cohortId") VALUES ($1, $2)"#)
                .bind(user)
                .bind(cohort)
                .execute(&mut *conn)
                .await?;
        }
        for e in &self.entries {
            insert_entry(&mut conn, e).await?;
        }
        for s in &self.sleeps {
            sqlx::query(
                r#"INSERT INTO "SleepRecord" (id, "userId", date, "totalSleepMins", "inBedMins", "awakeMins",
                       "asleepCoreMins", "asleepDeepMins", "asleepREMMins", "sleepStart", "sleepEnd",
                       "sourceDevices", "updatedAt")
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '["Apple Watch"]', $12)"#,
            )
            .bind(&s.id)
            .bind(&s.user_id)
            .bind(s.date)
            .bind(s.total)
            .bind(s.in_bed)
            .bind(s.awake)
            .bind(s.core)
            .bind(s.deep)
            .bind(s.rem)
            .bind(s.window.map(|w| w.0))
            .bind(s.window.map(|w| w.1))
            .bind(s.updated_at)
            .execute(&mut *conn)
            .await?;
        }
        for w in &self.workouts {
            upsert_workout(&mut conn, w).await?;
        }
        conn.commit().await?;
        connection.close().await?;
        Ok(())
    }

    /// Rows per table, as the reconciliation counts them.
    pub fn rows(&self) -> BTreeMap<&'static str, u64> {
        BTreeMap::from([
            ("User", self.users.len() as u64),
            ("Cohort", self.cohorts.len() as u64),
            ("CohortMembership", self.memberships.len() as u64),
            ("Entry", self.entries.len() as u64),
            ("SleepRecord", self.sleeps.len() as u64),
            ("Workout", self.workouts.len() as u64),
        ])
    }

    fn imported(&self, user_id: &str) -> bool {
        self.clients.contains_key(user_id) && !self.erased.contains(user_id)
    }

    /// Records that a client was erased from the service.
    pub fn erase(&mut self, user_id: &str) {
        self.erased.insert(user_id.to_string());
    }

    /// The workouts the import should bring in: all but a repeat of one created earlier
    /// (same user, overlapping times; every run here is a run).
    fn kept_workouts(&self) -> Vec<&Workout> {
        let mut by_creation: Vec<&Workout> = self.workouts.iter().filter(|w| self.imported(&w.user_id)).collect();
        by_creation.sort_by_key(|w| (w.created_at, w.id.clone()));
        let mut kept: Vec<&Workout> = Vec::new();
        for w in by_creation {
            if !kept.iter().any(|k| k.user_id == w.user_id && k.start < w.end() && w.start < k.end()) {
                kept.push(w);
            }
        }
        kept
    }

    /// Every day of the clients as the service should show it.
    pub fn expected_days(&self) -> BTreeMap<(String, NaiveDate), ExpectedDay> {
        let mut days: BTreeMap<(String, NaiveDate), ExpectedDay> = BTreeMap::new();
        for e in self.entries.iter().filter(|e| self.imported(&e.user_id)) {
            let day = days.entry((e.user_id.clone(), e.date)).or_default();
            let count = |n: Option<i32>, low: i32, high: i32| n.filter(|n| (low..=high).contains(n)).map(|n| n as u32);
            day.steps = count(e.steps, 0, i32::MAX);
            day.weight_kg = e.weight_lbs.filter(|lbs| lbs.is_finite()).map(|lbs| lbs * KG_PER_LB);
            day.height_m = e.height_inches.map(|inches| inches * M_PER_INCH);
            day.body_fat_percent = e.body_fat.filter(|bf| *bf >= 1.0);
            day.calories = count(e.calories, 0, 50_000);
            day.sleep_quality = count(e.sleep_quality, 1, 10);
            day.perceived_stress = count(e.perceived_stress, 1, 10);
            day.notes = e.notes.clone();
        }
        for ((user_id, date), held) in &self.held {
            let day = days.entry((user_id.clone(), *date)).or_default();
            if held.steps.is_some() {
                day.steps = held.steps;
            }
            if held.notes.is_some() {
                day.notes = held.notes.clone();
            }
        }
        for s in self.sleeps.iter().filter(|s| self.imported(&s.user_id) && s.window.is_some()) {
            days.entry((s.user_id.clone(), s.date)).or_default().sleep_minutes = Some(s.total as u32);
        }
        for w in self.kept_workouts() {
            days.entry((w.user_id.clone(), w.start.date())).or_default().workouts += 1;
        }
        days
    }

    fn held_on(&self, e: &Entry) -> Held {
        self.held.get(&(e.user_id.clone(), e.date)).cloned().unwrap_or_default()
    }

    /// The events the import should write, and refuse.
    pub fn expected_events(&self) -> Events {
        let mut events = Events::default();
        for e in self.entries.iter().filter(|e| self.imported(&e.user_id)) {
            events += entry_events(e, &self.held_on(e));
        }
        // Every night with times comes in (stages that do not fit left out).
        let nights = self.sleeps.iter().filter(|s| self.imported(&s.user_id) && s.window.is_some());
        events.written += nights.count() as u64;
        events.written += self.kept_workouts().len() as u64;
        events
    }

    /// What the reconciliation should list as left out.
    pub fn expected_skipped(&self) -> BTreeSet<ExpectedSkip> {
        let skip = |table: &str, id: &str, column: Option<&str>, cause: &str| {
            (table.to_string(), id.to_string(), column.map(str::to_string), cause.to_string())
        };
        let mut skipped = BTreeSet::new();
        for e in self.entries.iter().filter(|e| self.imported(&e.user_id)) {
            let held = self.held_on(e);
            let entry = |column: &str, cause: &str| skip("Entry", &e.id, Some(column), cause);
            for (column, _, cause) in defects(e) {
                skipped.insert(entry(column, cause));
            }
            if e.data_sources.is_some_and(|s| !s.starts_with('[')) {
                skipped.insert(entry("dataSources", "unknown_data_sources"));
            }
            if e.custom_responses {
                skipped.insert(entry("customResponses", "custom_responses"));
            }
            if held.steps.is_some() && e.steps.is_some() {
                skipped.insert(entry("steps", "outranked"));
            }
            if held.notes.is_some() && e.notes.is_some() {
                skipped.insert(entry("notes", "outranked"));
            }
        }
        for s in self.sleeps.iter().filter(|s| self.imported(&s.user_id)) {
            match s.window {
                None => {
                    skipped.insert(skip("SleepRecord", &s.id, None, "sleep_without_times"));
                }
                // Stages that overflow the time in bed are left out, the night kept.
                Some(_) if s.awake + s.core + s.deep + s.rem > s.in_bed => {
                    for column in ["inBedMins", "awakeMins", "asleepCoreMins", "asleepDeepMins", "asleepREMMins"] {
                        skipped.insert(skip("SleepRecord", &s.id, Some(column), "refused"));
                    }
                }
                Some(_) => {}
            }
        }
        let kept: BTreeSet<&str> = self.kept_workouts().iter().map(|w| w.id.as_str()).collect();
        for w in self.workouts.iter().filter(|w| self.imported(&w.user_id)) {
            if !kept.contains(w.id.as_str()) {
                skipped.insert(skip("Workout", &w.id, None, "duplicate_workout"));
            } else if w.avg_heart_rate < 30 {
                skipped.insert(skip("Workout", &w.id, Some("avgHeartRate"), "refused"));
            }
        }
        // Ana's own rows, Fay without a coach, Gus the admin.
        let (ana, fay, gus) = (&self.users[0].id, &self.users[5].id, &self.users[6].id);
        skipped.insert(skip("User", ana, None, "not_a_client"));
        skipped.insert(skip("User", fay, None, "no_coach"));
        skipped.insert(skip("User", gus, None, "not_a_client"));
        for user_id in &self.erased {
            skipped.insert(skip("User", user_id, None, "erased"));
        }
        skipped
    }

    /// The differences the reconciliation should list, each explained.
    pub fn expected_differences(&self) -> BTreeSet<ExpectedDifference> {
        let mut differences = BTreeSet::new();
        for e in self.entries.iter().filter(|e| self.imported(&e.user_id)) {
            let held = self.held_on(e);
            let difference =
                |field: &str, cause: &str| (e.user_id.clone(), e.date, field.to_string(), cause.to_string());
            for (_, field, cause) in defects(e) {
                differences.insert(difference(field, cause));
            }
            if held.steps.is_some_and(|n| Some(n as i32) != e.steps) {
                differences.insert(difference("steps", "outranked"));
            }
            if held.notes.is_some() && held.notes != e.notes {
                differences.insert(difference("notes", "outranked"));
            }
        }
        differences
    }

    /// The rows `change` changes: Cy's first clean HealthKit row and first clean typed row
    /// with notes, and Di's first clean typed row with steps.
    pub fn picks(&self) -> [usize; 3] {
        let (cy, di) = (&self.users[2].id, &self.users[3].id);
        let clean = |e: &Entry| {
            e.sleep_quality.is_none_or(|q| q <= 10)
                && e.body_fat.is_none_or(|bf| bf >= 1.0)
                && e.perceived_stress != Some(0)
                && e.steps.is_some_and(|n| n >= 0)
        };
        let synced = |e: &Entry| e.data_sources == Some(r#"["healthkit"]"#);
        let typed = |e: &Entry| e.data_sources == Some(r#"["manual"]"#);
        let find = |user: &str, pick: &dyn Fn(&Entry) -> bool| {
            self.entries.iter().position(|e| e.user_id == user && clean(e) && pick(e)).unwrap()
        };
        [find(cy, &synced), find(cy, &|e| typed(e) && e.notes.is_some()), find(di, &typed)]
    }

    /// Deletes a client's Entry row from the legacy database (the first of `user_id`'s
    /// with steps); its date.
    pub async fn delete_entry(&mut self, url: &str, user_id: &str) -> anyhow::Result<NaiveDate> {
        let index = self.entries.iter().position(|e| e.user_id == user_id && e.steps.is_some()).unwrap();
        let mut conn = PgConnection::connect(url).await?;
        sqlx::query(r#"DELETE FROM "Entry" WHERE id = $1"#).bind(&self.entries[index].id).execute(&mut conn).await?;
        conn.close().await?;
        Ok(self.entries.remove(index).date)
    }

    /// Records what another author wrote in the service on a client's day.
    pub fn hold(&mut self, user_id: &str, date: NaiveDate, held: Held) {
        self.held.insert((user_id.to_string(), date), held);
    }

    /// Changes the legacy database as its users would between two imports (the `picks`):
    /// a HealthKit total corrected, a note deleted, a day's steps turned from typed to
    /// synced; then a new day, a workout's energy revised, and a run deleted whose repeat
    /// then comes in. Returns the events the next import should write, and those of the
    /// changed rows' earlier versions (sent by an import that saw no other author), which
    /// it no longer sends.
    pub async fn change(&mut self, url: &str) -> anyhow::Result<(Events, Events)> {
        let mut conn = PgConnection::connect(url).await?;
        let ed = self.users[4].id.clone();
        let (mut now, mut before) = (Events::default(), Events::default());
        let later = Duration::days(3);
        for (change, index) in self.picks().into_iter().enumerate() {
            before += entry_events(&self.entries[index], &Held::default());
            let e = &mut self.entries[index];
            e.updated_at += later;
            match change {
                0 => e.steps = e.steps.map(|n| n + 1_000),
                1 => e.notes = None,
                _ => {
                    e.data_sources = Some(r#"["healthkit"]"#);
                    e.steps = Some(12_345);
                }
            }
            let e = self.entries[index].clone();
            now += entry_events(&e, &self.held_on(&e));
            sqlx::query(r#"DELETE FROM "Entry" WHERE id = $1"#).bind(&e.id).execute(&mut conn).await?;
            insert_entry(&mut conn, &e).await?;
        }
        let last = self.entries.iter().filter(|e| e.user_id == ed).map(|e| e.date).max().unwrap();
        let mut added = self.entry(9_999, &ed, last + Duration::days(1), 1);
        added.calories = Some(2_222);
        now += entry_events(&added, &Held::default());
        insert_entry(&mut conn, &added).await?;
        self.entries.push(added);

        // A revision (its workout id kept), and a run deleted whose repeat comes in instead.
        let cy = self.users[2].id.clone();
        let kept: BTreeSet<String> = self.kept_workouts().iter().map(|w| w.id.clone()).collect();
        let is_repeated = |w: &Workout, all: &[Workout]| {
            all.iter().any(|o| o.id != w.id && o.user_id == w.user_id && o.start < w.end() && w.start < o.end())
        };
        let revised = self
            .workouts
            .iter()
            .position(|w| w.user_id == cy && kept.contains(&w.id) && !is_repeated(w, &self.workouts))
            .unwrap();
        self.workouts[revised].calories += 50;
        self.workouts[revised].updated_at += later;
        upsert_workout(&mut conn, &self.workouts[revised]).await?;
        let deleted = self
            .workouts
            .iter()
            .position(|w| w.user_id == cy && kept.contains(&w.id) && is_repeated(w, &self.workouts))
            .unwrap();
        sqlx::query(r#"DELETE FROM "Workout" WHERE id = $1"#)
            .bind(&self.workouts[deleted].id)
            .execute(&mut conn)
            .await?;
        self.workouts.remove(deleted);
        // The revision, the deletion and the repeat that now comes in; the revised and the
        // deleted run's earlier versions are no longer sent.
        now.written += 3;
        before.written += 2;
        conn.close().await?;
        Ok((now, before))
    }
}

/// The values of an Entry row the import should leave out for a known defect or a failed
/// check, each making a difference: `(column, field, cause)`.
fn defects(e: &Entry) -> Vec<(&'static str, &'static str, &'static str)> {
    let found = [
        (e.sleep_quality.is_some_and(|q| q > 10), "sleepQuality", "sleep_quality", "sleep_total_in_sleep_quality"),
        (e.body_fat.is_some_and(|bf| bf < 1.0), "bodyFatPercentage", "body_fat_percent", "refused"),
        (e.perceived_stress == Some(0), "perceivedStress", "perceived_stress", "refused"),
        (e.steps.is_some_and(|n| n < 0), "steps", "steps", "refused"),
        (e.weight_lbs.is_some_and(f64::is_nan), "weightLbs", "weight_kg", "refused"),
    ];
    found.into_iter().filter(|(found, ..)| *found).map(|(_, column, field, cause)| (column, field, cause)).collect()
}

/// The reports an Entry row should become, by the documented mapping; `held`: what other
/// authors wrote on its day.
fn entry_events(e: &Entry, held: &Held) -> Events {
    let healthkit = e.data_sources.is_some_and(|s| s.starts_with('[') && s.to_lowercase().contains("\"healthkit\""));
    let steps = e.steps.filter(|n| *n >= 0 && held.steps.is_none());
    let notes = e.notes.as_ref().filter(|_| held.notes.is_none());
    let mut events = Events::default();
    let mut report = |comes_in: bool| match comes_in {
        true => events.written += 1,
        false => events.refused += 1,
    };
    if healthkit && steps.is_some() {
        report(true);
    }
    if healthkit && e.weight_lbs.is_some() {
        report(e.weight_lbs.is_some_and(f64::is_finite));
    }
    if e.height_inches.is_some() {
        report(true);
    }
    if let Some(bf) = e.body_fat {
        report(bf >= 1.0);
    }
    let typed = (!healthkit && (steps.is_some() || e.weight_lbs.is_some()))
        || e.calories.is_some()
        || e.sleep_quality.is_some_and(|q| q <= 10)
        || e.perceived_stress.is_some()
        || notes.is_some();
    if typed || e.updated_at > e.created_at {
        report(true);
    }
    events
}

async fn insert_entry(conn: &mut PgConnection, e: &Entry) -> anyhow::Result<()> {
    sqlx::query(
        r#"INSERT INTO "Entry" (id, "userId", date, "weightLbs", steps, calories, "heightInches", "sleepQuality",
               "perceivedStress", notes, "customResponses", "dataSources", "bodyFatPercentage", "createdAt",
               "updatedAt")
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb, $13, $14, $15)"#,
    )
    .bind(&e.id)
    .bind(&e.user_id)
    .bind(e.date)
    .bind(e.weight_lbs)
    .bind(e.steps)
    .bind(e.calories)
    .bind(e.height_inches)
    .bind(e.sleep_quality)
    .bind(e.perceived_stress)
    .bind(&e.notes)
    .bind(e.custom_responses.then_some(r#"{"goal": "run a 10k"}"#))
    .bind(e.data_sources)
    .bind(e.body_fat)
    .bind(e.created_at)
    .bind(e.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

async fn upsert_workout(conn: &mut PgConnection, w: &Workout) -> anyhow::Result<()> {
    sqlx::query(
        r#"INSERT INTO "Workout" (id, "userId", "workoutType", "startTime", "endTime", "durationSecs",
               "caloriesActive", "distanceMeters", "avgHeartRate", "maxHeartRate", "sourceDevice", "createdAt",
               "updatedAt")
           VALUES ($1, $2, 'running', $3, $4, $5, $6, 5000.0, $7, 171, 'Apple Watch', $8, $9)
           ON CONFLICT (id) DO UPDATE SET "caloriesActive" = excluded."caloriesActive",
               "updatedAt" = excluded."updatedAt""#,
    )
    .bind(&w.id)
    .bind(&w.user_id)
    .bind(w.start)
    .bind(w.end())
    .bind((w.minutes * 60) as i32)
    .bind(w.calories)
    .bind(w.avg_heart_rate)
    .bind(w.created_at)
    .bind(w.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}
