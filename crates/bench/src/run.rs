//! One benchmark run: the phases, the report and its goals.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use coachfit::accounts;
use coachfit::store::postgres::{PgSettings, PostgresStore};
use coachfit::store::sqlite::{SqliteStore, WAL_AUTOCHECKPOINT_PAGES};
use coachfit::store::Store;
use coachfit_testkit::child::resident_mib;
use coachfit_testkit::{ChildServer, ScratchDatabase};

use crate::raw::RawEvent;
use crate::{harness, load, raw};

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// docs/DESIGN.md's sizes: 1,000 subscribers at 500 changes/s, 1,000,000 events rebuilt.
    Full,
    /// The same shape, smaller: under two minutes.
    Quick,
    /// A few seconds: that every phase runs end to end (CI).
    Smoke,
}

struct Sizes {
    batch_clients: usize,
    batch_requests: usize,
    single_clients: usize,
    rpc_seconds: u64,
    subscribers: usize,
    /// Dashboards following over gRPC-Web (HTTP/1.1), in a fan-out of their own.
    web_subscribers: usize,
    change_rate: u64,
    fanout_seconds: u64,
    rebuild_events: usize,
}

impl Mode {
    fn sizes(self) -> Sizes {
        match self {
            Mode::Full => Sizes {
                batch_clients: 4,
                batch_requests: 100,
                single_clients: 64,
                rpc_seconds: 10,
                subscribers: 1_000,
                web_subscribers: 200,
                change_rate: 500,
                fanout_seconds: 10,
                rebuild_events: 1_000_000,
            },
            Mode::Quick => Sizes {
                batch_clients: 4,
                batch_requests: 40,
                single_clients: 64,
                rpc_seconds: 4,
                subscribers: 1_000,
                web_subscribers: 200,
                change_rate: 500,
                fanout_seconds: 5,
                rebuild_events: 100_000,
            },
            Mode::Smoke => Sizes {
                batch_clients: 2,
                batch_requests: 4,
                single_clients: 64,
                rpc_seconds: 1,
                subscribers: 50,
                web_subscribers: 20,
                change_rate: 50,
                fanout_seconds: 1,
                rebuild_events: 4_000,
            },
        }
    }
}

/// Every figure of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub backend: String,
    pub mode: String,
    pub machine: String,
    pub date: String,
    pub batch_events_per_s: f64,
    pub raw_insert_events_per_s: f64,
    pub batch_ratio: f64,
    pub single_ingest_per_s: f64,
    pub health_check_per_s: f64,
    pub single_ratio: f64,
    pub coach_read_per_s: f64,
    pub coach_read_ratio: f64,
    pub fanout_subscribers: usize,
    /// Entry changes a second the writers offered.
    pub fanout_rate: u64,
    pub fanout_changes: u64,
    pub fanout_write_errors: u64,
    pub fanout_missing: u64,
    pub fanout_p50_ms: u64,
    pub fanout_p99_ms: u64,
    pub web_fanout_subscribers: usize,
    pub web_fanout_changes: u64,
    pub web_fanout_write_errors: u64,
    pub web_fanout_missing: u64,
    pub web_fanout_p50_ms: u64,
    pub web_fanout_p99_ms: u64,
    pub rebuild_events: u64,
    pub rebuild_events_per_s: f64,
    pub read_events_per_s: f64,
    pub rebuild_ratio: f64,
    pub peak_rss_mib: f64,
}

fn progress(message: &str) {
    eprintln!("[bench] {message}");
}

/// Runs the benchmark on a fresh database of the kind `database` names.
pub async fn run(mode: Mode, database: &str, server: &Path) -> anyhow::Result<Report> {
    let db = ScratchDatabase::create(database).await.context("--database-url")?;
    // The database is dropped when `db` goes, after the run's store and pools.
    if db.is_postgres() {
        let store = PostgresStore::open(&db.url, &PgSettings { max_connections: 20, ..PgSettings::default() }).await?;
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(&db.url).await?;
        run_on(store, Raw::Postgres(pool), &db, mode, server).await
    } else {
        let store = SqliteStore::open(&db.url).await?;
        let options = SqliteConnectOptions::from_str(&db.url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(60))
            // Tuned as the store's own connections are, so the limit is as fast as they are.
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        run_on(store, Raw::Sqlite(pool), &db, mode, server).await
    }
}

/// The raw sqlx pool the limits are measured with.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn insert(&self, batches: &[Vec<RawEvent>], concurrency: usize) -> anyhow::Result<Duration> {
        match self {
            Raw::Sqlite(pool) => raw::insert(pool, batches, concurrency).await,
            Raw::Postgres(pool) => raw::insert(pool, batches, concurrency).await,
        }
    }

    async fn add_users(&self, coach_id: &str, users: &[String]) -> anyhow::Result<()> {
        match self {
            Raw::Sqlite(pool) => raw::add_users(pool, coach_id, users).await,
            Raw::Postgres(pool) => raw::add_users(pool, coach_id, users).await,
        }
    }

    async fn sequential_read(&self) -> anyhow::Result<(u64, Duration)> {
        match self {
            Raw::Sqlite(pool) => raw::sequential_read(pool).await,
            Raw::Postgres(pool) => raw::sequential_read(pool).await,
        }
    }
}

async fn mint_clients<S: Store>(store: &S, coach_id: &str, count: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(accounts::create_client(store, coach_id, None, "bench").await?.expect("the coach exists"));
    }
    Ok(clients)
}

async fn run_on<S: Store>(
    store: S,
    raw: Raw,
    db: &ScratchDatabase,
    mode: Mode,
    server: &Path,
) -> anyhow::Result<Report> {
    let sizes = mode.sizes();
    let (coach_id, coach_token) = accounts::create_coach(&store, "Bench coach").await?;
    let batch_users = mint_clients(&store, &coach_id, sizes.batch_requests).await?;
    let single_users = mint_clients(&store, &coach_id, sizes.single_clients).await?;
    let writers = mint_clients(&store, &coach_id, 8).await?;
    let mut server = ChildServer::start(harness::serve(server, &db.url, &accounts::new_token()))?;
    let uri = server.uri();

    progress(&format!("batch ingest: {} requests of 400 from {} clients", sizes.batch_requests, sizes.batch_clients));
    let tokens: Vec<String> = batch_users.iter().map(|(_, token)| token.clone()).collect();
    let (accepted, elapsed) = load::batch_ingest(&uri, &tokens, sizes.batch_clients).await?;
    let batch_events_per_s = accepted as f64 / elapsed.as_secs_f64();
    let raw_batches: Vec<Vec<RawEvent>> = (0..sizes.batch_requests)
        .map(|r| {
            let user = format!("raw-{r}");
            (0..400).map(|d| RawEvent::steps(&user, load::bench_day(d), 1_000, 1_000_000 + d as i64)).collect()
        })
        .collect();
    let raw_users: Vec<String> = (0..sizes.batch_requests).map(|r| format!("raw-{r}")).collect();
    raw.add_users(&coach_id, &raw_users).await?;
    let raw_elapsed = raw.insert(&raw_batches, sizes.batch_clients).await?;
    let raw_insert_events_per_s = (sizes.batch_requests * 400) as f64 / raw_elapsed.as_secs_f64();

    progress(&format!(
        "single-item ingest vs health checks: {} clients, {} s each",
        sizes.single_clients, sizes.rpc_seconds
    ));
    let single_tokens: Vec<String> = single_users.iter().map(|(_, token)| token.clone()).collect();
    let rpc_time = Duration::from_secs(sizes.rpc_seconds);
    let single_ingest_per_s = load::single_ingest(&uri, &single_tokens, rpc_time).await?;
    let health_check_per_s = load::health_checks(&uri, sizes.single_clients, rpc_time).await?;
    progress(&format!(
        "coach reads (GetEntry, in the access log): {} clients, {} s",
        sizes.single_clients, sizes.rpc_seconds
    ));
    let single_user_ids: Vec<String> = single_users.iter().map(|(user, _)| user.clone()).collect();
    let coach_read_per_s = load::coach_reads(&uri, &coach_token, &single_user_ids, rpc_time).await?;

    progress(&format!(
        "fan-out: {} subscribers, {} changes/s for {} s",
        sizes.subscribers, sizes.change_rate, sizes.fanout_seconds
    ));
    let pid = server.pid();
    let peak_kib = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let peak_kib = peak_kib.clone();
        async move {
            loop {
                if let Some(mib) = resident_mib(pid) {
                    peak_kib.fetch_max((mib * 1024.0) as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let plan = |subscribers, wire, first_day| load::FanoutPlan {
        writers: &writers,
        subscribers,
        wire,
        rate: sizes.change_rate,
        duration: Duration::from_secs(sizes.fanout_seconds),
        first_day,
    };
    let fanout = load::fanout(&uri, &coach_token, plan(sizes.subscribers, load::Wire::Grpc, 5_000)).await?;
    sampler.abort();
    let peak_rss_mib = peak_kib.load(Ordering::Relaxed) as f64 / 1024.0;
    progress(&format!("fan-out over gRPC-Web (HTTP/1.1): {} subscribers", sizes.web_subscribers));
    let web_fanout = load::fanout(&uri, &coach_token, plan(sizes.web_subscribers, load::Wire::GrpcWeb, 6_000)).await?;
    server.stop()?;

    progress(&format!("rebuild: writing a history of {} events", sizes.rebuild_events));
    let history: Vec<Vec<RawEvent>> = (0..sizes.rebuild_events.div_ceil(400))
        .map(|b| {
            (0..400)
                .map(|i| {
                    let n = b * 400 + i;
                    // 10 observations a day, 100 days a user.
                    let (user, day, observation) = (n / 1_000, (n / 10) % 100, n % 10);
                    RawEvent::steps(&format!("history-{user}"), load::bench_day(day), n as u32, observation as i64)
                })
                .collect()
        })
        .collect();
    let history_users: Vec<String> =
        (0..sizes.rebuild_events.div_ceil(1_000)).map(|u| format!("history-{u}")).collect();
    raw.add_users(&coach_id, &history_users).await?;
    raw.insert(&history, 2).await?;
    progress("rebuild: sequential read, then rebuild");
    let (rows, read_elapsed) = raw.sequential_read().await?;
    let read_events_per_s = rows as f64 / read_elapsed.as_secs_f64();
    let started = Instant::now();
    let stats = store.rebuild(None).await?;
    let rebuild_events_per_s = stats.events_replayed as f64 / started.elapsed().as_secs_f64();

    Ok(Report {
        backend: if db.is_postgres() { "postgres" } else { "sqlite" }.into(),
        mode: format!("{mode:?}").to_lowercase(),
        machine: harness::machine(),
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        batch_events_per_s,
        raw_insert_events_per_s,
        batch_ratio: batch_events_per_s / raw_insert_events_per_s,
        single_ingest_per_s,
        health_check_per_s,
        single_ratio: single_ingest_per_s / health_check_per_s,
        coach_read_per_s,
        coach_read_ratio: coach_read_per_s / health_check_per_s,
        fanout_subscribers: fanout.subscribers,
        fanout_rate: sizes.change_rate,
        fanout_changes: fanout.changes,
        fanout_write_errors: fanout.write_errors,
        fanout_missing: fanout.missing,
        fanout_p50_ms: fanout.latency_ms.value_at_quantile(0.5),
        fanout_p99_ms: fanout.latency_ms.value_at_quantile(0.99),
        web_fanout_subscribers: web_fanout.subscribers,
        web_fanout_changes: web_fanout.changes,
        web_fanout_write_errors: web_fanout.write_errors,
        web_fanout_missing: web_fanout.missing,
        web_fanout_p50_ms: web_fanout.latency_ms.value_at_quantile(0.5),
        web_fanout_p99_ms: web_fanout.latency_ms.value_at_quantile(0.99),
        rebuild_events: stats.events_replayed,
        rebuild_events_per_s,
        read_events_per_s,
        rebuild_ratio: rebuild_events_per_s / read_events_per_s,
        peak_rss_mib,
    })
}

/// docs/DESIGN.md §7's goals, each with whether this run met it.
impl Report {
    fn goals(&self) -> Vec<(String, String, String, bool)> {
        vec![
            (
                "batch ingest (400-item IngestSteps) vs raw sqlx bulk insert".into(),
                format!("{:.0} vs {:.0} events/s", self.batch_events_per_s, self.raw_insert_events_per_s),
                format!("{:.2} (goal ≥ 0.5)", self.batch_ratio),
                self.batch_ratio >= 0.5,
            ),
            (
                "single-item IngestSteps vs Health/Check, 64 clients, fsync on".into(),
                format!("{:.0} vs {:.0} calls/s", self.single_ingest_per_s, self.health_check_per_s),
                format!("{:.2} (goal ≥ 0.25)", self.single_ratio),
                self.single_ratio >= 0.25,
            ),
            (
                "a coach's GetEntry (recorded in the access log) vs Health/Check, 64 clients".into(),
                format!("{:.0} vs {:.0} calls/s", self.coach_read_per_s, self.health_check_per_s),
                format!("{:.2} (no goal: the read path's cost)", self.coach_read_ratio),
                true,
            ),
            (
                format!("StreamEntries fan-out, {} subscribers", self.fanout_subscribers),
                format!(
                    "{} changes ({} writes refused), {} deliveries missing, p50 {} ms, p99 {} ms",
                    self.fanout_changes,
                    self.fanout_write_errors,
                    self.fanout_missing,
                    self.fanout_p50_ms,
                    self.fanout_p99_ms
                ),
                format!("{} changes/s sustained, all delivered, p99 ≤ 100 ms", self.fanout_rate),
                self.fanout_write_errors == 0 && self.fanout_missing == 0 && self.fanout_p99_ms <= 100,
            ),
            (
                format!("StreamEntries fan-out over gRPC-Web (HTTP/1.1), {} subscribers", self.web_fanout_subscribers),
                format!(
                    "{} changes ({} writes refused), {} deliveries missing, p50 {} ms, p99 {} ms",
                    self.web_fanout_changes,
                    self.web_fanout_write_errors,
                    self.web_fanout_missing,
                    self.web_fanout_p50_ms,
                    self.web_fanout_p99_ms
                ),
                format!("{} changes/s sustained, all delivered, p99 ≤ 100 ms", self.fanout_rate),
                self.web_fanout_write_errors == 0 && self.web_fanout_missing == 0 && self.web_fanout_p99_ms <= 100,
            ),
            (
                format!("rebuild over {} events vs a sequential read", self.rebuild_events),
                format!("{:.0} vs {:.0} events/s", self.rebuild_events_per_s, self.read_events_per_s),
                format!("{:.2} (goal ≥ 0.3)", self.rebuild_ratio),
                self.rebuild_ratio >= 0.3,
            ),
            (
                "server resident memory during the fan-out".into(),
                format!("peak {:.0} MiB", self.peak_rss_mib),
                "≤ 150 MB".into(),
                self.peak_rss_mib * 1.048_576 <= 150.0,
            ),
        ]
    }

    /// A markdown table of every figure, with the goals.
    pub fn table(&self) -> String {
        let mut out = format!(
            "### {} — {} run, {} ({})\n\n| figure | measured | ratio / goal | met |\n|---|---|---|---|\n",
            self.backend, self.mode, self.date, self.machine
        );
        for (figure, measured, goal, met) in self.goals() {
            out.push_str(&format!("| {figure} | {measured} | {goal} | {} |\n", if met { "yes" } else { "**no**" }));
        }
        out
    }

    /// Every figure as one JSON object on one line.
    pub fn json_line(&self) -> String {
        json!(self).to_string()
    }

    /// Whether every subscriber got every change (the one thing a smoke run checks).
    pub fn delivered_everything(&self) -> bool {
        self.fanout_missing == 0
            && self.fanout_changes > 0
            && self.web_fanout_missing == 0
            && self.web_fanout_changes > 0
    }
}

/// Puts the report's table into `path` under its backend's heading, keeping the rest.
pub fn write_markdown(path: &Path, report: &Report) -> anyhow::Result<()> {
    write_section(path, &report.backend, &report.table())
}

/// Puts `table` into `path` between its `bench:NAME` markers (at the end if there are none).
pub fn write_section(path: &Path, name: &str, table: &str) -> anyhow::Result<()> {
    let (begin, end) = (format!("<!-- bench:{name} -->"), format!("<!-- /bench:{name} -->"));
    let section = format!("{begin}\n{table}{end}");
    let existing = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n\n".to_string());
    let updated = match (existing.find(&begin), existing.find(&end)) {
        (Some(start), Some(stop)) if stop > start => {
            format!("{}{section}{}", &existing[..start], &existing[stop + end.len()..])
        }
        _ => format!("{}\n{section}\n", existing.trim_end()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}
