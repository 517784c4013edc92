//! Who may call what: tokens are required, and nobody reads someone else's user.

use coachfit::proto::v1 as pb;
use tonic::Code;

use crate::common::*;
use crate::each_backend;

each_backend!(
    calls_without_a_valid_token_are_unauthenticated,
    a_device_cannot_read_or_write_another_user,
    a_coach_reaches_only_their_own_clients,
    admin_calls_need_the_admin_token,
);

async fn calls_without_a_valid_token_are_unauthenticated(backend: Backend) {
    let server = TestServer::start(backend).await;
    for token in ["", "not-a-real-token"] {
        let status =
            server.ingest(token).ingest_steps(steps_request(vec![steps("2026-03-01", 1, 20)])).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        let status = server
            .entries(token)
            .get_entry(pb::GetEntryRequest { user_id: server.client.id.clone(), date: "2026-03-01".into() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        let status = server.admin(token).create_coach(pb::CreateCoachRequest { name: "Eve".into() }).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
}

async fn a_device_cannot_read_or_write_another_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let other = server.new_client(&server.coach.id).await;
    server.ingest(&other.token).ingest_steps(steps_request(vec![steps("2026-03-01", 500, 20)])).await.unwrap();
    let mut mine = server.entries(&server.client.token);

    let read =
        mine.get_entry(pb::GetEntryRequest { user_id: other.id.clone(), date: "2026-03-01".into() }).await.unwrap_err();
    assert_eq!(read.code(), Code::PermissionDenied);
    let list = pb::ListEntriesRequest {
        user_id: other.id.clone(),
        start_date: "2026-03-01".into(),
        end_date: "2026-03-02".into(),
        ..Default::default()
    };
    assert_eq!(mine.list_entries(list).await.unwrap_err().code(), Code::PermissionDenied);
    let write = mine
        .record_manual_entry(manual(&other.id, "2026-03-01", pb::ManualValues { steps: Some(1), ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::PermissionDenied);
    let explain = pb::ExplainEntryRequest { user_id: other.id.clone(), date: "2026-03-01".into() };
    assert_eq!(mine.explain_entry(explain).await.unwrap_err().code(), Code::PermissionDenied);
}

async fn a_coach_reaches_only_their_own_clients(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.ingest(&server.client.token).ingest_steps(steps_request(vec![steps("2026-03-01", 500, 20)])).await.unwrap();
    let rival = server.new_coach("Coach Rival").await;
    let mut rival_entries = server.entries(&rival.token);

    let read = rival_entries
        .get_entry(pb::GetEntryRequest { user_id: server.client.id.clone(), date: "2026-03-01".into() })
        .await
        .unwrap_err();
    assert_eq!(read.code(), Code::PermissionDenied);
    let write = rival_entries
        .record_manual_entry(manual(
            &server.client.id,
            "2026-03-01",
            pb::ManualValues { steps: Some(1), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::PermissionDenied);
    let unknown = rival_entries
        .get_entry(pb::GetEntryRequest { user_id: "no-such-user".into(), date: "2026-03-01".into() })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::PermissionDenied, "no oracle for which users exist");

    let own = server
        .entries(&server.coach.token)
        .get_entry(pb::GetEntryRequest { user_id: server.client.id.clone(), date: "2026-03-01".into() })
        .await
        .unwrap();
    assert_eq!(own.into_inner().entry.unwrap().steps, Some(500));

    let coach_ingest = server
        .ingest(&server.coach.token)
        .ingest_steps(steps_request(vec![steps("2026-03-01", 1, 20)]))
        .await
        .unwrap_err();
    assert_eq!(coach_ingest.code(), Code::PermissionDenied, "ingestion is for devices");
}

async fn admin_calls_need_the_admin_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    for token in [&server.client.token, &server.coach.token] {
        let status = server.admin(token).create_coach(pb::CreateCoachRequest { name: "Eve".into() }).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        let status =
            server.admin(token).rebuild_projections(pb::RebuildProjectionsRequest::default()).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    let created = server
        .admin(&server.admin_token)
        .create_coach(pb::CreateCoachRequest { name: "Coach Dana".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.coach_token.len(), 64, "256 bits, hex");
    let status = server
        .entries(&created.coach_token)
        .get_entry(pb::GetEntryRequest { user_id: server.client.id.clone(), date: "2026-03-01".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "the new coach token works and is scoped");
}
