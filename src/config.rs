//! The command line. Every flag can also be set through a `COACHFIT_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::import::apple_health::DeviceKind;

#[derive(Debug, Parser)]
#[command(name = "coachfit", version, about = "CoachFit Sync: health-data ingestion over gRPC")]
pub struct Cli {
    /// `sqlite://PATH` or `postgres://…` [default: sqlite://coachfit.db; `demo` uses a new
    /// SQLite file in the temporary directory]
    #[arg(long, global = true, env = "COACHFIT_DATABASE_URL")]
    pub database_url: Option<String>,

    /// PostgreSQL connection pool size per instance.
    #[arg(long, global = true, env = "COACHFIT_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// Log lines as text or JSON, on stderr; `RUST_LOG` sets the level (default `info`).
    #[arg(long, global = true, env = "COACHFIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// The database when none is named.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://coachfit.db";

impl Cli {
    /// The database the command uses: the one named, else the default (a fresh file for
    /// `demo`).
    pub fn database_url(&self) -> String {
        match (&self.database_url, &self.command) {
            (Some(url), _) => url.clone(),
            (None, Command::Demo { .. }) => {
                let name = format!("coachfit-demo-{}.db", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
                format!("sqlite://{}", std::env::temp_dir().join(name).display())
            }
            (None, _) => DEFAULT_DATABASE_URL.to_string(),
        }
    }
}

/// The flag that named the priority rule before the rule was stored in the database; kept
/// (hidden) on the commands that took it so that a deployment still setting it is told
/// where the rule went instead of folding under a rule it did not mean.
#[derive(Debug, Clone, Args)]
pub struct RetiredRuleArgs {
    #[arg(long, env = "COACHFIT_PRIORITY_FILE", hide = true)]
    pub priority_file: Option<PathBuf>,
}

/// How clients' writes are held, for the commands that serve them.
#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// Events one user-day may hold; reports past it are refused (DAY_FULL).
    #[arg(long, env = "COACHFIT_MAX_EVENTS_PER_DAY", default_value_t = crate::store::DEFAULT_MAX_EVENTS_PER_DAY, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(100..=1_000_000))]
    pub max_events_per_day: usize,
    /// Writes that may wait for the writer; more are refused UNAVAILABLE with RetryInfo.
    #[arg(long, env = "COACHFIT_WRITE_QUEUE", default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub write_queue: usize,
}

impl Command {
    /// The retired `--priority-file`, if the command took it and it is set.
    pub fn retired_priority_file(&self) -> Option<&std::path::Path> {
        let rule = match self {
            Command::Serve(args) => &args.rule,
            Command::Demo { rule, .. } | Command::Rebuild { rule, .. } | Command::Verify { rule } => rule,
            Command::Migrate
            | Command::Admin(_)
            | Command::Priority(_)
            | Command::Backup { .. }
            | Command::Import(_)
            | Command::Export { .. } => return None,
        };
        rule.priority_file.as_deref()
    }

    /// How the command holds clients' writes, if it serves them.
    pub fn write_args(&self) -> Option<&WriteArgs> {
        match self {
            Command::Serve(args) => Some(&args.writes),
            Command::Demo { writes, .. } => Some(writes),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations, then serve gRPC until SIGINT/SIGTERM.
    Serve(Box<ServeArgs>),
    /// Serve a demo: a coach, two clients and three weeks of their data, with new steps
    /// arriving every few seconds. Prints the tokens as `export` lines (also written to
    /// ./coachfit-demo.env).
    Demo {
        /// Address to listen on.
        #[arg(long, env = "COACHFIT_LISTEN", default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        #[command(flatten)]
        rule: RetiredRuleArgs,
        #[command(flatten)]
        writes: WriteArgs,
    },
    /// Create or upgrade the schema, then exit.
    Migrate,
    /// Recompute read models from the events under the stored priority rule.
    Rebuild {
        /// Only this user's days (default: everyone's).
        #[arg(long, env = "COACHFIT_USER_ID")]
        user_id: Option<String>,
        #[command(flatten)]
        rule: RetiredRuleArgs,
    },
    /// Check every stored read model against the fold of its events under the stored
    /// priority rule; non-zero exit on a difference.
    Verify {
        #[command(flatten)]
        rule: RetiredRuleArgs,
    },
    /// Copy a SQLite database to PATH while it serves: one consistent snapshot, taken
    /// without stopping writers. (PostgreSQL: use pg_dump; see the README.)
    Backup {
        /// A file that does not exist yet.
        path: PathBuf,
    },
    /// Write everything stored of a user to stdout: JSON Lines (a header, every event, every
    /// entry) or CSV (one row per day). See docs/PRIVACY.md.
    Export {
        #[arg(long)]
        user_id: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Mint coaches and clients; each prints one JSON object on stdout.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Show or set the source-priority rule every instance folds with.
    #[command(subcommand)]
    Priority(PriorityCommand),
    /// Bring history in from elsewhere, as the events the app would have sent (running it
    /// again adds nothing). Prints a summary as JSON.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// An iPhone's Health export (export.zip from Health → profile → Export All Health
    /// Data, or the export.xml inside it): daily steps (a Watch's and an iPhone's overlapping
    /// samples counted once), sleep sessions, workouts, body measurements.
    AppleHealth(AppleHealthArgs),
    /// The CoachFit web app's PostgreSQL database: coaches (each given a new token, printed
    /// once as a JSON line), clients under their coaches, and their Entry, SleepRecord and
    /// Workout rows; then a reconciliation of every Entry row with the day the service
    /// shows (exit status 1 when a difference is unexplained).
    CoachfitLegacy(LegacyArgs),
}

#[derive(Debug, Args)]
pub struct LegacyArgs {
    /// The legacy database (postgres://…; or COACHFIT_LEGACY_DATABASE_URL). Only read.
    #[arg(long, env = "COACHFIT_LEGACY_DATABASE_URL", hide_env_values = true)]
    pub from: String,
    /// The zone whose days a workout's start time falls on (IANA, such as Europe/Berlin);
    /// the legacy dates themselves are taken as they are.
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
}

#[derive(Debug, Args)]
pub struct AppleHealthArgs {
    /// export.zip (or export.xml).
    pub file: PathBuf,
    /// The person's time zone (IANA, such as Europe/Berlin): days are theirs.
    #[arg(long)]
    pub time_zone: String,
    /// Write into this database for this client (a user id).
    #[arg(long, required_unless_present = "server", conflicts_with = "server")]
    pub user_id: Option<String>,
    /// Send to the server at this address (host:port or a URL) instead, with
    /// --device-token, retried as the app retries.
    #[arg(long, requires = "device_token")]
    pub server: Option<String>,
    /// The client's device token (or COACHFIT_DEVICE_TOKEN), with --server.
    #[arg(long, env = "COACHFIT_DEVICE_TOKEN", hide_env_values = true)]
    pub device_token: Option<String>,
    /// Which devices count where their samples overlap, best first.
    #[arg(long, value_delimiter = ',', default_value = "watch,phone,other", value_parser = device_kind)]
    pub source_order: Vec<DeviceKind>,
}

fn device_kind(text: &str) -> Result<DeviceKind, String> {
    DeviceKind::parse(text).ok_or_else(|| format!("{text:?}: expected watch, phone or other"))
}

#[derive(Debug, Subcommand)]
pub enum PriorityCommand {
    /// Prints the rule in force as JSON: {"version", "rule", "set_by", "set_at", "applied"}.
    Show,
    /// Stores FILE as the next version of the rule (every instance folds with it from its
    /// next write), then re-folds every day, logging progress; prints what changed.
    Set {
        /// A priority file: {"default": [...], "fields": {"steps": ["healthkit", "manual"]}}.
        file: PathBuf,
    },
}

/// How `coachfit export` writes a user's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// JSON Lines: a header naming the format and version, then every event and entry.
    Jsonl,
    /// One row per day of entries, for a spreadsheet.
    Csv,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub rule: RetiredRuleArgs,
    #[command(flatten)]
    pub writes: WriteArgs,
    /// Address to listen on.
    #[arg(long, env = "COACHFIT_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// PEM certificate chain to serve TLS with (with --tls-key); SIGHUP reloads both.
    #[arg(long, env = "COACHFIT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "COACHFIT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Address to serve Prometheus metrics on (`GET /metrics`, plaintext); off when unset.
    #[arg(long, env = "COACHFIT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// PEM CA whose certificates clients must present (service-to-service); needs --tls-cert.
    #[arg(long, env = "COACHFIT_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// An origin (`https://coach.example.com`) whose pages may call the API from a browser,
    /// for a dashboard hosted elsewhere; repeatable (env: comma-separated). Without one,
    /// only the dashboard this server serves at `/` can.
    #[arg(long = "cors-origin", env = "COACHFIT_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<http::HeaderValue>,
    /// A bearer token that acts as an admin principal.
    #[arg(long, env = "COACHFIT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Seconds a StreamEntries stream may be idle before it gets a heartbeat.
    #[arg(long, env = "COACHFIT_HEARTBEAT_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub heartbeat_secs: u64,
    /// Days without a new observation after which ListClients marks a client stale.
    #[arg(long, env = "COACHFIT_STALE_AFTER_DAYS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub stale_after_days: u32,
    /// Seconds a pairing code stays valid.
    #[arg(long, env = "COACHFIT_PAIRING_CODE_TTL_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(60..=86_400))]
    pub pairing_code_ttl_secs: u64,
    /// Failed pairing attempts from one address before it is refused.
    #[arg(long, env = "COACHFIT_PAIRING_MAX_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub pairing_max_failures: u32,
    /// Seconds an address is refused after too many failed pairing attempts.
    #[arg(long, env = "COACHFIT_PAIRING_LOCKOUT_SECS", default_value_t = 900)]
    pub pairing_lockout_secs: u64,
    /// A proxy (IP address) whose `x-forwarded-for` names the client, for the pairing
    /// throttle; repeatable (env: comma-separated). Without one the header is ignored.
    #[arg(long = "trusted-proxy", env = "COACHFIT_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// HTTP/2 streams (calls) one connection may have open at once.
    #[arg(long, env = "COACHFIT_MAX_CONCURRENT_STREAMS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Seconds a call may take to be answered (a streaming call: to set up its stream).
    #[arg(long, env = "COACHFIT_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub request_timeout_secs: u64,
    /// StreamEntries one token may hold open on this instance.
    #[arg(long, env = "COACHFIT_STREAMS_PER_TOKEN", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub streams_per_token: u64,
    /// Seconds a shutdown waits for calls and streams before closing the remaining connections.
    #[arg(long, env = "COACHFIT_DRAIN_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub drain_timeout_secs: u64,
    /// Seconds between HTTP/2 PINGs on an idle connection (unanswered for 10 s: disconnected).
    #[arg(long, env = "COACHFIT_KEEPALIVE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub keepalive_secs: u64,
    /// Items one device may ingest at once (its bucket's size).
    #[arg(long, env = "COACHFIT_DEVICE_BURST_ITEMS", default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(400..))]
    pub device_burst_items: u32,
    /// Items per second a device's bucket refills with.
    #[arg(long, env = "COACHFIT_DEVICE_ITEMS_PER_SECOND", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub device_items_per_second: u32,
    /// Users one StreamEntries request may name.
    #[arg(long, env = "COACHFIT_MAX_STREAM_USERS", default_value_t = 1_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub max_stream_users: usize,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Prints {"coach_id", "coach_token"}.
    CreateCoach {
        /// The coach's name, as clients see it.
        #[arg(long)]
        name: String,
    },
    /// Prints {"user_id", "device_token"}.
    CreateClient {
        /// The coach the client belongs to (from create-coach).
        #[arg(long)]
        coach_id: String,
        /// A name for the client's first device.
        #[arg(long, default_value = "cli")]
        device_name: String,
        /// The client's name, as the coach knows them.
        #[arg(long)]
        name: Option<String>,
    },
    /// A new token for a coach, every earlier one refused from now on; prints {"coach_token"}.
    RotateCoachToken {
        #[arg(long)]
        coach_id: String,
    },
    /// Refuses every token of a coach from now on; prints {"tokens_revoked"}.
    RevokeCoach {
        #[arg(long)]
        coach_id: String,
    },
    /// Erases a user and everything stored of them, for good (docs/PRIVACY.md); prints
    /// {"erased", "position"}. Erasing a user that is not there is not an error.
    EraseUser {
        #[arg(long)]
        user_id: String,
    },
}

/// A browser origin: `http` or `https`, a host, an optional port, and nothing after;
/// written as browsers send it (lowercase, no default port), so that it matches.
fn parse_origin(text: &str) -> Result<http::HeaderValue, String> {
    let problem = || format!("'{text}' is not an origin like https://coach.example.com (scheme, host, optional port)");
    let uri: http::Uri = text.parse().map_err(|_| problem())?;
    let bare = uri.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/") && !text.ends_with('/');
    let (Some(scheme @ ("http" | "https")), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err(problem());
    };
    if !bare || text.contains('@') {
        return Err(problem());
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = uri.port_u16().filter(|&port| port != default_port).map(|port| format!(":{port}")).unwrap_or_default();
    http::HeaderValue::from_str(&format!("{scheme}://{}{port}", host.to_ascii_lowercase())).map_err(|_| problem())
}

#[cfg(test)]
mod tests {
    use super::parse_origin;

    #[test]
    fn an_origin_is_a_scheme_a_host_and_a_port() {
        for origin in ["https://coach.example.com", "http://127.0.0.1:8080", "https://[::1]:8443"] {
            assert_eq!(parse_origin(origin).unwrap(), origin, "{origin}");
        }
        // As a browser sends it: lowercase, without the scheme's default port.
        assert_eq!(parse_origin("https://Coach.Example.com:443").unwrap(), "https://coach.example.com");
        assert_eq!(parse_origin("http://coach.example.com:80").unwrap(), "http://coach.example.com");
        for not_origin in [
            "*",
            "coach.example.com",
            "ftp://coach.example.com",
            "https://coach.example.com/",
            "https://a.com/page",
            "https://u@a.com",
            "https://a.com?x=1",
        ] {
            assert!(parse_origin(not_origin).is_err(), "{not_origin} accepted");
        }
    }
}
