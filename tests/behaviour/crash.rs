//! `coachfit serve` killed with SIGKILL at random moments while clients keep ingesting with
//! the app's retry behaviour (new items until the last kill): every acknowledged item is there, every item is stored exactly
//! once after the retries, and `verify` is clean. `CRASH_KILLS` sets the number of kills
//! (default 20; `CRASH_KILLS=200 cargo test crash` is the longer form).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use coachfit::proto::v1 as pb;
use coachfit::proto::v1::entry_service_client::EntryServiceClient;
use coachfit::proto::v1::ingest_service_client::IngestServiceClient;
use tonic::transport::Channel;

use crate::common::*;
use crate::database::{AnyStore, TestDatabase};
use crate::each_backend;

each_backend!(sigkill_under_ingest_loses_no_acknowledged_item_and_stores_each_once,);

const CLIENTS: usize = 6;

fn day(item: u32) -> String {
    (NaiveDate::from_ymd_opt(2001, 1, 1).unwrap() + chrono::Duration::days(i64::from(item))).to_string()
}

/// The app's loop: new items until `stop`, each sent until the server answers it, whatever
/// happened to the earlier tries (refused connections, calls cut by a kill). Returns how
/// many items it sent, and how many answers were DUPLICATE (a retry of a report whose
/// answer was lost).
async fn report_until(channel: Channel, token: String, stop: Arc<AtomicBool>) -> (u32, u32) {
    let mut ingest = IngestServiceClient::with_interceptor(channel, Bearer::new(&token));
    let (mut items, mut duplicates) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let sample =
            pb::StepsSample { idempotency_key: format!("item-{items}"), ..steps(&day(items), 1_000 + items, 20) };
        loop {
            match ingest.ingest_steps(steps_request(vec![sample.clone()])).await {
                Ok(answer) => {
                    let status = answer.into_inner().results[0].status();
                    assert!(matches!(status, pb::ItemStatus::Accepted | pb::ItemStatus::Duplicate), "{status:?}");
                    duplicates += u32::from(status == pb::ItemStatus::Duplicate);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        items += 1;
    }
    (items, duplicates)
}

async fn sigkill_under_ingest_loses_no_acknowledged_item_and_stores_each_once(backend: Backend) {
    let kills: usize = std::env::var("CRASH_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(20);
    let database = TestDatabase::create(backend).await;
    let store = AnyStore::open(backend, &database.url, FEED_BUFFER).await;
    let (coach_id, coach_token) = store.create_coach("Coach Crash").await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(store.create_client(&coach_id).await);
    }
    drop(store);

    let mut child = serve_child(&database.url, "127.0.0.1:0");
    let addr = child.addr.clone();
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    let stop = Arc::new(AtomicBool::new(false));
    let reporting: Vec<_> = clients
        .iter()
        .map(|(_, token)| tokio::spawn(report_until(channel.clone(), token.clone(), stop.clone())))
        .collect();
    let mut rng = StdRng::seed_from_u64(kills as u64);
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(30 + rng.gen_range(0..250))).await;
        drop(child);
        child = serve_child(&database.url, &addr);
    }
    stop.store(true, Ordering::Relaxed);
    let mut duplicates = 0;
    let mut sent = Vec::new();
    for task in reporting {
        let (items, retried) =
            tokio::time::timeout(Duration::from_secs(120), task).await.expect("every item answered").unwrap();
        sent.push(items);
        duplicates += retried;
    }

    // Each item is there once, with its value, whatever the kills cut.
    let mut entries = EntryServiceClient::with_interceptor(channel, Bearer::new(&coach_token));
    for ((user_id, _), items) in clients.iter().zip(&sent) {
        for item in 0..*items {
            let request = pb::ExplainEntryRequest { user_id: user_id.clone(), date: day(item) };
            let explained = entries.explain_entry(request).await.unwrap().into_inner();
            assert_eq!(explained.events.len(), 1, "{user_id} item {item} stored exactly once");
            assert_eq!(explained.entry.unwrap().steps, Some(1_000 + item));
        }
    }
    drop(child);
    let verify = coachfit(&database.url, &["verify"]);
    assert!(verify.status.success(), "verify after {kills} kills: {}", String::from_utf8_lossy(&verify.stdout));
    eprintln!("{kills} kills; items sent per client {sent:?}; {duplicates} retries answered DUPLICATE");
}
