//! AdminService, and the read models staying equal to the fold of their events.

use coachfit::proto::v1 as pb;
use tonic::Code;

use crate::common::*;
use crate::each_backend;

each_backend!(rebuild_and_recompute_reproduce_the_same_entries, verify_finds_no_difference_after_a_random_history,);

async fn rebuild_and_recompute_reproduce_the_same_entries(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    ingest
        .ingest_steps(steps_request(vec![steps("2026-03-01", 1_000, 10), steps("2026-03-02", 2_000, 10)]))
        .await
        .unwrap();
    let correction =
        manual(&server.client.id, "2026-03-01", pb::ManualValues { steps: Some(5_000), ..Default::default() });
    server.entries(&server.coach.token).record_manual_entry(correction).await.unwrap();
    let before = (server.entry("2026-03-01").await, server.entry("2026-03-02").await);

    let mut admin = server.admin(&server.admin_token);
    let stats = admin
        .rebuild_projections(pb::RebuildProjectionsRequest { user_id: Some(server.client.id.clone()) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((stats.days_rebuilt, stats.events_replayed), (2, 3));
    assert_eq!((server.entry("2026-03-01").await, server.entry("2026-03-02").await), before);

    let recomputed = admin
        .recompute_day(pb::RecomputeDayRequest { user_id: server.client.id.clone(), date: "2026-03-01".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recomputed.entry.unwrap(), before.0);
    let missing = admin
        .recompute_day(pb::RecomputeDayRequest { user_id: server.client.id.clone(), date: "2026-01-01".into() })
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
}

async fn verify_finds_no_difference_after_a_random_history(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ingest = server.ingest(&server.client.token);
    let mut entries = server.entries(&server.coach.token);
    let mut rng = Lcg(0x5eed);
    for _ in 0..60 {
        let day = format!("2026-03-{:02}", 1 + rng.next(4));
        match rng.next(4) {
            0 | 1 => {
                let samples =
                    (0..1 + rng.next(3)).map(|_| steps(&day, rng.next(20_000) as u32, rng.next(24) as i64)).collect();
                ingest.ingest_steps(steps_request(samples)).await.unwrap();
            }
            2 => {
                let values = pb::ManualValues { steps: Some(rng.next(20_000) as u32), ..Default::default() };
                entries.record_manual_entry(manual(&server.client.id, &day, values)).await.unwrap();
            }
            _ => {
                let mut clear = manual(&server.client.id, &day, pb::ManualValues::default());
                clear.clear_fields = vec!["steps".into()];
                entries.record_manual_entry(clear).await.unwrap();
            }
        }
    }
    assert!(server.verify().await, "every stored read model equals the fold of its events");
    let rebuild = pb::RebuildProjectionsRequest { user_id: None };
    let stats = server.admin(&server.admin_token).rebuild_projections(rebuild).await.unwrap().into_inner();
    assert!(stats.days_rebuilt >= 1);
    assert!(server.verify().await);
}
