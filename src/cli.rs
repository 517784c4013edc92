//! What each `coachfit` subcommand does.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use serde_json::json;

use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::Connection;

use crate::accounts;
use crate::api::pairing::PairingOptions;
use crate::config::{
    AdminCommand, AppleHealthArgs, Cli, Command, ExportFormat, ImportCommand, LogFormat, PriorityCommand,
};
use crate::demo;
use crate::domain::priority::PriorityRule;
use crate::domain::validate::{check_text, identifier, TextKind, MAX_NAME_CHARS};
use crate::export::{self, ExportRecord};
use crate::import::sink::{ServerSink, Sink, StoreSink};
use crate::import::{apple_health, legacy};
use crate::server::{self, Limits, ServerOptions, Tls, TlsFiles};
use crate::store::postgres::{PgSettings, PostgresStore};
use crate::store::sqlite::SqliteStore;
use crate::store::{Access, RebuildStats, Store, StoreOptions};

pub async fn run(cli: Cli) -> ExitCode {
    init_logging(cli.log_format);
    match execute(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Reads a priority file.
pub fn load_rule(path: &std::path::Path) -> anyhow::Result<PriorityRule> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    PriorityRule::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Opens the database the URL names (running migrations) and runs the command on it.
async fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let url = cli.database_url();
    if let Some(path) = cli.command.retired_priority_file() {
        bail!(
            "--priority-file (COACHFIT_PRIORITY_FILE) is gone: the priority rule is stored in the database now, \
             for every instance. Run `coachfit priority set {}` once, then start without the flag",
            path.display()
        );
    }
    if let Command::Import(ImportCommand::AppleHealth(args)) = &cli.command {
        if let Some(server) = &args.server {
            // To a server: no database here.
            let token = args.device_token.as_deref().context("--server needs --device-token")?;
            let mut sink =
                ServerSink::connect(server, token).await.with_context(|| format!("connecting to {server}"))?;
            return import_apple_health(args, &mut sink).await;
        }
    }
    let shown = redacted(&url);
    let store_options = match cli.command.write_args() {
        Some(writes) => StoreOptions {
            max_events_per_day: writes.max_events_per_day,
            write_queue: writes.write_queue,
            ..StoreOptions::default()
        },
        None => StoreOptions::default(),
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if matches!(cli.command, Command::Backup { .. }) {
            bail!("`coachfit backup` copies SQLite databases; back PostgreSQL up with pg_dump (README: Backup and restore)");
        }
        tracing::info!(database = %shown, "using PostgreSQL");
        let settings = PgSettings { max_connections: cli.db_max_connections, ..PgSettings::default() };
        let store = PostgresStore::open_with(&url, &settings, &store_options)
            .await
            .with_context(|| format!("opening {shown}"))?;
        run_command(store, cli.command, &shown).await
    } else if url.starts_with("sqlite:") {
        let path = sqlite_path(&url)?;
        tracing::info!(database = %path.display(), "using SQLite");
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty() && !dir.is_dir()) {
            bail!("cannot use a database at {}: the directory {} does not exist", path.display(), dir.display());
        }
        if !creates_database(&cli.command) && !path.exists() {
            bail!(
                "no database at {}: `coachfit serve` or `coachfit migrate` creates one; run this where it is, \
                 or name it with --database-url (or COACHFIT_DATABASE_URL)",
                path.display()
            );
        }
        if let Command::Backup { path: to } = &cli.command {
            backup_sqlite(&url, to).await?;
            return Ok(ExitCode::SUCCESS);
        }
        let store = SqliteStore::open_with(&url, &store_options)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        run_command(store, cli.command, &shown).await
    } else {
        bail!("unsupported database URL: expected sqlite://PATH or postgres://…")
    }
}

/// Commands that make a database where there is none; the others only read or add to one
/// (an empty new file would make `verify` pass, and `admin` say the coach does not exist).
fn creates_database(command: &Command) -> bool {
    matches!(command, Command::Serve(_) | Command::Demo { .. } | Command::Migrate)
}

/// Copies the SQLite database at `url` to the new file `to`: `VACUUM INTO` reads one
/// snapshot, on a read-only connection, so a server using the database goes on writing.
async fn backup_sqlite(url: &str, to: &std::path::Path) -> anyhow::Result<()> {
    if to.exists() {
        bail!("{} exists: name a new file", to.display());
    }
    let target = to.to_str().with_context(|| format!("{} is not a UTF-8 path", to.display()))?;
    let options = SqliteConnectOptions::from_str(url)?.read_only(true);
    let mut connection = sqlx::SqliteConnection::connect_with(&options).await.context("opening the database")?;
    sqlx::query("VACUUM INTO $1").bind(target).execute(&mut connection).await.context("copying the database")?;
    eprintln!("backed up to {} (restore: README, Backup and restore)", to.display());
    Ok(())
}

/// The file a `sqlite:` URL names.
fn sqlite_path(url: &str) -> anyhow::Result<std::path::PathBuf> {
    let options = SqliteConnectOptions::from_str(url).with_context(|| format!("not a SQLite URL: {url}"))?;
    Ok(options.get_filename().to_path_buf())
}

/// A database URL fit for a log: any password replaced.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    // Credentials end at the last '@' (a password may hold '@', '/' or '?'); hiding too much
    // of an odd URL is better than showing a password.
    let rest = match rest.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => rest.to_string(),
        },
        None => rest.to_string(),
    };
    let rest = match rest.split_once('?') {
        Some((path, query)) => {
            let hide =
                |pair: &str| if pair.starts_with("password=") { "password=***".to_string() } else { pair.to_string() };
            format!("{path}?{}", query.split('&').map(hide).collect::<Vec<_>>().join("&"))
        }
        None => rest,
    };
    format!("{scheme}://{rest}")
}

async fn run_command<S: Store>(store: S, command: Command, database: &str) -> anyhow::Result<ExitCode> {
    // Days an earlier release's fold stored, or that a rule's interrupted pass did not
    // reach, are re-folded, once, by the commands that serve or rebuild, before anything
    // else; `verify` only reads, and says so.
    let refolded = match &command {
        Command::Serve(_) | Command::Demo { .. } | Command::Rebuild { user_id: None, .. } => {
            store.refold_if_stale().await.context("re-folding the days folded by an earlier fold or rule")?
        }
        _ => None,
    };
    match command {
        Command::Demo { listen, .. } => demo::run(store, listen, database).await?,
        Command::Serve(args) => {
            server::raise_open_file_limit();
            let tls = match (args.tls_cert, args.tls_key) {
                (Some(cert), Some(key)) => {
                    let files = TlsFiles { cert, key, client_ca: args.tls_client_ca };
                    Some(Arc::new(Tls::load(files).context("loading the TLS certificate")?))
                }
                _ => None,
            };
            let (listener, addr) =
                server::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
            let shutdown = server::shutdown_signal();
            let scheme = if tls.is_some() { "TLS" } else { "plaintext" };
            tracing::info!(%addr, database, scheme, "coachfit listening");
            if let Some(listen) = args.metrics_listen {
                let at = crate::metrics::serve(listen).await.context("starting the metrics endpoint")?;
                tracing::info!(metrics_at = %at, "serving Prometheus metrics at /metrics");
            }
            if tls.is_none() && !addr.ip().is_loopback() {
                tracing::warn!(
                    %addr,
                    "listening in plaintext on a non-loopback address: bearer tokens and health data cross the \
                     network in the clear; serve TLS with --tls-cert and --tls-key, or keep a TLS proxy in front"
                );
            }
            let options = ServerOptions {
                tls,
                cors_origins: args.cors_origins,
                admin_token: args.admin_token,
                heartbeat: Duration::from_secs(args.heartbeat_secs),
                stale_after_days: args.stale_after_days,
                pairing: PairingOptions {
                    code_ttl: Duration::from_secs(args.pairing_code_ttl_secs),
                    max_failures: args.pairing_max_failures,
                    lockout: Duration::from_secs(args.pairing_lockout_secs),
                    trusted_proxies: args.trusted_proxies,
                },
                limits: Limits {
                    max_concurrent_streams: args.max_concurrent_streams,
                    request_timeout: Duration::from_secs(args.request_timeout_secs),
                    streams_per_principal: args.streams_per_token as usize,
                    drain_timeout: Duration::from_secs(args.drain_timeout_secs),
                    keepalive_interval: Duration::from_secs(args.keepalive_secs),
                    device_burst_items: args.device_burst_items,
                    device_items_per_second: args.device_items_per_second,
                    max_stream_users: args.max_stream_users,
                    ..Limits::default()
                },
            };
            server::serve(store, listener, options, shutdown).await?;
        }
        Command::Migrate => eprintln!("migrations applied"),
        // `execute` copies the database before any store is opened.
        Command::Backup { .. } => unreachable!("backups are taken without a store"),
        Command::Export { user_id, format } => {
            identifier("--user-id", &user_id).map_err(|v| anyhow::anyhow!(v.description))?;
            if store.coach_of(&user_id).await?.is_none() {
                bail!("no user {user_id}");
            }
            // An operator's read of the user's data: in their access log, as `cli`.
            let format_name = match format {
                ExportFormat::Jsonl => "jsonl",
                ExportFormat::Csv => "csv",
            };
            let access = Access {
                user_id: user_id.clone(),
                accessor: "cli".into(),
                rpc: "coachfit export".into(),
                detail: format_name.into(),
                peer: String::new(),
                at: crate::store::now(),
            };
            store.log_accesses(&[access]).await?;
            write_export(store, user_id, format).await?;
        }
        Command::Import(ImportCommand::AppleHealth(args)) => {
            let user_id = args.user_id.clone().context("--user-id (or --server with --device-token)")?;
            identifier("--user-id", &user_id).map_err(|v| anyhow::anyhow!(v.description))?;
            if store.coach_of(&user_id).await?.is_none() {
                bail!("no user {user_id}");
            }
            let zone = time_zone(&args.time_zone)?;
            let mut sink = StoreSink { store, user_id, actor: "import:apple-health".into(), zone };
            return import_apple_health(&args, &mut sink).await;
        }
        Command::Import(ImportCommand::CoachfitLegacy(args)) => {
            let zone = time_zone(&args.time_zone)?;
            let from = redacted(&args.from);
            let mut legacy = legacy::Legacy::connect(&args.from).await.with_context(|| format!("opening {from}"))?;
            let mut lines = legacy::report::JsonLines(std::io::stdout().lock());
            let report = legacy::import(&mut legacy, &store, zone, &mut lines).await?;
            drop(lines);
            println!("{}", json!({ "reconciliation": report, "peak_rss_mib": peak_resident_mib() }));
            if report.unexplained > 0 {
                eprintln!(
                    "{} differences between the legacy database and the service are unexplained",
                    report.unexplained
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Rebuild { user_id, .. } => {
            let stats = match refolded {
                Some(stats) => stats,
                None => store.rebuild(user_id.as_deref()).await?,
            };
            println!("{}", stats_json(&stats));
        }
        Command::Verify { .. } => {
            if !store.fold_is_current().await? {
                eprintln!(
                    "the stored days were folded by an earlier release or under an earlier priority rule: \
                     start `coachfit serve` or run `coachfit rebuild` to re-fold them, then verify"
                );
                return Ok(ExitCode::FAILURE);
            }
            let mismatches = store.verify().await?;
            for m in &mismatches {
                println!("{} {} differs from the fold of its events", m.user_id, m.day);
            }
            if !mismatches.is_empty() {
                eprintln!("{} day(s) differ; `coachfit rebuild` recomputes them", mismatches.len());
                return Ok(ExitCode::FAILURE);
            }
            eprintln!("every read model matches its events");
        }
        Command::Admin(AdminCommand::CreateCoach { name }) => {
            let (coach_id, coach_token) = accounts::create_coach(&store, &name).await?;
            println!("{}", json!({"coach_id": coach_id, "coach_token": coach_token}));
        }
        Command::Admin(AdminCommand::CreateClient { coach_id, device_name, name }) => {
            let name = name.as_deref().map(str::trim);
            if let Some(name) = name {
                check_text("--name", name, TextKind::Identifier, 1, MAX_NAME_CHARS)
                    .map_err(|v| anyhow::anyhow!(v.description))?;
            }
            let created = accounts::create_client(&store, &coach_id, name, &device_name).await?;
            let Some((user_id, device_token)) = created else {
                bail!("no coach {coach_id}");
            };
            println!("{}", json!({"user_id": user_id, "device_token": device_token}));
        }
        Command::Admin(AdminCommand::RotateCoachToken { coach_id }) => {
            let Some(coach_token) = accounts::rotate_coach_token(&store, &coach_id, None).await? else {
                bail!("no coach {coach_id}");
            };
            println!("{}", json!({"coach_token": coach_token}));
        }
        Command::Admin(AdminCommand::RevokeCoach { coach_id }) => {
            let Some(tokens_revoked) = store.revoke_coach(&coach_id).await? else { bail!("no coach {coach_id}") };
            println!("{}", json!({"tokens_revoked": tokens_revoked}));
        }
        Command::Admin(AdminCommand::EraseUser { user_id }) => {
            identifier("--user-id", &user_id).map_err(|v| anyhow::anyhow!(v.description))?;
            let removal = store.erase_user(&user_id, "cli").await?;
            let position = removal.as_ref().map_or(0, |removal| removal.position);
            println!("{}", json!({"erased": removal.is_some(), "position": position}));
        }
        Command::Priority(PriorityCommand::Show) => {
            let stored = store.priority_rule().await?;
            let (set_by, set_at) = stored.set.map(|(by, at)| (by, at.to_rfc3339())).unzip();
            let shown = json!({
                "version": stored.current.version,
                "rule": stored.current.rule.file(),
                "set_by": set_by,
                "set_at": set_at,
                "applied": stored.applied,
            });
            println!("{shown}");
        }
        Command::Priority(PriorityCommand::Set { file }) => {
            let rule = load_rule(&file)?;
            let (version, stats) = store.set_priority_rule(&rule, "cli").await?;
            let mut shown = stats_json(&stats);
            shown["version"] = json!(version);
            println!("{shown}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn time_zone(name: &str) -> anyhow::Result<chrono_tz::Tz> {
    crate::domain::dates::parse_time_zone(name)
        .with_context(|| format!("--time-zone {name:?} is not an IANA time zone (such as Europe/Berlin)"))
}

/// Imports an Apple Health export into `sink`; prints the summary, with the peak memory.
async fn import_apple_health(args: &AppleHealthArgs, sink: &mut impl Sink) -> anyhow::Result<ExitCode> {
    let options = apple_health::Options { zone: time_zone(&args.time_zone)?, source_order: args.source_order.clone() };
    let summary = apple_health::import(&args.file, options, sink).await?;
    let mut shown = json!(summary);
    shown["peak_rss_mib"] = json!(peak_resident_mib());
    println!("{shown}");
    Ok(ExitCode::SUCCESS)
}

/// The most memory this process has held (Linux: VmHWM), in MiB.
fn peak_resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}

/// What a re-fold of every day did, as `rebuild` and `priority set` print it.
fn stats_json(stats: &RebuildStats) -> serde_json::Value {
    json!({
        "days_rebuilt": stats.days_rebuilt,
        "days_changed": stats.days_changed,
        "events_replayed": stats.events_replayed,
    })
}

/// mimalloc asks for transparent huge pages for its arena, then returns freed parts of it
/// to the kernel: each 2 MiB page touched again is zeroed whole. Without them, a rebuild's
/// system time fell by a quarter (BENCHMARKS.md). For `main`, and the benchmark's.
pub fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Writes a user's export to stdout as it is read, a page at a time.
async fn write_export<S: Store>(store: S, user_id: String, format: ExportFormat) -> anyhow::Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout().lock();
    let mut records = std::pin::pin!(export::records(store, user_id.clone()));
    match format {
        ExportFormat::Jsonl => {
            let mut out = std::io::BufWriter::new(stdout);
            writeln!(out, "{}", export::header_json(&user_id, chrono::Utc::now()))?;
            while let Some(record) = records.next().await {
                writeln!(out, "{}", export::record_json(&record?))?;
            }
            out.flush()?;
        }
        ExportFormat::Csv => {
            let mut out = csv::Writer::from_writer(stdout);
            out.write_record(export::CSV_COLUMNS)?;
            while let Some(record) = records.next().await {
                if let ExportRecord::Entry(entry) = record? {
                    out.write_record(export::csv_row(&entry))?;
                }
            }
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_database_url_hides_its_password() {
        assert_eq!(redacted("postgres://app:s3cret@db:5432/coachfit"), "postgres://app:***@db:5432/coachfit");
        assert_eq!(redacted("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
        assert_eq!(redacted("sqlite://coachfit.db"), "sqlite://coachfit.db");
        assert_eq!(redacted("postgres://u:p@ss@db/x"), "postgres://u:***@db/x");
        assert_eq!(redacted("postgres://app:pa/ss?x@db/x"), "postgres://app:***@db/x");
        assert_eq!(
            redacted("postgres://u@db/x?sslmode=require&password=s3cret"),
            "postgres://u@db/x?sslmode=require&password=***"
        );
    }
}
