//! A database of its own for every test: a temporary SQLite file, or a PostgreSQL database
//! created on the server at `COACHFIT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and dropped when the test ends.

use coachfit::accounts;
use coachfit::store::postgres::{PgSettings, PostgresStore};
use coachfit::store::sqlite::SqliteStore;
use coachfit::store::{Store, StoreOptions};
use coachfit_testkit::{test_postgres_server, ScratchDatabase};
use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    _database: ScratchDatabase,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        let kind = match backend {
            Backend::Sqlite => "sqlite".to_string(),
            Backend::Postgres => test_postgres_server(),
        };
        let database = ScratchDatabase::create(&kind).await.expect("create a test database");
        TestDatabase { backend, url: database.url.clone(), _database: database }
    }

    /// Every value of `column` in `table`, as `T` reads it (the table's own order).
    pub async fn column<T>(&self, table: &str, column: &str) -> Vec<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
        T: Send + Unpin,
    {
        let sql = format!("SELECT {column} FROM {table}");
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(&sql).fetch_all(&mut conn).await.unwrap()
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(&sql).fetch_all(&mut conn).await.unwrap()
            }
        }
    }

    /// Applies the schema migrations numbered up to `version` only, as an earlier release did.
    pub async fn migrate_up_to(&self, version: i64) {
        let earlier = |mut migrator: sqlx::migrate::Migrator| {
            migrator.migrations = migrator.migrations.iter().filter(|m| m.version <= version).cloned().collect();
            migrator
        };
        match self.backend {
            Backend::Sqlite => {
                use sqlx::ConnectOptions;
                let options: sqlx::sqlite::SqliteConnectOptions = self.url.parse().unwrap();
                let mut conn = options.create_if_missing(true).connect().await.unwrap();
                earlier(sqlx::migrate!("migrations/sqlite")).run(&mut conn).await.unwrap();
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                earlier(sqlx::migrate!("migrations/postgres")).run(&mut conn).await.unwrap();
            }
        }
    }

    /// Runs several statements; on PostgreSQL, then moves the events' `seq` past the
    /// ones the script set.
    pub async fn execute_script(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
                sqlx::query("SELECT setval(pg_get_serial_sequence('events', 'seq'), (SELECT max(seq) FROM events))")
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }

    /// Every `table.column` of the schema holding a row that contains `value`, except the
    /// tables `except` (what an erasure must leave no trace in).
    pub async fn columns_containing(&self, value: &str, except: &[&str]) -> Vec<String> {
        let columns_sql = match self.backend {
            Backend::Sqlite => {
                "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'"
            }
        };
        // One statement: the name of each column with a row containing $1.
        let search = |columns: Vec<(String, String)>| {
            columns
                .into_iter()
                .filter(|(table, _)| !except.contains(&table.as_str()))
                .map(|(table, column)| {
                    format!(
                        "SELECT '{table}.{column}' WHERE EXISTS \
                         (SELECT 1 FROM \"{table}\" WHERE CAST(\"{column}\" AS TEXT) LIKE $1)"
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        };
        let pattern = format!("%{value}%");
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                let sql = search(sqlx::query_as(columns_sql).fetch_all(&mut conn).await.unwrap());
                sqlx::query_scalar(&sql).bind(pattern).fetch_all(&mut conn).await.unwrap()
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let sql = search(sqlx::query_as(columns_sql).fetch_all(&mut conn).await.unwrap());
                sqlx::query_scalar(&sql).bind(pattern).fetch_all(&mut conn).await.unwrap()
            }
        }
    }

    pub async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
    }
}

/// The store of either backend, for what the tests do beside the gRPC API.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl AnyStore {
    pub async fn open(backend: Backend, url: &str, feed_buffer: usize) -> AnyStore {
        Self::open_with(backend, url, &StoreOptions { feed_buffer, ..StoreOptions::default() }).await
    }

    pub async fn open_with(backend: Backend, url: &str, options: &StoreOptions) -> AnyStore {
        match backend {
            Backend::Sqlite => AnyStore::Sqlite(SqliteStore::open_with(url, options).await.unwrap()),
            Backend::Postgres => {
                let settings = PgSettings { max_connections: 8, ..PgSettings::default() };
                AnyStore::Postgres(PostgresStore::open_with(url, &settings, options).await.unwrap())
            }
        }
    }

    pub async fn create_coach(&self, name: &str) -> (String, String) {
        match self {
            AnyStore::Sqlite(s) => accounts::create_coach(s, name).await.unwrap(),
            AnyStore::Postgres(s) => accounts::create_coach(s, name).await.unwrap(),
        }
    }

    pub async fn create_client(&self, coach_id: &str) -> (String, String) {
        match self {
            AnyStore::Sqlite(s) => accounts::create_client(s, coach_id, None, "phone").await.unwrap(),
            AnyStore::Postgres(s) => accounts::create_client(s, coach_id, None, "phone").await.unwrap(),
        }
        .expect("the coach exists")
    }

    pub async fn verify(&self) -> bool {
        match self {
            AnyStore::Sqlite(s) => s.verify().await.unwrap(),
            AnyStore::Postgres(s) => s.verify().await.unwrap(),
        }
        .is_empty()
    }
}
