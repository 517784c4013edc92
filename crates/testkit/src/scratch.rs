//! A database of its own for one benchmark run or one test, dropped with its guard: a
//! temporary SQLite file, or a fresh database on a PostgreSQL server.

use anyhow::{bail, Context};
use sqlx::Connection;

pub struct ScratchDatabase {
    /// Where the database is, for `coachfit serve` or a store's `open`.
    pub url: String,
    /// The PostgreSQL server's URL (the database it names is used to connect) and the
    /// database made on it.
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl ScratchDatabase {
    /// `sqlite` (or any `sqlite:` URL) gives a temporary file; a `postgres://` URL names the
    /// server, on which a database with a fresh name is created.
    pub async fn create(kind: &str) -> anyhow::Result<ScratchDatabase> {
        if kind.starts_with("postgres://") || kind.starts_with("postgresql://") {
            let name = format!("coachfit_scratch_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgConnection::connect(kind).await.context("connecting to PostgreSQL")?;
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
            let url = with_database(kind, &name);
            // The guard first: from here on, a failure drops the database again.
            let scratch = ScratchDatabase { url, postgres: Some((kind.to_string(), name)), _dir: None };
            admin.close().await?;
            Ok(scratch)
        } else if kind.starts_with("sqlite") {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("coachfit.db").display());
            Ok(ScratchDatabase { url, postgres: None, _dir: Some(dir) })
        } else {
            bail!("a scratch database is `sqlite` or a postgres:// URL, not {kind:?}")
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }
}

/// The PostgreSQL server tests make their scratch databases on: `COACHFIT_TEST_POSTGRES_URL`,
/// or the local server CI runs.
pub fn test_postgres_server() -> String {
    std::env::var("COACHFIT_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let Some((server, name)) = self.postgres.take() else { return };
        // Drop may run inside async code, which must not block on a runtime of its own:
        // drop the database from a thread of its own, and wait for it.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&server).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await?;
                anyhow::Ok(admin.close().await?)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop a scratch database: {dropped:?}");
        }
    }
}

/// `scheme://user@host:port/db?params` naming `database` instead.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..].find('/').map_or(base.len(), |i| authority + i);
    match query {
        Some(query) => format!("{}/{database}?{query}", &base[..path]),
        None => format!("{}/{database}", &base[..path]),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn a_server_url_names_the_scratch_database_and_keeps_its_parameters() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "s1"),
            "postgres://postgres@127.0.0.1:5432/s1"
        );
        assert_eq!(with_database("postgres://u@h/test?sslmode=disable", "s1"), "postgres://u@h/s1?sslmode=disable");
        assert_eq!(with_database("postgresql://u@h:5432", "s1"), "postgresql://u@h:5432/s1");
    }
}
