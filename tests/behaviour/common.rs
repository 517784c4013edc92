//! `TestServer::start(backend)`: a running server on 127.0.0.1:0 with a fresh database of
//! its own, an admin token, one coach and one client, plus typed clients that send bearer
//! tokens.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use coachfit::accounts;
pub use coachfit::api::bearer::Bearer;
use coachfit::api::pairing::PairingOptions;
use coachfit::proto::v1 as pb;
use coachfit::proto::v1::admin_service_client::AdminServiceClient;
use coachfit::proto::v1::entry_service_client::EntryServiceClient;
use coachfit::proto::v1::ingest_service_client::IngestServiceClient;
use coachfit::proto::v1::pairing_service_client::PairingServiceClient;
use coachfit::proto::v1::privacy_service_client::PrivacyServiceClient;
use coachfit::proto::v1::roster_service_client::RosterServiceClient;
pub use coachfit::server::Limits;
use coachfit::server::{self, ServerOptions};
use coachfit::store::StoreOptions;
/// Seeded generators, so a failure can be replayed from its seed.
pub use rand::rngs::StdRng;
pub use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Status;

pub use crate::database::Backend;
use crate::database::{AnyStore, TestDatabase};

/// Runs each named scenario `async fn name(backend: Backend)` once per backend.
#[macro_export]
macro_rules! each_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::within_time_limit(super::$name($crate::common::Backend::Sqlite)).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::within_time_limit(super::$name($crate::common::Backend::Postgres)).await
                }
            )*
        }
    };
}

/// Far above any test's running time (the whole suite takes under a minute): a test that
/// hangs (a deadlock, say) fails after this instead of holding CI until its overall limit.
pub const TEST_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(180);

pub async fn within_time_limit(test: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(TEST_TIME_LIMIT, test).await.is_err() {
        panic!("the test did not finish within {TEST_TIME_LIMIT:?}: it hangs");
    }
}

/// Small, so that tests exercise the path where a subscriber lags behind the live buffer.
pub const FEED_BUFFER: usize = 16;

/// The store every test server runs: a small feed buffer, so that lagging is tested.
fn test_store() -> StoreOptions {
    StoreOptions { feed_buffer: FEED_BUFFER, ..StoreOptions::default() }
}
/// Short, so that heartbeats show up within a test.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(300);

#[derive(Clone)]
pub struct Account {
    pub id: String,
    pub token: String,
}

pub struct TestServer {
    pub backend: Backend,
    pub db_url: String,
    pub admin_token: String,
    pub coach: Account,
    pub client: Account,
    store: AnyStore,
    channel: Channel,
    channel_uri: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// Dropped (and the database with it) when the last server using it is gone.
    database: std::sync::Arc<TestDatabase>,
    options: ServerOptions,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        // Many tests redeem bad codes on purpose; throttling has tests of its own.
        Self::start_with(backend, PairingOptions { max_failures: 1_000, ..PairingOptions::default() }).await
    }

    pub async fn start_with(backend: Backend, pairing: PairingOptions) -> TestServer {
        Self::start_configured(backend, ServerOptions { pairing, ..ServerOptions::default() }, test_store()).await
    }

    /// Default limits unless a test is about a limit (or a load beyond one).
    pub async fn start_with_limits(backend: Backend, limits: Limits) -> TestServer {
        let pairing = PairingOptions { max_failures: 1_000, ..PairingOptions::default() };
        let options = ServerOptions { pairing, limits, ..ServerOptions::default() };
        Self::start_configured(backend, options, test_store()).await
    }

    /// A store holding at most `max_events_per_day` events per user-day.
    pub async fn start_with_day_limit(backend: Backend, max_events_per_day: usize) -> TestServer {
        let store = StoreOptions { max_events_per_day, ..test_store() };
        Self::start_configured(backend, ServerOptions::default(), store).await
    }

    /// A server run with `options` (the admin token and heartbeat are the test server's).
    pub async fn start_with_options(backend: Backend, options: ServerOptions) -> TestServer {
        Self::start_configured(backend, options, test_store()).await
    }

    /// A store whose clients' syncs take a roster position at most every `every`.
    pub async fn start_with_sync_notices_every(backend: Backend, every: std::time::Duration) -> TestServer {
        let store = StoreOptions { sync_notice_every: every, ..test_store() };
        Self::start_configured(backend, ServerOptions::default(), store).await
    }

    /// `options` (the admin token and heartbeat are the test server's),
    /// on a store run with `store`.
    async fn start_configured(backend: Backend, options: ServerOptions, store: StoreOptions) -> TestServer {
        init_test_logging();
        let database = std::sync::Arc::new(TestDatabase::create(backend).await);
        let store = AnyStore::open_with(backend, &database.url, &store).await;
        let (coach_id, coach_token) = store.create_coach("Coach Carla").await;
        let (user_id, device_token) = store.create_client(&coach_id).await;
        let coach = Account { id: coach_id, token: coach_token };
        let client = Account { id: user_id, token: device_token };
        Self::launch(backend, store, database, accounts::new_token(), coach, client, options).await
    }

    /// A server on a database that an earlier release wrote: the migrations up to
    /// `migrations_up_to`, then `data` (SQL), then the store opens it as a deploy would.
    pub async fn start_on_earlier_database(
        backend: Backend,
        migrations_up_to: i64,
        data: &str,
        coach: Account,
        client: Account,
    ) -> TestServer {
        init_test_logging();
        let database = std::sync::Arc::new(TestDatabase::create(backend).await);
        database.migrate_up_to(migrations_up_to).await;
        database.execute_script(data).await;
        let store = AnyStore::open(backend, &database.url, FEED_BUFFER).await;
        Self::launch(backend, store, database, accounts::new_token(), coach, client, ServerOptions::default()).await
    }

    async fn launch(
        backend: Backend,
        store: AnyStore,
        database: std::sync::Arc<TestDatabase>,
        admin_token: String,
        coach: Account,
        client: Account,
        options: ServerOptions,
    ) -> TestServer {
        let (listener, addr) = server::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind");
        let (tx, rx) = oneshot::channel::<()>();
        let options = ServerOptions { admin_token: Some(admin_token.clone()), heartbeat: HEARTBEAT, ..options };
        let shutdown = async {
            let _ = rx.await;
        };
        let task = match store.clone() {
            AnyStore::Sqlite(s) => tokio::spawn(server::serve(s, listener, options.clone(), shutdown)),
            AnyStore::Postgres(s) => tokio::spawn(server::serve(s, listener, options.clone(), shutdown)),
        };
        let channel_uri = format!("http://{addr}");
        let channel = Channel::from_shared(channel_uri.clone()).unwrap().connect().await.expect("connect");
        TestServer {
            backend,
            db_url: database.url.clone(),
            admin_token,
            coach,
            client,
            store,
            channel,
            channel_uri,
            shutdown: Some(tx),
            task: Some(task),
            database,
            options,
        }
    }

    /// Stops the server (letting in-flight calls finish) and starts a new one on the same database.
    pub async fn restart(mut self) -> TestServer {
        self.stop().await;
        self.another_instance().await
    }

    /// Another instance on the same database, with the same accounts (PostgreSQL's scale-out).
    pub async fn another_instance(&self) -> TestServer {
        let store = AnyStore::open(self.backend, &self.db_url, FEED_BUFFER).await;
        let (admin_token, coach, client) = (self.admin_token.clone(), self.coach.clone(), self.client.clone());
        Self::launch(self.backend, store, self.database.clone(), admin_token, coach, client, self.options.clone()).await
    }

    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran cleanly");
        }
    }

    /// The server's address as a URI.
    pub fn uri(&self) -> String {
        self.channel_uri.clone()
    }

    pub async fn new_coach(&self, name: &str) -> Account {
        let (id, token) = self.store.create_coach(name).await;
        Account { id, token }
    }

    pub async fn new_client(&self, coach_id: &str) -> Account {
        let (id, token) = self.store.create_client(coach_id).await;
        Account { id, token }
    }

    /// Runs SQL on the server's database behind the service's back.
    pub async fn execute_sql(&self, sql: &str) {
        self.database.execute(sql).await;
    }

    /// The SQL for the epoch as the backend stores instants (microseconds on SQLite).
    pub fn epoch_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "0",
            Backend::Postgres => "TIMESTAMPTZ 'epoch'",
        }
    }

    /// Every `table.column` with a row containing `value` (tables `except` aside).
    pub async fn columns_containing(&self, value: &str, except: &[&str]) -> Vec<String> {
        self.database.columns_containing(value, except).await
    }

    pub fn privacy(&self, token: &str) -> PrivacyServiceClient<InterceptedService<Channel, Bearer>> {
        PrivacyServiceClient::new(self.authed(token))
    }

    /// `coachfit verify` on this database: whether every read model matches its events.
    pub async fn verify(&self) -> bool {
        self.store.verify().await
    }

    fn authed(&self, token: &str) -> InterceptedService<Channel, Bearer> {
        InterceptedService::new(self.channel.clone(), Bearer::new(token))
    }

    pub fn ingest(&self, token: &str) -> IngestServiceClient<InterceptedService<Channel, Bearer>> {
        IngestServiceClient::new(self.authed(token))
    }

    pub fn entries(&self, token: &str) -> EntryServiceClient<InterceptedService<Channel, Bearer>> {
        EntryServiceClient::new(self.authed(token))
    }

    /// A client on a connection of its own (a dashboard on another machine).
    pub async fn entries_on_new_connection(
        &self,
        token: &str,
    ) -> EntryServiceClient<InterceptedService<Channel, Bearer>> {
        let channel = Channel::from_shared(self.channel_uri.clone()).unwrap().connect().await.expect("connect");
        EntryServiceClient::new(InterceptedService::new(channel, Bearer::new(token)))
    }

    pub fn pairing(&self, token: &str) -> PairingServiceClient<InterceptedService<Channel, Bearer>> {
        PairingServiceClient::new(self.authed(token))
    }

    pub fn admin(&self, token: &str) -> AdminServiceClient<InterceptedService<Channel, Bearer>> {
        AdminServiceClient::new(self.authed(token))
    }

    pub fn roster(&self, token: &str) -> RosterServiceClient<InterceptedService<Channel, Bearer>> {
        RosterServiceClient::new(self.authed(token))
    }

    /// The client's entry on `date`.
    pub async fn entry(&self, date: &str) -> pb::Entry {
        let request = pb::GetEntryRequest { user_id: String::new(), date: date.into() };
        self.entries(&self.client.token).get_entry(request).await.expect("GetEntry").into_inner().entry.unwrap()
    }

    /// The events the fold of the client's `date` reads.
    pub async fn events(&self, date: &str) -> Vec<pb::EventRecord> {
        let request = pb::ExplainEntryRequest { user_id: String::new(), date: date.into() };
        self.entries(&self.client.token).explain_entry(request).await.expect("ExplainEntry").into_inner().events
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    }
}

/// Follows a `StreamEntries` stream from position 0 like a dashboard on a flaky network:
/// after a random number of messages it drops the connection and resumes from the last
/// position it saw. Stops once `writers` had finished before a connection that then showed
/// an idle heartbeat. Checks that positions never go backwards; returns the latest entry
/// per (user, date) and how often it connected.
pub async fn follow_with_random_disconnects(
    server: &TestServer,
    token: &str,
    writers: &[JoinHandle<()>],
    seed: u64,
) -> (BTreeMap<(String, String), pb::Entry>, usize) {
    use pb::stream_entries_response::Kind;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut latest = BTreeMap::new();
    let mut last = 0u64;
    let mut connections = 0;
    loop {
        let writers_done = writers.iter().all(|w| w.is_finished());
        // With the roster's changes too: one sequence of positions orders both.
        let request = pb::StreamEntriesRequest { user_ids: vec![], after_position: Some(last), include_clients: true };
        let mut stream = server.entries(token).stream_entries(request).await.expect("StreamEntries").into_inner();
        connections += 1;
        let mut idle = false;
        for _ in 0..1 + rng.gen_range(0..15) {
            let message = tokio::time::timeout(std::time::Duration::from_secs(60), stream.message())
                .await
                .expect("a message in time (guards a hang; no timing is asserted)");
            match message.expect("stream ok").expect("stream open").kind.expect("message kind") {
                Kind::Update(update) => {
                    assert!(update.position > last, "positions never go backwards");
                    last = update.position;
                    let entry = update.entry.expect("an entry");
                    assert_eq!(entry.position, update.position);
                    latest.insert((entry.user_id.clone(), entry.date.clone()), entry);
                }
                Kind::Client(update) => {
                    assert!(update.position > last, "positions never go backwards");
                    last = update.position;
                    assert!(update.client.is_some_and(|client| !client.user_id.is_empty()));
                }
                Kind::Removed(removed) => panic!("nobody is erased here: {removed:?}"),
                Kind::Heartbeat(beat) => {
                    assert!(beat.position >= last, "positions never go backwards");
                    last = beat.position;
                    idle = true;
                }
            }
        }
        if writers_done && idle {
            return (latest, connections);
        }
    }
}

// --- request builders --------------------------------------------------------------------

pub fn ts(at: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 })
}

/// `hour` hours after midnight UTC on `date`.
pub fn utc(date: &str, hour: i64) -> DateTime<Utc> {
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap()) + Duration::hours(hour)
}

pub fn steps(date: &str, total_steps: u32, observed_hour: i64) -> pb::StepsSample {
    pb::StepsSample {
        date: date.into(),
        total_steps,
        observed_at: ts(utc(date, observed_hour)),
        source_devices: vec!["iPhone".into()],
        idempotency_key: String::new(),
    }
}

pub fn steps_request(samples: Vec<pb::StepsSample>) -> pb::IngestStepsRequest {
    pb::IngestStepsRequest { samples, time_zone: "America/New_York".into() }
}

pub fn manual(user_id: &str, date: &str, values: pb::ManualValues) -> pb::RecordManualEntryRequest {
    pb::RecordManualEntryRequest {
        user_id: user_id.into(),
        date: date.into(),
        values: Some(values),
        clear_fields: vec![],
        idempotency_key: String::new(),
        recorded_at: None,
    }
}

pub fn provenance(entry: &pb::Entry, field: &str) -> (pb::Source, bool) {
    let p = entry.provenance.iter().find(|p| p.field == field).unwrap_or_else(|| panic!("no provenance for {field}"));
    (pb::Source::try_from(p.source).unwrap(), p.overridden)
}

pub fn statuses(response: &pb::IngestResponse) -> Vec<pb::ItemStatus> {
    response.results.iter().map(|r| pb::ItemStatus::try_from(r.status).unwrap()).collect()
}

/// The field paths of a status's BadRequest details.
pub fn bad_request_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|br| br.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

pub use coachfit_testkit::ChildServer;

/// `coachfit serve --listen <listen>` on `db_url` as a child process, once it listens.
pub fn serve_child(db_url: &str, listen: &str) -> ChildServer {
    serve_child_with(db_url, &["--listen", listen], &[])
}

/// `coachfit serve ARGS` on `db_url`, with the environment's `envs` added, once it listens.
pub fn serve_child_with(db_url: &str, args: &[&str], envs: &[(&str, &str)]) -> ChildServer {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_coachfit"));
    command
        .arg("serve")
        .args(args)
        .env("COACHFIT_DATABASE_URL", db_url)
        .env("RUST_LOG", "info")
        .envs(envs.iter().copied());
    ChildServer::start(command).expect("coachfit serve listening")
}

/// Runs `coachfit ARGS` on `db_url` to completion (warnings and errors logged only).
pub fn coachfit(db_url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_coachfit"))
        .args(args)
        .env("COACHFIT_DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run coachfit")
}
