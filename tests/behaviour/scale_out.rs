//! PostgreSQL only: several instances on one database, and the database going away.

use std::collections::BTreeMap;
use std::time::Duration;

use coachfit::proto::v1 as pb;
use coachfit_testkit::test_postgres_server;
use pb::stream_entries_response::Kind;
use sqlx::Connection;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_types::StatusExt;

use crate::common::*;

/// A guard against a hang, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_with_concurrent_writers_lose_nothing_and_a_resuming_subscriber_sees_it_all() {
    let a = TestServer::start(Backend::Postgres).await;
    let b = a.another_instance().await;
    let second = a.new_client(&a.coach.id).await;
    let clients = [a.client.clone(), second];

    // Writers on both instances, deliberately hitting the same user-days at the same time.
    let mut writers = Vec::new();
    for (w, server) in [&a, &b, &a, &b].into_iter().enumerate() {
        for client in &clients {
            let mut ingest = server.ingest(&client.token);
            let mut coach = server.entries(&server.coach.token);
            let user_id = client.id.clone();
            writers.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w as u64 * 31 + user_id.len() as u64);
                for i in 0..40 {
                    let day = format!("2026-02-{:02}", 1 + rng.gen_range(0..2));
                    if rng.gen_range(0..4) == 0 {
                        let values =
                            pb::ManualValues { calories: Some(rng.gen_range(0..3_000) as u32), ..Default::default() };
                        coach.record_manual_entry(manual(&user_id, &day, values)).await.unwrap();
                    } else {
                        // Distinct observation times, so every report is a new event.
                        let mut sample = steps(&day, rng.gen_range(0..30_000) as u32, 0);
                        sample.observed_at = ts(utc(&day, 0) + chrono::Duration::seconds((w * 1_000 + i) as i64));
                        ingest.ingest_steps(steps_request(vec![sample])).await.unwrap();
                    }
                }
            }));
        }
    }

    // A coach dashboard on instance B that keeps dropping its connection and resuming.
    let (latest, _) = follow_with_random_disconnects(&b, &b.coach.token, &writers, 5).await;
    for writer in writers {
        writer.await.unwrap();
    }

    let mut expected = BTreeMap::new();
    for client in &clients {
        for d in 1..=2 {
            let date = format!("2026-02-{d:02}");
            let request = pb::GetEntryRequest { user_id: client.id.clone(), date: date.clone() };
            if let Ok(response) = a.entries(&a.coach.token).get_entry(request).await {
                expected.insert((client.id.clone(), date), response.into_inner().entry.unwrap());
            }
        }
    }
    assert_eq!(expected.len(), 4);
    assert_eq!(latest, expected, "the subscriber on B ends with exactly the latest state of every entry");
    assert!(a.verify().await, "no event is missing from any read model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_written_on_one_instance_reaches_a_live_subscriber_on_another() {
    let a = TestServer::start(Backend::Postgres).await;
    let b = a.another_instance().await;
    let request =
        pb::StreamEntriesRequest { user_ids: vec![a.client.id.clone()], after_position: None, include_clients: false };
    let mut stream = b.entries(&b.coach.token).stream_entries(request).await.unwrap().into_inner();
    assert!(matches!(stream.message().await.unwrap().unwrap().kind, Some(Kind::Heartbeat(_))));

    a.ingest(&a.client.token).ingest_steps(steps_request(vec![steps("2026-03-01", 1_234, 20)])).await.unwrap();
    let update = loop {
        let message = tokio::time::timeout(PATIENCE, stream.message()).await.expect("delivered").unwrap().unwrap();
        if let Some(Kind::Update(update)) = message.kind {
            break update;
        }
    };
    assert_eq!(update.entry.unwrap().steps, Some(1_234));
}

async fn set_connections_allowed(database_url: &str, allowed: bool) {
    let name = database_url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    let mut admin = sqlx::PgConnection::connect(&test_postgres_server()).await.unwrap();
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allowed}")).execute(&mut admin).await.unwrap();
    if !allowed {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

async fn health(server: &TestServer) -> ServingStatus {
    let channel = tonic::transport::Channel::from_shared(server.uri()).unwrap().connect().await.unwrap();
    let response = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.unwrap();
    response.into_inner().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_unreachable_calls_are_unavailable_then_everything_recovers() {
    let server = TestServer::start(Backend::Postgres).await;
    let mut ingest = server.ingest(&server.client.token);
    ingest.ingest_steps(steps_request(vec![steps("2026-03-01", 1, 20)])).await.unwrap();
    assert_eq!(health(&server).await, ServingStatus::Serving);

    set_connections_allowed(&server.db_url, false).await;
    let status = tokio::time::timeout(PATIENCE, ingest.ingest_steps(steps_request(vec![steps("2026-03-01", 2, 21)])))
        .await
        .expect("an answer, not a hang")
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let retry = status.get_details_retry_info().expect("UNAVAILABLE says when to retry").retry_delay;
    assert_eq!(retry, Some(Duration::from_secs(1)));
    assert!(!status.message().contains("SQL") && !status.message().contains("postgres"), "{}", status.message());
    let went_down = async {
        while health(&server).await != ServingStatus::NotServing {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(PATIENCE, went_down).await.expect("health reports NOT_SERVING");

    set_connections_allowed(&server.db_url, true).await;
    let recovered = async {
        loop {
            if ingest.ingest_steps(steps_request(vec![steps("2026-03-01", 3, 22)])).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        while health(&server).await != ServingStatus::Serving {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(PATIENCE, recovered).await.expect("recovery without a restart");
    assert_eq!(server.entry("2026-03-01").await.steps, Some(3));
}

/// Two stores (as two instances would have) appending to one user-day at the same moment:
/// without per-user serialization a re-fold can miss the other's uncommitted event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_to_one_day_from_two_instances_lose_no_event() {
    use coachfit::domain::event::{KeyReuse, NewEvent, Payload, StepsReport};
    use coachfit::domain::Source;
    use coachfit::store::postgres::{PgSettings, PostgresStore};
    use coachfit::store::Store;

    let database = crate::database::TestDatabase::create(Backend::Postgres).await;
    let settings = PgSettings { max_connections: 16, ..PgSettings::default() };
    let (a, b) = (
        PostgresStore::open(&database.url, &settings).await.unwrap(),
        PostgresStore::open(&database.url, &settings).await.unwrap(),
    );
    let (coach_id, _) = coachfit::accounts::create_coach(&a, "Coach").await.unwrap();
    let (user_id, _) = coachfit::accounts::create_client(&a, &coach_id, None, "phone").await.unwrap().unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();

    let mut writers = Vec::new();
    for i in 0..200u32 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let user_id = user_id.clone();
        writers.push(tokio::spawn(async move {
            let observed = utc("2026-03-01", 0) + chrono::Duration::seconds(i64::from(i));
            let payload = Payload::Steps(StepsReport { total_steps: i, source_devices: vec![] });
            let event = NewEvent::new(Some(day), Source::Healthkit, observed, payload, None, KeyReuse::Reject);
            store.append(&user_id, "device:test", vec![event]).await.unwrap();
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let entry = a.get_entry(&user_id, day).await.unwrap().unwrap();
    assert_eq!(entry.body.steps, Some(199), "the latest observation wins");
    assert_eq!(a.verify().await.unwrap(), vec![], "every read model equals its fold");
}
