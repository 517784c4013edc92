//! Many requests at once: the server writes concurrent requests together (group commit),
//! and each must still get exactly the answer it would have got alone.

use std::collections::BTreeSet;

use coachfit::proto::v1 as pb;

use crate::common::*;
use crate::each_backend;

each_backend!(
    concurrent_requests_of_many_clients_each_get_their_own_answer,
    the_same_report_sent_many_times_at_once_is_stored_once,
    one_idempotency_key_with_different_content_at_once_is_accepted_once,
    concurrent_full_batches_are_each_stored_whole,
    a_rebuild_while_clients_report_leaves_every_day_as_reported,
);

/// The `n`th day of March 2026.
fn march(n: u32) -> String {
    format!("2026-03-{:02}", n + 1)
}

async fn concurrent_requests_of_many_clients_each_get_their_own_answer(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut clients = Vec::new();
    for _ in 0..16 {
        clients.push(server.new_client(&server.coach.id).await);
    }
    // Every client sends 4 requests at once, each a new day with a total of its own, and
    // resends its first one.
    let mut calls = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        for d in [0, 1, 2, 3, 0] {
            let mut ingest = server.ingest(&client.token);
            let sample = steps(&march(d), 1_000 * c as u32 + d, 12);
            calls.push(tokio::spawn(async move {
                let response = ingest.ingest_steps(steps_request(vec![sample])).await.unwrap().into_inner();
                (c, d, response)
            }));
        }
    }
    let mut first_ids = std::collections::HashMap::new();
    let mut outcomes = Vec::new();
    for call in calls {
        let (c, d, response) = call.await.unwrap();
        assert_eq!(response.results.len(), 1);
        let event_id = response.results[0].event_id.clone();
        assert!(!event_id.is_empty(), "client {c} day {d}: an event id");
        if let Some(other) = first_ids.insert((c, d), event_id.clone()) {
            assert_eq!(other, event_id, "client {c} day {d}: a resend names the stored event");
        }
        outcomes.push(((c, d), statuses(&response)[0]));
    }
    for c in 0..clients.len() {
        let mut day_zero: Vec<pb::ItemStatus> =
            outcomes.iter().filter(|((oc, d), _)| *oc == c && *d == 0).map(|(_, s)| *s).collect();
        day_zero.sort_by_key(|s| *s as i32);
        assert_eq!(day_zero, vec![pb::ItemStatus::Accepted, pb::ItemStatus::Duplicate], "client {c}");
    }

    let mut positions = BTreeSet::new();
    for (c, client) in clients.iter().enumerate() {
        let mut entries = server.entries(&client.token);
        for d in 0..4u32 {
            let request = pb::GetEntryRequest { user_id: String::new(), date: march(d) };
            let entry = entries.get_entry(request).await.unwrap().into_inner().entry.unwrap();
            assert_eq!(entry.steps, Some(1_000 * c as u32 + d), "client {c} day {d}: its own total");
            assert!(positions.insert(entry.position), "client {c} day {d}: a position of its own");
        }
    }
    assert!(server.verify().await, "every read model equals the fold of its events");
}

async fn the_same_report_sent_many_times_at_once_is_stored_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let mut ingest = server.ingest(&server.client.token);
            tokio::spawn(async move {
                ingest.ingest_steps(steps_request(vec![steps("2026-03-05", 7_777, 18)])).await.unwrap().into_inner()
            })
        })
        .collect();
    let mut responses = Vec::new();
    for call in calls {
        responses.push(call.await.unwrap());
    }
    let accepted = responses.iter().filter(|r| statuses(r) == vec![pb::ItemStatus::Accepted]).count();
    let duplicates = responses.iter().filter(|r| statuses(r) == vec![pb::ItemStatus::Duplicate]).count();
    assert_eq!((accepted, duplicates), (1, 23));
    let ids: BTreeSet<&str> = responses.iter().map(|r| r.results[0].event_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "every answer names the one stored event");
    assert_eq!(server.events("2026-03-05").await.len(), 1);
    assert_eq!(server.entry("2026-03-05").await.steps, Some(7_777));
}

async fn one_idempotency_key_with_different_content_at_once_is_accepted_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let calls: Vec<_> = (0..24u32)
        .map(|i| {
            let mut ingest = server.ingest(&server.client.token);
            let mut sample = steps("2026-03-06", 100 + i, 18);
            sample.idempotency_key = "steps-2026-03-06".into();
            tokio::spawn(async move {
                let response = ingest.ingest_steps(steps_request(vec![sample])).await.unwrap().into_inner();
                (100 + i, statuses(&response)[0])
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut rejected = 0;
    for call in calls {
        match call.await.unwrap() {
            (total, pb::ItemStatus::Accepted) => winners.push(total),
            (_, pb::ItemStatus::Rejected) => rejected += 1,
            (total, other) => panic!("total {total}: {other:?}"),
        }
    }
    assert_eq!((winners.len(), rejected), (1, 23), "one key, one event");
    assert_eq!(server.entry("2026-03-06").await.steps, Some(winners[0]), "the entry is the accepted report");
    assert_eq!(server.events("2026-03-06").await.len(), 1);
}

/// Full batches from several phones at once: written together, each still whole.
async fn concurrent_full_batches_are_each_stored_whole(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let dates: Vec<String> = (0..400).map(|d| (first + chrono::Duration::days(d)).to_string()).collect();
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(server.new_client(&server.coach.id).await);
    }
    let send_all = || {
        let calls: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(c, client)| {
                let samples = dates.iter().map(|d| steps(d, 100 * c as u32 + 7, 12)).collect();
                let mut ingest = server.ingest(&client.token);
                tokio::spawn(async move { ingest.ingest_steps(steps_request(samples)).await.unwrap().into_inner() })
            })
            .collect();
        futures::future::join_all(calls)
    };
    for response in send_all().await {
        let response = response.unwrap();
        assert_eq!((response.accepted, response.duplicates, response.rejected), (400, 0, 0));
    }
    for response in send_all().await {
        assert_eq!(response.unwrap().duplicates, 400, "every item is found again");
    }
    for (c, client) in clients.iter().enumerate() {
        let request = pb::GetEntryRequest { user_id: String::new(), date: dates[399].clone() };
        let entry = server.entries(&client.token).get_entry(request).await.unwrap().into_inner().entry.unwrap();
        assert_eq!(entry.steps, Some(100 * c as u32 + 7));
    }
    assert!(server.verify().await);
}

/// Rebuilds run back to back while the client keeps reporting and the coach keeps
/// correcting the same days: no call fails (the rebuild's snapshot reads, its checks and the
/// writers' locks get along) and every entry ends equal to the fold of its events. The exact
/// interleavings (a chunk read, then a new event or a re-fold, then its write) are the
/// store's conformance tests (`store::conformance`), on both backends.
async fn a_rebuild_while_clients_report_leaves_every_day_as_reported(backend: Backend) {
    let server = TestServer::start(backend).await;
    let history = (0..28).map(|d| steps(&march(d), 1_000 + d, 8)).collect();
    server.ingest(&server.client.token).ingest_steps(steps_request(history)).await.unwrap();
    let writer = {
        let (mut ingest, mut entries) = (server.ingest(&server.client.token), server.entries(&server.coach.token));
        let client_id = server.client.id.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let day = march(i % 28);
                ingest.ingest_steps(steps_request(vec![steps(&day, 2_000 + i, 9 + i64::from(i % 12))])).await.unwrap();
                let values = pb::ManualValues { steps: Some(10_000 + i), ..Default::default() };
                entries.record_manual_entry(manual(&client_id, &day, values)).await.unwrap();
            }
        })
    };
    let mut admin = server.admin(&server.admin_token);
    let mut rebuilds = 0;
    while !writer.is_finished() {
        admin.rebuild_projections(pb::RebuildProjectionsRequest { user_id: None }).await.unwrap();
        rebuilds += 1;
    }
    writer.await.unwrap();

    assert!(rebuilds > 0);
    // Worked out from what was sent, not from the fold: each day shows its last manual
    // value (reports 0..40 went to day i % 28), over HealthKit's differing totals.
    for d in 0..28u32 {
        let last = if d < 12 { d + 28 } else { d };
        let entry = server.entry(&march(d)).await;
        assert_eq!(entry.steps, Some(10_000 + last), "day {d}");
        assert_eq!(provenance(&entry, "steps"), (pb::Source::Coach, true), "day {d}");
    }
    assert!(server.verify().await, "every stored read model equals the fold of its events");
}
