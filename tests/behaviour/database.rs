//! A database of its own for every test: a temporary SQLite file, or a PostgreSQL database
//! created on the server at `COACHFIT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and dropped when the test ends.

use coachfit::accounts;
use coachfit::domain::priority::PriorityRule;
use coachfit::store::postgres::{PgSettings, PostgresStore};
use coachfit::store::sqlite::SqliteStore;
use coachfit::store::Store;
use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn postgres_admin_url() -> String {
    std::env::var("COACHFIT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    /// The PostgreSQL database to drop, or the SQLite file's directory.
    postgres_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("coachfit.db").display());
                TestDatabase { backend, url, postgres_name: None, _dir: Some(dir) }
            }
            Backend::Postgres => {
                let name = format!("coachfit_test_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect to PostgreSQL for tests");
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
                conn.close().await.ok();
                let url = replace_database(&admin, &name);
                TestDatabase { backend, url, postgres_name: Some(name), _dir: None }
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

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else { return };
        // Drop runs outside async code: use a runtime of our own on a thread of our own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a test database: {dropped:?}");
        }
    }
}

/// `scheme://user@host:port/db?params` with another database name.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_end..].find('/').map(|i| authority_end + i).unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The store of either backend, for what the tests do beside the gRPC API.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl AnyStore {
    pub async fn open(backend: Backend, url: &str, feed_buffer: usize) -> AnyStore {
        match backend {
            Backend::Sqlite => AnyStore::Sqlite(SqliteStore::open_with(url, feed_buffer).await.unwrap()),
            Backend::Postgres => {
                let settings = PgSettings { max_connections: 8, ..PgSettings::default() };
                AnyStore::Postgres(PostgresStore::open_with(url, &settings, feed_buffer).await.unwrap())
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
            AnyStore::Sqlite(s) => accounts::create_client(s, coach_id, "phone").await.unwrap(),
            AnyStore::Postgres(s) => accounts::create_client(s, coach_id, "phone").await.unwrap(),
        }
        .expect("the coach exists")
    }

    pub async fn verify(&self) -> bool {
        let rule = PriorityRule::default();
        match self {
            AnyStore::Sqlite(s) => s.verify(&rule).await.unwrap(),
            AnyStore::Postgres(s) => s.verify(&rule).await.unwrap(),
        }
        .is_empty()
    }
}
