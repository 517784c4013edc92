//! StreamEntries: catch-up, live updates, heartbeats, resuming without gaps, slow readers,
//! many subscribers, and who may watch whom.

use std::collections::BTreeMap;
use std::time::Duration;

use coachfit::proto::v1 as pb;
use pb::stream_entries_response::Kind;
use tonic::{Code, Streaming};
use tonic_types::StatusExt;

use crate::common::*;
use crate::each_backend;

each_backend!(
    a_live_stream_starts_with_a_heartbeat_then_carries_changes,
    a_stream_catches_up_in_position_order_then_goes_live,
    resuming_after_random_disconnects_under_concurrent_writers_misses_nothing,
    a_stalled_reader_does_not_hold_up_ingestion_and_catches_up,
    a_thousand_subscribers_all_receive_an_update,
    a_coach_stream_shows_a_client_added_while_it_is_open,
    streams_are_scoped_to_what_the_caller_may_see,
    shutdown_ends_open_streams_with_unavailable,
);

/// A guard against a hang, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

async fn open(
    server: &TestServer,
    token: &str,
    user_ids: Vec<String>,
    after: Option<u64>,
) -> Streaming<pb::StreamEntriesResponse> {
    let request = pb::StreamEntriesRequest { user_ids, after_position: after, include_clients: false };
    server.entries(token).stream_entries(request).await.expect("StreamEntries").into_inner()
}

async fn next(stream: &mut Streaming<pb::StreamEntriesResponse>) -> Kind {
    let message = tokio::time::timeout(PATIENCE, stream.message()).await.expect("a message in time");
    message.expect("stream ok").expect("stream open").kind.expect("message kind")
}

/// The next update, skipping heartbeats.
async fn next_update(stream: &mut Streaming<pb::StreamEntriesResponse>) -> pb::EntryUpdate {
    loop {
        if let Kind::Update(update) = next(stream).await {
            return update;
        }
    }
}

async fn a_live_stream_starts_with_a_heartbeat_then_carries_changes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    ingest.ingest_steps(steps_request(vec![steps("2026-03-01", 100, 20)])).await.unwrap();
    let head = server.entry("2026-03-01").await.position;

    let mut stream = open(&server, &server.coach.token, vec![], None).await;
    assert_eq!(next(&mut stream).await, Kind::Heartbeat(pb::Heartbeat { position: head }));
    ingest.ingest_steps(steps_request(vec![steps("2026-03-02", 200, 20)])).await.unwrap();
    let update = next_update(&mut stream).await;
    assert_eq!(update.entry.as_ref().unwrap().steps, Some(200));
    assert!(update.position > head);
    assert_eq!(update.entry.unwrap(), server.entry("2026-03-02").await);

    // Idle: heartbeats carry the latest position.
    assert_eq!(next(&mut stream).await, Kind::Heartbeat(pb::Heartbeat { position: update.position }));
}

async fn a_stream_catches_up_in_position_order_then_goes_live(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    for (day, total) in [("2026-03-03", 3), ("2026-03-01", 1), ("2026-03-02", 2), ("2026-03-01", 11)] {
        ingest.ingest_steps(steps_request(vec![steps(day, total, total as i64)])).await.unwrap();
    }
    let mut stream = open(&server, &server.client.token, vec![], Some(0)).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let update = next_update(&mut stream).await;
        seen.push((update.position, update.entry.unwrap().steps.unwrap()));
    }
    // 2026-03-01 changed twice; only its latest state is replayed, at its latest position.
    assert_eq!(seen.iter().map(|(_, steps)| *steps).collect::<Vec<_>>(), vec![3, 2, 11]);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));

    let resumed = open(&server, &server.client.token, vec![], Some(seen[1].0)).await;
    let mut resumed = resumed;
    assert_eq!(next_update(&mut resumed).await.entry.unwrap().steps, Some(11));

    ingest.ingest_steps(steps_request(vec![steps("2026-03-04", 4, 4)])).await.unwrap();
    assert_eq!(next_update(&mut stream).await.entry.unwrap().steps, Some(4));
    assert_eq!(next_update(&mut resumed).await.entry.unwrap().steps, Some(4));

    let ahead = server
        .entries(&server.client.token)
        .stream_entries(pb::StreamEntriesRequest {
            user_ids: vec![],
            after_position: Some(1_000_000),
            include_clients: false,
        })
        .await;
    let status = match ahead {
        Err(status) => status,
        Ok(response) => response.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(status.code(), Code::OutOfRange);
}

async fn resuming_after_random_disconnects_under_concurrent_writers_misses_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut clients = vec![server.new_client(&server.coach.id).await, server.new_client(&server.coach.id).await];
    clients.push(Account { id: server.client.id.clone(), token: server.client.token.clone() });

    let mut writers = Vec::new();
    for (w, client) in clients.iter().enumerate() {
        let mut ingest = server.ingest(&client.token);
        let mut coach = server.entries(&server.coach.token);
        let user_id = client.id.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(w as u64 + 7);
            for _ in 0..60 {
                let day = format!("2026-02-{:02}", 1 + rng.gen_range(0..8));
                if rng.gen_range(0..5) == 0 {
                    let values =
                        pb::ManualValues { steps: Some(rng.gen_range(0..30_000) as u32), ..Default::default() };
                    coach.record_manual_entry(manual(&user_id, &day, values)).await.unwrap();
                } else {
                    let samples = vec![steps(&day, rng.gen_range(0..30_000) as u32, rng.gen_range(0..24) as i64)];
                    ingest.ingest_steps(steps_request(samples)).await.unwrap();
                }
            }
        }));
    }

    let (latest, reconnects) = follow_with_random_disconnects(&server, &server.coach.token, &writers, 99).await;
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(reconnects > 5, "the test disconnected {reconnects} times");

    let mut expected = BTreeMap::new();
    for client in &clients {
        for d in 1..=8 {
            let date = format!("2026-02-{d:02}");
            let request = pb::GetEntryRequest { user_id: client.id.clone(), date: date.clone() };
            if let Ok(response) = server.entries(&server.coach.token).get_entry(request).await {
                expected.insert((client.id.clone(), date), response.into_inner().entry.unwrap());
            }
        }
    }
    assert!(!expected.is_empty());
    assert_eq!(latest, expected, "the stream ends with exactly the latest state of every entry");
}

async fn a_stalled_reader_does_not_hold_up_ingestion_and_catches_up(backend: Backend) {
    let server = TestServer::start(backend).await;
    let busy = server.new_client(&server.coach.id).await;
    // Subscribed, then reads nothing while 1,200 entries change.
    let mut stalled = open(&server, &server.coach.token, vec![busy.id.clone()], Some(0)).await;

    let days: Vec<String> = (0..1_200)
        .map(|i| (chrono::NaiveDate::from_ymd_opt(2022, 1, 1).unwrap() + chrono::Duration::days(i)).to_string())
        .collect();
    let mut ingest = server.ingest(&busy.token);
    let writes = async {
        for chunk in days.chunks(400) {
            let samples = chunk.iter().enumerate().map(|(i, day)| steps(day, i as u32 + 1, 20)).collect();
            let response = ingest.ingest_steps(steps_request(samples)).await.unwrap().into_inner();
            assert_eq!(response.accepted, 400);
        }
    };
    tokio::time::timeout(PATIENCE, writes).await.expect("ingestion is not held up by a stalled reader");
    // Another user's ingest goes through as usual too.
    server.ingest(&server.client.token).ingest_steps(steps_request(vec![steps("2026-03-01", 5, 5)])).await.unwrap();

    let mut seen = BTreeMap::new();
    let mut last = 0;
    while seen.len() < days.len() {
        let update = next_update(&mut stalled).await;
        assert!(update.position > last);
        last = update.position;
        let entry = update.entry.unwrap();
        assert_eq!(entry.user_id, busy.id, "only the requested user");
        seen.insert(entry.date.clone(), entry.steps);
    }
    let expected: BTreeMap<_, _> =
        days.iter().enumerate().map(|(i, d)| (d.clone(), Some((i % 400) as u32 + 1))).collect();
    assert_eq!(seen, expected);
}

async fn a_thousand_subscribers_all_receive_an_update(backend: Backend) {
    // One coach's token stands for a thousand dashboards: above the per-token cap.
    let limits = Limits { streams_per_principal: 1_000, ..Limits::default() };
    let server = TestServer::start_with_limits(backend, limits).await;
    // Dashboards connect from many places: 10 connections carrying 100 streams each.
    let mut streams = Vec::new();
    for _ in 0..10 {
        let client = server.entries_on_new_connection(&server.coach.token).await;
        for _ in 0..100 {
            let mut client = client.clone();
            let request = pb::StreamEntriesRequest {
                user_ids: vec![server.client.id.clone()],
                after_position: None,
                include_clients: false,
            };
            streams.push(tokio::spawn(async move {
                let mut stream = client.stream_entries(request).await.expect("StreamEntries").into_inner();
                assert!(matches!(next(&mut stream).await, Kind::Heartbeat(_)));
                stream
            }));
        }
    }
    let mut opened = Vec::new();
    for stream in streams {
        opened.push(stream.await.unwrap());
    }
    assert_eq!(opened.len(), 1_000);

    server
        .ingest(&server.client.token)
        .ingest_steps(steps_request(vec![steps("2026-03-05", 4_321, 20)]))
        .await
        .unwrap();
    let receivers = opened.into_iter().map(|mut stream| tokio::spawn(async move { next_update(&mut stream).await }));
    let mut delivered = 0;
    for receiver in receivers {
        let update = receiver.await.unwrap();
        assert_eq!(update.entry.unwrap().steps, Some(4_321));
        delivered += 1;
    }
    assert_eq!(delivered, 1_000);
}

async fn a_coach_stream_shows_a_client_added_while_it_is_open(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut stream = open(&server, &server.coach.token, vec![], None).await;
    assert!(matches!(next(&mut stream).await, Kind::Heartbeat(_)));

    let newcomer = server.new_client(&server.coach.id).await;
    server.ingest(&newcomer.token).ingest_steps(steps_request(vec![steps("2026-03-05", 777, 20)])).await.unwrap();
    let update = next_update(&mut stream).await;
    let entry = update.entry.unwrap();
    assert_eq!((entry.user_id.as_str(), entry.steps), (newcomer.id.as_str(), Some(777)));

    // Another coach's client never shows up on this stream.
    let rival = server.new_coach("Coach Rival").await;
    let outsider = server.new_client(&rival.id).await;
    server.ingest(&outsider.token).ingest_steps(steps_request(vec![steps("2026-03-05", 1, 20)])).await.unwrap();
    server.ingest(&newcomer.token).ingest_steps(steps_request(vec![steps("2026-03-06", 2, 20)])).await.unwrap();
    let entry = next_update(&mut stream).await.entry.unwrap();
    assert_eq!((entry.user_id.as_str(), entry.steps), (newcomer.id.as_str(), Some(2)));
}

async fn streams_are_scoped_to_what_the_caller_may_see(backend: Backend) {
    let server = TestServer::start(backend).await;
    let other = server.new_client(&server.coach.id).await;
    let rival = server.new_coach("Coach Rival").await;
    let cases = [
        ("", vec![], Code::Unauthenticated),
        (server.client.token.as_str(), vec![other.id.clone()], Code::PermissionDenied),
        (rival.token.as_str(), vec![server.client.id.clone()], Code::PermissionDenied),
        (server.coach.token.as_str(), vec![String::new()], Code::InvalidArgument),
    ];
    for (token, user_ids, code) in cases {
        let request = pb::StreamEntriesRequest { user_ids, after_position: Some(0), include_clients: false };
        let status = server.entries(token).stream_entries(request).await.unwrap_err();
        assert_eq!(status.code(), code);
    }

    // A device's stream carries only its own user.
    server.ingest(&other.token).ingest_steps(steps_request(vec![steps("2026-03-05", 1, 20)])).await.unwrap();
    server.ingest(&server.client.token).ingest_steps(steps_request(vec![steps("2026-03-05", 2, 20)])).await.unwrap();
    let mut own = open(&server, &server.client.token, vec![], Some(0)).await;
    assert_eq!(next_update(&mut own).await.entry.unwrap().user_id, server.client.id);
    // Admin sees everyone.
    let mut all = open(&server, &server.admin_token, vec![], Some(0)).await;
    let first = next_update(&mut all).await.entry.unwrap().user_id;
    let second = next_update(&mut all).await.entry.unwrap().user_id;
    assert_eq!((first, second), (other.id.clone(), server.client.id.clone()));
}

async fn shutdown_ends_open_streams_with_unavailable(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let mut stream = open(&server, &server.coach.token, vec![], None).await;
    assert!(matches!(next(&mut stream).await, Kind::Heartbeat(_)));

    tokio::time::timeout(PATIENCE, server.stop()).await.expect("shutdown completes with a stream open");
    let status = loop {
        match tokio::time::timeout(PATIENCE, stream.message()).await.expect("stream ends") {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::Unavailable);
    let retry = status.get_details_retry_info().expect("a shutdown says to reconnect").retry_delay;
    assert_eq!(retry, Some(Duration::ZERO), "at once, to another instance");
}
