//! The Apple Health import's figures: a generated export of about the size asked for,
//! imported by `coachfit import apple-health` (a child process) into a fresh SQLite
//! database; records read a second, and the importer's peak memory.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use coachfit::accounts;
use coachfit::store::sqlite::SqliteStore;
use coachfit_testkit::health_export::{self, ZONE};
use coachfit_testkit::ScratchDatabase;

/// Days of history the generated export covers (from 2024-01-01, all past); its size
/// comes from skipped samples.
const DAYS: i64 = 1_000;
/// About the bytes of one day's samples the import uses, and of one heart-rate sample.
const USED_BYTES_A_DAY: u64 = 60_000;
const SKIPPED_SAMPLE_BYTES: u64 = 330;

pub struct ImportReport {
    pub date: String,
    pub machine: String,
    pub xml_mib: f64,
    pub records: u64,
    pub seconds: f64,
    pub peak_rss_mib: f64,
}

impl ImportReport {
    pub fn table(&self) -> String {
        format!(
            "### apple-health import — {} ({})\n\n| export.xml | records | time | records/s | MiB/s | importer's peak memory |\n|---|---|---|---|---|---|\n| {:.0} MiB | {} | {:.1} s | {:.0} | {:.1} | {:.0} MiB |\n",
            self.date,
            self.machine,
            self.xml_mib,
            self.records,
            self.seconds,
            self.records as f64 / self.seconds,
            self.xml_mib / self.seconds,
            self.peak_rss_mib
        )
    }
}

/// Generates an export of about `megabytes` of XML and times its import.
pub async fn run(megabytes: u64, coachfit: &Path) -> anyhow::Result<ImportReport> {
    let dir = tempfile::tempdir()?;
    let skipped_a_day = (megabytes * 1_000_000 / DAYS as u64).saturating_sub(USED_BYTES_A_DAY) / SKIPPED_SAMPLE_BYTES;
    eprintln!("[bench] generating an export of {DAYS} days with {skipped_a_day} skipped samples a day");
    let fixture = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || health_export::generate(&dir, DAYS, skipped_a_day as u32, 1)
    })
    .await?;
    let db = ScratchDatabase::create("sqlite").await?;
    let store = SqliteStore::open(&db.url).await?;
    let (coach_id, _) = accounts::create_coach(&store, "Bench coach").await?;
    let (user_id, _) = accounts::create_client(&store, &coach_id, None, "bench").await?.context("the coach exists")?;
    drop(store);

    eprintln!("[bench] importing {:.0} MiB of export.xml", fixture.bytes as f64 / 1_048_576.0);
    let started = Instant::now();
    let output = tokio::process::Command::new(coachfit)
        .args(["import", "apple-health", fixture.path.to_str().context("a UTF-8 path")?])
        .args(["--time-zone", ZONE, "--user-id", &user_id])
        .env("COACHFIT_DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(output.status.success(), "the import failed: {}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    anyhow::ensure!(summary["rejected"] == 0, "the import rejected items: {summary}");
    Ok(ImportReport {
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        machine: crate::harness::machine(),
        xml_mib: fixture.bytes as f64 / 1_048_576.0,
        records: summary["records_read"].as_u64().context("records_read")?,
        seconds,
        peak_rss_mib: summary["peak_rss_mib"].as_f64().context("peak_rss_mib")?,
    })
}
