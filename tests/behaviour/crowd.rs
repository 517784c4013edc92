//! A thousand phones at once, each behaving as the app does on a bad network: its reports
//! sent, resent whole (a lost acknowledgement), out of order (an offline queue replaying an
//! older total after a newer one), and retried after `UNAVAILABLE` or `RESOURCE_EXHAUSTED`
//! as `RetryInfo` says. Nothing is lost or counted twice, and the server (the binary) stays
//! within the memory goal.

use std::time::Duration;

use coachfit::proto::v1 as pb;
use coachfit::proto::v1::entry_service_client::EntryServiceClient;
use coachfit::proto::v1::ingest_service_client::IngestServiceClient;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::*;
use crate::database::{AnyStore, TestDatabase};
use crate::each_backend;
use crate::workouts::run;

each_backend!(a_thousand_phones_resending_out_of_order_lose_nothing_and_count_nothing_twice,);

const PHONES: usize = 1_000;
const CONNECTIONS: usize = 25;
const DAYS: [&str; 3] = ["2026-03-02", "2026-03-03", "2026-03-04"];
/// The memory goal (docs/DESIGN.md §7), in kB as /proc reports it.
const MEMORY_GOAL_KB: u64 = 150 * 1_000;

/// Sends `request` until the server answers it, waiting as `RetryInfo` says after a refusal.
async fn until_answered<T, F, Fut>(request: T, mut send: F) -> pb::IngestResponse
where
    T: Clone,
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<pb::IngestResponse>, tonic::Status>>,
{
    loop {
        match send(request.clone()).await {
            Ok(answer) => return answer.into_inner(),
            Err(status) if matches!(status.code(), Code::Unavailable | Code::ResourceExhausted) => {
                let wait = status.get_details_retry_info().and_then(|r| r.retry_delay);
                tokio::time::sleep(wait.unwrap_or(Duration::from_millis(100))).await;
            }
            Err(status) => panic!("not retryable: {status:?}"),
        }
    }
}

/// One phone's day on a bad network. Its final totals are 10,000 + 100 × phone + day.
async fn phone(channel: Channel, token: String, phone: usize) {
    let ingest = IngestServiceClient::with_interceptor(channel, Bearer::new(&token));
    let steps_of = |r| {
        let mut client = ingest.clone();
        async move { client.ingest_steps(r).await }
    };
    let workouts_of = |r| {
        let mut client = ingest.clone();
        async move { client.ingest_workouts(r).await }
    };
    let total = |day: usize| 10_000 + 100 * phone as u32 + day as u32;
    let latest: Vec<_> = DAYS.iter().enumerate().map(|(i, day)| steps(day, total(i), 22)).collect();
    let stale = steps(DAYS[0], 7, 12);
    let workouts = pb::IngestWorkoutsRequest {
        workouts: vec![run("morning", DAYS[1], 7, 30, 8), run("evening", DAYS[1], 18, 45, 19)],
        deleted_workout_ids: vec![],
        time_zone: "UTC".into(),
    };
    let batch = steps_request(latest);
    for _ in 0..2 {
        until_answered(batch.clone(), steps_of).await;
        until_answered(workouts.clone(), workouts_of).await;
    }
    // The offline queue replays an older total of the first day after the newer one.
    let replay = until_answered(steps_request(vec![stale]), steps_of).await;
    assert_eq!(replay.accepted, 1, "stored, but it must not win");
}

/// The peak resident memory of a process, in kB.
fn peak_resident_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn a_thousand_phones_resending_out_of_order_lose_nothing_and_count_nothing_twice(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = AnyStore::open(backend, &database.url, FEED_BUFFER).await;
    let (coach_id, coach_token) = store.create_coach("Coach Crowd").await;
    let mut phones = Vec::with_capacity(PHONES);
    for _ in 0..PHONES {
        phones.push(store.create_client(&coach_id).await);
    }
    drop(store);

    let child = serve_child(&database.url, "127.0.0.1:0");
    let addr = child.addr.clone();

    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap());
    }
    let running: Vec<_> = phones
        .iter()
        .enumerate()
        .map(|(i, (_, token))| tokio::spawn(phone(channels[i % CONNECTIONS].clone(), token.clone(), i)))
        .collect();
    for phone in running {
        tokio::time::timeout(Duration::from_secs(300), phone).await.expect("every phone done").unwrap();
    }
    let peak_kb = peak_resident_kb(child.pid());

    let mut coach = EntryServiceClient::with_interceptor(channels[0].clone(), Bearer::new(&coach_token));
    for (i, (user_id, _)) in phones.iter().enumerate() {
        let request = pb::ListEntriesRequest {
            user_id: user_id.clone(),
            start_date: DAYS[0].into(),
            end_date: DAYS[2].into(),
            page_size: 10,
            page_token: String::new(),
        };
        let entries = coach.list_entries(request).await.unwrap().into_inner().entries;
        let steps: Vec<_> = entries.iter().map(|e| e.steps).collect();
        let expected: Vec<_> = (0..DAYS.len()).map(|d| Some(10_000 + 100 * i as u32 + d as u32)).collect();
        assert_eq!(steps, expected, "phone {i}: the latest totals, not the replayed one");
        let workouts = entries[1].workouts.as_ref().unwrap();
        assert_eq!((workouts.count, workouts.distance_meters), (2, 10_000.0), "phone {i}: each run once");
    }
    drop(child);
    assert!(peak_kb <= MEMORY_GOAL_KB, "peak resident {peak_kb} kB with {PHONES} phones");
    eprintln!("{PHONES} phones on {CONNECTIONS} connections: server peak resident {} MiB", peak_kb / 1024);
}
