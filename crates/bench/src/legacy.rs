//! The legacy import's figures: a generated CoachFit web-app database (its test's people and
//! `clients` more, a year of history each) on a scratch PostgreSQL database, imported by
//! `coachfit import coachfit-legacy` (a child process) into a fresh store, then again
//! (nothing new); legacy rows a second and the importer's peak memory.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use coachfit_testkit::legacy_db::LegacyDb;
use coachfit_testkit::{test_postgres_server, ScratchDatabase};

/// Days of history per client.
const DAYS: u32 = 365;

pub struct LegacyReport {
    pub date: String,
    pub machine: String,
    pub store: &'static str,
    pub clients: usize,
    pub rows: u64,
    pub events: u64,
    pub first_seconds: f64,
    pub second_seconds: f64,
    pub peak_rss_mib: f64,
}

impl LegacyReport {
    pub fn table(&self) -> String {
        format!(
            "### coachfit-legacy import — {} ({}, into {})\n\n| clients | legacy rows | events written | first run | rows/s | importer's peak memory | second run (nothing new) |\n|---|---|---|---|---|---|---|\n| {} | {} | {} | {:.1} s | {:.0} | {:.0} MiB | {:.1} s |\n",
            self.date,
            self.machine,
            self.store,
            self.clients,
            self.rows,
            self.events,
            self.first_seconds,
            self.rows as f64 / self.first_seconds,
            self.peak_rss_mib,
            self.second_seconds,
        )
    }
}

/// Runs the import; its time and its last line (the reconciliation and the peak memory).
async fn import(coachfit: &Path, store_url: &str, legacy_url: &str) -> anyhow::Result<(f64, serde_json::Value)> {
    let started = Instant::now();
    let output = tokio::process::Command::new(coachfit)
        .args(["import", "coachfit-legacy", "--from", legacy_url])
        .env("COACHFIT_DATABASE_URL", store_url)
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(output.status.success(), "the import failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout)?;
    let last = stdout.lines().last().context("no output")?;
    Ok((seconds, serde_json::from_str(last)?))
}

/// Generates a legacy database of the test's people and `clients` more, and times its
/// import into a fresh store of `store_kind` (`sqlite` or a PostgreSQL server's URL).
pub async fn run(clients: u32, store_kind: &str, coachfit: &Path) -> anyhow::Result<LegacyReport> {
    let postgres = if store_kind.starts_with("postgres") { store_kind.to_string() } else { test_postgres_server() };
    let legacy_db = ScratchDatabase::create(&postgres).await?;
    let legacy = LegacyDb::generate_with(clients, DAYS);
    eprintln!("[bench] writing a legacy database of {} clients, {} days each", legacy.clients.len(), DAYS);
    legacy.create(&legacy_db.url).await?;
    let store = ScratchDatabase::create(store_kind).await?;
    let migrated = tokio::process::Command::new(coachfit)
        .arg("migrate")
        .env("COACHFIT_DATABASE_URL", &store.url)
        .env("RUST_LOG", "warn")
        .status()
        .await?;
    anyhow::ensure!(migrated.success(), "coachfit migrate failed");

    eprintln!("[bench] importing");
    let (first_seconds, first) = import(coachfit, &store.url, &legacy_db.url).await?;
    let (second_seconds, second) = import(coachfit, &store.url, &legacy_db.url).await?;
    let report = &first["reconciliation"];
    anyhow::ensure!(second["reconciliation"]["events"]["written"] == 0, "the second run wrote: {second}");
    let rows: u64 = report["rows_read"].as_object().context("rows_read")?.values().filter_map(|n| n.as_u64()).sum();
    Ok(LegacyReport {
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        machine: crate::harness::machine(),
        store: if store.is_postgres() { "PostgreSQL" } else { "SQLite" },
        clients: legacy.clients.len(),
        rows,
        events: report["events"]["written"].as_u64().context("events written")?,
        first_seconds,
        second_seconds,
        peak_rss_mib: first["peak_rss_mib"].as_f64().context("peak_rss_mib")?,
    })
}
