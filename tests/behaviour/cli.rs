//! The `coachfit` binary: minting accounts, verify, rebuild and a graceful serve.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use coachfit::proto::v1 as pb;

use crate::common::*;
use crate::each_backend;

each_backend!(
    verify_reports_a_tampered_day_and_rebuild_repairs_it,
    admin_commands_print_json_accounts,
    days_an_earlier_fold_stored_are_refolded_once,
    a_rule_set_from_the_cli_holds_for_the_running_server,
);

/// A sleep session of `minutes` asleep, from `start` (hours after the start of 2026-03-01).
fn session(start: i64, minutes: u32) -> pb::SleepSession {
    let start = utc("2026-03-01", 0) + chrono::Duration::hours(start);
    let end = start + chrono::Duration::minutes(i64::from(minutes));
    pb::SleepSession {
        date: "2026-03-01".into(),
        total_sleep_minutes: minutes,
        sleep_start: ts(start),
        sleep_end: ts(end),
        observed_at: ts(end + chrono::Duration::minutes(5)),
        ..Default::default()
    }
}

/// A database whose days an earlier fold stored (its fold version unrecorded, a day as that
/// fold left it: a night and a nap showed the nap alone): `verify` says so and changes
/// nothing; the next `serve` re-folds every day, once.
async fn days_an_earlier_fold_stored_are_refolded_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let sessions = vec![session(-2, 480), session(14, 60)];
    let request = pb::IngestSleepRequest { sessions, time_zone: "UTC".into() };
    server.ingest(&server.client.token).ingest_sleep(request).await.unwrap();
    let entry = server.entry("2026-03-01").await;
    assert_eq!(entry.sleep_minutes, Some(540), "a night and a nap");
    let record = entry.sleep.unwrap();
    assert_eq!((record.sessions, record.sleep_start), (2, ts(utc("2026-03-01", -2))), "the night is the main session");

    server
        .execute_sql("UPDATE entries SET body = replace(body, '\"sleep_minutes\":540', '\"sleep_minutes\":60')")
        .await;
    server.execute_sql("DELETE FROM fold_versions").await;
    let verify = coachfit(&server.db_url, &["verify"]);
    assert!(!verify.status.success());
    assert!(String::from_utf8_lossy(&verify.stderr).contains("folded by an earlier release"));
    assert_eq!(server.entry("2026-03-01").await.sleep_minutes, Some(60), "verify only reads");

    drop(serve_child(&server.db_url, "127.0.0.1:0"));
    assert_eq!(server.entry("2026-03-01").await.sleep_minutes, Some(540), "serve re-folded the day");
    let verify = coachfit(&server.db_url, &["verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));

    // Once: with the version recorded, a tampered day is reported, not quietly re-folded.
    server
        .execute_sql("UPDATE entries SET body = replace(body, '\"sleep_minutes\":540', '\"sleep_minutes\":61')")
        .await;
    assert!(!coachfit(&server.db_url, &["verify"]).status.success());
}

/// `coachfit priority set` stores the rule in the database: the server already running folds
/// its next event under it (a rule that was a flag of each command flipped back as soon as
/// a server started without it), and the retired flag says where the rule went.
async fn a_rule_set_from_the_cli_holds_for_the_running_server(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = &server.client;
    let own_steps =
        |date: &str, total| manual(&client.id, date, pb::ManualValues { steps: Some(total), ..Default::default() });
    server.ingest(&client.token).ingest_steps(steps_request(vec![steps("2026-03-01", 8_000, 20)])).await.unwrap();
    server.entries(&client.token).record_manual_entry(own_steps("2026-03-01", 5_000)).await.unwrap();
    assert_eq!(server.entry("2026-03-01").await.steps, Some(5_000));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("priority.json");
    std::fs::write(&file, r#"{"fields": {"steps": ["healthkit", "manual"]}}"#).unwrap();
    let file = file.to_str().unwrap();
    let set = coachfit(&server.db_url, &["priority", "set", file]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let set: serde_json::Value = serde_json::from_slice(&set.stdout).unwrap();
    assert_eq!((set["version"].as_i64(), set["days_changed"].as_i64()), (Some(1), Some(1)));
    assert_eq!(server.entry("2026-03-01").await.steps, Some(8_000), "the stored day was re-folded");

    server.entries(&client.token).record_manual_entry(own_steps("2026-03-02", 4_000)).await.unwrap();
    server.ingest(&client.token).ingest_steps(steps_request(vec![steps("2026-03-02", 9_000, 20)])).await.unwrap();
    assert_eq!(server.entry("2026-03-02").await.steps, Some(9_000), "the running server folds under the new rule");

    let shown = coachfit(&server.db_url, &["priority", "show"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["rule"], serde_json::json!({"fields": {"steps": ["healthkit", "manual"]}}));
    assert_eq!((shown["set_by"].as_str(), shown["applied"].as_bool()), (Some("cli"), Some(true)));
    let verify = coachfit(&server.db_url, &["verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));

    let retired = coachfit(&server.db_url, &["verify", "--priority-file", file]);
    assert!(!retired.status.success());
    assert!(String::from_utf8_lossy(&retired.stderr).contains("coachfit priority set"));
    let unreadable = coachfit(&server.db_url, &["priority", "set", "/nonexistent/rule.json"]);
    assert!(!unreadable.status.success());
}

async fn verify_reports_a_tampered_day_and_rebuild_repairs_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    server
        .ingest(&server.client.token)
        .ingest_steps(steps_request(vec![steps("2026-03-01", 4_000, 20)]))
        .await
        .unwrap();
    assert!(coachfit(&server.db_url, &["verify"]).status.success());

    // Tamper with the read model behind the service's back.
    server.execute_sql("UPDATE entries SET body = replace(body, '\"steps\":4000', '\"steps\":4001')").await;

    let verify = coachfit(&server.db_url, &["verify"]);
    assert!(!verify.status.success());
    let listed = String::from_utf8_lossy(&verify.stdout);
    assert!(listed.contains(&server.client.id) && listed.contains("2026-03-01"), "{listed}");

    let rebuild = coachfit(&server.db_url, &["rebuild", "--user-id", &server.client.id]);
    assert!(rebuild.status.success());
    assert!(coachfit(&server.db_url, &["verify"]).status.success());
    assert_eq!(server.entry("2026-03-01").await.steps, Some(4_000));
}

async fn admin_commands_print_json_accounts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let coach = coachfit(&server.db_url, &["admin", "create-coach", "--name", "Coach Ola"]);
    assert!(coach.status.success());
    let coach: serde_json::Value = serde_json::from_slice(&coach.stdout).unwrap();
    let coach_id = coach["coach_id"].as_str().unwrap();
    assert_eq!(coach["coach_token"].as_str().unwrap().len(), 64);

    let client = coachfit(&server.db_url, &["admin", "create-client", "--coach-id", coach_id]);
    assert!(client.status.success());
    let client: serde_json::Value = serde_json::from_slice(&client.stdout).unwrap();
    let (user_id, token) = (client["user_id"].as_str().unwrap(), client["device_token"].as_str().unwrap());

    // The minted device token works against the running server.
    server.ingest(token).ingest_steps(steps_request(vec![steps("2026-03-01", 77, 20)])).await.unwrap();
    let request = pb::GetEntryRequest { user_id: user_id.into(), date: "2026-03-01".into() };
    let entry =
        server.entries(coach["coach_token"].as_str().unwrap()).get_entry(request.clone()).await.unwrap().into_inner();
    assert_eq!(entry.entry.unwrap().steps, Some(77));

    let unknown = coachfit(&server.db_url, &["admin", "create-client", "--coach-id", "nobody"]);
    assert!(!unknown.status.success());

    // Rotating refuses the printed token at once; revoking refuses the rotated one.
    let rotated = coachfit(&server.db_url, &["admin", "rotate-coach-token", "--coach-id", coach_id]);
    let rotated: serde_json::Value = serde_json::from_slice(&rotated.stdout).unwrap();
    let rotated = rotated["coach_token"].as_str().unwrap();
    let status = server.entries(coach["coach_token"].as_str().unwrap()).get_entry(request.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    server.entries(rotated).get_entry(request.clone()).await.expect("the rotated token reads");
    let revoked = coachfit(&server.db_url, &["admin", "revoke-coach", "--coach-id", coach_id]);
    let revoked: serde_json::Value = serde_json::from_slice(&revoked.stdout).unwrap();
    assert_eq!(revoked["tokens_revoked"], 1);
    let status = server.entries(rotated).get_entry(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(!coachfit(&server.db_url, &["admin", "revoke-coach", "--coach-id", "nobody"]).status.success());
}

/// `coachfit serve` on a new SQLite database.
fn spawn_serve(dir: &tempfile::TempDir) -> ChildServer {
    serve_child(&format!("sqlite://{}", dir.path().join("serve.db").display()), "127.0.0.1:0")
}

/// Sends SIGTERM and waits for the exit status.
async fn terminate(mut child: ChildServer) -> std::process::ExitStatus {
    child.terminate().unwrap();
    tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap()
}

/// `coachfit serve` answers health checks and exits cleanly on SIGTERM.
#[tokio::test]
async fn serve_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_serve(&dir);
    let addr = child.addr.clone();
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check =
        health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(check.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);

    drop(health);
    let status = terminate(child).await;
    assert!(status.success(), "serve exits 0 after SIGTERM: {status:?}");
}

/// A SIGTERM as soon as `serve` says it listens is a graceful shutdown too: the handler is
/// in place before the server announces itself, not when it first waits for a signal.
#[tokio::test]
async fn serve_exits_cleanly_on_a_sigterm_as_soon_as_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_serve(&dir);
    let status = terminate(child).await;
    assert!(status.success(), "serve exits 0 after SIGTERM: {status:?}");
}

/// `verify` and `admin` where there is no database name the path and create nothing: an
/// empty new file would make `verify` pass and `admin` say the coach does not exist.
#[test]
fn read_only_commands_refuse_a_database_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.db");
    let url = format!("sqlite://{}", missing.display());
    for args in [&["verify"][..], &["rebuild"], &["admin", "create-client", "--coach-id", "c"]] {
        let output = coachfit(&url, args);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("no database at {}", missing.display())), "{args:?}: {stderr}");
        assert_eq!(stderr.matches("nowhere.db").count(), 1, "the path is named once: {stderr}");
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
    assert!(coachfit(&url, &["migrate"]).status.success(), "migrate creates it");
    assert!(coachfit(&url, &["verify"]).status.success());
}

/// `coachfit demo` serves a coach with two clients and weeks of their data, writes the
/// exports it prints, and what it stored verifies.
#[tokio::test]
async fn the_demo_serves_a_coach_with_two_clients_and_their_weeks_of_data() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_coachfit"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("COACHFIT_DATABASE_URL", &db_url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn coachfit demo");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let printed: Vec<String> =
        stdout.lines().map(|l| l.unwrap()).take_while(|l| !l.contains("Ctrl-C stops the demo")).collect();
    let env_file = std::fs::read_to_string(dir.path().join("coachfit-demo.env")).unwrap();
    let exports: BTreeMap<String, String> = env_file
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .map(|l| {
            let (name, value) = l.split_once('=').unwrap();
            (name.to_string(), value.split_whitespace().next().unwrap().to_string())
        })
        .collect();
    assert!(printed.iter().any(|l| l.starts_with("export COACH_TOKEN=")), "the exports are printed: {printed:?}");

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", exports["COACHFIT_ADDR"]))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut coach = coachfit::proto::v1::entry_service_client::EntryServiceClient::with_interceptor(
        channel,
        Bearer::new(&exports["COACH_TOKEN"]),
    );
    let mut days = 0;
    for user in [&exports["USER_ID"], &exports["BEN_USER_ID"]] {
        let request = pb::ListEntriesRequest {
            user_id: user.clone(),
            start_date: "2000-01-01".into(),
            end_date: "2100-01-01".into(),
            page_size: 366,
            page_token: String::new(),
        };
        let entries = coach.list_entries(request).await.unwrap().into_inner().entries;
        assert!(entries.len() >= 21, "three weeks of history: {}", entries.len());
        assert!(
            entries.iter().filter(|e| e.sleep.is_some() && e.workouts.as_ref().is_some_and(|w| w.count > 0)).count()
                > 5
        );
        days += entries.len();
    }
    assert!(days >= 42);
    // The coach's correction stands over HealthKit on one of Ana's days.
    let request = pb::ListEntriesRequest {
        user_id: exports["USER_ID"].clone(),
        start_date: "2000-01-01".into(),
        end_date: "2100-01-01".into(),
        page_size: 366,
        page_token: String::new(),
    };
    let entries = coach.list_entries(request).await.unwrap().into_inner().entries;
    let corrected: Vec<_> = entries.iter().filter(|e| e.steps == Some(21_400)).collect();
    assert_eq!(corrected.len(), 1);
    let steps = corrected[0].provenance.iter().find(|p| p.field == "steps").unwrap();
    assert_eq!((steps.source(), steps.overridden), (pb::Source::Coach, true));

    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the demo exits cleanly on SIGTERM: {status:?}");
    assert!(coachfit(&db_url, &["verify"]).status.success(), "what the demo stored verifies");
}

/// A flag is offered only by the commands it applies to, so `--help` lists what matters and
/// a misplaced flag is an error rather than silently ignored.
#[test]
fn flags_belong_to_the_commands_that_use_them() {
    let misplaced =
        coachfit("sqlite://unused.db", &["admin", "create-coach", "--name", "C", "--max-events-per-day", "100"]);
    assert!(!misplaced.status.success());
    assert!(String::from_utf8_lossy(&misplaced.stderr).contains("unexpected argument '--max-events-per-day'"));
    let help = coachfit("sqlite://unused.db", &["serve", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--max-events-per-day", "--listen", "--drain-timeout-secs", "RUST_LOG"] {
        assert!(help.contains(flag), "serve --help names {flag}");
    }
}

#[test]
fn a_database_in_a_missing_directory_is_named_once() {
    let output = coachfit("sqlite:///nonexistent/dir/x.db", &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the directory /nonexistent/dir does not exist"), "{stderr}");
    assert_eq!(stderr.matches("unable to open").count(), 0, "{stderr}");
}

/// PostgreSQL's notices ("relation … already exists, skipping" on every start) are not
/// logged.
#[tokio::test]
async fn postgres_commands_log_no_notices() {
    let database = crate::database::TestDatabase::create(Backend::Postgres).await;
    for _ in 0..2 {
        let migrate = Command::new(env!("CARGO_BIN_EXE_coachfit"))
            .arg("migrate")
            .env("COACHFIT_DATABASE_URL", &database.url)
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        assert!(migrate.status.success());
        let stderr = String::from_utf8_lossy(&migrate.stderr);
        assert!(!stderr.contains("already exists"), "{stderr}");
    }
}

/// `coachfit backup` while `serve` runs and a phone keeps reporting: the copy verifies (one
/// consistent snapshot) and holds every day acknowledged before it began; an existing file
/// is not overwritten; PostgreSQL is pointed to pg_dump.
#[tokio::test]
async fn a_backup_taken_while_serving_verifies_and_holds_what_was_acknowledged() {
    use coachfit::store::sqlite::SqliteStore;
    use coachfit::store::Store;

    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("live.db").display());
    let server = serve_child(&db_url, "127.0.0.1:0");
    let coach: serde_json::Value =
        serde_json::from_slice(&coachfit(&db_url, &["admin", "create-coach", "--name", "C"]).stdout).unwrap();
    let client = coachfit(&db_url, &["admin", "create-client", "--coach-id", coach["coach_id"].as_str().unwrap()]);
    let client: serde_json::Value = serde_json::from_slice(&client.stdout).unwrap();
    let (user_id, token) = (client["user_id"].as_str().unwrap().to_string(), client["device_token"].as_str().unwrap());
    let channel = tonic::transport::Channel::from_shared(server.uri()).unwrap().connect().await.unwrap();
    let ingest = pb::ingest_service_client::IngestServiceClient::with_interceptor(channel, Bearer::new(token));
    let day = |d: u32| format!("2026-01-{:02}", d);
    for d in 1..=10 {
        ingest.clone().ingest_steps(steps_request(vec![steps(&day(d), 1_000 * d, 20)])).await.unwrap();
    }
    // The phone goes on reporting while the copy is taken.
    let mut phone = ingest.clone();
    let reporting = tokio::spawn(async move {
        for d in 11..=28 {
            phone.ingest_steps(steps_request(vec![steps(&day(d), 1_000 * d, 20)])).await.unwrap();
        }
    });
    let copy = dir.path().join("copy.db");
    let (url, to) = (db_url.clone(), copy.to_str().unwrap().to_string());
    let backup = tokio::task::spawn_blocking(move || coachfit(&url, &["backup", &to])).await.unwrap();
    assert!(backup.status.success(), "{}", String::from_utf8_lossy(&backup.stderr));
    reporting.await.unwrap();

    let copy_url = format!("sqlite://{}", copy.display());
    assert!(coachfit(&copy_url, &["verify"]).status.success(), "the copy is one consistent snapshot");
    let store = SqliteStore::open(&copy_url).await.unwrap();
    let first = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let days = store.list_entries(&user_id, first, first + chrono::Duration::days(30), None, 100).await.unwrap();
    let steps_by_day: Vec<(String, Option<u32>)> =
        days.iter().take(10).map(|entry| (entry.day.to_string(), entry.body.steps)).collect();
    let expected: Vec<(String, Option<u32>)> = (1..=10).map(|d| (day(d), Some(1_000 * d))).collect();
    assert_eq!(steps_by_day, expected, "every day acknowledged before the backup is in it");

    let again = coachfit(&db_url, &["backup", copy.to_str().unwrap()]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("exists"));
    let postgres = coachfit("postgres://postgres@127.0.0.1:5432/postgres", &["backup", "/tmp/never.db"]);
    assert!(String::from_utf8_lossy(&postgres.stderr).contains("pg_dump"));
}
