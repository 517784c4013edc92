//! `coachfit-bench`: the real server (`coachfit serve`, a child process on loopback) driven
//! by real gRPC clients, each figure measured side by side with its limit in the same run
//! (docs/DESIGN.md §7). A crate of its own, so its histograms and scratch databases stay
//! out of the service.

mod harness;
mod import;
mod legacy;
mod load;
mod raw;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use run::Mode;

// As in `coachfit` itself: the run's rebuild phase runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Measure CoachFit Sync against its limits on a fresh database.
#[derive(Debug, Parser)]
#[command(name = "coachfit-bench")]
struct Args {
    /// `sqlite` for a temporary file, or a PostgreSQL server URL (a database is made on it
    /// for the run and dropped after).
    #[arg(long, default_value = "sqlite")]
    database_url: String,
    /// A smaller run, under two minutes.
    #[arg(long, conflicts_with = "smoke")]
    quick: bool,
    /// A run of seconds that only checks every phase works end to end (CI).
    #[arg(long)]
    smoke: bool,
    /// Put the results into this markdown file (BENCHMARKS.md) under the backend's heading.
    #[arg(long)]
    write: Option<PathBuf>,
    /// The `coachfit` binary to serve with [default: the one beside this binary].
    #[arg(long)]
    coachfit: Option<PathBuf>,
    /// Instead: time `coachfit import apple-health` on a generated export of about this many
    /// megabytes of XML (SQLite).
    #[arg(long, conflicts_with_all = ["quick", "smoke"])]
    apple_health_mb: Option<u64>,
    /// Instead: time `coachfit import coachfit-legacy` on a generated legacy database of
    /// this many clients more than the test's, a year each, into --database-url's kind of
    /// store (the legacy database goes on --database-url's PostgreSQL server, or the test
    /// server for SQLite).
    #[arg(long, conflicts_with_all = ["quick", "smoke", "apple_health_mb"])]
    legacy_clients: Option<u32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    coachfit::cli::without_transparent_huge_pages();
    let args = Args::parse();
    let coachfit = match args.coachfit {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("coachfit"),
    };
    anyhow::ensure!(
        coachfit.exists(),
        "no coachfit binary at {}: build both (`cargo build --release --workspace`) or pass --coachfit",
        coachfit.display()
    );
    if let Some(megabytes) = args.apple_health_mb {
        let report = import::run(megabytes, &coachfit).await.context("import benchmark")?;
        println!("{}", report.table());
        if let Some(path) = args.write {
            run::write_section(&path, "import", &report.table())?;
            eprintln!("updated {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(clients) = args.legacy_clients {
        let report = legacy::run(clients, &args.database_url, &coachfit).await.context("legacy import benchmark")?;
        println!("{}", report.table());
        if let Some(path) = args.write {
            let section = format!("legacy-import-{}", report.store.to_lowercase());
            run::write_section(&path, &section, &report.table())?;
            eprintln!("updated {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mode = match (args.quick, args.smoke) {
        (_, true) => Mode::Smoke,
        (true, _) => Mode::Quick,
        _ => Mode::Full,
    };
    let report = run::run(mode, &args.database_url, &coachfit).await.context("benchmark run")?;
    println!("{}", report.table());
    println!("{}", report.json_line());
    if let Some(path) = args.write {
        run::write_markdown(&path, &report)?;
        eprintln!("updated {}", path.display());
    }
    if !report.delivered_everything() {
        eprintln!("not every subscriber got every change");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
